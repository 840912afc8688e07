package browserpool

import (
	"context"
	"slices"
	"testing"
	"time"

	cdptarget "github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// longOutageConfig is a pool whose backoff is at a one-minute cap from the
// first failed attempt: the state a browser reaches after a long outage,
// without the test sitting through the outage.
func longOutageConfig() Config {
	cfg := testConfig()
	cfg.InitialBackoff = time.Minute
	cfg.MaxBackoff = time.Minute
	return cfg
}

// waitLongBackoff waits (bounded) until b is backing off with its next
// attempt more than min away: with full jitter a draw may be short, so it
// waits for one that is not.
func waitLongBackoff(t testing.TB, b *Browser, min time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := b.Status()
		if st.State != StateConnected && st.Attempts > 0 && time.Until(st.NextAttempt) > min {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backoff longer than %v: status %+v", min, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoWaitLateBrowser: a Chromium that starts listening while the pool
// sits in a long backoff (registered before Chrome was up, or killed and
// restarted) is used by the next call, within a bound far shorter than the
// backoff in progress, instead of that call failing; and a call already
// waiting when Chromium comes up gets it too. The waits drawn while a call
// waits are capped at WaitBackoff; once nobody waits, the long cap is back.
func TestNoWaitLateBrowser(t *testing.T) {
	c := testchrome.Start(t)
	c.Kill() // registered before its browser is up: the port is known, nothing listens
	cfg := longOutageConfig()
	p := New(cfg)
	defer p.Close()
	b := p.Ensure("alice", c.URL)
	const bound = 3 * time.Second // a tool call's --browser-wait

	// The call that arrives after Chromium listens.
	st := waitLongBackoff(t, b, 4*bound)
	t.Logf("backing off: next attempt in %v (%+v)", time.Until(st.NextAttempt).Round(time.Second), st)
	c.Restart(t)
	listening := time.Now()
	conn, err := b.Conn(context.Background(), bound)
	if err != nil {
		t.Fatalf("first call after Chromium listens, with the next attempt %v away: %v, want the connection", time.Until(st.NextAttempt).Round(time.Second), err)
	}
	t.Logf("late browser (registered while down): Chromium listening -> first successful Conn: %v", time.Since(listening))

	// Killed and restarted: the same, after a reconnect that failed.
	c.Kill()
	waitStatus(t, b, "the loss to be noticed", func(s Status) bool { return s.State != StateConnected })
	st = waitLongBackoff(t, b, 4*bound)
	c.Restart(t)
	listening = time.Now()
	conn2, err := b.Conn(context.Background(), bound)
	if err != nil {
		t.Fatalf("first call after the restart, with the next attempt %v away: %v, want the connection", time.Until(st.NextAttempt).Round(time.Second), err)
	}
	t.Logf("restarted browser: Chromium listening -> first successful Conn: %v", time.Since(listening))
	if conn2.Generation <= conn.Generation {
		t.Errorf("generation %d after the restart, want more than %d", conn2.Generation, conn.Generation)
	}

	// A call that is already waiting when Chromium comes up.
	c.Kill()
	waitStatus(t, b, "the loss to be noticed", func(s Status) bool { return s.State != StateConnected })
	waitLongBackoff(t, b, 4*bound)
	type result struct {
		err error
		at  time.Time
	}
	got := make(chan result, 1)
	go func() {
		_, err := b.Conn(context.Background(), 4*bound)
		got <- result{err, time.Now()}
	}()
	// While it waits, the pool retries on the short cap, not the long one.
	waitStatus(t, b, "an attempt for the waiting call", func(s Status) bool {
		return !s.NextAttempt.IsZero() && time.Until(s.NextAttempt) <= p.cfg.WaitBackoff
	})
	c.Restart(t)
	listening = time.Now()
	r := <-got
	if r.err != nil {
		t.Fatalf("a call waiting while Chromium came up: %v, want the connection", r.err)
	}
	t.Logf("call waiting through the restart: Chromium listening -> Conn returned: %v (WaitBackoff %v)", max(0, r.at.Sub(listening)), p.cfg.WaitBackoff)

	// Nobody waits any more: the next outage backs off on the long cap.
	c.Kill()
	waitStatus(t, b, "the loss to be noticed", func(s Status) bool { return s.State != StateConnected })
	waitLongBackoff(t, b, 4*p.cfg.WaitBackoff)
}

// TestNoWaitDefaults: the short cap defaults to a second, and never exceeds
// the long one.
func TestNoWaitDefaults(t *testing.T) {
	if d := DefaultConfig(); d.WaitBackoff != time.Second || d.WaitBackoff > d.MaxBackoff {
		t.Errorf("default WaitBackoff %v (MaxBackoff %v), want 1s", d.WaitBackoff, d.MaxBackoff)
	}
	cfg := Config{MaxBackoff: 100 * time.Millisecond}
	cfg.fill()
	if cfg.WaitBackoff != 100*time.Millisecond {
		t.Errorf("WaitBackoff %v with MaxBackoff 100ms, want 100ms", cfg.WaitBackoff)
	}
}

// BenchmarkLateBrowser measures the goal of issue 11: the time from a
// Chromium listening again after an outage (the pool backing off on a
// one-minute cap, next attempt at least 10s away) to the first successful
// CDP call through the pool (Conn with a 3s bound, then Target.getTargets).
// Each iteration kills and restarts Chromium; only the part after it
// listens is timed. Run: go test -run '^$' -bench LateBrowser -benchtime 10x ./browserpool/
func BenchmarkLateBrowser(b *testing.B) {
	c := testchrome.Start(b)
	p := New(longOutageConfig())
	defer p.Close()
	br := p.Ensure("alice", c.URL)
	var took []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c.Kill()
		waitStatusTB(b, br, func(s Status) bool { return s.State != StateConnected })
		waitLongBackoff(b, br, 10*time.Second)
		c.Restart(b)
		b.StartTimer()
		listening := time.Now()
		conn, err := br.Conn(context.Background(), 3*time.Second)
		if err != nil {
			b.Fatalf("first call after Chromium listens: %v", err)
		}
		if _, err := chromedp.CallBrowser(conn.Ctx, cdptarget.GetTargets, cdptarget.GetTargetsParams{}); err != nil {
			b.Fatalf("Target.getTargets on the new connection: %v", err)
		}
		took = append(took, time.Since(listening))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}

// waitStatusTB is waitStatus for a benchmark.
func waitStatusTB(t testing.TB, b *Browser, ok func(Status) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(b.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", b.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
