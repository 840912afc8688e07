package browserpool

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp/jsonv2"
	cdptarget "github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// rawCalls sends commands on the browser connection beside chromedp and
// hands their answers back: the guard's and Sessions' own calls, each with
// ids from its own base so that the read tap knows whose an answer is.
type rawCalls struct {
	conn *tapped
	next atomic.Int64

	mu      sync.Mutex
	pending map[int64]chan *cdproto.Message
}

func newRawCalls(c *tapped, base int64) *rawCalls {
	r := &rawCalls{conn: c, pending: map[int64]chan *cdproto.Message{}}
	r.next.Store(base)
	return r
}

// send sends one command on session sid and returns the wait for its
// answer, bounded by ctx, and by closed (then it returns closedErr):
// commands sent in a row reach the target in order.
func (r *rawCalls) send(ctx context.Context, closed <-chan struct{}, closedErr error, sid cdptarget.SessionID, method string, params any) (func() ([]byte, error), error) {
	var buf []byte
	if params != nil {
		var err error
		if buf, err = jsonv2.Marshal(params, chromedp.DefaultMarshalOptions); err != nil {
			return nil, err
		}
	}
	id := r.next.Add(1)
	ch := make(chan *cdproto.Message, 1)
	r.mu.Lock()
	r.pending[id] = ch
	r.mu.Unlock()
	forget := func() {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}
	if err := r.conn.Write(ctx, &cdproto.Message{ID: id, SessionID: sid, Method: cdproto.MethodType(method), Params: buf}); err != nil {
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
		case <-closed:
			return nil, closedErr
		}
	}, nil
}

// deliver hands an answer to the call waiting for it, if any is.
func (r *rawCalls) deliver(msg *cdproto.Message) {
	r.mu.Lock()
	ch := r.pending[msg.ID]
	delete(r.pending, msg.ID)
	r.mu.Unlock()
	if ch != nil {
		m := *msg // Read reuses msg for the next message
		ch <- &m
	}
}
