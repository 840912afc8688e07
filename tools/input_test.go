package tools

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
)

// keyEvent is the part of a key event the tests check.
type keyEvent struct {
	typ       input.DispatchKeyEventType
	key, code string
	vk        int64
	mods      int64
	text      string
}

func summarize(evs []input.DispatchKeyEventParams) []keyEvent {
	out := make([]keyEvent, len(evs))
	for i, e := range evs {
		out[i] = keyEvent{e.Type, e.Key, e.Code, e.WindowsVirtualKeyCode, e.Modifiers, e.Text}
	}
	return out
}

func TestParseKey(t *testing.T) {
	const (
		raw  = input.DispatchKeyEventTypeRawKeyDown
		down = input.DispatchKeyEventTypeKeyDown
		up   = input.DispatchKeyEventTypeKeyUp
	)
	for _, tc := range []struct {
		spec string
		want []keyEvent
	}{
		{"Enter", []keyEvent{{down, "Enter", "Enter", 13, 0, "\r"}, {up, "Enter", "Enter", 13, 0, ""}}},
		{"enter", []keyEvent{{down, "Enter", "Enter", 13, 0, "\r"}, {up, "Enter", "Enter", 13, 0, ""}}},
		{"Tab", []keyEvent{{raw, "Tab", "Tab", 9, 0, ""}, {up, "Tab", "Tab", 9, 0, ""}}},
		{"a", []keyEvent{{down, "a", "KeyA", 65, 0, "a"}, {up, "a", "KeyA", 65, 0, ""}}},
		// A capital alone types the capital, with Shift as a keyboard would.
		{"A", []keyEvent{{down, "A", "KeyA", 65, 8, "A"}, {up, "A", "KeyA", 65, 8, ""}}},
		// Control+A is Control and the A key: no Shift, and no text to type.
		{"Control+A", []keyEvent{
			{raw, "Control", "ControlLeft", 162, 2, ""},
			{raw, "a", "KeyA", 65, 2, ""},
			{up, "a", "KeyA", 65, 2, ""},
			{up, "Control", "ControlLeft", 162, 0, ""},
		}},
		{"ctrl+a", []keyEvent{
			{raw, "Control", "ControlLeft", 162, 2, ""},
			{raw, "a", "KeyA", 65, 2, ""},
			{up, "a", "KeyA", 65, 2, ""},
			{up, "Control", "ControlLeft", 162, 0, ""},
		}},
		{"Shift+ArrowLeft", []keyEvent{
			{raw, "Shift", "ShiftLeft", 160, 8, ""},
			{raw, "ArrowLeft", "ArrowLeft", 37, 8, ""},
			{up, "ArrowLeft", "ArrowLeft", 37, 8, ""},
			{up, "Shift", "ShiftLeft", 160, 0, ""},
		}},
		{"Shift+a", []keyEvent{
			{raw, "Shift", "ShiftLeft", 160, 8, ""},
			{down, "A", "KeyA", 65, 8, "A"},
			{up, "A", "KeyA", 65, 8, ""},
			{up, "Shift", "ShiftLeft", 160, 0, ""},
		}},
		{"Meta+Shift+K", []keyEvent{
			{raw, "Meta", "MetaLeft", 91, 4, ""},
			{raw, "Shift", "ShiftLeft", 160, 12, ""},
			{raw, "K", "KeyK", 75, 12, ""},
			{up, "K", "KeyK", 75, 12, ""},
			{up, "Shift", "ShiftLeft", 160, 4, ""},
			{up, "Meta", "MetaLeft", 91, 0, ""},
		}},
		{"Control++", []keyEvent{
			{raw, "Control", "ControlLeft", 162, 2, ""},
			{raw, "+", "Equal", 187, 2, ""},
			{up, "+", "Equal", 187, 2, ""},
			{up, "Control", "ControlLeft", 162, 0, ""},
		}},
		{"+", []keyEvent{{down, "+", "Equal", 187, 8, "+"}, {up, "+", "Equal", 187, 8, ""}}},
		{"Esc", []keyEvent{{raw, "Escape", "Escape", 27, 0, ""}, {up, "Escape", "Escape", 27, 0, ""}}},
		{"Space", []keyEvent{{down, " ", "Space", 32, 0, " "}, {up, " ", "Space", 32, 0, ""}}},
		{"F5", []keyEvent{{raw, "F5", "F5", 116, 0, ""}, {up, "F5", "F5", 116, 0, ""}}},
	} {
		c, err := parseKey(tc.spec)
		if err != nil {
			t.Errorf("parseKey(%q): %v", tc.spec, err)
			continue
		}
		if got := summarize(c.events()); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseKey(%q) events:\n got %v\nwant %v", tc.spec, got, tc.want)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"Foo", `unknown key "Foo"`},
		{"Control+Foo", `unknown key "Foo" in "Control+Foo"`},
		{"Hyper+A", `"Hyper" in "Hyper+A" is not a modifier`},
		{"Control+", `names no key`},
		{"", "empty"},
		{"€", `unknown key "€"`},
	} {
		_, err := parseKey(tc.spec)
		if err == nil {
			t.Errorf("parseKey(%q) succeeded", tc.spec)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseKey(%q) = %q, want it to contain %q", tc.spec, err, tc.want)
		}
		// Every error shows the form of a valid key.
		if tc.spec != "€" && !strings.Contains(err.Error(), `"Control+A"`) && !strings.Contains(err.Error(), `"Enter"`) {
			t.Errorf("parseKey(%q) = %q gives no example", tc.spec, err)
		}
	}
}

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
