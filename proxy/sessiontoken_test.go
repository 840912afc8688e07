package proxy

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// claimsOf returns tok's claims, unverified.
func claimsOf(t *testing.T, tok string) jwt.MapClaims {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, c); err != nil {
		t.Fatal(err)
	}
	return c
}

func expClaim(t *testing.T, tok string) time.Time {
	t.Helper()
	exp, err := claimsOf(t, tok).GetExpirationTime()
	if err != nil || exp == nil {
		t.Fatalf("token without exp: %v", err)
	}
	return exp.Time
}

// TestSessionTokenNeverOutlivesItsParent: the sessionToken of a 10-minute
// token expires with it, not 24 h later; an API key's gets the TTL.
func TestSessionTokenNeverOutlivesItsParent(t *testing.T) {
	h := buildHarness(t, harnessSetup{edit: func(c *Config) { c.SessionTokenTTL = time.Hour }})
	short, err := h.authn.Issue("alice", nil, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	reg := h.register(short, "alice", deadURL(t))
	if exp, parent := expClaim(t, reg.SessionToken), expClaim(t, short); exp.After(parent) {
		t.Errorf("sessionToken exp %v is after its 10-minute parent's %v", exp, parent)
	}
	// Refreshing with the sessionToken does not extend it either.
	again := h.register(reg.SessionToken, "alice", deadURL(t))
	if exp, parent := expClaim(t, again.SessionToken), expClaim(t, short); exp.After(parent) {
		t.Errorf("refreshed sessionToken exp %v is after the original parent's %v", exp, parent)
	}
	// A long token and an API key get at most --session-token-ttl.
	long, err := h.authn.Issue("bob", nil, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := h.apiKey("carol")
	for user, cred := range map[string]string{"bob": long, "carol": key} {
		before := time.Now()
		reg := h.register(cred, user, deadURL(t))
		if exp := expClaim(t, reg.SessionToken); exp.After(before.Add(time.Hour + time.Second)) {
			t.Errorf("%s's sessionToken expires %v after register, more than the 1h TTL", user, exp.Sub(before))
		}
	}
}

// TestSessionTokenNeverOutranksItsParent: the sessionToken holds the
// caller's perms intersected with the user's; admin never passes to
// another user; a read-only credential mints nothing.
func TestSessionTokenNeverOutranksItsParent(t *testing.T) {
	h := newHarness(t, "")
	admin := h.token("root", auth.AllPerms()...)
	for _, tc := range []struct {
		name, cred, user string
		want             []string
	}{
		{"admin for bob", admin, "bob", auth.DefaultPerms()},
		{"admin for itself", admin, "root", auth.AllPerms()},
		{"read,write for itself", h.token("alice", auth.PermRead, auth.PermWrite), "alice", []string{auth.PermRead, auth.PermWrite}},
	} {
		reg := h.register(tc.cred, tc.user, deadURL(t))
		p, err := h.authn.Verify(reg.SessionToken)
		if err != nil || p.UserID != tc.user || !slices.Equal(p.Perms, tc.want) {
			t.Errorf("%s: sessionToken %+v, %v; want %s with %v", tc.name, p, err, tc.user, tc.want)
		}
		if tc.user == "bob" && (p.Has(auth.PermAdmin) || p.Has(auth.PermAllTabs)) {
			t.Errorf("admin handed bob %v", p.Perms)
		}
	}
	readKey, _ := h.apiKey("erin", auth.PermRead)
	for _, cred := range []string{h.token("erin", auth.PermRead), readKey} {
		var out RegisterResponse
		resp := h.do(http.MethodPost, "/api/register", cred, map[string]string{"userId": "erin", "browserURL": deadURL(t)}, &out)
		if resp.StatusCode != http.StatusForbidden || out.SessionToken != "" {
			t.Errorf("read-only register: %d, token %q; want 403 and no token", resp.StatusCode, out.SessionToken)
		}
	}
}

// TestSessionTokenDiesWithItsAPIKey: a sessionToken minted with an API key
// (and one minted with that sessionToken) is refused as soon as the key is
// revoked, on /api, /mcp and /sse, and on an MCP session already open.
func TestSessionTokenDiesWithItsAPIKey(t *testing.T) {
	h := newHarness(t, "")
	key, rec := h.apiKey("bob", auth.PermRead, auth.PermWrite)
	first := h.register(key, "bob", deadURL(t)).SessionToken
	second := h.register(first, "bob", deadURL(t)).SessionToken
	other := h.register(h.token("bob"), "bob", deadURL(t)).SessionToken
	for _, tok := range []string{first, second, other} {
		if code, _ := h.get("/api/users/bob/status", tok); code != http.StatusOK {
			t.Fatalf("control: sessionToken gives %d", code)
		}
	}
	open := h.connect(viaSSE, second, "")
	if _, err := open.ListTools(context.Background(), mcp.ListToolsRequest{}); err != nil {
		t.Fatalf("control: MCP over SSE with the sessionToken: %v", err)
	}

	if resp := h.do(http.MethodDelete, "/api/apikeys/"+rec.ID, key, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	for name, tok := range map[string]string{"sessionToken": first, "its sessionToken": second} {
		if code, hdr := h.get("/api/users/bob/status", tok); code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s of a revoked key on /api: %d, want 401", name, code)
		}
		if code, _ := h.get("/sse", tok); code != http.StatusUnauthorized {
			t.Errorf("%s of a revoked key on /sse: %d, want 401", name, code)
		}
		if code := postMCP(t, h, tok, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}`); code != http.StatusUnauthorized {
			t.Errorf("%s of a revoked key on /mcp: %d, want 401", name, code)
		}
		var e APIError
		if resp := h.do(http.MethodPost, "/api/register", tok, map[string]string{"userId": "bob", "browserURL": deadURL(t)}, &e); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s of a revoked key re-registers: %d, want 401", name, resp.StatusCode)
		}
	}
	if _, err := open.ListTools(context.Background(), mcp.ListToolsRequest{}); err == nil {
		t.Error("the open MCP session of a revoked key's sessionToken still answers")
	}
	// A token that did not come from the key lives on.
	if code, _ := h.get("/api/users/bob/status", other); code != http.StatusOK {
		t.Errorf("bob's own token after the revoke: %d", code)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"reason":"token of a revoked API key"`) {
		t.Errorf("no audit line for the refused sessionToken:\n%s", logs)
	}
	for _, secret := range []string{key, first, second} {
		if strings.Contains(logs, secret) {
			t.Error("a credential reached the logs")
		}
	}
}

// postMCP posts one JSON-RPC message to /mcp with tok and returns the status.
func postMCP(t *testing.T, h *harness, tok, body string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /mcp: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestCachedTokenOfRevokedKeyRefused: the proxy remembers verified tokens,
// and a remembered sessionToken of an API key is still refused on the very
// next request after the key is revoked, store-side (as `apikey revoke`
// does) rather than through the API.
func TestCachedTokenOfRevokedKeyRefused(t *testing.T) {
	h := newHarness(t, "")
	key, rec := h.apiKey("carol", auth.PermRead, auth.PermWrite)
	tok := h.register(key, "carol", deadURL(t)).SessionToken
	for range 3 {
		if code, _ := h.get("/api/users/carol/status", tok); code != http.StatusOK {
			t.Fatalf("control: sessionToken gives %d", code)
		}
	}
	if n := h.authn.CachedTokens(); n < 1 {
		t.Fatalf("%d cached tokens after three requests with one: the test would not cover a cache hit", n)
	}
	if err := h.store.RevokeAPIKey(context.Background(), rec.ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := h.get("/api/users/carol/status", tok); code != http.StatusUnauthorized {
		t.Errorf("remembered sessionToken of a revoked key: %d, want 401", code)
	}
	if code, _ := h.get("/api/users/carol/status", key); code != http.StatusUnauthorized {
		t.Errorf("revoked key itself: %d, want 401", code)
	}
}
