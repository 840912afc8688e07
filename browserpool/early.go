package browserpool

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp/jsonv2"
	cdptarget "github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// Sessions lets a caller send commands on the CDP session that chromedp
// opens on a target while chromedp's own attach is still under way:
// chromedp enables its domains one command after another and gives the
// context to no one before it is done, so a new tab's first navigation
// would wait for all of them. Wait hands out the session once chromedp
// has registered it (its first command on the session is written, so the
// session's events reach chromedp's listeners), and Send sends on it
// beside chromedp; the answers to Send never reach chromedp.
type Sessions struct {
	conn *tapped
	next atomic.Int64

	watching atomic.Int32 // targets waited for: the hooks do nothing at 0
	mu       sync.Mutex
	pending  map[int64]chan *cdproto.Message
	attaches map[int64]cdptarget.ID                           // chromedp's attach commands to watched targets
	attached map[cdptarget.SessionID]chan cdptarget.SessionID // sessions chromedp has not used yet
	waits    map[cdptarget.ID]chan cdptarget.SessionID
}

// earlyIDBase starts the ids of Send's commands: within the range the
// guard's tap keeps from chromedp (rawIDBase), far above the guard's own.
const earlyIDBase = rawIDBase + 1<<29

func newSessions(c *tapped) *Sessions {
	s := &Sessions{conn: c, pending: map[int64]chan *cdproto.Message{}, attaches: map[int64]cdptarget.ID{},
		attached: map[cdptarget.SessionID]chan cdptarget.SessionID{}, waits: map[cdptarget.ID]chan cdptarget.SessionID{}}
	s.next.Store(earlyIDBase)
	return s
}

// Wait returns a channel that gets the id of the session chromedp attaches
// to target id with, once chromedp has sent its first command on it. Call
// it before chromedp attaches; stop forgets the wait.
func (s *Sessions) Wait(id cdptarget.ID) (ch <-chan cdptarget.SessionID, stop func()) {
	if s == nil {
		return nil, func() {}
	}
	c := make(chan cdptarget.SessionID, 1)
	s.mu.Lock()
	s.waits[id] = c
	s.mu.Unlock()
	s.watching.Add(1)
	var once sync.Once
	return c, func() {
		once.Do(func() {
			s.watching.Add(-1)
			s.mu.Lock()
			if s.waits[id] == c {
				delete(s.waits, id)
			}
			for k, t := range s.attaches {
				if t == id {
					delete(s.attaches, k)
				}
			}
			for sid, w := range s.attached {
				if w == c {
					delete(s.attached, sid)
				}
			}
			s.mu.Unlock()
		})
	}
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
	if err := s.conn.Transport.Write(ctx, &cdproto.Message{ID: id, SessionID: sid, Method: cdproto.MethodType(method), Params: buf}); err != nil {
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
	if msg.ID >= earlyIDBase {
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
	if msg.ID == 0 || msg.Method != "" || s.watching.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.attaches[msg.ID]
	if !ok {
		return false
	}
	delete(s.attaches, msg.ID)
	var r cdptarget.AttachToTargetResult
	if msg.Error == nil && json.Unmarshal(msg.Result, &r) == nil && r.SessionID != "" {
		if c := s.waits[id]; c != nil {
			delete(s.waits, id)
			s.attached[r.SessionID] = c
		}
	}
	return false
}

// wrote sees every command written for chromedp, after it went out.
func (s *Sessions) wrote(msg *cdproto.Message) {
	if s.watching.Load() == 0 || msg.ID >= rawIDBase {
		return
	}
	if msg.SessionID == "" {
		if msg.Method != cdptarget.CommandAttachToTarget {
			return
		}
		var p cdptarget.AttachToTargetParams
		if json.Unmarshal(msg.Params, &p) != nil {
			return
		}
		s.mu.Lock()
		if s.waits[p.TargetID] != nil {
			s.attaches[msg.ID] = p.TargetID
		}
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	c := s.attached[msg.SessionID]
	delete(s.attached, msg.SessionID)
	s.mu.Unlock()
	if c != nil {
		c <- msg.SessionID
	}
}
