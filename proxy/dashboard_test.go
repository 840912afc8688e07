package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// TestDashboardStatic checks the files at /: the page needs no credential,
// each file has its content type, and the headers forbid inline script,
// other origins and framing.
func TestDashboardStatic(t *testing.T) {
	h := newHarness(t, "")
	for path, ctype := range map[string]string{
		"/": "text/html", "/index.html": "text/html", "/app.js": "text/javascript",
		"/app.css": "text/css", "/oauth.js": "text/javascript", "/favicon.svg": "image/svg+xml",
	} {
		resp, err := http.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Errorf("GET %s: %d %q (%d bytes), want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), ctype)
		}
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			!strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", path)
		}
		if path == "/" {
			page := string(body)
			if !strings.Contains(page, `<div id="signin-oauth"></div>`) || !strings.Contains(page, `<script src="oauth.js" defer></script>`) {
				t.Error("index.html lacks the OAuth sign-in slot or oauth.js")
			}
			for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
				if !strings.Contains(tag, "src=") {
					t.Errorf("inline script in index.html: %s", tag)
				}
			}
			if regexp.MustCompile(`\son[a-z]+=|style=`).MatchString(page) {
				t.Error("index.html has an inline handler or style attribute (the CSP blocks them)")
			}
		}
	}
	var e APIError
	if resp := h.do(http.MethodGet, "/nope.js", "", nil, &e); resp.StatusCode != http.StatusNotFound || e.Code != CodeNotFound {
		t.Errorf("GET /nope.js: %d %+v, want a JSON 404", resp.StatusCode, e)
	}
}

// TestOverviewAPI checks GET /api/overview: a user sees their own row and
// sessions only, an admin sees everyone's, and a user without a
// registration still gets their row.
func TestOverviewAPI(t *testing.T) {
	h := newHarness(t, "")
	ctx := context.Background()
	for u, url := range map[string]string{"alice": "http://127.0.0.1:1", "bob": "http://127.0.0.1:2"} {
		if _, err := h.store.Put(ctx, router.Registration{UserID: u, BrowserURL: url}); err != nil {
			t.Fatal(err)
		}
	}
	h.mgr.Open("session-of-alice", "alice")
	h.mgr.Open("session-of-bob", "bob")
	users := func(ov Overview) (ids []string) {
		for _, u := range ov.Users {
			ids = append(ids, u.UserID)
		}
		return ids
	}
	sessions := func(ov Overview) (ids []string) {
		for _, s := range ov.Sessions {
			ids = append(ids, s.ID)
		}
		return ids
	}

	var ov Overview
	if resp := h.do(http.MethodGet, "/api/overview", h.token("alice"), nil, &ov); resp.StatusCode != 200 {
		t.Fatalf("alice: %d", resp.StatusCode)
	}
	if !slices.Equal(users(ov), []string{"alice"}) || !slices.Equal(sessions(ov), []string{"session-of-alice"}) ||
		ov.Me.UserID != "alice" || ov.Me.Admin || ov.Me.Derived || ov.Me.ExpiresAt == nil {
		t.Errorf("alice's overview: %+v", ov)
	}
	if u := ov.Users[0]; !u.Registered || u.BrowserURL != "http://127.0.0.1:1" || u.BrowserStatus != "disconnected" || u.Sessions != 1 || u.LastActivity == nil {
		t.Errorf("alice's row: %+v", u)
	}

	ov = Overview{}
	h.do(http.MethodGet, "/api/overview", h.token("root", auth.PermAdmin), nil, &ov)
	if !slices.Equal(users(ov), []string{"alice", "bob"}) || len(ov.Sessions) != 2 || !ov.Me.Admin {
		t.Errorf("admin's overview: users %v, sessions %v", users(ov), sessions(ov))
	}

	ov = Overview{}
	h.do(http.MethodGet, "/api/overview", h.token("carol"), nil, &ov)
	if len(ov.Users) != 1 || ov.Users[0].UserID != "carol" || ov.Users[0].Registered || ov.Users[0].BrowserStatus != "unregistered" || len(ov.Sessions) != 0 {
		t.Errorf("carol's overview: %+v", ov)
	}

	var e APIError
	if resp := h.do(http.MethodGet, "/api/overview", "", nil, &e); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a token: %d %+v", resp.StatusCode, e)
	}
	if resp := h.do(http.MethodGet, "/api/overview", "not-a-token", nil, &e); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("with a bad token: %d %+v", resp.StatusCode, e)
	}
	if !strings.Contains(h.logs.String(), `"reason":"invalid token"`) {
		t.Error("the bad token is not audited")
	}
}

