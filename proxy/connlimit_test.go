package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serveReal serves h's proxy with Server.Serve on a listener of its own on
// 127.0.0.1, as serve does (the harness's httptest server has no listener
// limits), and returns its host:port. Serving ends with the test.
func serveReal(t *testing.T, h *harness) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return ln.Addr().String()
}

// dialFrom opens a TCP connection to addr from source address src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// getOn sends GET path on conn (keep-alive) with headers and reads the
// answer's status; err is set when the server closed the connection instead.
func getOn(conn net.Conn, br *bufio.Reader, addr, path string, headers map[string]string) (int, error) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if err := req.Write(conn); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// closedByServer reports whether err is the server closing the connection
// (EOF or reset), not a timeout of the test's own.
func closedByServer(err error) bool {
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestConnectionsPerAddressCapped checks that one client address cannot
// hold more than --max-conns-per-ip connections: beyond the cap a new one is
// closed at once, the refusals of one address are audited once, /health
// still answers another address, and a slot frees when a connection closes.
func TestConnectionsPerAddressCapped(t *testing.T) {
	const maxConns = 8
	h := buildHarness(t, harnessSetup{metrics: true, edit: func(c *Config) { c.Conns.MaxPerIP = maxConns }})
	addr := serveReal(t, h)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range maxConns {
		c, err := dialFrom("127.0.0.2", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if code, err := getOn(c, bufio.NewReader(c), addr, "/health", nil); err != nil || code != http.StatusOK {
			t.Fatalf("connection %d within the cap: %d %v", i+1, code, err)
		}
	}
	// Idle keep-alive connections, all of them held; more are refused.
	for i := range 3 {
		c, err := dialFrom("127.0.0.2", addr)
		if err != nil {
			t.Fatal(err)
		}
		code, err := getOn(c, bufio.NewReader(c), addr, "/health", nil)
		c.Close()
		if !closedByServer(err) {
			t.Fatalf("connection %d over the cap: status %d, err %v; want it closed by the server", maxConns+i+1, code, err)
		}
	}
	other, err := dialFrom("127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if code, err := getOn(other, bufio.NewReader(other), addr, "/health", nil); err != nil || code != http.StatusOK {
		t.Errorf("/health from another address while 127.0.0.2 holds its maximum: %d %v", code, err)
	}
	if n := strings.Count(h.logs.String(), `"reason":"connection limit"`); n != 1 {
		t.Errorf("%d audit lines for 3 refused connections of one address, want 1:\n%s", n, h.logs)
	}
	if !strings.Contains(h.logs.String(), `"client":"127.0.0.2"`) {
		t.Error("the refusal audit does not name the client address")
	}
	if n := testutil.ToFloat64(h.srv.cfg.Metrics.denials.WithLabelValues(denyConnLimit)); n != 3 {
		t.Errorf("mbp_http_denials_total{reason=conn_limit} = %g, want 3", n)
	}

	// A closed connection gives its slot back.
	held[0].Close()
	held = held[1:]
	waitUntil(t, 10*time.Second, "a slot freed by a closed connection", func() bool {
		c, err := dialFrom("127.0.0.2", addr)
		if err != nil {
			return false
		}
		if _, err := getOn(c, bufio.NewReader(c), addr, "/health", nil); err != nil {
			c.Close()
			return false
		}
		held = append(held, c)
		return true
	})
}

// TestSlowHeadersAreCut checks that a client that never finishes its
// request headers (slowloris) is cut after the header timeout, and so gives
// its connection slot back.
func TestSlowHeadersAreCut(t *testing.T) {
	h := buildHarness(t, harnessSetup{edit: func(c *Config) { c.Conns.ReadHeaderTimeout = time.Second; c.Conns.MaxPerIP = 1 }})
	addr := serveReal(t, h)
	c, err := dialFrom("127.0.0.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: "+addr+"\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.ReadAll(c) // the server answers 408 or nothing, then closes
	if !closedByServerOrEOF(err) {
		t.Fatalf("the slow client was not cut: %v", err)
	}
	// Its one slot is free again.
	waitUntil(t, 10*time.Second, "the slot of the cut client freed", func() bool {
		c2, err := dialFrom("127.0.0.2", addr)
		if err != nil {
			return false
		}
		defer c2.Close()
		code, err := getOn(c2, bufio.NewReader(c2), addr, "/health", nil)
		return err == nil && code == http.StatusOK
	})
}

// closedByServerOrEOF is closedByServer, where a clean end (io.ReadAll
// returns nil at EOF) also counts.
func closedByServerOrEOF(err error) bool { return err == nil || closedByServer(err) }

// TestForwardedClientsCountedApart checks that behind a trusted reverse
// proxy the cap counts each forwarded client's concurrent requests, not
// the proxy's connections: two clients are counted apart, forged hops
// before the last untrusted one do not help, and the proxy's address
// itself is not capped at the listener.
func TestForwardedClientsCountedApart(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	h := buildHarness(t, harnessSetup{edit: func(c *Config) { c.Conns.MaxPerIP = 2; c.Conns.TrustedProxies = trusted }})
	addr := serveReal(t, h)
	tok := h.token("alice")

	// Two open SSE streams for client 10.0.0.1, each on its own connection
	// of the reverse proxy (127.0.0.1).
	stream := func(xff string) (int, net.Conn) {
		t.Helper()
		c, err := dialFrom("127.0.0.1", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/sse", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("X-Forwarded-For", xff)
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatalf("GET /sse for %s: %v", xff, err)
		}
		_ = c.SetDeadline(time.Time{})
		code := resp.StatusCode
		if code != http.StatusOK {
			if ra := resp.Header.Get("Retry-After"); code == http.StatusTooManyRequests && ra == "" {
				t.Error("429 without Retry-After")
			}
			c.Close()
			return code, nil
		}
		t.Cleanup(func() { c.Close() })
		return code, c
	}
	for i := range 2 {
		if code, _ := stream("10.0.0.1"); code != http.StatusOK {
			t.Fatalf("stream %d of 10.0.0.1: %d", i+1, code)
		}
	}
	if code, _ := stream("10.0.0.1"); code != http.StatusTooManyRequests {
		t.Errorf("third stream of 10.0.0.1: %d, want 429", code)
	}
	// A forged first hop does not make another client: the last untrusted
	// hop is the one the reverse proxy saw.
	if code, _ := stream("10.0.0.2, 10.0.0.1"); code != http.StatusTooManyRequests {
		t.Errorf("10.0.0.1 claiming to forward for 10.0.0.2: %d, want 429", code)
	}
	if code, _ := stream("10.0.0.2"); code != http.StatusOK {
		t.Errorf("first stream of 10.0.0.2: %d, want 200 (counted apart from 10.0.0.1)", code)
	}
	if code, _ := stream("10.0.0.1, 127.0.0.1"); code != http.StatusTooManyRequests {
		t.Errorf("10.0.0.1 through two trusted hops: %d, want 429", code)
	}
}

func TestForwardedClient(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"10.1.0.0/16", "::1", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		peer, xff, want string // want "": not forwarded
	}{
		{"192.0.2.1:5000", "198.51.100.7", ""},                               // the peer is no trusted proxy: header ignored
		{"10.1.2.3:5000", "198.51.100.7", "198.51.100.7"},                    // one hop
		{"10.1.2.3:5000", "6.6.6.6, 198.51.100.7, 10.1.9.9", "198.51.100.7"}, // trusted hops skipped, forged ones not reached
		{"[::1]:5000", "::ffff:198.51.100.7", "198.51.100.7"},                // IPv4-mapped is IPv4
		{"10.1.2.3:5000", "", "10.1.2.3"},                                    // no header: the proxy itself
		{"10.1.2.3:5000", "198.51.100.7, garbage", "10.1.2.3"},               // a broken last hop: nothing after it is trusted
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		got, ok := forwardedClient(r, trusted)
		switch {
		case c.want == "" && ok:
			t.Errorf("%s %q: forwarded for %s, want not forwarded", c.peer, c.xff, got)
		case c.want != "" && (!ok || got != netip.MustParseAddr(c.want)):
			t.Errorf("%s %q: %s %v, want %s", c.peer, c.xff, got, ok, c.want)
		}
	}
	if _, err := ParseTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad CIDR was accepted")
	}
}
