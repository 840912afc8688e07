package proxy

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// managedHarness is a proxy that starts managed browsers (real Chromium)
// for users with none registered.
func managedHarness(t testing.TB, mc browserpool.ManagedConfig) *harness {
	t.Helper()
	bin, err := testchrome.Binary()
	if err != nil {
		t.Skip(err)
	}
	mc.Chromium = bin
	if mc.Dir == "" {
		mc.Dir = t.TempDir()
	}
	if mc.StartTimeout == 0 {
		mc.StartTimeout = 25 * time.Second
	}
	return buildHarness(t, harnessSetup{pool: browserpool.Config{HealthInterval: time.Second, DialTimeout: 5 * time.Second,
		InitialBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Managed: &mc}})
}

// processGone reports whether pid and every process of its group are gone
// (a zombie would still answer signal 0).
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) && errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH)
}

// eventually polls cond every 50 ms for at most d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// TestManagedBrowserFirstPageTool: a user with no registered browser gets
// a managed one on the session's first page tool; status and /health say
// so; a second user beyond --managed-max gets LIMIT_EXCEEDED with a retry
// time and a next step, audited; kill -9 of the Chromium mid-session is
// followed by a restart and the next calls work; shutdown leaves no
// Chromium behind.
func TestManagedBrowserFirstPageTool(t *testing.T) {
	h := managedHarness(t, browserpool.ManagedConfig{Max: 1, Idle: time.Hour, AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	pages := testPages(t)
	ta, tb := h.token("alice"), h.token("bob")

	var st UserStatus
	if resp := h.do(http.MethodGet, "/api/users/alice/status", ta, nil, &st); resp.StatusCode != http.StatusOK || !st.Managed || st.BrowserStatus != "disconnected" {
		t.Fatalf("status before first use: %d %+v", resp.StatusCode, st)
	}
	var health Health
	h.do(http.MethodGet, "/health", "", nil, &health)
	if health.ManagedBrowsers == nil || *health.ManagedBrowsers != 0 {
		t.Fatalf("health before: %+v", health)
	}

	c := h.connect(viaStreamable, ta, "")
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/"})
	if out := mustCall(t, c, "evaluate_script", map[string]any{"function": "() => document.title"}); !strings.Contains(out, "Test page") {
		t.Fatalf("evaluate_script in the managed browser: %q", out)
	}
	h.do(http.MethodGet, "/api/users/alice/status", ta, nil, &st)
	if !st.Managed || st.BrowserStatus != "connected" || st.BrowserURL != "managed" {
		t.Errorf("status after first use: %+v", st)
	}
	h.do(http.MethodGet, "/health", "", nil, &health)
	if health.ManagedBrowsers == nil || *health.ManagedBrowsers != 1 {
		t.Errorf("health after: %+v", health)
	}

	// The cap.
	cb := h.connect(viaStreamable, tb, "")
	text, res := call(t, cb, "evaluate_script", map[string]any{"function": "() => 1"})
	if !res.IsError || !strings.HasPrefix(text, "LIMIT_EXCEEDED") || !strings.Contains(text, "retry in") || !strings.Contains(text, "mcp-browser-proxy connect") {
		t.Errorf("beyond --managed-max: %q", text)
	}
	if !strings.Contains(h.logs.String(), `"reason":"managed_limit"`) {
		t.Error("the refusal beyond --managed-max is not audited")
	}
	if _, ok := h.pool.Get("bob"); ok {
		t.Error("bob got a browser beyond the cap")
	}

	// kill -9 mid-session.
	pid := h.pool.PID("alice")
	if pid == 0 {
		t.Fatal("no managed Chromium for alice")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var last string
	if !eventually(60*time.Second, func() bool {
		text, res := call(t, c, "navigate_page", map[string]any{"url": pages + "/two"})
		last = text
		if res.IsError {
			return false
		}
		out, res := call(t, c, "evaluate_script", map[string]any{"function": "() => document.title"})
		last = out
		return !res.IsError && strings.Contains(out, "Two")
	}) {
		t.Fatalf("no working call after kill -9: %q (%+v)", last, h.pool.States())
	}
	if !eventually(10*time.Second, func() bool { return processGone(pid) }) {
		t.Errorf("killed Chromium %d (or a helper of it) is still there", pid)
	}
	pid2 := h.pool.PID("alice")
	if pid2 == 0 || pid2 == pid {
		t.Fatalf("pid after the restart: %d (before: %d)", pid2, pid)
	}
	h.mgr.CloseAll()
	h.pool.Close()
	if !processGone(pid2) {
		t.Errorf("Chromium %d (or a helper of it) survived the pool's Close", pid2)
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// fakeDNS answers names for the managed browsers' network proxy:
// rebind.test is 127.0.0.1 the first time, 127.0.0.2 ever after.
type fakeDNS struct {
	mu      sync.Mutex
	rebinds int
}

func (f *fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	switch host {
	case "allowed.test":
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	case "denied.test":
		return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
	case "rebind.test":
		f.mu.Lock()
		defer f.mu.Unlock()
		f.rebinds++
		if f.rebinds == 1 {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestManagedBrowserNetworkPolicy: the pages of a managed browser reach a
// server on 127.0.0.1 that --managed-allow-cidrs allows (fetch and
// WebSocket work), and never one on 127.0.0.2 (loopback too, not allowed),
// whether by IP or by a name, by fetch, WebSocket, iframe, a redirect from
// the allowed server, or a name that resolved to the allowed address and
// then to the denied one (DNS rebinding). The denied server accepts no
// connection at all; the refusals are audited as page_policy.
func TestManagedBrowserNetworkPolicy(t *testing.T) {
	// Allowed: 127.0.0.1, keep-alive off so that every request is a new
	// connection of the network proxy (and a new lookup, for rebinding).
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/redir", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	mux.HandleFunc("/frame", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<html><body><iframe src="%s"></iframe></body></html>`, html.EscapeString(r.URL.Query().Get("src")))
	})
	mux.HandleFunc("/data", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte("hello"))
		_, _, _ = c.ReadMessage()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<html><head><title>Allowed</title></head><body>allowed</body></html>`)
	})
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	asrv := &http.Server{Handler: mux}
	asrv.SetKeepAlivesEnabled(false)
	go func() { _ = asrv.Serve(aln) }()
	t.Cleanup(func() { _ = asrv.Close() })
	allowed := "http://" + aln.Addr().String()
	aport := aln.Addr().(*net.TCPAddr).Port

	// Denied: 127.0.0.2, on the same port when it is free, so that the
	// rebinding name points at it.
	dl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", aport))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2:%d: %v", aport, err)
	}
	denied := &countingListener{Listener: dl}
	dsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			if c, err := upgrader.Upgrade(w, r, nil); err == nil {
				_ = c.WriteMessage(websocket.TextMessage, []byte("secret"))
				_, _, _ = c.ReadMessage()
				c.Close()
			}
			return
		}
		io.WriteString(w, "secret")
	})}
	go func() { _ = dsrv.Serve(denied) }()
	t.Cleanup(func() { _ = dsrv.Close() })
	deniedURL := "http://" + dl.Addr().String()

	h := managedHarness(t, browserpool.ManagedConfig{Max: 2, Idle: time.Hour, Resolver: &fakeDNS{},
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	c := h.connect(viaStreamable, h.token("alice"), "")

	mustCall(t, c, "navigate_page", map[string]any{"url": allowed + "/"})
	fetchJS := func(u string) string {
		return `() => fetch("` + u + `", {mode: "no-cors"}).then(() => "reached").catch(() => "refused")`
	}
	wsJS := func(u string) string {
		return `() => new Promise(r => { const s = new WebSocket("` + u + `"); s.onmessage = () => r("reached"); s.onerror = () => r("refused"); setTimeout(() => r("timeout"), 8000); })`
	}
	for name, tc := range map[string]struct{ js, want string }{
		"fetch allowed":                   {fetchJS(allowed + "/data"), "reached"},
		"fetch allowed name":              {fetchJS(fmt.Sprintf("http://allowed.test:%d/data", aport)), "reached"},
		"websocket allowed":               {wsJS("ws://" + aln.Addr().String() + "/ws"), "reached"},
		"fetch denied":                    {fetchJS(deniedURL + "/fetch"), "refused"},
		"fetch denied name":               {fetchJS(fmt.Sprintf("http://denied.test:%d/fetch", aport)), "refused"},
		"fetch denied localhost spelling": {fetchJS(fmt.Sprintf("http://0x7f.0.0.2:%d/fetch", aport)), "refused"},
		"websocket denied":                {wsJS("ws://" + dl.Addr().String() + "/ws"), "refused"},
		"websocket denied name":           {wsJS(fmt.Sprintf("ws://denied.test:%d/ws", aport)), "refused"},
	} {
		out := mustCall(t, c, "evaluate_script", map[string]any{"function": tc.js})
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: %q, want %s", name, out, tc.want)
		}
	}

	// An iframe and a redirect from the allowed server.
	mustCall(t, c, "navigate_page", map[string]any{"url": allowed + "/frame?src=" + url.QueryEscape(deniedURL+"/iframe")})
	call(t, c, "navigate_page", map[string]any{"url": allowed + "/redir?to=" + url.QueryEscape(deniedURL+"/redirect")})
	if out, _ := call(t, c, "evaluate_script", map[string]any{"function": "() => document.body ? document.body.innerText : ''"}); strings.Contains(out, "secret") {
		t.Errorf("the redirect reached the denied server: %q", out)
	}

	// DNS rebinding: the page loads from rebind.test while it is
	// 127.0.0.1; its next request finds 127.0.0.2 behind the same name.
	mustCall(t, c, "navigate_page", map[string]any{"url": fmt.Sprintf("http://rebind.test:%d/", aport)})
	out := mustCall(t, c, "evaluate_script", map[string]any{"function": `() => fetch("/data").then(r => r.text()).catch(() => "refused")`})
	if !strings.Contains(out, "refused") {
		t.Errorf("same-origin fetch after rebinding to 127.0.0.2: %q", out)
	}

	if n := denied.n.Load(); n != 0 {
		t.Errorf("the denied server on 127.0.0.2 accepted %d connection(s) from the managed browser", n)
	}
	if !strings.Contains(h.logs.String(), `"reason":"page_policy"`) || !strings.Contains(h.logs.String(), "managed browser network policy: 127.0.0.2") {
		t.Error("no page_policy audit line for the refused 127.0.0.2")
	}
	// The counter counts: the denied server answers a direct request.
	resp, err := http.Get(deniedURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if denied.n.Load() != 1 {
		t.Errorf("control: %d connections after a direct request", denied.n.Load())
	}
}

// TestManagedBrowserWritesNoFiles: a page of a managed browser that starts
// a download writes nothing: not in the proxy user's home (where headless
// Chromium saves downloads unasked), not in the profile; and the browser's
// environment carries none of the proxy's variables.
func TestManagedBrowserWritesNoFiles(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MBP_TEST_SECRET_SHOULD_NOT_LEAK", "s3cret")
	h := managedHarness(t, browserpool.ManagedConfig{Max: 1, Idle: time.Hour, Dir: dir, KeepProfile: true,
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	pages := testPages(t)
	c := h.connect(viaStreamable, h.token("alice"), "")
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/"})
	name := fmt.Sprintf("mbp-download-%d.txt", time.Now().UnixNano())
	mustCall(t, c, "evaluate_script", map[string]any{"function": `() => { const a = document.createElement('a');
		a.href = URL.createObjectURL(new Blob(['x'])); a.download = '` + name + `'; document.body.append(a); a.click(); return 'clicked' }`})
	home, _ := os.UserHomeDir()
	found := func() string {
		for _, d := range []string{filepath.Join(home, "Downloads"), home, dir} {
			var hit string
			_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
				if err == nil && strings.HasPrefix(e.Name(), name) {
					hit = p
				}
				if e != nil && e.IsDir() && p != d && d == home {
					return filepath.SkipDir // only $HOME itself and its Downloads
				}
				return nil
			})
			if hit != "" {
				return hit
			}
		}
		return ""
	}
	// A download lands within a second or two when it is allowed.
	if eventually(3*time.Second, func() bool { return found() != "" }) {
		p := found()
		os.Remove(p)
		t.Fatalf("the page's download was written to %s", p)
	}
	pid := h.pool.PID("alice")
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Skipf("no /proc environ for pid %d: %v", pid, err)
	}
	if strings.Contains(string(env), "MBP_TEST_SECRET") || !strings.Contains(string(env), "HOME="+filepath.Join(dir, "alice")) {
		t.Errorf("managed Chromium's environment: %q", strings.ReplaceAll(string(env), "\x00", " "))
	}
}
