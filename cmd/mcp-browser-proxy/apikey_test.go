package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testlog"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

var apiKeyRE = regexp.MustCompile(`^mbp_([0-9a-f]{16})_([0-9a-f]{64})$`)

// createKey runs `apikey create` and returns the key and its ID.
func createKey(t *testing.T, dir string, args ...string) (string, string) {
	t.Helper()
	out, stderr, err := run(t, append([]string{"apikey", "create", "--data-dir", dir}, args...)...)
	if err != nil {
		t.Fatalf("apikey create: %v", err)
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("stdout is not one line: %q", out)
	}
	key := strings.TrimSpace(out)
	m := apiKeyRE.FindStringSubmatch(key)
	if m == nil {
		t.Fatalf("stdout %q is not an API key", out)
	}
	if strings.Contains(stderr, m[2]) || !strings.Contains(stderr, m[1]) {
		t.Errorf("stderr %q: want the ID and never the secret", stderr)
	}
	return key, m[1]
}

func TestAPIKeyCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	aliceKey, aliceID := createKey(t, dir, "--user", "alice", "--perms", "browser:read,admin", "--name", "ci")
	bobKey, bobID := createKey(t, dir, "--user", "bob")

	out, _, err := run(t, "apikey", "list", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("list:\n%s", out)
	}
	for _, want := range [][]string{
		{aliceID, "alice", "browser:read,admin", "ci", time.Now().UTC().Format("2006-01-02"), "never"},
		{bobID, "bob", "browser:read,browser:write,browser:script", "-"},
	} {
		if !strings.Contains(out, want[0]) {
			t.Fatalf("list lacks %s:\n%s", want[0], out)
		}
		for _, line := range lines {
			if strings.Contains(line, want[0]) {
				for _, w := range want[1:] {
					if !strings.Contains(line, w) {
						t.Errorf("list line %q lacks %q", line, w)
					}
				}
			}
		}
	}
	// Neither the secret nor its hash is ever shown.
	for _, key := range []string{aliceKey, bobKey} {
		secret := apiKeyRE.FindStringSubmatch(key)[2]
		store, err := router.OpenBolt(filepath.Join(dir, "registrations.db"))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := store.GetAPIKey(context.Background(), apiKeyRE.FindStringSubmatch(key)[1])
		store.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{secret, hex.EncodeToString(rec.SecretHash), base64.StdEncoding.EncodeToString(rec.SecretHash)} {
			if strings.Contains(out, s) {
				t.Fatal("list shows a secret or its hash")
			}
		}
	}

	out, _, err = run(t, "apikey", "list", "--data-dir", dir, "--user", "bob")
	if err != nil || strings.Contains(out, aliceID) || !strings.Contains(out, bobID) {
		t.Errorf("list --user bob: %v\n%s", err, out)
	}

	// Revoke by ID, and by the whole key (whose secret is not echoed).
	out, _, err = run(t, "apikey", "revoke", "--data-dir", dir, aliceID)
	if err != nil || !strings.Contains(out, aliceID) {
		t.Fatalf("revoke: %v %q", err, out)
	}
	out, _, err = run(t, "apikey", "revoke", "--data-dir", dir, bobKey)
	if err != nil || strings.Contains(out, bobKey) || !strings.Contains(out, bobID) {
		t.Fatalf("revoke by key: %v %q", err, out)
	}
	out, _, err = run(t, "apikey", "list", "--data-dir", dir)
	if err != nil || strings.Contains(out, aliceID) || strings.Contains(out, bobID) {
		t.Errorf("list after revoke: %v\n%s", err, out)
	}
	_, _, err = run(t, "apikey", "revoke", "--data-dir", dir, aliceID)
	if err == nil || !strings.Contains(err.Error(), "apikey list") {
		t.Errorf("revoking twice: %v", err)
	}
	store, err := router.OpenBolt(filepath.Join(dir, "registrations.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := auth.VerifyAPIKey(context.Background(), store, aliceKey); err == nil {
		t.Error("revoked key still verifies")
	}
}

func TestAPIKeyCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"apikey", "create", "--data-dir", dir}, "--user"},
		{[]string{"apikey", "create", "--data-dir", dir, "--user", "alice", "--perms", "root"}, "root"},
		{[]string{"apikey", "create", "--data-dir", dir, "--user", "a/b"}, "user ID"},
		{[]string{"apikey", "create", "--data-dir", dir, "--user", ".."}, "user ID"},
		{[]string{"apikey", "create", "--data-dir", dir, "--user", "alice", "--perms", ""}, "--perms"},
		{[]string{"apikey", "list", "--data-dir", filepath.Join(dir, "nope")}, "no store"},
		{[]string{"apikey", "revoke", "--data-dir", dir, "zzz"}, "16 hex digits"},
		{[]string{"apikey", "revoke", "--data-dir", dir, "mbp_bogus_secretsecret"}, "malformed"},
		{[]string{"apikey", "revoke", "--data-dir", dir}, "arg"},
	} {
		_, _, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want one mentioning %q", tt.args[1:], err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secretsecret") {
			t.Errorf("error echoes the key: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !os.IsNotExist(err) {
		t.Error("list created a data directory")
	}
	// The refused commands did not even create the store.
	if _, err := os.Stat(filepath.Join(dir, "registrations.db")); !os.IsNotExist(err) {
		t.Errorf("refused commands created the store: %v", err)
	}
}

func TestAPIKeyStoreInUse(t *testing.T) {
	dir := t.TempDir()
	createKey(t, dir, "--user", "alice")
	store, err := router.OpenBolt(filepath.Join(dir, "registrations.db")) // as a running proxy would
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, args := range [][]string{{"create", "--user", "bob"}, {"list"}, {"revoke", "0123456789abcdef"}} {
		_, _, err := run(t, append(append([]string{"apikey"}, args...), "--data-dir", dir)...)
		if err == nil || !strings.Contains(err.Error(), "running proxy") || !strings.Contains(err.Error(), "stop the proxy") {
			t.Errorf("apikey %s on a store in use: %v", args[0], err)
		}
	}
}

func TestTokenIssueWithIssuerAudience(t *testing.T) {
	secret := strings.Repeat("s", 32)
	out, _, err := run(t, "token", "issue", "--jwt-secret", secret, "--user", "alice", "--jwt-issuer", "https://idp.test", "--jwt-audience", "mbp")
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out)
	strict, _ := auth.NewAuthenticatorWith([]byte(secret), auth.Options{Issuer: "https://idp.test", Audience: "mbp"})
	if p, err := strict.Verify(tok); err != nil || p.UserID != "alice" {
		t.Fatalf("token with iss/aud: %+v %v", p, err)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil || parsed.Method.Alg() != "HS256" {
		t.Errorf("token issue must sign HS256: %v", err)
	}
	out, _, err = run(t, "token", "issue", "--jwt-secret", secret, "--user", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Verify(strings.TrimSpace(out)); err == nil {
		t.Error("a token without iss/aud passes a proxy that requires them")
	}
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// served is a serve run in the test process, started by startServe.
type served struct {
	base   string          // http://host:port
	logs   *testlog.Buffer // what serve logged
	cancel context.CancelFunc
	done   chan error // gets what serve returned
	once   sync.Once
	err    error // what serve returned, once stop has run
}

// startServe runs serve with args on a free loopback port and waits until
// /health answers; the proxy stops when the test ends, if not before.
func startServe(t *testing.T, dir string, args ...string) *served {
	t.Helper()
	addr := freeAddr(t)
	cmd, f := newServeCmd()
	if err := cmd.ParseFlags(append([]string{"--addr", addr, "--data-dir", dir, "--log-format", "json"}, args...)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{base: "http://" + addr, logs: &testlog.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- serve(ctx, *f, s.logs) }()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(s.base + "/health")
		if err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("serve ended: %v\n%s", err, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not start: %v\n%s", err, s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop cancels serve's context, waits up to 15s for serve to return (an
// error of the test when it does not) and returns what it returned. Later
// calls return the same.
func (s *served) stop(t *testing.T) error {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case s.err = <-s.done:
		case <-time.After(15 * time.Second):
			s.err = errors.New("serve did not stop within 15s")
			t.Error(s.err)
		}
	})
	return s.err
}

// statusCode GETs path with a bearer credential.
func statusCode(t *testing.T, url, cred string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServeAcceptsIdPTokensAndAPIKeys(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		}}})
	}))
	defer jwks.Close()

	dir := t.TempDir()
	apiKey, _ := createKey(t, dir, "--user", "carol", "--perms", "browser:read")
	base := startServe(t, dir, "--jwt-jwks-url", jwks.URL, "--jwt-issuer", "https://idp.test", "--jwt-audience", "mbp").base

	idpToken := func(iss string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"sub": "alice", "iss": iss, "aud": "mbp", "exp": time.Now().Add(time.Hour).Unix(),
		})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Authenticated but unregistered: 404; refused: 401.
	if c := statusCode(t, base+"/api/users/alice/status", idpToken("https://idp.test")); c != http.StatusNotFound {
		t.Errorf("IdP token: %d, want 404", c)
	}
	if c := statusCode(t, base+"/api/users/alice/status", idpToken("https://evil.test")); c != http.StatusUnauthorized {
		t.Errorf("IdP token with wrong iss: %d, want 401", c)
	}
	if c := statusCode(t, base+"/api/users/carol/status", apiKey); c != http.StatusNotFound {
		t.Errorf("API key: %d, want 404", c)
	}
	if c := statusCode(t, base+"/api/users/alice/status", apiKey); c != http.StatusForbidden {
		t.Errorf("carol's API key acting for alice: %d, want 403", c)
	}
}

