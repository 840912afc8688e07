package browserpool

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// fakeCDP is a minimal DevTools endpoint on loopback: /json/version and a
// browser websocket that answers every CDP call with an empty result (and
// Browser.getVersion with a product). It can require credentials and
// records every request's headers.
type fakeCDP struct {
	srv *httptest.Server
	// need, when set, must hold for /json/version and the handshake.
	need  func(r *http.Request) bool
	conns atomic.Int64 // TCP connections accepted

	mu   sync.Mutex
	reqs []*http.Request   // clones, with headers
	ws   []*websocket.Conn // open browser websockets
}

func newFakeCDP(t *testing.T, need func(r *http.Request) bool) *fakeCDP {
	t.Helper()
	f := &fakeCDP{need: need}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/json/version", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		if f.need != nil && !f.need(r) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		// A hostile answer: the proxy must dial the address it asked, not this.
		json.NewEncoder(w).Encode(map[string]string{"webSocketDebuggerUrl": "ws://169.254.169.254:9222/devtools/browser/fake"})
	})
	mux.HandleFunc("/devtools/browser/", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		if f.need != nil && !f.need(r) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		f.mu.Lock()
		f.ws = append(f.ws, c)
		f.mu.Unlock()
		for {
			var msg struct {
				ID        int64  `json:"id"`
				Method    string `json:"method"`
				SessionID string `json:"sessionId,omitempty"`
			}
			if err := c.ReadJSON(&msg); err != nil {
				return
			}
			result := map[string]any{}
			if msg.Method == "Browser.getVersion" {
				result = map[string]any{"protocolVersion": "1.3", "product": "FakeChrome/1.0", "revision": "1", "userAgent": "fake", "jsVersion": "1"}
			}
			reply := map[string]any{"id": msg.ID, "result": result}
			if msg.SessionID != "" {
				reply["sessionId"] = msg.SessionID
			}
			if err := c.WriteJSON(reply); err != nil {
				return
			}
		}
	})
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	f.srv.Start()
	t.Cleanup(func() {
		f.drop()
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

// drop closes every browser websocket, as a browser restart would.
func (f *fakeCDP) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.ws {
		c.Close()
	}
	f.ws = nil
}

func (f *fakeCDP) record(r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r.Clone(context.Background()))
}

// requests returns the recorded requests to path.
func (f *fakeCDP) requests(path string) []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*http.Request
	for _, r := range f.reqs {
		if strings.HasPrefix(r.URL.Path, path) {
			out = append(out, r)
		}
	}
	return out
}

// addr is the fake's host:port.
func (f *fakeCDP) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// switchPolicy is a DialPolicy that can start refusing loopback, as if a
// host's DNS answer changed after registration.
type switchPolicy struct {
	base        *router.Policy
	denyLoop    atomic.Bool
	checkedAddr atomic.Int64
}

func (p *switchPolicy) CheckHost(h string) error { return p.base.CheckHost(h) }

func (p *switchPolicy) CheckAddr(a netip.Addr) error {
	p.checkedAddr.Add(1)
	if p.denyLoop.Load() && a.Unmap().IsLoopback() {
		return &router.DeniedError{Addr: a.String(), Reason: "loopback is denied now"}
	}
	return p.base.CheckAddr(a)
}

