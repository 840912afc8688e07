package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// TestNoWaitLateBrowserToolCall (issue 11): with the pool's backoff at a
// one-minute cap (the state after a long outage), a Chrome that starts
// listening after registration, and again after a kill and restart on the
// same port, is used by the very next tool call within --browser-wait
// (3s), instead of that call failing until the backoff runs out.
func TestNoWaitLateBrowserToolCall(t *testing.T) {
	pcfg := faultPool()
	pcfg.InitialBackoff, pcfg.MaxBackoff = time.Minute, time.Minute
	const wait = 3 * time.Second
	h := newFaultHarness(t, pcfg, session.Config{BrowserWait: wait})
	c := testchrome.Start(t)
	c.Kill() // the user registers before starting Chrome
	tok := h.token("alice")
	if reg := h.register(tok, "alice", c.URL); reg.BrowserStatus == string(browserpool.StateConnected) {
		t.Fatalf("registered a browser that is down as %s", reg.BrowserStatus)
	}
	cl := h.connect(viaStreamable, tok, "")
	b, ok := h.pool.Get("alice")
	if !ok {
		t.Fatal("no browser in the pool after registration")
	}

	for _, phase := range []string{"started after registration", "restarted on the same port"} {
		if phase != "started after registration" {
			c.Kill()
			waitFor(t, "the loss to be noticed", func() bool { return b.Status().State != browserpool.StateConnected })
		}
		next := waitBackoffOver(t, b, 4*wait)
		c.Restart(t)
		listening := time.Now()
		first := callWithin(cl, "list_pages", nil, 15*time.Second)
		took := time.Since(listening)
		if first.err != nil || first.isErr {
			t.Fatalf("%s: first tool call after Chrome listens (next backoff attempt was %v away): %+v, want the page list within the %v browser wait",
				phase, time.Until(next).Round(time.Second), first, wait)
		}
		eval := callWithin(cl, "evaluate_script", map[string]any{"function": "() => 6 * 7"}, 15*time.Second)
		if eval.err != nil || eval.isErr || !strings.Contains(eval.text, "42") {
			t.Fatalf("%s: evaluate_script after the first call: %+v, want 42", phase, eval)
		}
		// The second figure includes opening the session's first page in a
		// Chromium that has just started, which the outage does not change.
		t.Logf("%s: Chrome listening -> first successful tool call (list_pages): %v; then evaluate_script, opening the first page: %v",
			phase, took, eval.took)
	}
}

// waitBackoffOver waits (bounded) until b backs off with its next attempt
// more than min away, and returns when that attempt is due.
func waitBackoffOver(t *testing.T, b *browserpool.Browser, min time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := b.Status()
		if st.State != browserpool.StateConnected && time.Until(st.NextAttempt) > min {
			return st.NextAttempt
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backoff longer than %v: status %+v", min, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
