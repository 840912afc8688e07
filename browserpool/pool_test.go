package browserpool

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

func testConfig() Config {
	return Config{
		HealthInterval: 200 * time.Millisecond,
		HealthTimeout:  2 * time.Second,
		DialTimeout:    3 * time.Second,
		InitialBackoff: 20 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
	}
}

func TestConnectHTTPAndWS(t *testing.T) {
	c := testchrome.Start(t)
	p := New(testConfig())
	defer p.Close()

	for _, tc := range []struct{ user, url string }{
		{"alice", c.URL},
		{"bob", c.WSURL(t)},
	} {
		b := p.Ensure(tc.user, tc.url)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := b.Conn(ctx, 10*time.Second)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tc.user, err)
		}
		if conn.Generation != 1 {
			t.Errorf("%s: generation %d, want 1", tc.user, conn.Generation)
		}
		st := b.Status()
		if st.State != StateConnected || !strings.Contains(st.Version, "Chrome") {
			t.Errorf("%s: status %+v", tc.user, st)
		}
		// The connection is usable and opened no tab.
		infos, err := chromedp.Targets(conn.Ctx)
		if err != nil {
			t.Fatalf("targets: %v", err)
		}
		if len(infos) == 0 {
			t.Fatal("no targets")
		}
		// One browser is one user's: the next user may have it only once
		// this one is gone.
		p.Remove(tc.user)
	}
	if st := p.States(); st[StateConnected] != 0 {
		t.Errorf("states %v, want none connected", st)
	}
	if n := len(c.Pages(t)); n != 1 {
		t.Errorf("browser has %d pages, want the 1 it started with", n)
	}
}

func TestUnreachableIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	cfg := testConfig()
	cfg.MaxAttempts = 3
	p := New(cfg)
	defer p.Close()
	b := p.Ensure("alice", "http://"+addr)
	st := b.WaitSettled(context.Background(), 5*time.Second)
	if st.Attempts == 0 || !strings.Contains(st.LastError, "connection refused") {
		t.Fatalf("status after first attempt: %+v", st)
	}
	_, err = b.Conn(context.Background(), 300*time.Millisecond)
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("Conn error %v, want *UnavailableError", err)
	}
	if !strings.Contains(ue.Error(), "alice") {
		t.Errorf("error does not name the user: %v", ue)
	}
	if s := waitStatus(t, b, "the failed state", func(s Status) bool { return s.State == StateFailed }); s.Attempts != 3 {
		t.Fatalf("after max attempts: %+v", s)
	}
}

func TestReconnectAfterRestart(t *testing.T) {
	c := testchrome.Start(t)
	p := New(testConfig())
	defer p.Close()
	b := p.Ensure("alice", c.URL)
	if _, err := b.Conn(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Kill()
	waitStatus(t, b, "the state to leave connected after the browser died", func(s Status) bool { return s.State != StateConnected })
	c.Restart(t)
	conn, err := b.Conn(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatalf("no reconnect: %v", err)
	}
	if conn.Generation != 2 {
		t.Errorf("generation %d, want 2", conn.Generation)
	}
}

// TestReconnectWSURLAfterRestart: a browser registered by its ws URL gets a
// new URL when Chrome restarts; the pool finds it on the same host and port.
func TestReconnectWSURLAfterRestart(t *testing.T) {
	c := testchrome.Start(t)
	p := New(testConfig())
	defer p.Close()
	first := c.WSURL(t)
	b := p.Ensure("alice", first)
	if _, err := b.Conn(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Kill()
	c.Restart(t)
	if c.WSURL(t) == first {
		t.Fatal("the restarted browser kept its websocket URL; the test proves nothing")
	}
	conn, err := b.Conn(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatalf("no reconnect through the old ws URL: %v", err)
	}
	if conn.Generation < 2 {
		t.Errorf("generation %d, want a new connection", conn.Generation)
	}
}