func waitStatus(t *testing.T, b *Browser, what string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := b.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: status %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPolicyCredentialsOnHandshake(t *testing.T) {
	const token, key = "tok-SECRET-1", "key-SECRET-2"
	fake := newFakeCDP(t, func(r *http.Request) bool {
		return r.Header.Get("X-Api-Key") == key && (r.URL.Path == "/json/version" || r.URL.Query().Get("token") == token)
	})
	p := New(testConfig())
	defer p.Close()

	ws := "ws://" + fake.addr() + "/devtools/browser/abc?token=" + token
	b := p.EnsureEndpoint("alice", Endpoint{URL: ws, Headers: map[string]string{"X-Api-Key": key}})
	if _, err := b.Conn(context.Background(), 10*time.Second); err != nil {
		t.Fatalf("connect with credentials: %v", err)
	}
	if v := b.Status().Version; v != "FakeChrome/1.0" {
		t.Errorf("version %q", v)
	}
	hs := fake.requests("/devtools/browser/")
	if len(hs) == 0 {
		t.Fatal("no handshake recorded")
	}
	h := hs[0].Header
	if h.Get("X-Api-Key") != key {
		t.Errorf("handshake header X-Api-Key = %q", h.Get("X-Api-Key"))
	}
	if _, ok := h["Origin"]; ok {
		t.Errorf("handshake sent Origin %q; Chrome refuses it without --remote-allow-origins", h.Get("Origin"))
	}
	if hs[0].URL.Query().Get("token") != token {
		t.Errorf("token query lost: %q", hs[0].URL.RawQuery)
	}

	// Wrong key: refused, and the error names the status, not the secrets.
	b2 := p.EnsureEndpoint("bob", Endpoint{URL: ws, Headers: map[string]string{"X-Api-Key": "wrong-SECRET-3"}})
	st := waitStatus(t, b2, "a refused handshake", func(s Status) bool { return s.Attempts > 0 })
	if !strings.Contains(st.LastError, "401") {
		t.Errorf("LastError %q does not say 401", st.LastError)
	}
	for _, secret := range []string{token, key, "wrong-SECRET-3"} {
		if strings.Contains(st.LastError, secret) {
			t.Errorf("LastError %q leaks %q", st.LastError, secret)
		}
	}
}

func TestPolicyUserinfoIsBasicAuth(t *testing.T) {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:pw-SECRET"))
	fake := newFakeCDP(t, func(r *http.Request) bool { return r.Header.Get("Authorization") == want })
	p := New(testConfig())
	defer p.Close()
	b := p.Ensure("alice", "http://u:pw-SECRET@"+fake.addr())
	if _, err := b.Conn(context.Background(), 10*time.Second); err != nil {
		t.Fatalf("connect with userinfo: %v", err)
	}
	if n := len(fake.requests("/json/version")); n == 0 {
		t.Error("/json/version was not asked")
	}
	hs := fake.requests("/devtools/browser/")
	if len(hs) == 0 || hs[0].Header.Get("Authorization") != want {
		t.Fatalf("handshake lacks Basic auth: %v", hs)
	}
	// The fake's /json/version named 169.254.169.254; the pool dialled the
	// address it asked instead.
	if hs[0].Host != fake.addr() {
		t.Errorf("handshake Host %q, want %q", hs[0].Host, fake.addr())
	}
}

func TestPolicyDialTimeCheck(t *testing.T) {
	fake := newFakeCDP(t, nil)
	pol := &switchPolicy{base: router.DefaultPolicy()}
	cfg := testConfig()
	cfg.Policy = pol
	p := New(cfg)
	defer p.Close()

	for _, url := range []string{"http://" + fake.addr(), "ws://" + fake.addr() + "/devtools/browser/x"} {
		b := p.Ensure("alice", url)
		if _, err := b.Conn(context.Background(), 10*time.Second); err != nil {
			t.Fatalf("%s: first connect: %v", url, err)
		}
		before := pol.checkedAddr.Load()
		if before == 0 {
			t.Fatal("the dialer never asked the policy about the address")
		}

		// The registration was fine; now the name points somewhere refused.
		pol.denyLoop.Store(true)
		conns := fake.conns.Load()
		fake.drop()
		st := waitStatus(t, b, "a refused reconnect", func(s Status) bool {
			return s.State != StateConnected && strings.Contains(s.LastError, "refused")
		})
		if !strings.Contains(st.LastError, "127.0.0.1") || !strings.Contains(st.LastError, "loopback is denied now") {
			t.Errorf("LastError %q does not say which address and why", st.LastError)
		}
		if got := fake.conns.Load(); got != conns {
			t.Errorf("the browser saw %d new connection(s) after the policy refused it", got-conns)
		}
		pol.denyLoop.Store(false)
		p.Remove("alice")
	}
}

func TestPolicyRefusesMetadata(t *testing.T) {
	p := New(testConfig())
	defer p.Close()
	for _, tc := range []struct{ url, want string }{
		{"http://metadata.google.internal:80", "metadata"},
		{"ws://169.254.169.254:80/devtools/browser/x", "169.254.0.0/16"},
		{"http://[fd00:ec2::254]:80", "fd00:ec2::254"},
	} {
		b := p.Ensure("u"+tc.want[:3], tc.url)
		st := waitStatus(t, b, tc.url, func(s Status) bool { return s.Attempts > 0 })
		if !strings.Contains(st.LastError, tc.want) || !strings.Contains(st.LastError, "refused") {
			t.Errorf("%s: LastError %q, want a refusal naming %q", tc.url, st.LastError, tc.want)
		}
	}
}

func TestGuardedDialerChecksTheAddress(t *testing.T) {
	pol := &switchPolicy{base: router.DefaultPolicy()}
	pol.denyLoop.Store(true)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	// "localhost" passes the name check; the address it resolves to does not.
	_, port, _ := net.SplitHostPort(l.Addr().String())
	_, err = guardedDial(pol, time.Second)(context.Background(), "tcp", net.JoinHostPort("localhost", port))
	if err == nil || !strings.Contains(err.Error(), "loopback is denied now") {
		t.Fatalf("dial error %v, want the policy's refusal", err)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connection(s) reached the listener", n)
	}
}
