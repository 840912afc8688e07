package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// deadURL returns an http URL on loopback where nothing listens.
// deadURL returns the URL of a port where no browser answers: a listener
// that closes every connection at once. It is held until the test ends, so
// two dead URLs of one test never share a port (every loopback spelling of
// one port is one browser, and a second user registering it gets 409).
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return "http://" + l.Addr().String()
}

func TestRegisterRejectsBadInput(t *testing.T) {
	h := newHarness(t, "")
	alice := h.token("alice")
	other, _ := auth.NewAuthenticator([]byte("another-secret-another-secret-another"))
	forged, _ := other.Issue("alice", nil, time.Hour)
	long := strings.Repeat("a", 65)

	for _, tc := range []struct {
		name, token, body string
		status            int
		code              string
	}{
		{"no token", "", `{"userId":"alice","browserURL":"http://127.0.0.1:9222"}`, 401, CodeUnauthorized},
		{"forged token", forged, `{"userId":"alice","browserURL":"http://127.0.0.1:9222"}`, 401, CodeUnauthorized},
		{"garbage token", "not.a.jwt", `{"userId":"alice","browserURL":"http://127.0.0.1:9222"}`, 401, CodeUnauthorized},
		{"not json", alice, `userId=alice`, 400, CodeInvalidRequest},
		{"empty body", alice, ``, 400, CodeInvalidRequest},
		{"truncated", alice, `{"userId":"alice"`, 400, CodeInvalidRequest},
		{"unknown field", alice, `{"userId":"alice","browserURL":"http://127.0.0.1:9222","admin":true}`, 400, CodeInvalidRequest},
		{"wrong type", alice, `{"userId":7,"browserURL":"http://127.0.0.1:9222"}`, 400, CodeInvalidRequest},
		{"missing user", alice, `{"browserURL":"http://127.0.0.1:9222"}`, 400, CodeInvalidUserID},
		{"bad user chars", alice, `{"userId":"al ice/..","browserURL":"http://127.0.0.1:9222"}`, 400, CodeInvalidUserID},
		{"user too long", alice, `{"userId":"` + long + `","browserURL":"http://127.0.0.1:9222"}`, 400, CodeInvalidUserID},
		{"missing url", alice, `{"userId":"alice"}`, 400, CodeInvalidBrowserURL},
		{"ftp url", alice, `{"userId":"alice","browserURL":"ftp://127.0.0.1:9222"}`, 400, CodeInvalidBrowserURL},
		{"no port", alice, `{"userId":"alice","browserURL":"http://127.0.0.1"}`, 400, CodeInvalidBrowserURL},
		{"javascript url", alice, `{"userId":"alice","browserURL":"javascript:alert(1)"}`, 400, CodeInvalidBrowserURL},
		{"someone else", alice, `{"userId":"bob","browserURL":"http://127.0.0.1:9222"}`, 403, CodeForbidden},
		{"too many metadata keys", alice, `{"userId":"alice","browserURL":"http://127.0.0.1:9222","metadata":{` + manyKeys(40) + `}}`, 400, CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e APIError
			resp := h.do(http.MethodPost, "/api/register", tc.token, tc.body, &e)
			if resp.StatusCode != tc.status || e.Code != tc.code || e.Message == "" {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, e, tc.status, tc.code)
			}
			if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
		})
	}
	if n, _ := h.store.Count(context.Background()); n != 0 {
		t.Errorf("bad requests stored %d registrations", n)
	}
	if h.pool != nil {
		if total := totalBrowsers(h); total != 0 {
			t.Errorf("bad requests started %d connections", total)
		}
	}
	if strings.Contains(h.logs.String(), alice) || strings.Contains(h.logs.String(), forged) {
		t.Error("a token appears in the log")
	}
}

func manyKeys(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, `"k`+strings.Repeat("x", i)+`":"v"`)
	}
	return strings.Join(parts, ",")
}

func TestValidateRegister(t *testing.T) {
	got, err := ValidateRegister(RegisterRequest{UserID: "a.b_c-d@e", BrowserURL: "HTTP://LocalHost:9222/"})
	if err != nil {
		t.Fatal(err)
	}
	if got.BrowserURL != "http://localhost:9222" {
		t.Errorf("URL not normalised: %q", got.BrowserURL)
	}
	if _, err := ValidateRegister(RegisterRequest{UserID: "alice", BrowserURL: "ws://127.0.0.1:9222/devtools/browser/x", Metadata: map[string]string{"": "v"}}); err == nil || err.Code != CodeInvalidRequest {
		t.Errorf("empty metadata key accepted: %v", err)
	}
}

