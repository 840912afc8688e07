package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
)

const nameRaw = "raw CDP (floor, no MCP)"

// measureRaw times the CDP commands underneath each operation, sent straight
// over one chromedp connection: what no MCP server can beat. It tells which
// part of a server's time is its own and which is Chromium's.
func measureRaw(ctx context.Context, chromeURL, pageURL string, n, warmup int) *report {
	r := &report{name: nameRaw, n: n, ops: map[string]*measurement{}}
	actx, acancel := remote.NewAllocator(ctx, chromeURL)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// A page of its own, like every server gets.
	tctx, tcancel := chromedp.NewContext(bctx)
	defer func() {
		_ = chromedp.Cancel(tctx) // closes the tab
		tcancel()
	}()
	if err := chromedp.Do(tctx, chromedp.Navigate(pageURL)); err != nil {
		r.err = fmt.Errorf("navigate: %w", err)
		return r
	}
	// Where the button is, once: a real click tool finds it on every call.
	res, err := chromedp.Call(tctx, runtime.Evaluate, runtime.EvaluateParams{
		Expression: `(() => { const b = document.getElementById('counter'); b.scrollIntoView({block: 'center'});
			const r = b.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`,
		ReturnByValue: ptr(true),
	})
	var xy []float64
	if err == nil {
		err = json.Unmarshal(res.Result.Value, &xy)
	}
	if err != nil || len(xy) != 2 {
		r.err = fmt.Errorf("button position: %v", err)
		return r
	}
	tree, err := chromedp.Call(tctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		r.err = fmt.Errorf("accessibility tree: %w", err)
		return r
	}
	raw, _ := json.Marshal(tree)
	fmt.Fprintf(os.Stderr, "   (Accessibility.getFullAXTree answers %d nodes, %d bytes of JSON)\n", len(tree.Nodes), len(raw))

	mouse := func(typ input.DispatchMouseEventType) error {
		_, err := chromedp.Call(tctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{
			Type: typ, X: xy[0], Y: xy[1], Button: input.MouseButtonLeft, Buttons: 1, ClickCount: 1,
		})
		return err
	}
	steps := map[string]func() error{
		"evaluate": func() error {
			_, err := chromedp.Call(tctx, runtime.Evaluate, runtime.EvaluateParams{Expression: "1+1", ReturnByValue: ptr(true)})
			return err
		},
		"click": func() error {
			if err := mouse(input.DispatchMouseEventTypeMousePressed); err != nil {
				return err
			}
			return mouse(input.DispatchMouseEventTypeMouseReleased)
		},
		"snapshot": func() error {
			_, err := chromedp.Call(tctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
			return err
		},
		"screenshot": func() error {
			_, err := chromedp.Call(tctx, page.CaptureScreenshot, page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatPng})
			return err
		},
	}
	for _, op := range ops {
		m := &measurement{n: n, durs: make([]time.Duration, 0, n)}
		r.ops[op] = m
		for i := range warmup + n {
			t0 := time.Now()
			err := steps[op]()
			d := time.Since(t0)
			if err != nil {
				m.firstErr = err.Error()
				break
			}
			if i >= warmup {
				m.durs = append(m.durs, d)
			}
		}
		fmt.Fprintf(os.Stderr, "   %-10s p50 %8.2f ms  p99 %8.2f ms  (%d calls)%s\n", op,
			pct(m.durs, 0.50), pct(m.durs, 0.99), len(m.durs), errSuffix(m.firstErr))
	}
	return r
}

func ptr[T any](v T) *T { return &v }
