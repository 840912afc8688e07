package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
)

// BenchmarkManagedFirstCall is the time from a session's first page tool
// (evaluate_script, which opens the session's tab) to its result on a
// managed browser: cold (no browser running: the call starts Chromium)
// and warm (the user's managed browser runs; a new session), in one run.
// A cold sample starts a Chromium, so each sub-benchmark takes at most 10
// (cold) or 50 (warm) samples whatever -benchtime says.
func BenchmarkManagedFirstCall(b *testing.B) {
	h := managedHarness(b, browserpool.ManagedConfig{Max: 2, Idle: time.Hour})
	tok := h.token("alice")
	// first reports false when the call failed: a cold start whose first
	// tab did not open within the call timeout (see BENCHMARKS.md) is
	// counted, not timed.
	first := func(b *testing.B) (time.Duration, bool) {
		cl := h.connect(viaStreamable, tok, "")
		defer cl.Close()
		start := time.Now()
		out, res := call(b, cl, "evaluate_script", map[string]any{"function": "() => 1+1"})
		d := time.Since(start)
		if res.IsError || !strings.Contains(out, "2") {
			b.Logf("evaluate_script: %q", out)
			return d, false
		}
		return d, true
	}
	for _, mode := range []string{"cold", "warm"} {
		b.Run(mode, func(b *testing.B) {
			n := min(b.N, map[string]int{"cold": 10, "warm": 50}[mode])
			if mode == "warm" {
				first(b) // the browser runs from here on
			}
			durs, failed := make([]time.Duration, 0, n), 0
			b.ResetTimer()
			for range n {
				if mode == "cold" {
					b.StopTimer()
					h.mgr.CloseUser("alice")
					h.pool.Remove("alice") // stops Chromium and waits for it
					b.StartTimer()
				}
				if d, ok := first(b); ok {
					durs = append(durs, d)
				} else {
					failed++
				}
			}
			b.StopTimer()
			reportPercentiles(b, durs)
			b.ReportMetric(float64(failed), "failed")
		})
	}
}