func TestRegisterConflictAndAdmin(t *testing.T) {
	h := newHarness(t, "")
	url := deadURL(t)
	reg := h.register(h.token("alice"), "alice", url)
	if reg.BrowserStatus == "connected" || !strings.Contains(reg.Message, "not reachable") {
		t.Errorf("unreachable browser: %+v", reg)
	}
	var e APIError
	// The same browser in another spelling is still the same browser.
	other := strings.Replace(url, "http://", "ws://", 1) + "/devtools/browser/abc"
	if resp := h.do(http.MethodPost, "/api/register", h.token("bob"), map[string]string{"userId": "bob", "browserURL": other}, &e); resp.StatusCode != 409 || e.Code != CodeConflict {
		t.Fatalf("conflict: %d %+v", resp.StatusCode, e)
	}
	if _, err := h.store.Get(context.Background(), "bob"); err == nil {
		t.Error("the conflicting registration was stored")
	}
	// An admin (with browser:write, which registering needs) may register
	// and inspect for someone else.
	admin := h.token("root", auth.PermAdmin, auth.PermWrite)
	if r := h.register(admin, "carol", deadURL(t)); r.UserID != "carol" {
		t.Errorf("admin register: %+v", r)
	}
	var st UserStatus
	if resp := h.do(http.MethodGet, "/api/users/carol/status", admin, nil, &st); resp.StatusCode != 200 || st.UserID != "carol" {
		t.Errorf("admin status: %d %+v", resp.StatusCode, st)
	}
	if resp := h.do(http.MethodGet, "/api/users/carol/status", h.token("alice"), nil, &e); resp.StatusCode != 403 || e.Code != CodeForbidden {
		t.Errorf("alice reads carol's status: %d %+v", resp.StatusCode, e)
	}
	if resp := h.do(http.MethodDelete, "/api/users/carol", h.token("alice"), nil, &e); resp.StatusCode != 403 {
		t.Errorf("alice deletes carol: %d", resp.StatusCode)
	}
	if resp := h.do(http.MethodGet, "/api/users/nobody/status", h.token("nobody"), nil, &e); resp.StatusCode != 404 || e.Code != CodeNotFound {
		t.Errorf("unregistered status: %d %+v", resp.StatusCode, e)
	}
	if resp := h.do(http.MethodDelete, "/api/users/carol", admin, nil, nil); resp.StatusCode != 204 {
		t.Errorf("admin delete: %d", resp.StatusCode)
	}
	if _, ok := h.pool.Get("carol"); ok {
		t.Error("deleted user's browser still in the pool")
	}
}

func TestSessionOwnership(t *testing.T) {
	h := newHarness(t, "")
	aliceTok, bobTok := h.token("alice"), h.token("bob")
	h.register(aliceTok, "alice", deadURL(t))

	var e APIError
	req := func(method, path, token string, hdr map[string]string, body string) (int, APIError) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, _ := http.NewRequestWithContext(ctx, method, h.URL+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out APIError
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		_ = jsonUnmarshal(data, &out)
		return resp.StatusCode, out
	}

	// X-User-Id must be the token's subject.
	if code, e := req(http.MethodGet, "/sse", aliceTok, map[string]string{"X-User-Id": "bob"}, ""); code != 403 || e.Code != CodeForbidden {
		t.Errorf("X-User-Id mismatch on /sse: %d %+v", code, e)
	}
	if code, _ := req(http.MethodPost, "/mcp", aliceTok, map[string]string{"X-User-Id": "bob"}, `{}`); code != 403 {
		t.Errorf("X-User-Id mismatch on /mcp: %d", code)
	}

	// Legacy SSE: alice's session ID is of no use to bob.
	sid, closeStream := sseSessionID(t, h, aliceTok)
	defer closeStream()
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	if code, e := req(http.MethodPost, "/message?sessionId="+sid, bobTok, nil, ping); code != 403 || e.Code != CodeForbidden {
		t.Errorf("bob on alice's SSE session: %d %+v", code, e)
	}
	if code, e := req(http.MethodPost, "/message?sessionId=0123456789abcdef0123456789abcdef", aliceTok, nil, ping); code != 404 || e.Code != CodeNotFound {
		t.Errorf("unknown SSE session: %d %+v", code, e)
	}
	if code, _ := req(http.MethodPost, "/message?sessionId="+sid, aliceTok, nil, ping); code != http.StatusAccepted {
		t.Errorf("alice on her own SSE session: %d", code)
	}
	if len(sid) != 32 {
		t.Errorf("session ID %q is not 128 bits of hex", sid)
	}

	// Streamable HTTP: same rules on Mcp-Session-Id, for POST, GET and DELETE.
	c := h.connect(viaStreamable, aliceTok, "")
	msid := c.GetSessionId()
	if msid == "" {
		t.Fatal("no Mcp-Session-Id for a 2025-11-25 client")
	}
	hdr := map[string]string{"Mcp-Session-Id": msid, "MCP-Protocol-Version": mcp.ProtocolVersion20251125}
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		if code, e := req(m, "/mcp", bobTok, hdr, ping); code != 403 || e.Code != CodeForbidden {
			t.Errorf("bob %s alice's streamable session: %d %+v", m, code, e)
		}
	}
	if code, _ := req(http.MethodPost, "/mcp", aliceTok, map[string]string{"Mcp-Session-Id": "mcp-session-nope"}, ping); code != 404 {
		t.Errorf("unknown streamable session: %d", code)
	}
	// Bob's attempts changed nothing: alice's session still works.
	if _, err := c.ListTools(context.Background(), mcp.ListToolsRequest{}); err != nil {
		t.Errorf("alice's session broken after bob's attempts: %v", err)
	}
	if !strings.Contains(h.logs.String(), `"reason":"session belongs to another user"`) {
		t.Error("denials are not audited")
	}
	_ = e
}

