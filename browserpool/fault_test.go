package browserpool

import (
	"context"
	"errors"
	"math"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cdptarget "github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/fakecdp"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testlog"
)

// TestFullJitterBackoff checks the waits against the capped exponential
// ceiling: each in [0, min(max, initial·2^n)], spread over that range.
func TestFullJitterBackoff(t *testing.T) {
	const initial, max = 20 * time.Millisecond, 100 * time.Millisecond
	ceilings := []time.Duration{20, 40, 80, 100, 100, 100}
	for i := range ceilings {
		ceilings[i] *= time.Millisecond
	}

	top := newFullJitter(initial, max)
	top.rand = func() float64 { return math.Nextafter(1, 0) }
	for i, c := range ceilings {
		if got := top.NextBackOff(); got != c {
			t.Errorf("wait %d with the highest draw: %v, want the ceiling %v", i, got, c)
		}
	}
	bottom := newFullJitter(initial, max)
	bottom.rand = func() float64 { return 0 }
	if got := bottom.NextBackOff(); got != 0 {
		t.Errorf("lowest draw: %v, want 0 (full jitter starts at zero)", got)
	}
	top.Reset()
	if got := top.NextBackOff(); got != initial {
		t.Errorf("after Reset: %v, want %v", got, initial)
	}

	// With the real source: always within the ceiling, and spread over it
	// (200 draws all in one half has probability 2^-199).
	j := newFullJitter(initial, max)
	for range 3 {
		j.NextBackOff() // up to the cap
	}
	low, high := 0, 0
	for range 200 {
		w := j.NextBackOff()
		if w < 0 || w > max {
			t.Fatalf("wait %v outside [0, %v]", w, max)
		}
		if w < max/2 {
			low++
		} else {
			high++
		}
	}
	if low == 0 || high == 0 {
		t.Errorf("waits not spread over [0, cap]: %d below half, %d above", low, high)
	}
}