// sseEvent is one event of GET /api/events.
type sseEvent struct{ name, data string }

// eventStream opens GET /api/events with token; on 200 its events arrive
// on the channel until stop. It returns the status and a refusal's body.
func eventStream(t *testing.T, baseURL, token string) (status int, body string, events <-chan sseEvent, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /api/events: %v", err)
	}
	done := make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); resp.Body.Close(); close(done) }) }
	t.Cleanup(stop)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		stop()
		return resp.StatusCode, string(b), nil, stop
	}
	ch := make(chan sseEvent, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				select {
				case ch <- ev:
				case <-done:
					return
				}
				ev = sseEvent{}
			}
		}
		select {
		case ch <- sseEvent{name: "closed"}:
		case <-done:
		}
	}()
	return resp.StatusCode, "", ch, stop
}

// nextEvent waits (bounded) for the next event named name, skipping others.
func nextEvent(t *testing.T, events <-chan sseEvent, name string) sseEvent {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.name == name {
				return ev
			}
			if ev.name == "closed" {
				t.Fatalf("the stream closed before a %s event", name)
			}
		case <-deadline:
			t.Fatalf("no %s event within 15 s", name)
		}
	}
}

// TestEventsAPI checks GET /api/events: the caller's overview at once and
// on a change, the stream limit per user (refusal audited), the slot freed
// when the client goes, and the end of the stream at the token's exp and
// when the API key behind it is revoked.
func TestEventsAPI(t *testing.T) {
	h := buildHarness(t, harnessSetup{edit: func(c *Config) {
		c.EventsInterval = 50 * time.Millisecond
		c.MaxStreams = 1
	}})
	alice := h.token("alice")
	status, _, events, closeAlice := eventStream(t, h.URL, alice)
	if status != 200 {
		t.Fatalf("alice's stream: %d", status)
	}
	var ov Overview
	if err := json.Unmarshal([]byte(nextEvent(t, events, "overview").data), &ov); err != nil || ov.Me.UserID != "alice" || len(ov.Sessions) != 0 {
		t.Fatalf("first overview: %+v (%v)", ov, err)
	}
	h.mgr.Open("new-session", "alice")
	h.mgr.Open("bobs-session", "bob")
	for {
		ov = Overview{}
		if err := json.Unmarshal([]byte(nextEvent(t, events, "overview").data), &ov); err != nil {
			t.Fatal(err)
		}
		if len(ov.Sessions) > 0 {
			break
		}
	}
	if len(ov.Sessions) != 1 || ov.Sessions[0].ID != "new-session" {
		t.Errorf("alice's update: %+v, want her new session alone", ov.Sessions)
	}

	if status, body, _, _ := eventStream(t, h.URL, alice); status != http.StatusTooManyRequests || !strings.Contains(body, "LIMIT_EXCEEDED") {
		t.Errorf("alice's second stream: %d %s, want 429", status, body)
	}
	if !strings.Contains(h.logs.String(), `"reason":"stream limit"`) {
		t.Error("the refused stream is not audited")
	}
	if status, _, _, _ := eventStream(t, h.URL, h.token("bob")); status != 200 {
		t.Errorf("bob's stream: %d; alice's limit is not his", status)
	}
	if status, _, _, _ := eventStream(t, h.URL, ""); status != http.StatusUnauthorized {
		t.Errorf("no token: %d", status)
	}
	closeAlice()
	waitFor(t, "alice's slot freed", func() bool {
		st, _, _, c := eventStream(t, h.URL, alice)
		c()
		return st == 200
	})

	short, err := h.authn.Issue("carol", nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _, events, _ = eventStream(t, h.URL, short)
	if end := nextEvent(t, events, "end"); !strings.Contains(end.data, "expired") {
		t.Errorf("end at exp: %s", end.data)
	}

	var key CreatedAPIKey
	if resp := h.do(http.MethodPost, "/api/apikeys", h.token("dave"), map[string]any{"name": "dash"}, &key); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create key: %d", resp.StatusCode)
	}
	_, _, events, _ = eventStream(t, h.URL, key.Key)
	nextEvent(t, events, "overview")
	if resp := h.do(http.MethodDelete, "/api/apikeys/"+key.ID, h.token("dave"), nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if end := nextEvent(t, events, "end"); !strings.Contains(end.data, "revoked") {
		t.Errorf("end at revocation: %s", end.data)
	}
}

// TestEventsEndAtShutdown checks that Serve's shutdown ends the
// dashboard's streams at once, with an end event, instead of waiting for
// them through the drain.
func TestEventsEndAtShutdown(t *testing.T) {
	h := buildHarness(t, harnessSetup{edit: func(c *Config) { c.DrainTimeout = 30 * time.Second }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ctx, ln) }()
	_, _, events, _ := eventStream(t, "http://"+ln.Addr().String(), h.token("alice"))
	nextEvent(t, events, "overview")
	cancel()
	if end := nextEvent(t, events, "end"); !strings.Contains(end.data, "shutting down") {
		t.Errorf("end at shutdown: %s", end.data)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still draining 20 s after shutdown: the event stream held it")
	}
}

// TestTabScreenshotAPI checks GET /api/sessions/:id/tabs/:pageId/screenshot:
// a small JPEG for the owner and for an admin, the same 404 for another
// user's session as for an unknown one (audited), browser:read required,
// bad input refused, and the tab left where it was.
func TestTabScreenshotAPI(t *testing.T) {
	ch := testchrome.Start(t)
	h := newHarness(t, "")
	pages := testPages(t)
	c := h.driving("alice", ch.URL)
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/two"})
	var list []SessionInfo
	h.do(http.MethodGet, "/api/sessions", h.token("alice"), nil, &list)
	if len(list) != 1 || len(list[0].Tabs) != 1 {
		t.Fatalf("alice's sessions: %+v", list)
	}
	base := "/api/sessions/" + list[0].ID + "/tabs/1/screenshot"
	get := func(path, token string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodGet, h.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, tc := range []struct {
		who, token, query string
		width             int
	}{
		{"alice", h.token("alice"), "", thumbWidth},
		{"an admin", h.token("root", auth.PermRead, auth.PermAdmin), "?width=100", 100},
	} {
		resp, b := get(base+tc.query, tc.token)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d %q %s", tc.who, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		img, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: not a JPEG: %v", tc.who, err)
		}
		if w := img.Bounds().Dx(); w > tc.width || w < tc.width/2 {
			t.Errorf("%s: thumbnail %d px wide, want about %d", tc.who, w, tc.width)
		}
	}
	for _, tc := range []struct {
		name, path, token string
		code              int
	}{
		{"bob", base, h.token("bob"), http.StatusNotFound},
		{"unknown session", "/api/sessions/0123456789abcdef0123456789abcdef/tabs/1/screenshot", h.token("alice"), http.StatusNotFound},
		{"unknown page", "/api/sessions/" + list[0].ID + "/tabs/9/screenshot", h.token("alice"), http.StatusNotFound},
		{"page 0", "/api/sessions/" + list[0].ID + "/tabs/0/screenshot", h.token("alice"), http.StatusBadRequest},
		{"page x", "/api/sessions/" + list[0].ID + "/tabs/x/screenshot", h.token("alice"), http.StatusBadRequest},
		{"huge width", base + "?width=5000", h.token("alice"), http.StatusBadRequest},
		{"without browser:read", base, h.token("alice", auth.PermWrite), http.StatusForbidden},
		{"no token", base, "", http.StatusUnauthorized},
	} {
		resp, b := get(tc.path, tc.token)
		var e APIError
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode != tc.code || e.Message == "" {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, b, tc.code)
		}
	}
	logs := h.logs.String()
	for _, want := range []string{`"reason":"screenshot of another user's session"`, `"reason":"the credential lacks browser:read"`, `"event":"tab_screenshot"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("not audited: %s", want)
		}
	}
	if text := mustCall(t, c, "list_pages", nil); !strings.Contains(text, pages+"/two") {
		t.Errorf("the tab moved after the screenshots: %s", text)
	}
	if n := len(ch.Pages(t)); n != 2 { // about:blank of the start, and the session's tab
		t.Errorf("%d pages in the browser, want 2: the screenshot opened or closed one", n)
	}

	// The calls of the last minute, and the failed ones, are on the row.
	if _, res := call(t, c, "navigate_page", map[string]any{"type": "url"}); !res.IsError {
		t.Fatal("navigate_page without a url did not fail")
	}
	var ov Overview
	h.do(http.MethodGet, "/api/overview", h.token("alice"), nil, &ov)
	if len(ov.Users) != 1 || ov.Users[0].CallsPerMinute != 3 || ov.Users[0].ErrorsPerMinute != 1 || ov.Users[0].BrowserStatus != "connected" {
		t.Errorf("alice's row after 3 calls, 1 failed: %+v", ov.Users)
	}
}

// TestIssueTokenAPI checks POST /api/tokens: a token for the caller with at
// most the caller's perms and exp, within the proxy's bound; derived
// credentials (API keys, minted tokens) refused like POST /api/apikeys
// refuses them, audited.
func TestIssueTokenAPI(t *testing.T) {
	h := newHarness(t, "")
	parentTok, err := h.authn.Issue("alice", []string{auth.PermRead, auth.PermWrite}, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	parent, _ := h.authn.Verify(parentTok)

	var got IssuedToken
	if resp := h.do(http.MethodPost, "/api/tokens", parentTok, map[string]any{"perms": []string{auth.PermRead}, "ttl": "10m"}, &got); resp.StatusCode != http.StatusCreated {
		t.Fatalf("issue: %d", resp.StatusCode)
	}
	p, err := h.authn.Verify(got.Token)
	if err != nil || p.UserID != "alice" || !slices.Equal(p.Perms, []string{auth.PermRead}) || !p.Minted ||
		got.UserID != "alice" || !slices.Equal(got.Perms, []string{auth.PermRead}) || time.Until(got.ExpiresAt) > 10*time.Minute {
		t.Errorf("issued: %+v, principal %+v (%v)", got, p, err)
	}
	if strings.Contains(h.logs.String(), got.Token) {
		t.Error("the token is in the log")
	}
	var ov Overview
	if resp := h.do(http.MethodPost, "/api/tokens", parentTok, map[string]any{}, &got); resp.StatusCode != http.StatusCreated ||
		!slices.Equal(got.Perms, []string{auth.PermRead, auth.PermWrite}) || got.ExpiresAt.After(parent.Expires) {
		t.Errorf("defaults: %d %+v; want alice's perms, exp at most hers (%v)", resp.StatusCode, got, parent.Expires)
	} else if resp := h.do(http.MethodGet, "/api/overview", got.Token, nil, &ov); resp.StatusCode != 200 || !ov.Me.Derived {
		t.Errorf("the issued token on /api/overview: %d %+v", resp.StatusCode, ov.Me)
	}
	minted := got.Token

	var key CreatedAPIKey
	if resp := h.do(http.MethodPost, "/api/apikeys", parentTok, map[string]any{"perms": []string{auth.PermRead}}, &key); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create key: %d", resp.StatusCode)
	}
	for _, tc := range []struct {
		name  string
		token string
		body  any
		code  int
	}{
		{"admin from a non-admin", parentTok, map[string]any{"perms": []string{auth.PermAdmin}}, http.StatusForbidden},
		{"with an API key", key.Key, map[string]any{}, http.StatusForbidden},
		{"with a minted token", minted, map[string]any{}, http.StatusForbidden},
		{"ttl over the bound", parentTok, map[string]any{"ttl": "100h"}, http.StatusBadRequest},
		{"ttl not a duration", parentTok, map[string]any{"ttl": "soon"}, http.StatusBadRequest},
		{"negative ttl", parentTok, map[string]any{"ttl": "-1h"}, http.StatusBadRequest},
		{"empty perms", parentTok, map[string]any{"perms": []string{}}, http.StatusBadRequest},
		{"unknown perm", parentTok, map[string]any{"perms": []string{"browser:root"}}, http.StatusBadRequest},
		{"unknown field", parentTok, map[string]any{"user": "bob"}, http.StatusBadRequest},
		{"not JSON", parentTok, "{", http.StatusBadRequest},
		{"no token", "", map[string]any{}, http.StatusUnauthorized},
	} {
		var e APIError
		if resp := h.do(http.MethodPost, "/api/tokens", tc.token, tc.body, &e); resp.StatusCode != tc.code || e.Message == "" {
			t.Errorf("%s: %d %+v, want %d", tc.name, resp.StatusCode, e, tc.code)
		}
	}
	logs := h.logs.String()
	for _, want := range []string{`"reason":"token perms beyond the caller's"`, `"reason":"token issue with an API key credential"`,
		`"reason":"token issue with a sessionToken"`, `"event":"token_issue"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("not audited: %s", want)
		}
	}
}
