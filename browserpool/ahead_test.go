package browserpool

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	cdptarget "github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// TestAttachAhead: chromedp's attach to a tab named by AttachAhead is
// answered from the row sent at once (every one of its commands), and the
// tab works as after a plain attach: its events reach chromedp's
// listeners (the execution context of the row's Runtime.enable, the
// navigation's load), evaluation answers. A tab not named attaches as
// before.
func TestAttachAhead(t *testing.T) {
	c := testchrome.Start(t)
	p := New(testConfig())
	defer p.Close()
	b := p.Ensure("alice", c.URL)
	conn, err := b.Conn(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ahead := conn.Sessions.ahead
	if ahead == nil {
		t.Fatal("the connection has no attach rows")
	}
	open := func(row bool) (int64, []string, string) {
		ctx, cancel := context.WithTimeout(conn.Ctx, 20*time.Second)
		defer cancel()
		created, err := chromedp.CallBrowser(ctx, cdptarget.CreateTarget, cdptarget.CreateTargetParams{URL: "about:blank"})
		if err != nil {
			t.Fatal(err)
		}
		before := ahead.answered.Load()
		done := func() {}
		if row {
			done = conn.Sessions.AttachAhead(created.TargetID)
		}
		var mu sync.Mutex
		var seen []string
		tctx, tcancel := chromedp.NewContext(conn.Ctx, chromedp.WithTargetID(created.TargetID), chromedp.WithListener(func(ev any) {
			mu.Lock()
			defer mu.Unlock()
			switch ev.(type) {
			case *runtime.EventExecutionContextCreated:
				seen = append(seen, "context")
			case *page.EventLoadEventFired:
				seen = append(seen, "load")
			}
		}))
		defer func() {
			_, _ = chromedp.CallBrowser(context.WithoutCancel(ctx), cdptarget.CloseTarget, cdptarget.CloseTargetParams(created))
			tcancel()
		}()
		_, err = chromedp.Run(tctx, chromedp.Navigate("data:text/html,<title>Row</title>"))
		done()
		if err != nil {
			t.Fatalf("attach and navigate (row %v): %v", row, err)
		}
		title, err := chromedp.Run(tctx, chromedp.Title())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return ahead.answered.Load() - before, append([]string(nil), seen...), title
	}
	n, seen, title := open(true)
	if want := int64(len(attachRow())); n != want {
		t.Errorf("chromedp's attach: %d commands answered from the row, want all %d", n, want)
	}
	if title != "Row" {
		t.Errorf("title after the attach %q, want Row", title)
	}
	has := func(s []string, w string) bool {
		for _, x := range s {
			if x == w {
				return true
			}
		}
		return false
	}
	if !has(seen, "context") || !has(seen, "load") {
		t.Errorf("events chromedp's listener saw after the row: %v, want the execution context and the load", seen)
	}
	n, seen, title = open(false)
	if n != 0 || title != "Row" || !has(seen, "load") {
		t.Errorf("plain attach: %d answered from a row (want 0), title %q, events %v", n, title, seen)
	}
}
