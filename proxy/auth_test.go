package proxy

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// apiKey stores a new API key for user in h's store and returns it.
func (h *harness) apiKey(user string, perms ...string) (string, auth.APIKey) {
	h.t.Helper()
	key, rec, err := auth.NewAPIKey(user, perms, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.store.CreateAPIKey(context.Background(), rec); err != nil {
		h.t.Fatal(err)
	}
	return key, rec
}

// get sends a GET with an optional bearer credential and returns the answer.
func (h *harness) get(path, cred string) (int, http.Header) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+path, nil)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestAPIKeyAuth(t *testing.T) {
	h := newHarness(t, "")
	bobKey, bob := h.apiKey("bob", auth.PermRead, auth.PermWrite)
	_, secret, _ := strings.Cut(strings.TrimPrefix(bobKey, auth.APIKeyPrefix), "_")

	// The key registers bob; the sessionToken is a JWT for bob with the
	// key's permissions.
	reg := h.register(bobKey, "bob", deadURL(t))
	if strings.Count(reg.SessionToken, ".") != 2 || auth.IsAPIKey(reg.SessionToken) {
		t.Fatalf("sessionToken is not a JWT: %q", reg.SessionToken)
	}
	p, err := h.authn.Verify(reg.SessionToken)
	if err != nil || p.UserID != "bob" || !slices.Equal(p.Perms, []string{auth.PermRead, auth.PermWrite}) {
		t.Fatalf("sessionToken: %+v, %v; want bob with read,write", p, err)
	}
	if code, _ := h.get("/api/users/bob/status", bobKey); code != http.StatusOK {
		t.Errorf("status with the key: %d", code)
	}
	if code, _ := h.get("/api/users/bob/status", reg.SessionToken); code != http.StatusOK {
		t.Errorf("status with the sessionToken: %d", code)
	}

	// bob's key cannot act as alice.
	aliceTok := h.token("alice")
	h.register(aliceTok, "alice", deadURL(t))
	if code, _ := h.get("/api/users/alice/status", bobKey); code != http.StatusForbidden {
		t.Errorf("bob's key reading alice's status: %d, want 403", code)
	}
	var e APIError
	if resp := h.do(http.MethodPost, "/api/register", bobKey, map[string]string{"userId": "alice", "browserURL": deadURL(t)}, &e); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's key registering alice: %d, want 403", resp.StatusCode)
	}
	if resp := h.do(http.MethodDelete, "/api/users/alice", bobKey, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's key deleting alice: %d, want 403", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer "+bobKey)
	req.Header.Set("X-User-Id", "alice")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's key with X-User-Id alice: %d, want 403", resp.StatusCode)
	}

	// MCP with the key: the tools are those of the key's permissions.
	c := h.connect(viaStreamable, bobKey, "bob")
	names := toolNames(t, c)
	if !names["take_snapshot"] || !names["click"] || names["evaluate_script"] {
		t.Errorf("read,write key sees %v", names)
	}

	// A forged secret for bob's key ID is refused.
	forged := auth.APIKeyPrefix + bob.ID + "_" + strings.Repeat("0", 64)
	if code, hdr := h.get("/api/users/bob/status", forged); code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("forged secret: %d %q", code, hdr.Get("WWW-Authenticate"))
	}

	// Revoked: the very next request fails, also on the open MCP session.
	if err := h.store.RevokeAPIKey(context.Background(), bob.ID); err != nil {
		t.Fatal(err)
	}
	code, hdr := h.get("/api/users/bob/status", bobKey)
	if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("revoked key: %d %q, want 401 with WWW-Authenticate: Bearer", code, hdr.Get("WWW-Authenticate"))
	}
	if _, err := c.ListTools(context.Background(), mcp.ListToolsRequest{}); err == nil {
		t.Error("the MCP session of a revoked key still answers")
	}
	// The sessionToken it minted dies with it (TestSessionTokenDiesWithItsAPIKey).
	if code, _ := h.get("/api/users/bob/status", reg.SessionToken); code != http.StatusUnauthorized {
		t.Errorf("sessionToken after revoke: %d, want 401", code)
	}

	logs := h.logs.String()
	if !strings.Contains(logs, `"reason":"invalid API key"`) || !strings.Contains(logs, `"audit":true`) {
		t.Errorf("no audit line for the refused key:\n%s", logs)
	}
	if strings.Contains(logs, secret) || strings.Contains(logs, auth.APIKeyPrefix) || strings.Contains(logs, reg.SessionToken) {
		t.Error("a credential reached the logs")
	}
}

