package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/fakecdp"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// faultPool is the pool configuration of the fault tests: health checks and
// backoff small enough that a restarted Chromium is back within a second.
func faultPool() browserpool.Config {
	return browserpool.Config{
		HealthInterval: time.Second, HealthTimeout: 5 * time.Second, DialTimeout: 5 * time.Second,
		InitialBackoff: 50 * time.Millisecond, MaxBackoff: 250 * time.Millisecond,
	}
}

// newFaultHarness is newHarnessWith with the pool configuration of the
// test's choosing; scfg.BrowserWait is kept (2s when zero).
func newFaultHarness(t testing.TB, pcfg browserpool.Config, scfg session.Config) *harness {
	if scfg.BrowserWait == 0 {
		scfg.BrowserWait = 2 * time.Second
	}
	return buildHarness(t, harnessSetup{pool: pcfg, session: scfg})
}

// callResult is one bounded tool call.
type callResult struct {
	text  string
	isErr bool
	err   error // transport or protocol error, or the client-side bound
	took  time.Duration
}

// callWithin runs a tool with a client-side bound; it never fails the test,
// so goroutines may use it.
func callWithin(c *client.Client, name string, args map[string]any, bound time.Duration) callResult {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var req mcp.CallToolRequest
	req.Params.Name = name
	req.Params.Arguments = args
	start := time.Now()
	res, err := c.CallTool(ctx, req)
	out := callResult{err: err, took: time.Since(start)}
	if err != nil {
		return out
	}
	var parts []string
	for _, ct := range res.Content {
		if tc, ok := ct.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	out.text, out.isErr = strings.Join(parts, "\n"), res.IsError
	return out
}

// untilOK repeats a tool call until it succeeds, within a bound; for the
// set-up steps after a restart.
func untilOK(t *testing.T, c *client.Client, name string, args map[string]any) callResult {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := callWithin(c, name, args, 15*time.Second)
		if r.err == nil && !r.isErr {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never succeeded: %+v", name, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// faultSite is the fault tests' pages on 127.0.0.1: / is a small page;
// /hold holds its answer open (until the client goes away) after telling
// held that a request arrived; /busy (a beacon) tells busy.
type faultSite struct {
	URL        string
	held, busy <-chan struct{}
}

func faultPages(t *testing.T) faultSite {
	t.Helper()
	ch, busy := make(chan struct{}, 16), make(chan struct{}, 16)
	mux := http.NewServeMux()
	mux.HandleFunc("/busy", func(w http.ResponseWriter, r *http.Request) {
		select {
		case busy <- struct{}{}:
		default:
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><html><head><title>Fault page</title></head><body><h1>Fault</h1><button onclick="this.textContent='Done'">Go</button></body></html>`)
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		select {
		case ch <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return faultSite{URL: srv.URL, held: ch, busy: busy}
}

// bystander keeps calling evaluate_script for another user until stop,
// and counts the calls and every failure.
type bystander struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	done       chan struct{}
}

func startBystander(c *client.Client, stop <-chan struct{}) *bystander {
	b := &bystander{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			r := callWithin(c, "evaluate_script", map[string]any{"function": fmt.Sprintf("() => %d * 2", i)}, 15*time.Second)
			if r.err != nil || r.isErr || !strings.Contains(r.text, fmt.Sprint(i*2)) {
				b.failed.Add(1)
				b.mu.Lock()
				b.failures = append(b.failures, fmt.Sprintf("%v %q", r.err, r.text))
				b.mu.Unlock()
				continue
			}
			b.ok.Add(1)
		}
	}()
	return b
}

// TestFaultKillDuringCalls kills alice's Chromium in the middle of a
// navigate_page (its server holds the answer open until the kill) and in
// the middle of a take_screenshot (the page's main thread is busy, so the
// capture cannot finish before the kill). Each call must end with an error
// within its bound, the proxy must keep answering, and bob, on his own
// Chromium, must see every call succeed throughout.
func TestFaultKillDuringCalls(t *testing.T) {
	h := newFaultHarness(t, faultPool(), session.Config{})
	site := faultPages(t)
	pages := site.URL
	ca, cb := testchrome.Start(t), testchrome.Start(t)
	aliceTok, bobTok := h.token("alice"), h.token("bob")
	h.register(aliceTok, "alice", ca.URL)
	h.register(bobTok, "bob", cb.URL)
	alice := h.connect(viaStreamable, aliceTok, "")
	bob := h.connect(viaStreamable, bobTok, "")
	mustCall(t, bob, "evaluate_script", map[string]any{"function": "() => 1"})

	stop := make(chan struct{})
	by := startBystander(bob, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()

	// 1. navigate_page, killed while the server holds the response.
	mustCall(t, alice, "navigate_page", map[string]any{"url": pages + "/"})
	navDone := make(chan callResult, 1)
	go func() {
		navDone <- callWithin(alice, "navigate_page", map[string]any{"url": pages + "/hold"}, 30*time.Second)
	}()
	select {
	case <-site.held:
	case <-time.After(15 * time.Second):
		t.Fatal("the held page was never requested")
	}
	ca.Kill()
	var nav callResult
	select {
	case nav = <-navDone:
	case <-time.After(20 * time.Second):
		t.Fatal("navigate_page hung after the browser was killed")
	}
	t.Logf("navigate_page killed mid-call: after %v: %q", nav.took, nav.text)
	if nav.err != nil || !nav.isErr {
		t.Errorf("navigate_page during the kill: err=%v isError=%v %q, want a tool error", nav.err, nav.isErr, nav.text)
	}
	if !strings.Contains(nav.text, "navigate_page") || !lostBrowser(nav.text) {
		t.Errorf("navigate_page error %q does not say the browser connection dropped", nav.text)
	}

	// 2. take_screenshot, killed while the page's main thread is busy.
	ca.Restart(t)
	untilOK(t, alice, "navigate_page", map[string]any{"url": pages + "/"})
	mustCall(t, alice, "evaluate_script", map[string]any{
		"function": "() => { setTimeout(() => { navigator.sendBeacon('/busy'); const end = Date.now() + 20000; while (Date.now() < end) {} }, 50); return 'busy soon' }",
	})
	select {
	case <-site.busy: // the main thread is in the loop now
	case <-time.After(15 * time.Second):
		t.Fatal("the page never started its busy loop")
	}
	shotDone := make(chan callResult, 1)
	go func() {
		shotDone <- callWithin(alice, "take_screenshot", map[string]any{}, 30*time.Second)
	}()
	time.Sleep(300 * time.Millisecond) // the capture is waiting on the busy page
	ca.Kill()
	var shot callResult
	select {
	case shot = <-shotDone:
	case <-time.After(20 * time.Second):
		t.Fatal("take_screenshot hung after the browser was killed")
	}
	t.Logf("take_screenshot killed mid-call: after %v: %q", shot.took, shot.text)
	if shot.err != nil || !shot.isErr || !strings.Contains(shot.text, "take_screenshot") || !lostBrowser(shot.text) {
		t.Errorf("take_screenshot during the kill: err=%v isError=%v %q, want a take_screenshot tool error", shot.err, shot.isErr, shot.text)
	}

	// While alice's browser is down her calls fail fast and clearly.
	down := callWithin(alice, "evaluate_script", map[string]any{"function": "() => 1"}, 15*time.Second)
	if down.err != nil || !down.isErr || !strings.Contains(down.text, "BROWSER_UNAVAILABLE") || !strings.Contains(down.text, "retryable") {
		t.Errorf("call with the browser down: %+v, want a retryable BROWSER_UNAVAILABLE tool error", down)
	}

	// The proxy is up, and bob never noticed.
	var health Health
	if resp := h.do(http.MethodGet, "/health", "", nil, &health); resp.StatusCode != http.StatusOK || health.BrowserConnections != 1 {
		t.Errorf("health after the kills: %d %+v, want 200 with bob's browser connected", resp.StatusCode, health)
	}
	time.Sleep(300 * time.Millisecond) // bob keeps calling after the kills
	close(stop)
	select {
	case <-by.done:
	case <-time.After(20 * time.Second):
		t.Fatal("bob's calls hung")
	}
	if by.failed.Load() != 0 || by.ok.Load() < 5 {
		t.Errorf("bob: %d calls ok, %d failed: %v", by.ok.Load(), by.failed.Load(), by.failures)
	}
	mustCall(t, bob, "take_snapshot", nil)
}

// lostBrowser reports whether a tool error says that the browser
// connection was lost (chromedp's words, or the tools' own).
func lostBrowser(text string) bool {
	return strings.Contains(text, "lost the connection to the browser") || strings.Contains(text, "browser connection dropped")
}

// TestFaultRestartSamePort kills Chromium and starts it again on the same
// port (a new websocket URL): the open session's next call succeeds within
// the browser wait (2s) of Chromium listening, carries the one-time restart
// notice, and page ids continue instead of being reused. During the outage
// status shows the state and a call fails with a retryable error naming
// the state and the attempts.
func TestFaultRestartSamePort(t *testing.T) {
	h := newFaultHarness(t, faultPool(), session.Config{BrowserWait: 2 * time.Second})
	pages := faultPages(t).URL
	c := testchrome.Start(t)
	tok := h.token("alice")
	h.register(tok, "alice", c.URL)
	cl := h.connect(viaStreamable, tok, "")
	mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/"}) // page 1
	mustCall(t, cl, "new_page", map[string]any{"url": pages + "/"})      // page 2
	oldWS := c.WSURL(t)
	sessions := h.mgr.Count()

	killed := time.Now()
	c.Kill()
	var st UserStatus
	waitFor(t, "status to leave connected", func() bool {
		h.do(http.MethodGet, "/api/users/alice/status", tok, nil, &st)
		return st.BrowserStatus != string(browserpool.StateConnected)
	})
	t.Logf("time to detect a dead browser through /status (kill -> %s): %v", st.BrowserStatus, time.Since(killed))
	if st.BrowserStatus != "reconnecting" || st.BrowserURL != c.URL {
		t.Errorf("status during the outage: %+v, want reconnecting at %s", st, c.URL)
	}

	down := callWithin(cl, "list_pages", nil, 15*time.Second)
	t.Logf("call during the outage: after %v: %q", down.took, down.text)
	if down.err != nil || !down.isErr {
		t.Fatalf("list_pages with the browser down: %+v, want a tool error", down)
	}
	for _, want := range []string{"BROWSER_UNAVAILABLE", "alice", "reconnecting", "failed connection attempt", "retryable"} {
		if !strings.Contains(down.text, want) {
			t.Errorf("outage error %q does not say %q", down.text, want)
		}
	}
	if down.took > 10*time.Second {
		t.Errorf("the call waited %v for a 2s browser wait", down.took)
	}

	c.Restart(t)
	listening := time.Now()
	first := callWithin(cl, "evaluate_script", map[string]any{"function": "() => 6 * 7"}, 15*time.Second)
	recover := time.Since(listening)
	t.Logf("time to recover (Chromium listening -> first successful call): %v", recover)
	if first.err != nil || first.isErr {
		t.Fatalf("first call after the restart: %+v, want success within the 2s browser wait", first)
	}
	if c.WSURL(t) == oldWS {
		t.Log("note: Chromium kept its websocket URL across the restart")
	}
	if !strings.Contains(first.text, "42") || !strings.Contains(first.text, "browser restarted") || !strings.Contains(first.text, "reset") {
		t.Errorf("first result after the restart: %q, want 42 and the restart notice", first.text)
	}
	// The notice is told once; old page ids are gone and never reused.
	list := mustCall(t, cl, "list_pages", nil)
	if strings.Contains(list, "browser restarted") {
		t.Errorf("the notice came twice: %q", list)
	}
	if regexp.MustCompile(`(?m)^[12]: `).MatchString(list) || !regexp.MustCompile(`(?m)^3: `).MatchString(list) {
		t.Errorf("pages after the restart: %q, want only page 3 (ids 1 and 2 are not reused)", list)
	}
	np := mustCall(t, cl, "new_page", map[string]any{"url": pages + "/"})
	if !strings.Contains(np, "Opened page 4") {
		t.Errorf("new_page after the restart: %q, want page 4", np)
	}
	if text, res := call(t, cl, "select_page", map[string]any{"pageId": 1}); !res.IsError || !strings.Contains(text, "not one of this session's pages") {
		t.Errorf("select_page 1 after the reset: %q, want an error", text)
	}
	if n := h.mgr.Count(); n != sessions {
		t.Errorf("sessions %d after the restart, want %d (the session stays open)", n, sessions)
	}
	logs := h.logs.String()
	for _, want := range []string{`"from":"connected","to":"reconnecting"`, `"from":"reconnecting","to":"connected"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("transition %s not logged", want)
		}
	}
}

// TestFaultSilentBrowser registers a browser that accepts the websocket but
// never answers: registration says so, tool calls fail within the browser
// wait with a clear retryable error, and goroutines do not pile up. A
// browser that answers the connect but no later command (hung) gets tool
// errors at the call bound, not hangs.
func TestFaultSilentBrowser(t *testing.T) {
	pcfg := faultPool()
	pcfg.DialTimeout = time.Second
	h := newFaultHarness(t, pcfg, session.Config{BrowserWait: 500 * time.Millisecond, CallTimeout: time.Second})

	tok := h.token("alice")
	reg := h.register(tok, "alice", fakecdp.NewSilent(t, func(int) bool { return false }).URL)
	t.Logf("registration of a silent browser: %s: %s", reg.BrowserStatus, reg.Message)
	if reg.BrowserStatus == "connected" || !strings.Contains(reg.Message, "did not answer within") {
		t.Errorf("registration: %+v, want not connected and a message saying the browser does not answer", reg)
	}
	var st UserStatus
	h.do(http.MethodGet, "/api/users/alice/status", tok, nil, &st)
	if st.BrowserStatus == "connected" || !strings.Contains(st.BrowserError, "did not answer") {
		t.Errorf("status: %+v", st)
	}

	cl := h.connect(viaStreamable, tok, "")
	check := func() {
		r := callWithin(cl, "evaluate_script", map[string]any{"function": "() => 1"}, 15*time.Second)
		if r.err != nil || !r.isErr || !strings.Contains(r.text, "BROWSER_UNAVAILABLE") || !strings.Contains(r.text, "did not answer") {
			t.Fatalf("call on a silent browser: %+v, want a BROWSER_UNAVAILABLE tool error", r)
		}
		if r.took > 10*time.Second {
			t.Fatalf("call took %v with a 500ms browser wait", r.took)
		}
	}
	for range 3 { // warm up the client and server goroutines
		check()
	}
	base := runtime.NumGoroutine()
	for range 8 {
		check()
	}
	if n := runtime.NumGoroutine(); n > base+30 {
		t.Errorf("goroutines grew from %d to %d over 8 calls", base, n)
	}

	// Hung: the connect's Browser.getVersion is answered, nothing else.
	bob := h.token("bob")
	reg = h.register(bob, "bob", fakecdp.NewSilent(t, func(n int) bool { return n == 0 }).URL)
	if reg.BrowserStatus != "connected" {
		t.Fatalf("bob's registration: %+v", reg)
	}
	cb := h.connect(viaStreamable, bob, "")
	for _, tool := range []string{"new_page", "list_pages"} {
		r := callWithin(cb, tool, nil, 15*time.Second)
		t.Logf("%s on a hung browser: after %v: %q", tool, r.took, r.text)
		if r.err != nil || !r.isErr {
			t.Errorf("%s on a hung browser: %+v, want a tool error", tool, r)
		}
	}
}
