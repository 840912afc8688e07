package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
)

// apiCall sends method path with a JSON body and a bearer credential and
// returns the status, the error body (when there is one) and the headers.
// The client bound makes a hanging store a failure, not a stuck test.
func apiCall(t *testing.T, base, method, path, cred string, body any) (int, proxy.APIError, http.Header) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var e proxy.APIError
	if resp.StatusCode >= 400 {
		_ = json.NewDecoder(resp.Body).Decode(&e)
	}
	return resp.StatusCode, e, resp.Header
}

// waitFor polls cond every 50 ms for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeWithRedis: with --redis-url, registrations and API keys live in
// Redis (a key made by `apikey create --redis-url` works on the running
// proxy at once, and its revocation holds at once); with Redis stopped,
// /ready and the store's routes answer 503 STORE_UNAVAILABLE with
// Retry-After instead of hanging; a proxy started while Redis is down
// starts, and both recover by themselves when Redis is back, the new one
// restoring the registrations it could not read at start.
func TestServeWithRedis(t *testing.T) {
	const redisPassword = "redis-pw-SECRET-41"
	rs := testredis.StartWithPassword(t, redisPassword)
	dir := t.TempDir()
	t.Setenv("MBP_REDIS_URL", rs.URL) // the env twin, for the apikey commands run below
	// Every instance needs the same secret: it signs the tokens and keys
	// the sealing of the registrations they share.
	args := []string{"--redis-url", rs.URL, "--redis-timeout", "1s", "--redis-prefix", "it:", "--jwt-secret", procSecret}
	s := startServe(t, dir, args...)
	if !strings.Contains(s.logs.String(), "redis://"+rs.Addr+" (prefix it:)") {
		t.Errorf("the start log does not name the Redis store:\n%s", s.logs.String())
	}
	if st, e, _ := apiCall(t, s.base, http.MethodGet, "/ready", "", nil); st != http.StatusOK {
		t.Fatalf("/ready with Redis up: %d %+v", st, e)
	}
	out, _, err := run(t, "token", "issue", "--user", "alice", "--ttl", "1h", "--jwt-secret", procSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out)
	browser := "http://" + freeAddr(t) // nothing listens: registered, not connected
	reg := proxy.RegisterRequest{UserID: "alice", BrowserURL: browser}
	if st, e, _ := apiCall(t, s.base, http.MethodPost, "/api/register", tok, reg); st != http.StatusCreated {
		t.Fatalf("register with Redis up: %d %+v", st, e)
	}

	// An API key made straight in Redis while the proxy runs.
	key, id := createKey(t, dir, "--user", "alice", "--perms", "browser:read", "--redis-url", rs.URL, "--redis-prefix", "it:")
	if st, e, _ := apiCall(t, s.base, http.MethodGet, "/api/users/alice/status", key, nil); st != http.StatusOK {
		t.Errorf("status with a key created in Redis: %d %+v", st, e)
	}
	listed, _, err := run(t, "apikey", "list", "--redis-prefix", "it:") // URL from MBP_REDIS_URL
	if err != nil || !strings.Contains(listed, id) {
		t.Errorf("apikey list from Redis: %v\n%s", err, listed)
	}
	if _, _, err := run(t, "apikey", "revoke", id, "--redis-prefix", "it:"); err != nil {
		t.Fatalf("apikey revoke in Redis: %v", err)
	}
	if st, _, _ := apiCall(t, s.base, http.MethodGet, "/api/users/alice/status", key, nil); st != http.StatusUnauthorized {
		t.Errorf("the key revoked in Redis: %d, want 401 at once", st)
	}
	if _, _, err := run(t, "apikey", "list", "--redis-prefix", "other:", "--redis-url", rs.URL); err != nil {
		t.Errorf("apikey list of an empty prefix: %v", err)
	}

	// A proxy with another secret (so another store key) is refused: it
	// could read none of the registrations.
	cmd, f := newServeCmd()
	if err := cmd.ParseFlags([]string{"--addr", freeAddr(t), "--data-dir", t.TempDir(), "--redis-url", rs.URL, "--redis-prefix", "it:",
		"--jwt-secret", "another-secret-another-secret-another!", "--log-format", "json"}); err != nil {
		t.Fatal(err)
	}
	if err := serve(t.Context(), *f, io.Discard); err == nil || !strings.Contains(err.Error(), "--store-key") {
		t.Errorf("serve with another store key: %v, want a refusal naming --store-key", err)
	}

	// Redis goes away (keeping its data for later).
	rs.StopKeepingData()
	st, e, hdr := apiCall(t, s.base, http.MethodGet, "/ready", "", nil)
	if st != http.StatusServiceUnavailable || e.Code != proxy.CodeStoreUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("/ready with Redis stopped: %d %+v Retry-After=%q", st, e, hdr.Get("Retry-After"))
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/api/register"},
		{http.MethodGet, "/api/users/alice/status"},
	} {
		st, e, hdr = apiCall(t, s.base, c.method, c.path, tok, reg)
		if st != http.StatusServiceUnavailable || e.Code != proxy.CodeStoreUnavailable || hdr.Get("Retry-After") == "" ||
			!strings.Contains(e.Message, "retry") || !strings.Contains(e.Message, "--redis-url") {
			t.Errorf("%s %s with Redis stopped: %d %+v Retry-After=%q", c.method, c.path, st, e, hdr.Get("Retry-After"))
		}
	}
	if _, _, err := run(t, "apikey", "list", "--redis-prefix", "it:", "--redis-timeout", "500ms"); err == nil ||
		!strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "--redis-url") || strings.Contains(err.Error(), redisPassword) {
		t.Errorf("apikey list with Redis stopped: %v", err)
	}

	// A second proxy starts while Redis is down.
	s2 := startServe(t, t.TempDir(), args...)
	if st, _, _ := apiCall(t, s2.base, http.MethodGet, "/ready", "", nil); st != http.StatusServiceUnavailable {
		t.Errorf("/ready of a proxy started with Redis down: %d", st)
	}
	if !strings.Contains(s2.logs.String(), "starting anyway") {
		t.Errorf("the proxy started with Redis down does not say so:\n%s", s2.logs.String())
	}

	rs.Start() // with its data
	for _, p := range []*served{s, s2} {
		waitFor(t, "/ready once Redis is back", func() bool {
			st, _, _ := apiCall(t, p.base, http.MethodGet, "/ready", "", nil)
			return st == http.StatusOK
		})
	}
	// alice's status through the second proxy shows her browser tried (not
	// "disconnected", which means in no pool): shared mode forwards it to
	// alice's home, the first proxy, which holds her browser.
	waitFor(t, "the registration restored once Redis is back", func() bool {
		req, _ := http.NewRequest(http.MethodGet, s2.base+"/api/users/alice/status", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var us proxy.UserStatus
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&us) == nil &&
			us.BrowserStatus != "" && us.BrowserStatus != "disconnected"
	})
	// Registering works again, through either proxy, and sees the other's
	// registrations.
	bob, _, err := run(t, "token", "issue", "--user", "bob", "--ttl", "1h", "--jwt-secret", procSecret)
	if err != nil {
		t.Fatal(err)
	}
	if st, e, _ := apiCall(t, s2.base, http.MethodPost, "/api/register", strings.TrimSpace(bob), proxy.RegisterRequest{UserID: "bob", BrowserURL: browser}); st != http.StatusConflict {
		t.Errorf("bob on alice's browser through the other proxy: %d %+v, want 409", st, e)
	}
	if st, e, _ := apiCall(t, s.base, http.MethodPost, "/api/register", tok, reg); st != http.StatusCreated {
		t.Errorf("register once Redis is back: %d %+v", st, e)
	}
	// The password of --redis-url never reached a log line, up or down.
	for _, p := range []*served{s, s2} {
		if logs := p.logs.String(); strings.Contains(logs, redisPassword) {
			t.Errorf("a log holds the Redis password:\n%s", logs)
		}
	}
}