func TestCredentialsNeverFromQuery(t *testing.T) {
	h := newHarness(t, "")
	tok := h.token("alice")
	key, _ := h.apiKey("alice")
	h.register(tok, "alice", deadURL(t))
	if code, _ := h.get("/api/users/alice/status", tok); code != http.StatusOK {
		t.Fatalf("control: header token gives %d", code)
	}
	for _, cred := range []string{tok, key} {
		for _, param := range []string{"token", "access_token", "api_key", "authorization"} {
			q := "?" + param + "=" + url.QueryEscape(cred)
			for _, path := range []string{"/api/users/alice/status", "/sse", "/mcp"} {
				code, hdr := h.get(path+q, "")
				if code != http.StatusUnauthorized {
					t.Errorf("GET %s?%s=...: %d, want 401", path, param, code)
				}
				if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("GET %s?%s=...: WWW-Authenticate = %q", path, param, hdr.Get("WWW-Authenticate"))
				}
			}
		}
	}
	if logs := h.logs.String(); strings.Contains(logs, tok) || strings.Contains(logs, key) {
		t.Error("a credential from the query string reached the logs")
	}
}

func TestStoreFailureIsNotUnauthorized(t *testing.T) {
	h := newHarness(t, "")
	key, _ := h.apiKey("alice")
	tok := h.token("alice")
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	// The key cannot be checked: an internal error, not a verdict on it.
	if code, _ := h.get("/api/users/alice/status", key); code != http.StatusInternalServerError {
		t.Errorf("API key with the store down: %d, want 500", code)
	}
	if strings.Contains(h.logs.String(), key) {
		t.Error("the key reached the logs")
	}
	// JWTs need no store to be verified.
	if code, _ := h.get("/api/users/alice/status", tok); code == http.StatusUnauthorized {
		t.Errorf("JWT with the store down: %d", code)
	}
}

// TestRevokeAPIKeyWhileRunning revokes a key through the API: the proxy
// holds the store, so the CLI cannot, and the next request must fail.
func TestRevokeAPIKeyWhileRunning(t *testing.T) {
	h := newHarness(t, "")
	key, k, err := auth.NewAPIKey("bob", nil, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.CreateAPIKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	var list []APIKeyInfo
	if resp := h.do(http.MethodGet, "/api/apikeys", key, nil, &list); resp.StatusCode != 200 || len(list) != 1 || list[0].ID != k.ID {
		t.Fatalf("list own keys: %d %+v", resp.StatusCode, list)
	}
	var e APIError
	if resp := h.do(http.MethodDelete, "/api/apikeys/"+k.ID, h.token("mallory"), nil, &e); resp.StatusCode != 403 {
		t.Errorf("another user revoked bob's key: %d", resp.StatusCode)
	}
	if resp := h.do(http.MethodDelete, "/api/apikeys/"+k.ID, h.token("root", auth.PermAdmin), nil, nil); resp.StatusCode != 204 {
		t.Fatalf("admin revoke: %d", resp.StatusCode)
	}
	if resp := h.do(http.MethodGet, "/api/apikeys", key, nil, &e); resp.StatusCode != 401 {
		t.Errorf("revoked key still works: %d", resp.StatusCode)
	}
	if resp := h.do(http.MethodDelete, "/api/apikeys/nothex", h.token("root", auth.PermAdmin), nil, &e); resp.StatusCode != 400 {
		t.Errorf("bad id: %d", resp.StatusCode)
	}
	if strings.Contains(h.logs.String(), key) {
		t.Error("the key appears in the log")
	}
}
