package auth

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	s1, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 32 {
		t.Fatalf("secret is %d bytes, want 32", len(s1))
	}
	if _, err := NewAuthenticator(s1); err != nil {
		t.Errorf("generated secret unusable: %v", err)
	}
	path := filepath.Join(dir, "jwt-secret")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("secret file mode = %o, want 600", mode)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := di.Mode().Perm(); mode != 0o700 {
		t.Errorf("data dir mode = %o, want 700", mode)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only jwt-secret (temp file left behind?)", len(entries))
	}

	s2, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1, s2) {
		t.Error("second LoadOrCreateSecret returned different bytes")
	}
	s3, err := LoadSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1, s3) {
		t.Error("LoadSecret returned different bytes")
	}
}

func TestLoadSecretMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadSecret(dir)
	if err == nil {
		t.Fatal("LoadSecret on empty dir succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not wrap fs.ErrNotExist", err)
	}
	for _, want := range []string{"mcp-browser-proxy serve", "--jwt-secret"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "jwt-secret")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("LoadSecret created the file")
	}
}

func TestLoadSecretCorrupt(t *testing.T) {
	tests := map[string]string{
		"not hex":   "zz" + strings.Repeat("0", 62),
		"too short": strings.Repeat("ab", 16),
		"empty":     "",
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "jwt-secret")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, load := range []func(string) ([]byte, error){LoadSecret, LoadOrCreateSecret} {
				_, err := load(dir)
				if err == nil || !strings.Contains(err.Error(), path) {
					t.Errorf("error = %v, want one naming %s", err, path)
				}
			}
			got, _ := os.ReadFile(path)
			if string(got) != content {
				t.Error("corrupt secret file was overwritten")
			}
		})
	}
}

func TestLoadSecretAcceptsTrailingNewline(t *testing.T) {
	dir := t.TempDir()
	hexStr := strings.Repeat("0f", 32)
	if err := os.WriteFile(filepath.Join(dir, "jwt-secret"), []byte(hexStr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s, bytes.Repeat([]byte{0x0f}, 32)) {
		t.Errorf("LoadSecret = %x", s)
	}
}

func TestSecretFromString(t *testing.T) {
	if _, err := SecretFromString(strings.Repeat("s", 31)); err == nil || !strings.Contains(err.Error(), "32") {
		t.Errorf("31-byte secret: err = %v, want error naming the minimum 32", err)
	}
	in := strings.Repeat("s", 32)
	got, err := SecretFromString(in)
	if err != nil || string(got) != in {
		t.Errorf("SecretFromString(32 bytes) = %q, %v", got, err)
	}
}
