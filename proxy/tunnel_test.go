package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tunnel"
)

// tunnelHarness is a proxy that refuses to dial loopback browsers (so a
// local Chromium is reachable only through a tunnel) and accepts tunnels.
func tunnelHarness(t testing.TB) (*harness, *tunnel.Registry) {
	t.Helper()
	reg := tunnel.NewRegistry(zerolog.Nop())
	policy, err := router.NewPolicy(router.DefaultAllowCIDRs(), append(router.DefaultDenyCIDRs(), "127.0.0.0/8", "::1/128"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := buildHarness(t, harnessSetup{
		pool: browserpool.Config{HealthInterval: time.Second, DialTimeout: 5 * time.Second,
			InitialBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Tunnels: reg},
		edit: func(c *Config) {
			c.Tunnels = reg
			c.Security.BrowserPolicy = policy
			c.TunnelCheckInterval = 100 * time.Millisecond
		},
	})
	t.Cleanup(reg.Close)
	return h, reg
}

// runningAgent is an agent run by a test.
type runningAgent struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // what Run returned, once done
}

// ended waits (bounded) until the agent stops by itself and returns why.
func (a *runningAgent) ended(t testing.TB, what string) error {
	t.Helper()
	select {
	case <-a.done:
		return a.err
	case <-time.After(20 * time.Second):
		t.Fatal(what)
		return nil
	}
}

// stop ends the agent and waits for it.
func (a *runningAgent) stop(t testing.TB) {
	t.Helper()
	a.cancel()
	a.ended(t, "the agent did not stop")
}

// startAgent runs an agent for token against server, relaying chrome.
func startAgent(t testing.TB, server, token string, chrome *testchrome.Chrome, pol tunnel.Policy) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := tunnel.NewAgent(tunnel.AgentConfig{
		Server: server, Token: token, Version: "test-agent", Policy: pol,
		Locate: func(ctx context.Context) (string, error) {
			ws, _, err := tunnel.FromBrowserURL(ctx, chrome.URL)
			return ws, err
		},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	ra := &runningAgent{cancel: cancel, done: make(chan struct{})}
	go func() { ra.err = a.Run(ctx); close(ra.done) }()
	t.Cleanup(func() { cancel(); <-ra.done })
	return ra
}

// waitConnected waits until user's browser is connected (through the tunnel).
func waitConnected(t testing.TB, h *harness, token, user string) UserStatus {
	t.Helper()
	return waitUserStatus(t, h, token, user, "connected through the tunnel", func(st UserStatus) bool {
		return st.BrowserStatus == "connected" && st.Tunnel != nil && st.Tunnel.Connected
	})
}

// waitStatus waits until user's browser is in state.
func waitStatus(t testing.TB, h *harness, token, user, state string) UserStatus {
	t.Helper()
	return waitUserStatus(t, h, token, user, state, func(st UserStatus) bool { return st.BrowserStatus == state })
}

// waitUserStatus polls user's status until ok holds, for at most 20 s.
func waitUserStatus(t testing.TB, h *harness, token, user, what string, ok func(UserStatus) bool) UserStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st UserStatus
		resp := h.do(http.MethodGet, "/api/users/"+user+"/status", token, nil, &st)
		if resp.StatusCode == 200 && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's browser never became %s: %d %+v", user, what, resp.StatusCode, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cutter is a TCP relay between the agent and the proxy that the test can
// cut (an outage of the network) and restore.
type cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newCutter(t testing.TB, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target}
	go c.serve()
	t.Cleanup(func() { ln.Close(); c.cut(false) })
	return c
}

func (c *cutter) URL() string { return "http://" + c.ln.Addr().String() }

func (c *cutter) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.down {
			c.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			c.mu.Unlock()
			in.Close()
			continue
		}
		c.conns = append(c.conns, in, out)
		c.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

// cut drops every relayed connection; down keeps refusing new ones.
func (c *cutter) cut(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
	for _, cn := range c.conns {
		cn.Close()
	}
	c.conns = nil
}

func (c *cutter) restore() {
	c.mu.Lock()
	c.down = false
	c.mu.Unlock()
}

// A Chromium the proxy may not dial (loopback is denied by its browser
// policy) is tunnelled by the agent and driven through the proxy; the
// network between agent and proxy is cut and restored mid-session, and the
// session recovers after retryable errors.
func TestTunnelEndToEnd(t *testing.T) {
	h, _ := tunnelHarness(t)
	chrome := testchrome.Start(t)
	pages := testPages(t)
	tok := h.token("alice")

	// The proxy cannot reach this browser by itself.
	var e APIError
	if resp := h.do(http.MethodPost, "/api/register", tok, map[string]string{"userId": "alice", "browserURL": chrome.URL}, &e); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("direct registration of a denied loopback browser: status %d, want 400", resp.StatusCode)
	}

	u, _ := url.Parse(h.URL)
	cut := newCutter(t, u.Host)
	startAgent(t, cut.URL(), tok, chrome, tunnel.Policy{})
	st := waitConnected(t, h, tok, "alice")
	if st.BrowserURL != "tunnel://alice" || st.Tunnel.AgentVersion != "test-agent" || st.Tunnel.Since == nil {
		t.Fatalf("status of a tunnelled browser: %+v (tunnel %+v)", st, st.Tunnel)
	}

	c := h.connect(viaStreamable, tok, "")
	mustCall(t, c, "navigate_page", map[string]any{"url": pages})
	if snap := mustCall(t, c, "take_snapshot", nil); !strings.Contains(snap, `button "Press me"`) {
		t.Fatalf("snapshot through the tunnel: %s", snap)
	}
	if out := mustCall(t, c, "evaluate_script", map[string]any{"function": "() => document.title + ':' + (6*7)"}); !strings.Contains(out, "Test page:42") {
		t.Fatalf("evaluate_script through the tunnel: %s", out)
	}

	// The network drops: calls fail with a retryable error, never hang.
	cut.cut(true)
	deadline := time.Now().Add(20 * time.Second)
	for {
		text, res := call(t, c, "evaluate_script", map[string]any{"function": "() => 1"})
		if res.IsError {
			if !strings.Contains(text, "BROWSER_UNAVAILABLE") && !lostBrowser(text) {
				t.Fatalf("a call during the outage must fail with the usual retryable error: %s", text)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("calls kept succeeding with the tunnel cut")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The network is back: the agent reconnects by itself and the session
	// continues.
	cut.restore()
	restored := time.Now()
	deadline = restored.Add(30 * time.Second)
	for {
		text, res := call(t, c, "evaluate_script", map[string]any{"function": "() => 'back'"})
		if !res.IsError && strings.Contains(text, "back") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session never recovered after the tunnel came back: %s", text)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("tunnel restored -> first successful tool call: %v", time.Since(restored))
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/two"})
	if snap := mustCall(t, c, "take_snapshot", nil); !strings.Contains(snap, "Second page") {
		t.Fatalf("snapshot after recovery: %s", snap)
	}
}

// Another user can neither use, nor replace, nor name a user's tunnel; a
// second tunnel of the same user replaces the first.
func TestTunnelOnePerUser(t *testing.T) {
	h, reg := tunnelHarness(t)
	chrome := testchrome.Start(t)
	alice, bob := h.token("alice"), h.token("bob")

	first := startAgent(t, h.URL, alice, chrome, tunnel.Policy{})
	waitConnected(t, h, alice, "alice")
	info, _ := reg.Info("alice")

	// bob cannot register alice's tunnel, nor his own by URL.
	for _, body := range []map[string]string{
		{"userId": "bob", "browserURL": "tunnel://alice"},
		{"userId": "bob", "browserURL": "tunnel://bob"},
		{"userId": "alice", "browserURL": "tunnel://alice"},
	} {
		tok := bob
		if body["userId"] == "alice" {
			tok = alice
		}
		var e APIError
		if resp := h.do(http.MethodPost, "/api/register", tok, body, &e); resp.StatusCode != http.StatusBadRequest || e.Code != CodeInvalidBrowserURL {
			t.Fatalf("POST /api/register %v: %d %+v, want 400 INVALID_BROWSER_URL", body, resp.StatusCode, e)
		}
	}
	// bob's own tunnel is bob's, and alice's stays as it was; but the
	// browser behind it is alice's (she tunnelled it first), so bob's
	// tunnel never connects it for him.
	bobAgent := startAgent(t, h.URL, bob, chrome, tunnel.Policy{})
	waitStatus(t, h, bob, "bob", "conflict")
	if now, ok := reg.Info("alice"); !ok || !now.Since.Equal(info.Since) {
		t.Fatalf("bob's tunnel touched alice's: %+v -> %+v", info, now)
	}
	if st := waitConnected(t, h, alice, "alice"); st.BrowserStatus != "connected" {
		t.Fatalf("alice's browser after bob's tunnel: %+v", st)
	}
	bc := h.connect(viaStreamable, bob, "")
	if text, res := call(t, bc, "list_pages", nil); !res.IsError || !strings.Contains(text, "another user") {
		t.Fatalf("bob's tool call on alice's browser through his tunnel: %q", text)
	}
	if resp := h.do(http.MethodGet, "/api/users/alice/status", bob, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob reads alice's status: %d", resp.StatusCode)
	}
	bobAgent.stop(t)

	// A second agent of alice replaces the first, which stops for good.
	startAgent(t, h.URL, alice, chrome, tunnel.Policy{})
	err := first.ended(t, "the first agent was not replaced")
	var perm *tunnel.PermanentError
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("the replaced agent ended with %v", err)
	}
	waitConnected(t, h, alice, "alice")
	c := h.connect(viaStreamable, alice, "")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, res := call(t, c, "list_pages", nil); !res.IsError {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replacing tunnel never served a tool call")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A tunnel opened with an API key closes when the key is revoked, and one
// opened with a token closes when the token expires.
func TestTunnelClosesWithItsCredential(t *testing.T) {
	h, reg := tunnelHarness(t)
	chrome := testchrome.Start(t)
	key, rec := h.apiKey("carol")
	a := startAgent(t, h.URL, key, chrome, tunnel.Policy{})
	waitConnected(t, h, key, "carol")
	if resp := h.do(http.MethodDelete, "/api/apikeys/"+rec.ID, key, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if err := a.ended(t, "the tunnel of a revoked API key stayed open"); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("agent of a revoked key ended with %v", err)
	}
	if _, ok := reg.Info("carol"); ok {
		t.Fatal("the revoked key's tunnel is still registered")
	}

	tok, err := h.authn.Issue("dave", nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d := startAgent(t, h.URL, tok, chrome, tunnel.Policy{})
	if err := d.ended(t, "the tunnel outlived its token"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("agent of an expiring token ended with %v", err)
	}
}

// The agent's local limits reach the MCP client as clear tool errors.
func TestTunnelAgentLimits(t *testing.T) {
	h, _ := tunnelHarness(t)
	chrome := testchrome.Start(t)
	pages := testPages(t)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "other") }))
	t.Cleanup(other.Close)
	tok := h.token("erin")

	a := startAgent(t, h.URL, tok, chrome, tunnel.Policy{AllowOrigins: []string{pages}})
	waitConnected(t, h, tok, "erin")
	c := h.connect(viaStreamable, tok, "")
	mustCall(t, c, "navigate_page", map[string]any{"url": pages})
	text, res := call(t, c, "navigate_page", map[string]any{"url": other.URL})
	if !res.IsError || !strings.Contains(text, "--allow-origin") {
		t.Fatalf("navigation outside --allow-origin: %v %s", res.IsError, text)
	}
	a.stop(t)

	startAgent(t, h.URL, tok, chrome, tunnel.Policy{ReadOnly: true})
	c2 := h.connect(viaStreamable, tok, "")
	deadline := time.Now().Add(20 * time.Second)
	for {
		text, res = call(t, c2, "take_snapshot", nil)
		if !res.IsError {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("take_snapshot under --read-only: %s", text)
		}
		time.Sleep(50 * time.Millisecond)
	}
	text, res = call(t, c2, "evaluate_script", map[string]any{"function": "() => 1"})
	if !res.IsError || !strings.Contains(text, "--read-only") {
		t.Fatalf("evaluate_script under --read-only: %v %s", res.IsError, text)
	}
	text, res = call(t, c2, "navigate_page", map[string]any{"url": pages})
	if !res.IsError || !strings.Contains(text, "--read-only") {
		t.Fatalf("navigate_page under --read-only: %v %s", res.IsError, text)
	}
}

// GET /api/tunnel needs a credential with browser:write, no web origin,
// and a WebSocket upgrade; each refusal changes nothing.
func TestTunnelRouteRefusals(t *testing.T) {
	h, reg := tunnelHarness(t)
	wsURL, err := tunnel.TunnelURL(h.URL)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(tok string, hdr http.Header) int {
		t.Helper()
		if hdr == nil {
			hdr = http.Header{}
		}
		if tok != "" {
			hdr.Set("Authorization", "Bearer "+tok)
		}
		ws, resp, err := websocket.DefaultDialer.Dial(wsURL, hdr)
		if err == nil {
			ws.Close()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := dial("", nil); got != http.StatusUnauthorized {
		t.Errorf("no credential: %d, want 401", got)
	}
	if got := dial(h.token("ro", "browser:read"), nil); got != http.StatusForbidden {
		t.Errorf("read-only credential: %d, want 403", got)
	}
	if got := dial(h.token("web"), http.Header{"Origin": {"https://evil.test"}}); got != http.StatusForbidden {
		t.Errorf("from a web origin: %d, want 403", got)
	}
	if resp := h.do(http.MethodGet, "/api/tunnel", h.token("plain"), nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("without upgrade: %d, want 400", resp.StatusCode)
	}
	if reg.Count() != 0 || totalBrowsers(h) != 0 {
		t.Fatalf("a refused tunnel left %d tunnels and %d browsers", reg.Count(), totalBrowsers(h))
	}
}

// TestTunnelPagesCannotReachDevTools: the pages of a tunnelled browser are
// guarded like any other's, and the browser's own DevTools port on the
// agent's machine (which the proxy never dials) is protected too.
func TestTunnelPagesCannotReachDevTools(t *testing.T) {
	h, _ := tunnelHarness(t)
	chrome := testchrome.Start(t)
	pages := attackPages(t)
	tok := h.token("alice")
	startAgent(t, h.URL, tok, chrome, tunnel.Policy{})
	waitConnected(t, h, tok, "alice")
	c := h.connect(viaStreamable, tok, "")
	u, err := url.Parse(chrome.URL)
	if err != nil {
		t.Fatal(err)
	}
	dev := "http://localhost:" + u.Port() + "/json/version?tunnelled=1"
	for _, tool := range []string{"navigate_page", "new_page"} {
		if text, res := call(t, c, tool, map[string]any{"url": dev}); !res.IsError || strings.Contains(text, "webSocketDebuggerUrl") {
			t.Errorf("%s to the tunnelled browser's DevTools: %q", tool, text)
		}
	}
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/"})
	out := mustCall(t, c, "evaluate_script", map[string]any{"function": `() => fetch("` + dev + `", {mode: 'no-cors'}).then(() => "reached", () => "refused")`})
	if !strings.Contains(out, "refused") {
		t.Errorf("fetch() of the tunnelled browser's DevTools from its page: %q", out)
	}
	refusedInBrowser(t, h, "json/version?tunnelled=redacted")
}

// DELETE /api/users/:id ends the user's live tunnel with the
// "unregistered" close code, and the agent stops instead of reconnecting
// (which would register the browser again).
func TestTunnelClosedOnUnregister(t *testing.T) {
	h, reg := tunnelHarness(t)
	chrome := testchrome.Start(t)
	tok := h.token("erin")
	a := startAgent(t, h.URL, tok, chrome, tunnel.Policy{})
	waitConnected(t, h, tok, "erin")
	if resp := h.do(http.MethodDelete, "/api/users/erin", tok, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /api/users/erin: %d", resp.StatusCode)
	}
	err := a.ended(t, "the agent kept running after its registration was deleted")
	var perm *tunnel.PermanentError
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), "registration was deleted") {
		t.Fatalf("the agent of a deleted registration ended with %v", err)
	}
	if _, ok := reg.Info("erin"); ok {
		t.Fatal("the deleted user's tunnel is still live")
	}
	if resp := h.do(http.MethodGet, "/api/users/erin/status", tok, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status after delete: %d, want 404 (the agent must not register again)", resp.StatusCode)
	}
}

// /health counts the live tunnels and the tunnelled browsers by state.
func TestHealthCountsTunnels(t *testing.T) {
	h, _ := tunnelHarness(t)
	chrome := testchrome.Start(t)
	health := func() Health {
		var out Health
		if resp := h.do(http.MethodGet, "/health", "", nil, &out); resp.StatusCode != http.StatusOK {
			t.Fatalf("/health: %d", resp.StatusCode)
		}
		return out
	}
	if got := health(); got.Tunnels != 0 || got.TunnelBrowsers["connected"] != 0 {
		t.Fatalf("health before any tunnel: %+v", got)
	}
	tok := h.token("frank")
	a := startAgent(t, h.URL, tok, chrome, tunnel.Policy{})
	waitConnected(t, h, tok, "frank")
	if got := health(); got.Tunnels != 1 || got.TunnelBrowsers["connected"] != 1 || got.Browsers["connected"] != 1 {
		t.Fatalf("health with frank's tunnel: %+v", got)
	}
	a.stop(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := health()
		if got.Tunnels == 0 && got.TunnelBrowsers["connected"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health after the agent stopped: %+v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
