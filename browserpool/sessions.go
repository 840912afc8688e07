package browserpool

import (
	"context"
	"errors"

	"github.com/chromedp/cdproto"
	cdptarget "github.com/chromedp/cdproto/target"
)

// Sessions sends commands on a tab's CDP session beside chromedp, which
// sends one command and waits for its answer before the next: commands
// that Send sends one after another go out in a row and reach the tab in
// that order (the input events of one action), and are waited for
// together. Their answers never reach chromedp.
type Sessions struct {
	calls *rawCalls
	ahead *ahead
}

// sessionsIDBase starts the ids of Send's commands: within the range the
// guard's tap keeps from chromedp (rawIDBase), far above the guard's own.
const sessionsIDBase = rawIDBase + 1<<29

func newSessions(c *tapped) *Sessions {
	return &Sessions{calls: newRawCalls(c, sessionsIDBase), ahead: c.ahead}
}

// AttachAhead makes chromedp's next attach to target id send its commands
// in one row (ahead.go); the returned func drops the wish when that attach
// never came (call it once the attach is over, either way).
func (s *Sessions) AttachAhead(id cdptarget.ID) (done func()) {
	if s == nil || s.ahead == nil {
		return func() {}
	}
	s.ahead.expect(id)
	return func() { s.ahead.forget(id) }
}

// Send sends one command on session sid and returns the wait for its
// answer, bounded by ctx: commands sent in a row reach the target in order.
func (s *Sessions) Send(ctx context.Context, sid cdptarget.SessionID, method string, params any) (func() ([]byte, error), error) {
	if s == nil {
		return nil, errors.New("no connection")
	}
	return s.calls.send(ctx, nil, nil, sid, method, params)
}

// read sees every message read, before the guard; true keeps it from
// chromedp (an answer to Send).
func (s *Sessions) read(msg *cdproto.Message) bool {
	if msg.ID < sessionsIDBase {
		return false
	}
	s.calls.deliver(msg)
	return true
}
