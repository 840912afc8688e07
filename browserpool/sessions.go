package browserpool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp/jsonv2"
	cdptarget "github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// Sessions sends commands on a tab's CDP session beside chromedp, which
// sends one command and waits for its answer before the next: commands
// that Send sends one after another go out in a row and reach the tab in
// that order (the input events of one action), and are waited for
// together. Their answers never reach chromedp.
type Sessions struct {
	conn *tapped
	next atomic.Int64

	mu      sync.Mutex
	pending map[int64]chan *cdproto.Message
}

// sessionsIDBase starts the ids of Send's commands: within the range the
// guard's tap keeps from chromedp (rawIDBase), far above the guard's own.
const sessionsIDBase = rawIDBase + 1<<29

func newSessions(c *tapped) *Sessions {
	s := &Sessions{conn: c, pending: map[int64]chan *cdproto.Message{}}
	s.next.Store(sessionsIDBase)
	return s
}

// Send sends one command on session sid and returns the wait for its
// answer, bounded by ctx: commands sent in a row reach the target in order.
func (s *Sessions) Send(ctx context.Context, sid cdptarget.SessionID, method string, params any) (func() ([]byte, error), error) {
	if s == nil {
		return nil, errors.New("no connection")
	}
	var buf []byte
	if params != nil {
		var err error
		if buf, err = jsonv2.Marshal(params, chromedp.DefaultMarshalOptions); err != nil {
			return nil, err
		}
	}
	id := s.next.Add(1)
	ch := make(chan *cdproto.Message, 1)
	s.mu.Lock()
	s.pending[id] = ch
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}
	if err := s.conn.Write(ctx, &cdproto.Message{ID: id, SessionID: sid, Method: cdproto.MethodType(method), Params: buf}); err != nil {
		forget()
		return nil, err
	}
	return func() ([]byte, error) {
		defer forget()
		select {
		case m := <-ch:
			if m.Error != nil {
				return nil, m.Error
			}
			return m.Result, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, nil
}

// read sees every message read, before the guard; true keeps it from
// chromedp (an answer to Send).
func (s *Sessions) read(msg *cdproto.Message) bool {
	if msg.ID < sessionsIDBase {
		return false
	}
	s.mu.Lock()
	ch := s.pending[msg.ID]
	delete(s.pending, msg.ID)
	s.mu.Unlock()
	if ch != nil {
		m := *msg // Read reuses msg for the next message
		ch <- &m
	}
	return true
}
