package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// TestSessionsAPI checks GET and DELETE /api/sessions: a user sees and
// closes only their own sessions (another user's is answered as unknown),
// an admin sees and closes everyone's, and a closed session's next request
// gets 404.
func TestSessionsAPI(t *testing.T) {
	ch := testchrome.Start(t)
	h := newHarness(t, "")
	alice, bob, admin := h.token("alice"), h.token("bob"), h.token("root", auth.PermAdmin)
	h.register(alice, "alice", ch.URL)
	pagesBefore := len(ch.Pages(t))
	mine, err := openStreamable(http.DefaultClient, h, alice)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", alice, mine,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"new_page","arguments":{}}}`); err != nil || resp.StatusCode != 200 || strings.Contains(body, `"isError":true`) {
		t.Fatalf("new_page: %v %v %q", err, resp, body)
	}
	if n := len(ch.Pages(t)); n != pagesBefore+1 {
		t.Fatalf("%d pages after new_page, want %d", n, pagesBefore+1)
	}
	theirs, err := openStreamable(http.DefaultClient, h, bob)
	if err != nil {
		t.Fatal(err)
	}
	_ = openStream(t, h, "/sse", bob)

	var list []SessionInfo
	if resp := h.do(http.MethodGet, "/api/sessions", alice, nil, &list); resp.StatusCode != 200 || len(list) != 1 {
		t.Fatalf("alice's sessions: %d %+v", resp.StatusCode, list)
	}
	got := list[0]
	if got.ID != mine || got.UserID != "alice" || got.Transport != "streamable" || got.Calls != 1 ||
		got.TabCount != 1 || len(got.Tabs) != 1 || got.Tabs[0].PageID != 1 || !got.Tabs[0].Owned ||
		got.CreatedAt.IsZero() || got.LastActivity.Before(got.CreatedAt) {
		t.Errorf("alice's session: %+v", got)
	}
	var e APIError
	if resp := h.do(http.MethodGet, "/api/sessions?user=bob", alice, nil, &e); resp.StatusCode != http.StatusForbidden {
		t.Errorf("alice listing bob's sessions: %d %+v", resp.StatusCode, e)
	}
	if resp := h.do(http.MethodGet, "/api/sessions", admin, nil, &list); resp.StatusCode != 200 || len(list) != 3 {
		t.Errorf("admin's list: %d %+v", resp.StatusCode, list)
	}
	if resp := h.do(http.MethodGet, "/api/sessions?user=bob", admin, nil, &list); resp.StatusCode != 200 || len(list) != 2 ||
		list[0].UserID != "bob" || list[1].UserID != "bob" {
		t.Errorf("admin's list of bob: %d %+v", resp.StatusCode, list)
	} else if transports := list[0].Transport + "," + list[1].Transport; !strings.Contains(transports, "sse") || !strings.Contains(transports, "streamable") {
		t.Errorf("bob's transports: %s", transports)
	}

	// Another user's session is unknown, as a made-up ID is: nothing
	// revealed, nothing closed.
	for _, id := range []string{mine, "0123456789abcdef0123456789abcdef"} {
		e = APIError{}
		if resp := h.do(http.MethodDelete, "/api/sessions/"+id, bob, nil, &e); resp.StatusCode != http.StatusNotFound || e.Code != CodeNotFound {
			t.Errorf("bob closing %s: %d %+v", id, resp.StatusCode, e)
		}
	}
	if resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", alice, mine, pingMsg); err != nil || resp.StatusCode != 200 {
		t.Fatalf("alice's session after bob's attempt: %v %v %q", err, resp, body)
	}
	if !strings.Contains(h.logs.String(), `"reason":"closing another user's session"`) {
		t.Error("bob's attempt is not audited")
	}

	if resp := h.do(http.MethodDelete, "/api/sessions/"+mine, alice, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("alice closing her session: %d", resp.StatusCode)
	}
	if resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", alice, mine, pingMsg); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the closed session's next request: %v %v %q, want 404", err, resp, body)
	}
	waitFor(t, "the session's tab closed", func() bool { return len(ch.Pages(t)) == pagesBefore })
	if resp := h.do(http.MethodDelete, "/api/sessions/"+theirs, admin, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("admin closing bob's session: %d", resp.StatusCode)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"event":"session_close_api"`) || !strings.Contains(logs, `"reason":"api"`) {
		t.Errorf("API closes not audited:\n%s", logs)
	}
}

// TestCreateAPIKeyAPI checks POST /api/apikeys: the key is shown once and
// works at once; its perms are at most what the caller may hand its user,
// and an admin never hands admin to another user.
func TestCreateAPIKeyAPI(t *testing.T) {
	h := newHarness(t, "")
	alice, reader, admin := h.token("alice"), h.token("rita", auth.PermRead), h.token("root", auth.PermAdmin, auth.PermRead)

	var created CreatedAPIKey
	if resp := h.do(http.MethodPost, "/api/apikeys", alice, map[string]any{"name": "ci"}, &created); resp.StatusCode != http.StatusCreated ||
		!auth.IsAPIKey(created.Key) || created.UserID != "alice" || created.Name != "ci" || len(created.Perms) != len(auth.DefaultPerms()) {
		t.Fatalf("alice's key: %d %+v", resp.StatusCode, created)
	}
	var list []SessionInfo
	if resp := h.do(http.MethodGet, "/api/sessions", created.Key, nil, &list); resp.StatusCode != 200 {
		t.Errorf("the new key is refused: %d", resp.StatusCode)
	}
	var keys []map[string]any
	h.do(http.MethodGet, "/api/apikeys", alice, nil, &keys)
	if len(keys) != 1 || keys[0]["id"] != created.ID || keys[0]["key"] != nil {
		t.Errorf("listed keys: %+v", keys)
	}

	for _, tc := range []struct {
		name  string
		token string
		body  map[string]any
		code  int
	}{
		// A key made with a key would outlive the revocation of its parent.
		{"with an API key", created.Key, map[string]any{"perms": []string{auth.PermRead}}, http.StatusForbidden},
		{"admin for oneself without admin", alice, map[string]any{"perms": []string{auth.PermAdmin}}, http.StatusForbidden},
		{"all-tabs without it", alice, map[string]any{"perms": []string{auth.PermAllTabs}}, http.StatusForbidden},
		{"default perms beyond a reader's", reader, map[string]any{}, http.StatusForbidden},
		{"for another user", alice, map[string]any{"user": "bob"}, http.StatusForbidden},
		{"admin hands admin to another user", admin, map[string]any{"user": "bob", "perms": []string{auth.PermAdmin}}, http.StatusForbidden},
		{"unknown perm", alice, map[string]any{"perms": []string{"browser:root"}}, http.StatusBadRequest},
		{"empty perms", alice, map[string]any{"perms": []string{}}, http.StatusBadRequest},
		{"bad user", admin, map[string]any{"user": "../x"}, http.StatusBadRequest},
	} {
		var e APIError
		if resp := h.do(http.MethodPost, "/api/apikeys", tc.token, tc.body, &e); resp.StatusCode != tc.code || e.Message == "" {
			t.Errorf("%s: %d %+v, want %d", tc.name, resp.StatusCode, e, tc.code)
		}
	}
	var rk CreatedAPIKey
	if resp := h.do(http.MethodPost, "/api/apikeys", reader, map[string]any{"perms": []string{auth.PermRead}}, &rk); resp.StatusCode != http.StatusCreated {
		t.Errorf("a reader's read key: %d", resp.StatusCode)
	}
	var bk CreatedAPIKey
	if resp := h.do(http.MethodPost, "/api/apikeys", admin, map[string]any{"user": "bob", "perms": []string{auth.PermRead}}, &bk); resp.StatusCode != http.StatusCreated || bk.UserID != "bob" {
		t.Errorf("admin's read key for bob: %d %+v", resp.StatusCode, bk)
	}
	h.do(http.MethodGet, "/api/apikeys", admin, nil, &keys)
	if len(keys) != 3 {
		t.Errorf("%d keys stored, want 3 (refusals store nothing): %+v", len(keys), keys)
	}
	logs := h.logs.String()
	if strings.Count(logs, `"event":"apikey_create"`) != 3 || !strings.Contains(logs, `"reason":"API key perms beyond the caller's"`) {
		t.Errorf("creations and refusals not audited:\n%s", logs)
	}
	if strings.Contains(logs, created.Key) {
		t.Error("a key's secret is in the log")
	}
}

// TestHealthDetailed checks GET /health/detailed: admins only; per-browser
// state, health check and attempts; sessions and streams against the limits.
func TestHealthDetailed(t *testing.T) {
	ch := testchrome.Start(t)
	h := newHarness(t, "")
	alice, admin := h.token("alice"), h.token("root", auth.PermAdmin)
	h.register(alice, "alice", ch.URL)
	h.register(h.token("bob"), "bob", deadURL(t))
	_ = openStream(t, h, "/sse", alice)

	var e APIError
	if resp := h.do(http.MethodGet, "/health/detailed", alice, nil, &e); resp.StatusCode != http.StatusForbidden || e.Code != CodeForbidden {
		t.Errorf("a non-admin: %d %+v", resp.StatusCode, e)
	}
	if resp := h.do(http.MethodGet, "/health/detailed", "", nil, &e); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d %+v", resp.StatusCode, e)
	}
	var d DetailedHealth
	waitFor(t, "a health check of alice's browser", func() bool {
		d = DetailedHealth{}
		h.do(http.MethodGet, "/health/detailed", admin, nil, &d)
		for _, b := range d.BrowserDetails {
			if b.UserID == "alice" && b.LastHealthCheck != nil && b.ConnectedAt != nil && b.LastHealthCheck.After(*b.ConnectedAt) {
				return true
			}
		}
		return false
	})
	byUser := map[string]BrowserHealth{}
	for _, b := range d.BrowserDetails {
		byUser[b.UserID] = b
	}
	if a := byUser["alice"]; a.State != "connected" || a.Sessions != 1 || a.Version == "" {
		t.Errorf("alice's browser: %+v", a)
	}
	if b := byUser["bob"]; b.State == "connected" || b.LastHealthCheck != nil {
		t.Errorf("bob's dead browser: %+v", b)
	}
	waitFor(t, "bob's browser failing attempts counted", func() bool {
		d = DetailedHealth{}
		h.do(http.MethodGet, "/health/detailed", admin, nil, &d)
		for _, b := range d.BrowserDetails {
			if b.UserID == "bob" && b.ReconnectAttempts > 0 && b.LastError != "" {
				return true
			}
		}
		return false
	})
	l := d.Limits
	if l.Sessions != 1 || l.SessionsPerUser["alice"] != 1 || l.SessionsInUse != 1 || l.Streams != 1 || l.StreamsPerUser["alice"] != 1 ||
		l.MaxSessions == 0 || l.MaxSessionsPerUser == 0 || l.MaxStreamsPerUser == 0 || l.StaleTimeout == "" {
		t.Errorf("limits: %+v", l)
	}
}
