package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// TestComposedRoutesKeepTheirChecks: with the middlewares composed once at
// start-up (composeOnce, routeGroup) instead of by echo on every request,
// every route under /api but the public /api/ui-config still refuses a
// request without credentials (401) and with a valid token is no longer
// refused for that; an unknown /api path is 401 without credentials and
// 404 with them, as with echo's group; the global middlewares still run
// on every answer, a 404 outside any group included (X-Request-Id).
func TestComposedRoutesKeepTheirChecks(t *testing.T) {
	h := newHarness(t, "")
	tok := h.token("alice")
	var checked int
	for _, r := range h.srv.e.Routes() {
		if !strings.HasPrefix(r.Path, "/api/") || r.Path == "/api/ui-config" || strings.Contains(r.Path, "*") || r.Method == echoRouteNotFound {
			continue
		}
		path := strings.NewReplacer(":userId", "alice", ":id", "x", ":pageId", "1").Replace(r.Path)
		checked++
		if resp := h.do(r.Method, path, "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: %d, want 401", r.Method, path, resp.StatusCode)
		}
		if resp := h.do(r.Method, path, tok, nil, nil); resp.StatusCode == http.StatusUnauthorized {
			t.Errorf("%s %s with a valid token: 401", r.Method, path)
		}
	}
	if checked < 10 {
		t.Fatalf("only %d /api routes found", checked)
	}
	for _, path := range []string{"/api", "/api/no-such-route"} {
		if resp := h.do(http.MethodGet, path, "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: %d, want 401", path, resp.StatusCode)
		}
		if resp := h.do(http.MethodGet, path, tok, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with a token: %d, want 404", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/no-such-route", "/health", "/api/users/alice/status"} {
		resp := h.do(http.MethodGet, path, tok, nil, nil)
		if id := resp.Header.Get("X-Request-Id"); !regexp.MustCompile(`^[A-Za-z]{32}$`).MatchString(id) {
			t.Errorf("GET %s: X-Request-Id %q, want 32 letters", path, id)
		}
	}
	// A client's own request ID is kept, as echo's middleware does, when
	// it is a short token; anything else (it goes into every log and audit
	// line) is replaced by one of ours.
	for _, c := range []struct{ sent, want string }{
		{"mine-123", "mine-123"},
		{"0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950e"},
		{strings.Repeat("a", 65), ""},
		{"two words", ""},
		{`quote"d`, ""},
		{"ünï", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, h.URL+"/health", nil)
		req.Header.Set("X-Request-Id", c.sent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("X-Request-Id")
		if c.want != "" && got != c.want {
			t.Errorf("X-Request-Id %q sent: %q, want the client's own", c.sent, got)
		}
		if c.want == "" && !regexp.MustCompile(`^[A-Za-z]{32}$`).MatchString(got) {
			t.Errorf("X-Request-Id %q sent: %q, want one of ours", c.sent, got)
		}
	}
}

// echoRouteNotFound is the method echo lists RouteNotFound routes under.
const echoRouteNotFound = "echo_route_not_found"

// TestRequestIDsDiffer: the generator's IDs are 32 letters and do not
// repeat, and every letter turns up at every position (of 10,000 IDs about
// 192 times each: none missing unless a position's digits are skewed).
func TestRequestIDsDiffer(t *testing.T) {
	seen := map[string]bool{}
	var count [32][128]int
	for range 10000 {
		id := newRequestID()
		if !regexp.MustCompile(`^[A-Za-z]{32}$`).MatchString(id) {
			t.Fatalf("request ID %q", id)
		}
		if seen[id] {
			t.Fatalf("request ID %q twice", id)
		}
		seen[id] = true
		for i := range len(id) {
			count[i][id[i]]++
		}
	}
	for i := range count {
		for _, l := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" {
			if n := count[i][l]; n < 100 {
				t.Errorf("letter %c at position %d: %d times in 10,000 IDs", l, i, n)
			}
		}
	}
}

// TestLoopbackLocalAddrAsBefore: the Host check's test of the connection's
// local address agrees with IsLoopbackAddr of its text, for TCP addresses
// and others.
func TestLoopbackLocalAddrAsBefore(t *testing.T) {
	addrs := []net.Addr{
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80},
		&net.TCPAddr{IP: net.IPv4(127, 9, 8, 7), Port: 1},
		&net.TCPAddr{IP: net.IPv6loopback, Port: 443},
		&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 80},
		&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 80},
		&net.TCPAddr{IP: net.IPv4(0, 0, 0, 0), Port: 80},
		&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 80, Zone: "eth0"},
		&net.TCPAddr{IP: net.ParseIP("::1"), Port: 80, Zone: "lo"},
		&net.TCPAddr{Port: 80},
		&net.UnixAddr{Name: "/tmp/x.sock", Net: "unix"},
		&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53},
	}
	for _, a := range addrs {
		if got, want := isLoopbackLocal(a), IsLoopbackAddr(a.String()); got != want {
			t.Errorf("%v (%T): %v, IsLoopbackAddr says %v", a, a, got, want)
		}
	}
}

// BenchmarkStatusInProcess: the proxy's own work of GET
// /api/users/:id/status, in process, without the network: to read the
// allocations of the route's path (go test -bench StatusInProcess -benchmem).
func BenchmarkStatusInProcess(b *testing.B) {
	srv, stop := scaleProxy(b)
	defer stop()
	tok := scaleToken(b, "u0")
	if _, err := srv.cfg.Store.Put(context.Background(), router.Registration{UserID: "u0", BrowserURL: "http://127.0.0.1:9/"}); err != nil {
		b.Fatal(err)
	}
	for range 50 { // the sessions of one user of BenchmarkScaleStatus
		srv.cfg.Sessions.Open(srv.cfg.Sessions.NewID("u0"), "u0")
	}
	h := newDrainer().wrap(srv.Handler())
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/api/users/u0/status", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"activeSessions":50`) {
		b.Fatalf("status %d: %s", w.Code, w.Body)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}
