package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// secretFileName is the name of the secret file inside the data directory.
const secretFileName = "jwt-secret"

// generatedSecretLen is the number of random bytes in a generated secret.
const generatedSecretLen = 32

// LoadOrCreateSecret returns the HS256 secret stored hex-encoded in
// dataDir/jwt-secret. When the file does not exist it creates dataDir (mode
// 0700) if needed, generates 32 random bytes and writes them atomically
// (temporary file, then rename) with mode 0600. An unreadable or corrupt file
// is an error naming its path.
func LoadOrCreateSecret(dataDir string) ([]byte, error) {
	secret, err := LoadSecret(dataDir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	secret = make([]byte, generatedSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generate JWT secret: %w", err)
	}
	path := secretPath(dataDir)
	if err := writeFileAtomic(path, []byte(hex.EncodeToString(secret)+"\n")); err != nil {
		return nil, fmt.Errorf("write JWT secret %s: %w", path, err)
	}
	return secret, nil
}

// LoadSecret returns the HS256 secret stored hex-encoded in
// dataDir/jwt-secret without creating it. A missing file gives an error
// (matching fs.ErrNotExist) that says how to create one; an unreadable or
// corrupt file is an error naming its path.
func LoadSecret(dataDir string) ([]byte, error) {
	path := secretPath(dataDir)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("JWT secret %s not found: run `mcp-browser-proxy serve` once to create it, or pass --jwt-secret: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read JWT secret: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("JWT secret %s is corrupt: not valid hex", path)
	}
	if len(secret) < minSecretLen {
		return nil, fmt.Errorf("JWT secret %s is corrupt: %d bytes, need at least %d", path, len(secret), minSecretLen)
	}
	return secret, nil
}

// SecretFromString converts a --jwt-secret flag value into key bytes: the
// string's raw bytes, which must number at least 32.
func SecretFromString(s string) ([]byte, error) {
	if len(s) < minSecretLen {
		return nil, fmt.Errorf("--jwt-secret is %d bytes, must be at least %d", len(s), minSecretLen)
	}
	return []byte(s), nil
}

// secretPath returns the secret file path for dataDir.
func secretPath(dataDir string) string {
	return filepath.Join(dataDir, secretFileName)
}

// writeFileAtomic writes data to path with mode 0600 via a temporary file in
// the same directory followed by a rename, so readers never see a partial file.
func writeFileAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp uses 0600 on Unix; be explicit so the guarantee is local.
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
