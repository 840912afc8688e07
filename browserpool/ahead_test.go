package browserpool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto"
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

// echoTransport answers every command written to it with {"echo":true},
// read back in order; Close ends the reads.
type echoTransport struct {
	answers chan *cdproto.Message
	closed  chan struct{}
	once    sync.Once
}

func newEchoTransport() *echoTransport {
	return &echoTransport{answers: make(chan *cdproto.Message, 16), closed: make(chan struct{})}
}

func (e *echoTransport) Read(ctx context.Context, msg *cdproto.Message) error {
	select {
	case m := <-e.answers:
		*msg = *m
		return nil
	case <-e.closed:
		return errors.New("closed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *echoTransport) Write(_ context.Context, msg *cdproto.Message) error {
	e.answers <- &cdproto.Message{ID: msg.ID, SessionID: msg.SessionID, Result: []byte(`{"echo":true}`)}
	return nil
}

func (e *echoTransport) Close() error {
	e.once.Do(func() { close(e.closed) })
	return nil
}

// TestSessionsAnswerWithoutChromedpsReadLoop: an answer to a command sent
// beside chromedp (Sessions.Send) reaches its caller from the connection's
// reader itself, without waiting for chromedp's read loop to take the
// message (one goroutine hand-off less per call). Nothing reads the
// tapped connection here, as if chromedp's loop were busy.
func TestSessionsAnswerWithoutChromedpsReadLoop(t *testing.T) {
	tr := newEchoTransport()
	c := &tapped{Transport: tr, ahead: newAhead(tr)}
	c.sessions = newSessions(c)
	c.ahead.start(c.sessions.read)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wait, err := c.sessions.Send(ctx, "S1", "Runtime.evaluate", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := wait()
	if err != nil {
		t.Fatalf("the answer did not come while chromedp's loop was not reading: %v", err)
	}
	if string(res) != `{"echo":true}` {
		t.Fatalf("answer %s", res)
	}
	// A message for chromedp still waits for its read loop.
	tr.answers <- &cdproto.Message{ID: 7, Result: []byte(`{}`)}
	var m cdproto.Message
	if err := c.Read(ctx, &m); err != nil || m.ID != 7 {
		t.Fatalf("chromedp's read: %v, id %d, want 7", err, m.ID)
	}
}