// TestFaultLostWebsocketNoticedAtOnce kills Chromium with health checks an
// hour apart: the state must leave connected from the websocket loss alone,
// and every transition must be logged.
func TestFaultLostWebsocketNoticedAtOnce(t *testing.T) {
	c := testchrome.Start(t)
	logs := &testlog.Buffer{}
	cfg := testConfig()
	cfg.HealthInterval = time.Hour
	cfg.Logger = zerolog.New(logs)
	p := New(cfg)
	defer p.Close()
	b := p.Ensure("alice", c.URL)
	conn, err := b.Conn(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	killed := time.Now()
	c.Kill()
	st := waitStatus(t, b, "the state to leave connected", func(s Status) bool { return s.State != StateConnected })
	detect := time.Since(killed)
	t.Logf("time to detect a dead browser (kill -> state %s): %v", st.State, detect)
	if conn.Ctx.Err() == nil {
		t.Error("the connection's context is still alive after the browser died")
	}
	if st.State != StateReconnecting {
		t.Errorf("state after the loss: %+v, want reconnecting", st)
	}
	waitStatus(t, b, "a failed reconnect attempt", func(s Status) bool { return s.Attempts > 0 })

	c.Restart(t)
	listening := time.Now()
	conn2, err := b.Conn(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatalf("no reconnect after the restart: %v", err)
	}
	t.Logf("time to reconnect (Chromium listening -> connected): %v", time.Since(listening))
	if conn2.Generation != conn.Generation+1 {
		t.Errorf("generation %d after a reconnect, want %d", conn2.Generation, conn.Generation+1)
	}
	for _, want := range []string{
		`"from":"connecting","to":"connected"`,
		`"from":"connected","to":"reconnecting"`,
		`"from":"reconnecting","to":"connected"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("transition %s not logged:\n%s", want, logs.String())
		}
	}
}

// TestFaultFailedRetriedAtOnce drives a browser to failed, brings it back,
// and checks that it stays failed until a tool call (Conn) or a new
// registration of the same URL (Ensure) retries it, which then succeeds at
// once; the call's error before that names the state and attempts.
func TestFaultFailedRetriedAtOnce(t *testing.T) {
	var up atomic.Bool
	fake := newFakeCDP(t, func(*http.Request) bool { return up.Load() })
	url := "http://" + fake.addr()
	cfg := testConfig()
	cfg.MaxAttempts = 2
	p := New(cfg)
	defer p.Close()

	for _, via := range []string{"Conn", "Ensure"} {
		t.Run(via, func(t *testing.T) {
			up.Store(false)
			fake.drop()
			p.Remove("alice")
			b := p.Ensure("alice", url)
			st := waitStatus(t, b, "failed", func(s Status) bool { return s.State == StateFailed })
			if st.Attempts != 2 || !strings.Contains(st.LastError, "HTTP 401") {
				t.Fatalf("failed status %+v, want 2 attempts and the last error", st)
			}

			start := time.Now()
			_, err := b.Conn(context.Background(), 2*time.Second)
			var ue *UnavailableError
			if !errors.As(err, &ue) {
				t.Fatalf("Conn on a failed, still dead browser: %v, want *UnavailableError", err)
			}
			msg := ue.Error()
			for _, want := range []string{"BROWSER_UNAVAILABLE", "alice", "failed connection attempt", "retryable", "HTTP 401"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if !ue.Retryable() {
				t.Errorf("%v is not retryable", ue)
			}
			// The retry it asked for fails at once, and Conn does not sit
			// out its bound once the browser is failed again.
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Conn took %v, beyond its 2s bound", d)
			}
			waitStatus(t, b, "failed again", func(s Status) bool { return s.State == StateFailed })

			// The browser comes back: a failed browser does not retry on its
			// own (no attempt within many backoff caps) ...
			up.Store(true)
			before := len(fake.requests("/json/version"))
			time.Sleep(10 * cfg.MaxBackoff)
			if n := len(fake.requests("/json/version")); n != before || b.Status().State != StateFailed {
				t.Fatalf("a failed browser retried by itself: %d new requests, status %+v", n-before, b.Status())
			}
			// ... but the first call or registration retries it at once.
			switch via {
			case "Conn":
				conn, err := b.Conn(context.Background(), 5*time.Second)
				if err != nil {
					t.Fatalf("Conn did not retry the failed browser: %v", err)
				}
				if conn.Generation == 0 {
					t.Error("zero generation")
				}
			case "Ensure":
				if b2 := p.Ensure("alice", url); b2 != b {
					t.Fatal("registering the same URL again replaced the browser")
				}
				st := b.WaitSettled(context.Background(), 5*time.Second)
				if st.State != StateConnected {
					t.Fatalf("after re-registration: %+v, want connected (WaitSettled must wait for the retry)", st)
				}
			}
		})
	}
}

// TestFaultSilentBrowser: a browser that accepts the websocket but answers
// no CDP command never counts as connected; status says why, Conn fails
// within its bound with a clear error, and neither the pool's nor the
// fake's goroutines pile up over many attempts.
func TestFaultSilentBrowser(t *testing.T) {
	f := fakecdp.NewSilent(t, func(int) bool { return false })
	cfg := testConfig()
	cfg.DialTimeout = 300 * time.Millisecond
	p := New(cfg)
	defer p.Close()
	base := runtime.NumGoroutine()

	b := p.Ensure("alice", f.URL)
	st := b.WaitSettled(context.Background(), 5*time.Second)
	if st.State == StateConnected || st.Attempts == 0 || !strings.Contains(st.LastError, "did not answer within") {
		t.Fatalf("settled status %+v, want an attempt that failed because the browser did not answer", st)
	}
	for range 3 {
		start := time.Now()
		_, err := b.Conn(context.Background(), 500*time.Millisecond)
		var ue *UnavailableError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "did not answer within") || !strings.Contains(err.Error(), "retryable") {
			t.Fatalf("Conn: %v, want a retryable *UnavailableError saying the browser did not answer", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Conn took %v with a 500ms bound", d)
		}
	}
	// Many attempts later, nothing has piled up: each attempt's websocket
	// was closed (the fake's handlers ended) and its goroutines with it.
	waitStatus(t, b, "five failed attempts", func(s Status) bool { return s.Attempts >= 5 })
	deadline := time.Now().Add(5 * time.Second)
	for f.Open.Load() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if open := f.Open.Load(); open > 1 {
		t.Errorf("%d websockets still open after %d attempts, want at most the one in progress", open, f.Total.Load())
	}
	if n := runtime.NumGoroutine(); n > base+40 {
		t.Errorf("goroutines %d, started with %d: attempts leak", n, base)
	}
	p.Close()
	waitGoroutines(t, base+5)
	deadline = time.Now().Add(5 * time.Second)
	for f.Open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if open := f.Open.Load(); open != 0 {
		t.Errorf("%d websockets still open after Close", open)
	}
}

// TestFaultHungBrowser: a browser that connects, then stops answering (a
// hung or stopped process) fails its health check, leaves connected, and
// a CDP call on the connection ends at its own bound rather than hanging.
func TestFaultHungBrowser(t *testing.T) {
	f := fakecdp.NewSilent(t, func(n int) bool { return n == 0 }) // the connect's Browser.getVersion only
	cfg := testConfig()
	cfg.HealthInterval = 100 * time.Millisecond
	cfg.HealthTimeout = 200 * time.Millisecond
	p := New(cfg)
	defer p.Close()
	b := p.Ensure("alice", f.URL)
	conn, err := b.Conn(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(conn.Ctx, time.Second)
		defer cancel()
		_, err := chromedp.CallBrowser(ctx, cdptarget.GetTargets, cdptarget.GetTargetsParams{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a call the browser never answered succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a CDP call to a hung browser hung")
	}
	st := waitStatus(t, b, "a failed health check", func(s Status) bool {
		return s.State != StateConnected && strings.Contains(s.LastError, "health check failed")
	})
	t.Logf("hung browser: %+v", st)
	if conn.Ctx.Err() == nil {
		t.Error("the hung connection was not dropped")
	}
}

// TestFaultSlowHealthCheckKeepsConnection: one health check that times
// out (a browser slow for a moment) does not drop the connection; the next
// check runs at once and succeeds.
func TestFaultSlowHealthCheckKeepsConnection(t *testing.T) {
	f := fakecdp.NewSilent(t, func(n int) bool { return n != 1 }) // the first health check goes unanswered
	logs := &testlog.Buffer{}
	cfg := testConfig()
	cfg.HealthInterval = 50 * time.Millisecond
	cfg.HealthTimeout = 200 * time.Millisecond
	cfg.Logger = zerolog.New(logs)
	p := New(cfg)
	defer p.Close()
	b := p.Ensure("alice", f.URL)
	conn, err := b.Conn(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.Cmds.Load() < 5 { // the connect, the missed check, three answered ones
		if time.Now().After(deadline) {
			t.Fatalf("only %d commands reached the browser", f.Cmds.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := b.Status(); st.State != StateConnected || st.Generation != conn.Generation || conn.Ctx.Err() != nil {
		t.Errorf("after one slow health check: %+v, want the same connection", st)
	}
	if f.Total.Load() != 1 {
		t.Errorf("%d websockets, want 1", f.Total.Load())
	}
	if !strings.Contains(logs.String(), "health check failed; checking again") {
		t.Errorf("the missed check was not logged:\n%s", logs.String())
	}
}

// TestFaultReplacedBrowserKeepsGenerationsUnique: a new URL for the same
// user starts from the old browser's generation, so a session bound to the
// old connection sees a different generation.
func TestFaultReplacedBrowserKeepsGenerationsUnique(t *testing.T) {
	f1, f2 := newFakeCDP(t, nil), newFakeCDP(t, nil)
	p := New(testConfig())
	defer p.Close()
	c1, err := p.Ensure("alice", "http://"+f1.addr()).Conn(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b2 := p.Ensure("alice", "http://"+f2.addr())
	if st := b2.Status(); st.State != StateConnecting && st.State != StateConnected {
		t.Errorf("a replacement browser starts %s, want connecting", st.State)
	}
	c2, err := b2.Conn(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Generation <= c1.Generation {
		t.Errorf("replacement generation %d, old %d: it must be larger", c2.Generation, c1.Generation)
	}
	if s := p.States(); s[StateConnected] != 1 || len(s) != len(allStates) {
		t.Errorf("States() = %v, want 1 connected and every state listed", s)
	}
}

// waitGoroutines waits (bounded) for the goroutine count to drop to max.
func waitGoroutines(t *testing.T, max int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= max {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines remain, want at most %d:\n%s", n, max, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
