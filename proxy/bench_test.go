package proxy

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	"github.com/mark3labs/mcp-go/client"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// reportPercentiles adds p50 and p99 of d (milliseconds) to b's output.
func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	pct := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRawEvaluate is the floor: Runtime.evaluate straight over CDP.
func BenchmarkRawEvaluate(b *testing.B) {
	c := testchrome.Start(b)
	actx, acancel := remote.NewAllocator(context.Background(), c.URL)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	tctx, tcancel := chromedp.NewContext(bctx, chromedp.WithNewWindow(false))
	defer tcancel()
	if err := chromedp.Do(tctx); err != nil {
		b.Fatal(err)
	}
	durs := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		res, err := chromedp.Call(tctx, runtime.Evaluate, runtime.EvaluateParams{Expression: "1+1", ReturnByValue: ptrBool(true)})
		durs = append(durs, time.Since(start))
		if err != nil || string(res.Result.Value) != "2" {
			b.Fatalf("evaluate: %v", err)
		}
	}
	b.StopTimer()
	reportPercentiles(b, durs)
}

func ptrBool(v bool) *bool { return &v }

// BenchmarkEvaluateScript is one evaluate_script round trip through the
// proxy, MCP client to Chrome and back, on each transport.
// benchEvaluate times b.N evaluate_script calls of cl after warm
// untimed ones and reports their percentiles.
func benchEvaluate(b *testing.B, cl *client.Client, warm int) {
	b.Helper()
	args := map[string]any{"function": "() => 1+1"}
	for range warm {
		mustCall(b, cl, "evaluate_script", args)
	}
	durs := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		text, res := call(b, cl, "evaluate_script", args)
		durs = append(durs, time.Since(start))
		if res.IsError {
			b.Fatal(text)
		}
	}
	b.StopTimer()
	reportPercentiles(b, durs)
}

func BenchmarkEvaluateScript(b *testing.B) {
	c := testchrome.Start(b)
	for _, kind := range []transportKind{viaSSE, viaStreamable, viaStateless} {
		b.Run(string(kind), func(b *testing.B) {
			h := newHarness(b, "")
			tok := h.token("alice")
			h.register(tok, "alice", c.URL)
			cl := h.connect(kind, tok, "")
			mustCall(b, cl, "new_page", nil)
			benchEvaluate(b, cl, 0)
			h.mgr.CloseAll()
		})
	}
}