func TestServeAuthFlagErrors(t *testing.T) {
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "key.pem")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--jwt-jwks-url", "https://idp.test/jwks", "--jwt-public-key", pemFile}, "exclude each other"},
		{[]string{"--jwt-public-key", pemFile}, "--jwt-public-key"},
		{[]string{"--jwt-public-key", filepath.Join(dir, "missing.pem")}, "--jwt-public-key"},
		{[]string{"--jwt-jwks-url", "http://idp.example.com/jwks"}, "--jwt-jwks-url"},
	} {
		cmd, f := newServeCmd()
		if err := cmd.ParseFlags(append([]string{"--addr", "127.0.0.1:0", "--data-dir", dir, "--log-format", "json"}, tt.args...)); err != nil {
			t.Fatal(err)
		}
		err := serve(context.Background(), *f, &testlog.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("serve %v = %v, want error mentioning %q", tt.args, err, tt.want)
		}
	}
}

// TestAPIKeyCommandsOnRunningProxy checks that with --server the apikey
// commands use a running proxy's API (its store is locked by the proxy):
// create, list, revoke; the proxy's refusals come back as errors.
func TestAPIKeyCommandsOnRunningProxy(t *testing.T) {
	dir := t.TempDir()
	base := startServe(t, dir).base
	out, _, err := run(t, "token", "issue", "--user", "root", "--perms", "admin,browser:read", "--ttl", "1h", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	admin := strings.TrimSpace(out)
	remote := []string{"--server", base, "--token", admin}

	out, stderr, err := run(t, append([]string{"apikey", "create", "--user", "bob", "--perms", "browser:read", "--name", "ci"}, remote...)...)
	key := strings.TrimSpace(out)
	m := apiKeyRE.FindStringSubmatch(key)
	if err != nil || m == nil || strings.Count(out, "\n") != 1 || !strings.Contains(stderr, m[1]) || strings.Contains(stderr, m[2]) {
		t.Fatalf("remote create: %v %q %q", err, out, stderr)
	}
	if c := statusCode(t, base+"/api/users/bob/status", key); c != http.StatusNotFound {
		t.Errorf("the new key on the running proxy: %d, want 404 (authenticated, unregistered)", c)
	}
	// A key cannot create keys: the new one would outlive its revocation.
	if _, _, err := run(t, "apikey", "create", "--server", base, "--token", key, "--perms", "browser:read"); err == nil ||
		!strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "API key") {
		t.Errorf("create with a key: %v", err)
	}
	if _, _, err := run(t, append([]string{"apikey", "create", "--user", "bob", "--perms", "admin"}, remote...)...); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("admin for another user: %v", err)
	}
	out, _, err = run(t, append([]string{"apikey", "list", "--user", "bob"}, remote...)...)
	if err != nil || !strings.Contains(out, m[1]) || !strings.Contains(out, "ci") || strings.Contains(out, m[2]) {
		t.Errorf("remote list: %v\n%s", err, out)
	}
	if out, _, err = run(t, append([]string{"apikey", "revoke", m[1]}, remote...)...); err != nil || !strings.Contains(out, m[1]) {
		t.Fatalf("remote revoke: %v %q", err, out)
	}
	if c := statusCode(t, base+"/api/users/bob/status", key); c != http.StatusUnauthorized {
		t.Errorf("the revoked key: %d, want 401", c)
	}
	if _, _, err := run(t, "apikey", "list", "--server", base); err == nil || !strings.Contains(err.Error(), "--token") {
		t.Errorf("--server without --token: %v", err)
	}
	if _, _, err := run(t, "apikey", "list", "--server", "ftp://x", "--token", admin); err == nil || !strings.Contains(err.Error(), "--server") {
		t.Errorf("a bad --server: %v", err)
	}
}
