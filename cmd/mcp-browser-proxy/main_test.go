package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// run executes the CLI with args and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func TestTokenIssueUsesDataDirSecret(t *testing.T) {
	dir := t.TempDir()
	secret, err := auth.LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "token", "issue", "--user", "alice", "--perms", "browser:read,admin", "--ttl", "1h", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 || strings.Count(tok, ".") != 2 {
		t.Fatalf("stdout is not just a token: %q", out)
	}
	a, _ := auth.NewAuthenticator(secret)
	p, err := a.Verify(tok)
	if err != nil || p.UserID != "alice" || !p.Has(auth.PermAdmin) || p.Has(auth.PermWrite) {
		t.Fatalf("token: %v %+v", err, p)
	}
}

func TestTokenIssueErrors(t *testing.T) {
	if _, _, err := run(t, "token", "issue", "--data-dir", t.TempDir(), "--user", "alice"); err == nil || !strings.Contains(err.Error(), "serve") {
		t.Errorf("missing secret: %v", err)
	}
	if _, _, err := run(t, "token", "issue", "--jwt-secret", strings.Repeat("s", 32), "--user", "alice", "--perms", "root"); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("unknown perm: %v", err)
	}
	if _, _, err := run(t, "token", "issue", "--jwt-secret", strings.Repeat("s", 32)); err == nil || !strings.Contains(err.Error(), "--user") {
		t.Errorf("no user: %v", err)
	}
	// An explicitly empty --perms is a mistake, not a request for the
	// default: the token would grant nothing, or everything by accident.
	for _, perms := range []string{"", " , "} {
		out, _, err := run(t, "token", "issue", "--jwt-secret", strings.Repeat("s", 32), "--user", "alice", "--perms", perms)
		if err == nil || !strings.Contains(err.Error(), "--perms") || out != "" {
			t.Errorf("--perms %q: %q, %v; want a --perms error and no token", perms, out, err)
		}
	}
	for _, id := range []string{".", "..", "..."} {
		out, _, err := run(t, "token", "issue", "--jwt-secret", strings.Repeat("s", 32), "--user", id)
		if err == nil || !strings.Contains(err.Error(), "invalid user ID") || out != "" {
			t.Errorf("--user %s: %q, %v; want an invalid user ID error and no token", id, out, err)
		}
	}
}

func TestEnvTwinAndFlagPrecedence(t *testing.T) {
	envSecret, flagSecret := strings.Repeat("e", 32), strings.Repeat("f", 32)
	t.Setenv("MBP_JWT_SECRET", envSecret)
	t.Setenv("MBP_USER", "bob")
	out, _, err := run(t, "token", "issue")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := auth.NewAuthenticator([]byte(envSecret))
	if p, err := a.Verify(strings.TrimSpace(out)); err != nil || p.UserID != "bob" {
		t.Fatalf("env twins not used: %v %+v", err, p)
	}
	out, _, err = run(t, "token", "issue", "--jwt-secret", flagSecret, "--user", "carol")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := auth.NewAuthenticator([]byte(flagSecret))
	if p, err := b.Verify(strings.TrimSpace(out)); err != nil || p.UserID != "carol" {
		t.Fatalf("flags did not win over env: %v %+v", err, p)
	}
}

func TestServeHelpListsEnvTwins(t *testing.T) {
	out, _, err := run(t, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	newServe().Flags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(out, "--"+f.Name) || !strings.Contains(out, envName(f.Name)) {
			t.Errorf("serve --help lacks --%s or $%s", f.Name, envName(f.Name))
		}
	})
}

func TestServeStartsAndStops(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := startServe(t, dir)
	resp, err := http.Get(s.base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("health: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(dir, "jwt-secret")); err != nil {
		t.Errorf("no generated secret: %v", err)
	}
	if !strings.Contains(s.logs.String(), "token issue --user") {
		t.Errorf("start-up log does not say how to issue a token:\n%s", s.logs.String())
	}
	if err := s.stop(t); err != nil && err != http.ErrServerClosed {
		t.Errorf("serve returned %v", err)
	}
}

func TestServeBadDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := serve(context.Background(), serveFlags{addr: "127.0.0.1:0", dataDir: file, logLevel: "info", logFormat: "json"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("serve with a file as data dir: %v", err)
	}
}
