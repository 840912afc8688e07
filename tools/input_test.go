package tools

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
)

func TestActivityCountsRequestsSinceMark(t *testing.T) {
	var a activity
	a.listen(&network.EventRequestWillBeSent{RequestID: "old"})
	m := a.mark()
	if started, inflight, _ := a.since(m); started != 0 || inflight != 0 {
		t.Fatalf("since a fresh mark: %d started, %d in flight", started, inflight)
	}
	_, _, changed := a.since(m)
	a.listen(&network.EventRequestWillBeSent{RequestID: "r1"})
	select {
	case <-changed:
	default:
		t.Error("a new request did not signal a change")
	}
	a.listen(&network.EventRequestWillBeSent{RequestID: "r1"}) // a redirect
	a.listen(&network.EventRequestWillBeSent{RequestID: "r2"})
	if started, inflight, _ := a.since(m); started != 2 || inflight != 2 {
		t.Errorf("after two requests: %d started, %d in flight", started, inflight)
	}
	a.listen(&network.EventLoadingFinished{RequestID: "r1"})
	a.listen(&network.EventLoadingFailed{RequestID: "r2"})
	a.listen(&network.EventLoadingFinished{RequestID: "old"})
	if started, inflight, _ := a.since(m); started != 2 || inflight != 0 {
		t.Errorf("after both ended: %d started, %d in flight", started, inflight)
	}
	// Requests that never end do not grow the state without bound.
	for i := range 10 * maxTracked {
		a.listen(&network.EventRequestWillBeSent{RequestID: network.RequestID(fmt.Sprint("s", i))})
	}
	if n := len(a.inflight); n > maxTracked {
		t.Errorf("%d requests tracked, more than %d", n, maxTracked)
	}
}

func TestDialogState(t *testing.T) {
	var d dialogState
	opened := d.openedChan()
	if d.current() != nil {
		t.Fatal("a dialog before any event")
	}
	d.listen(&page.EventJavascriptDialogOpening{Type: page.DialogTypePrompt, Message: "Name?", DefaultPrompt: "anon"})
	select {
	case <-opened:
	default:
		t.Fatal("opening a dialog did not close the opened channel")
	}
	p := d.current()
	if p == nil || p.typ != page.DialogTypePrompt || p.message != "Name?" {
		t.Fatalf("current: %+v", p)
	}
	if got := p.describe(); got != `A prompt dialog is open: "Name?" (default answer "anon")` {
		t.Errorf("describe: %q", got)
	}
	// Handling an older dialog leaves a newer one pending.
	d.listen(&page.EventJavascriptDialogClosed{})
	d.listen(&page.EventJavascriptDialogOpening{Type: page.DialogTypeAlert, Message: strings.Repeat("x", 2*maxDialogMessage)})
	d.handled(p.seq)
	q := d.current()
	if q == nil || q.typ != page.DialogTypeAlert {
		t.Fatalf("handled(old) cleared the new dialog: %+v", q)
	}
	if len(q.message) > maxDialogMessage+len("…") {
		t.Errorf("dialog message kept at %d bytes", len(q.message))
	}
	d.handled(q.seq)
	if d.current() != nil {
		t.Error("handled did not clear the dialog")
	}
	select {
	case <-d.openedChan():
		t.Error("opened channel closed with no dialog open")
	default:
	}
}

// A document's own request ends with the page's load, also when its end
// is never reported (a tab's first navigation sent while the renderer was
// starting); other requests do not.
func TestActivityLoadEndsDocumentRequests(t *testing.T) {
	var a activity
	m := a.mark()
	a.listen(&network.EventRequestWillBeSent{RequestID: "L1", LoaderID: "L1", Type: network.ResourceTypeDocument})
	a.listen(&network.EventRequestWillBeSent{RequestID: "f1", LoaderID: "L1", Type: network.ResourceTypeFetch})
	a.listen(&network.EventRequestWillBeSent{RequestID: "d2", LoaderID: "L1", Type: network.ResourceTypeDocument}) // not the loader's own
	if _, inflight, _ := a.since(m); inflight != 3 {
		t.Fatalf("before the load: %d in flight, want 3", inflight)
	}
	a.listen(&page.EventLoadEventFired{})
	if _, inflight, _ := a.since(m); inflight != 2 {
		t.Errorf("after the load: %d in flight, want 2 (the fetch and the other document)", inflight)
	}
}
