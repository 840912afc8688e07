package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// BenchmarkScaleEvaluateForms tells apart what makes Chromium spend more
// CPU per evaluate_script call than per raw Runtime.evaluate in
// BenchmarkScaleEvaluate: the form of the call (the tool wraps the function
// and awaits its promise), the tab (the proxy's tabs carry the page guard's
// Fetch and Network domains on a session of their own), or the pace of the
// calls (the proxy path makes fewer calls per second). It reports
// Chromium's CPU per call for each, on one browser, four tabs calling
// back to back or with a pause of 2 ms before each call, in alternating
// rounds after one to warm up. No proxy request is made: the proxy's tabs
// are opened through its session manager and called with chromedp, as the
// tool calls them.
func BenchmarkScaleEvaluateForms(b *testing.B) {
	chrome := testchrome.Start(b)
	h := newHarness(b, "")
	h.register(h.token("alice"), "alice", chrome.URL)
	var guarded []context.Context
	for i := range 4 {
		s := h.mgr.Open(fmt.Sprintf("forms-%d", i), "alice")
		tab, err := s.NewTab(context.Background(), false)
		if err != nil {
			b.Fatal(err)
		}
		guarded = append(guarded, tab.Ctx)
	}
	actx, acancel := remote.NewAllocator(context.Background(), chrome.URL)
	b.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	b.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil {
		b.Fatal(err)
	}
	var plain []context.Context
	for range 4 {
		tctx, tcancel := chromedp.NewContext(bctx, chromedp.WithNewWindow(false))
		b.Cleanup(tcancel)
		if err := chromedp.Do(tctx); err != nil {
			b.Fatal(err)
		}
		plain = append(plain, tctx)
	}
	yes := true
	forms := []struct {
		name string
		p    cdpruntime.EvaluateParams
	}{
		{"raw", cdpruntime.EvaluateParams{Expression: "1+1", ReturnByValue: &yes}},
		// As tools/evaluateFunction sends evaluate_script's function.
		{"tool", cdpruntime.EvaluateParams{Expression: "(() => 1+1\n)()", ReturnByValue: &yes, AwaitPromise: &yes}},
	}
	tabs := []struct {
		name string
		ctxs []context.Context
	}{{"plain", plain}, {"guarded", guarded}}
	const n = 500
	sum := map[string]time.Duration{}
	for round := range 3 { // round 0 warms up: the tabs are new
		for _, pause := range []time.Duration{0, 2 * time.Millisecond} {
			for _, tb := range tabs {
				for _, f := range forms {
					c0, err := chrome.CPU()
					if err != nil {
						b.Fatal(err)
					}
					errs := make(chan error, len(tb.ctxs))
					for _, ctx := range tb.ctxs {
						go func() {
							for range n {
								if pause > 0 {
									time.Sleep(pause)
								}
								cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
								res, err := chromedp.Call(cctx, cdpruntime.Evaluate, f.p)
								cancel()
								if err == nil && string(res.Result.Value) != "2" {
									err = fmt.Errorf("evaluate: %s", res.Result.Value)
								}
								if err != nil {
									errs <- err
									return
								}
							}
							errs <- nil
						}()
					}
					for range tb.ctxs {
						if err := <-errs; err != nil {
							b.Fatal(err)
						}
					}
					c1, err := chrome.CPU()
					if err != nil {
						b.Fatal(err)
					}
					pace := "back-to-back"
					if pause > 0 {
						pace = "paced"
					}
					if round > 0 {
						sum[f.name+"-"+tb.name+"-"+pace] += c1 - c0
					}
				}
			}
		}
	}
	for k, d := range sum {
		b.ReportMetric(float64(d.Microseconds())/float64(2*n*4), "browser-cpu-µs/call-"+k)
	}
	b.ReportMetric(0, "ns/op")
}