func TestBrowserDownAndMissing(t *testing.T) {
	h := newHarness(t, "")
	carol := h.token("carol")
	h.register(carol, "carol", deadURL(t))
	c := h.connect(viaSSE, carol, "carol")
	start := time.Now()
	text, res := call(t, c, "take_snapshot", nil)
	if !res.IsError || !strings.Contains(text, "browser of carol is") || !strings.Contains(text, "retry") {
		t.Errorf("tool call on a down browser: %v %q", res.IsError, text)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the call took %s: it must fail fast", d)
	}

	// A user without any registration gets told how to register.
	d := h.connect(viaStateless, h.token("dave"), "")
	text, res = call(t, d, "list_pages", nil)
	if !res.IsError || !strings.Contains(text, "POST /api/register") {
		t.Errorf("tool call without a browser: %q", text)
	}
}

func TestPermissions(t *testing.T) {
	h := newHarness(t, "")
	reader := h.token("erin", auth.PermRead)
	c := h.connect(viaStateless, reader, "")
	names := toolNames(t, c)
	if !names["take_snapshot"] || names["click"] || names["evaluate_script"] {
		t.Errorf("read-only token sees %v", names)
	}
	// A hidden tool cannot be called either, and the refusal names the
	// permission.
	text, res := call(t, c, "evaluate_script", map[string]any{"function": "() => 1"})
	if !res.IsError || !strings.Contains(text, auth.PermScript) {
		t.Errorf("evaluate_script without browser:script: %q", text)
	}
}

func TestSessionLimit(t *testing.T) {
	h := newHarnessWith(t, "", session.Config{MaxSessionsPerUser: 1})
	tok := h.token("frank")
	h.connect(viaSSE, tok, "")
	var e APIError
	resp := h.do(http.MethodGet, "/sse", tok, nil, &e)
	if resp.StatusCode != 429 || e.Code != CodeLimitExceeded || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second session: %d %+v retry-after=%q", resp.StatusCode, e, resp.Header.Get("Retry-After"))
	}
}

func TestRegistrationsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	url := deadURL(t)
	first := newHarness(t, dir)
	first.register(first.token("alice"), "alice", url)
	first.pool.Close()
	first.store.Close()

	second := newHarness(t, dir)
	var st UserStatus
	if resp := second.do(http.MethodGet, "/api/users/alice/status", second.token("alice"), nil, &st); resp.StatusCode != 200 || st.BrowserURL != url {
		t.Fatalf("after restart: %d %+v", resp.StatusCode, st)
	}
	if _, ok := second.pool.Get("alice"); !ok {
		t.Error("the restored registration is not being connected")
	}
}

func TestHealthAndReady(t *testing.T) {
	h := newHarness(t, "")
	var health Health
	if resp := h.do(http.MethodGet, "/health", "", nil, &health); resp.StatusCode != 200 || health.Status != "ok" {
		t.Errorf("health: %d %+v", resp.StatusCode, health)
	}
	if resp := h.do(http.MethodGet, "/ready", "", nil, nil); resp.StatusCode != 200 {
		t.Errorf("ready: %d", resp.StatusCode)
	}
	var e APIError
	if resp := h.do(http.MethodGet, "/nope", "", nil, &e); resp.StatusCode != 404 || e.Code != CodeNotFound {
		t.Errorf("unknown route: %d %+v", resp.StatusCode, e)
	}
	h.store.Close()
	if resp := h.do(http.MethodGet, "/ready", "", nil, &e); resp.StatusCode != 503 {
		t.Errorf("ready with a closed store: %d", resp.StatusCode)
	}
}
