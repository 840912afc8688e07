package browserpool

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/cdproto/css"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/inspector"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	cdptarget "github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// ahead sends chromedp's attach to a new tab in one row. chromedp attaches
// with a dozen commands, each sent once the one before is answered (the
// domain enables, Page.getFrameTree, DOM.getDocument), and has no option
// to send them at once. For a target named by Ahead, as soon as chromedp's
// Target.attachToTarget is answered, the same commands go out on the new
// session in one row, with ids of their own; chromedp's copies, sent one
// after another as before, are not sent again but answered from those
// answers. The renderer thus works through the row while chromedp still
// waits for its first answer, instead of one round trip per command.
//
// CSS.enable is answered without being sent: the tools turn CSS off again
// right after the attach (get_css_styles turns it on for itself), and
// turning it on makes the renderer collect the style sheets of the page.
//
// Only a byte-identical command, in chromedp's order, is answered this
// way: a command that differs (another chromedp version, a worker, which
// skips the page domains) ends the row and goes out as usual; the row's
// commands not yet used are the same idempotent enables, and their
// answers are dropped.
type ahead struct {
	tr   chromedp.Transport
	next atomic.Int64
	// answered counts chromedp's commands answered from a row (tests).
	answered atomic.Int64
	in       chan readResult
	wake     chan struct{}
	done     chan struct{}
	once     sync.Once

	mu       sync.Mutex
	want     map[cdptarget.ID]bool // targets whose attach goes in a row
	attaches map[int64]bool        // chromedp's attachToTarget ids for them
	rows     map[cdptarget.SessionID]*aheadRow
	byID     map[int64]*aheadCmd
	ready    []*cdproto.Message // messages for chromedp, before the next read
}

type readResult struct {
	msg *cdproto.Message
	err error
}

// aheadRow is the row sent on one session; held are the session's
// messages read before chromedp has registered the session (it does so
// before it sends its first command there), which it would drop.
type aheadRow struct {
	sid  cdptarget.SessionID
	cmds []*aheadCmd
	pos  int // the next command chromedp is expected to send
	hold bool
	held []*cdproto.Message
}

type aheadCmd struct {
	row     *aheadRow
	method  string
	params  []byte
	local   bool             // answered here, never sent
	answer  *cdproto.Message // once read, while chromedp has not asked
	waiting int64            // chromedp's id for it, once it asked
}

// aheadIDBase starts the ids of the rows' commands: within the range the
// guard's tap keeps from chromedp, between the guard's and Sessions'.
const aheadIDBase = rawIDBase + 1<<28

// attachRow is what chromedp v0.23 sends, in this order, to attach to a
// page (Context.attachTarget, then newTarget's Page.getFrameTree and the
// DOM.getDocument of Target.documentUpdated).
func attachRow() []*aheadCmd {
	steps := []struct {
		method string
		params any
	}{
		{runtime.Enable.Method, cdp.Empty{}},
		{runtime.Evaluate.Method, runtime.EvaluateParams{Expression: "self"}},
		{cdplog.Enable.Method, cdp.Empty{}},
		{network.Enable.Method, network.EnableParams{}},
		{inspector.Enable.Method, cdp.Empty{}},
		{page.Enable.Method, page.EnableParams{}},
		{dom.Enable.Method, dom.EnableParams{}},
		{css.Enable.Method, cdp.Empty{}}, // local
		{cdptarget.SetDiscoverTargets.Method, cdptarget.SetDiscoverTargetsParams{Discover: true}},
		{cdptarget.SetAutoAttach.Method, cdptarget.SetAutoAttachParams{AutoAttach: true, Flatten: ptr(true)}},
		{page.SetLifecycleEventsEnabled.Method, page.SetLifecycleEventsEnabledParams{Enabled: true}},
		{page.GetFrameTree.Method, cdp.Empty{}},
		{dom.GetDocument.Method, dom.GetDocumentParams{}},
	}
	out := make([]*aheadCmd, 0, len(steps))
	for _, s := range steps {
		buf, err := jsonv2.Marshal(s.params, chromedp.DefaultMarshalOptions)
		if err != nil {
			return nil
		}
		out = append(out, &aheadCmd{method: s.method, params: buf, local: s.method == css.Enable.Method})
	}
	return out
}

// newAhead makes the reader of tr; start starts it.
func newAhead(tr chromedp.Transport) *ahead {
	a := &ahead{tr: tr, in: make(chan readResult), wake: make(chan struct{}, 1), done: make(chan struct{}),
		want: map[cdptarget.ID]bool{}, attaches: map[int64]bool{}, rows: map[cdptarget.SessionID]*aheadRow{}, byID: map[int64]*aheadCmd{}}
	a.next.Store(aheadIDBase)
	return a
}

// start reads tr on a goroutine of its own, so that an answer can be
// handed to chromedp while the socket has nothing to read. An answer that
// direct takes (Sessions', which never reach chromedp) is handed over
// there and then, without going through chromedp's read loop: one
// goroutine hand-off less per command sent beside chromedp. Such an
// answer may now reach its caller before chromedp's loop and the page
// guard's tap have seen the messages read ahead of it. Nothing waits on
// them there: chromedp hands a tab's events to the tab's own goroutine (its
// listeners never ran in step with the loop), the guard starts goroutines
// for attaches and paused requests, and every caller that reads the page's
// state after Sessions' answers makes a chromedp call first (act's settle
// round), which is read after them. Only a popup that evaluate_script
// opens is now a little more likely to be announced on the next call than
// on its own (it raced before too: the guard learns of it on a goroutine).
func (a *ahead) start(direct func(*cdproto.Message) bool) {
	go func() {
		for {
			m := new(cdproto.Message)
			err := a.tr.Read(context.Background(), m)
			if err == nil && m.Method == "" && direct != nil && direct(m) {
				continue
			}
			select {
			case a.in <- readResult{m, err}:
			case <-a.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
}

// close ends the reading goroutine; the transport is closed by its owner.
func (a *ahead) close() { a.once.Do(func() { close(a.done) }) }

// expect makes chromedp's next attach to target id go in a row.
func (a *ahead) expect(id cdptarget.ID) {
	a.mu.Lock()
	a.want[id] = true
	a.mu.Unlock()
}

// forget drops an expect that no attach used (the attach failed early).
func (a *ahead) forget(id cdptarget.ID) {
	a.mu.Lock()
	delete(a.want, id)
	a.mu.Unlock()
}

// read returns the next message for the tap and chromedp.
func (a *ahead) read(ctx context.Context) (*cdproto.Message, error) {
	for {
		a.mu.Lock()
		if len(a.ready) > 0 {
			m := a.ready[0]
			a.ready = a.ready[1:]
			a.mu.Unlock()
			return m, nil
		}
		a.mu.Unlock()
		select {
		case r := <-a.in:
			if r.err != nil {
				return nil, r.err
			}
			if m := a.sort(r.msg); m != nil {
				return m, nil
			}
		case <-a.wake:
		case <-a.done:
			return nil, errGuardClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// sort handles one message read from the browser: nil when it is kept
// (an answer of a row, or held for chromedp).
func (a *ahead) sort(m *cdproto.Message) *cdproto.Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m.Method == "" && m.ID >= aheadIDBase && m.ID < sessionsIDBase {
		c := a.byID[m.ID]
		delete(a.byID, m.ID)
		if c == nil {
			return nil
		}
		if c.waiting != 0 {
			return answerAs(m, c.waiting)
		}
		c.answer = m
		return nil
	}
	if m.Method == "" && a.attaches[m.ID] {
		delete(a.attaches, m.ID)
		var res cdptarget.AttachToTargetResult
		if m.Error == nil && json.Unmarshal(m.Result, &res) == nil && res.SessionID != "" {
			a.sendRow(res.SessionID)
		}
		return m
	}
	if m.Method == cdproto.EventTargetDetachedFromTarget {
		var ev cdptarget.EventDetachedFromTarget
		if json.Unmarshal(m.Params, &ev) == nil {
			a.dropRow(ev.SessionID, true)
		}
	}
	if r := a.rows[m.SessionID]; r != nil && r.hold && m.SessionID != "" {
		r.held = append(r.held, m)
		return nil
	}
	return m
}

// sendRow sends the attach row on session sid; a.mu is held. The writes
// go out before chromedp learns the session, so they precede its own.
func (a *ahead) sendRow(sid cdptarget.SessionID) {
	cmds := attachRow()
	if cmds == nil {
		return
	}
	r := &aheadRow{sid: sid, cmds: cmds, hold: true}
	for i, c := range cmds {
		c.row = r
		if c.local {
			c.answer = &cdproto.Message{SessionID: sid, Result: []byte("{}")}
			continue
		}
		id := a.next.Add(1)
		msg := &cdproto.Message{ID: id, SessionID: sid, Method: cdproto.MethodType(c.method), Params: c.params}
		if err := a.tr.Write(context.Background(), msg); err != nil {
			// What went out is answered and dropped; chromedp sends the rest.
			r.cmds = r.cmds[:i]
			break
		}
		a.byID[id] = c
	}
	a.rows[sid] = r
}

// dropRow ends the row of sid: chromedp sends its commands itself from
// now on. Held messages go to chromedp first, in order; when the session
// is gone, so are the answers still due.
func (a *ahead) dropRow(sid cdptarget.SessionID, gone bool) {
	r := a.rows[sid]
	if r == nil {
		return
	}
	delete(a.rows, sid)
	a.release(r)
	for id, c := range a.byID {
		if c.row == r && (gone || c.waiting == 0) {
			delete(a.byID, id)
		}
	}
}

// release hands the held messages of r to chromedp; a.mu is held.
func (a *ahead) release(r *aheadRow) {
	if !r.hold {
		return
	}
	r.hold = false
	a.ready = append(a.ready, r.held...)
	r.held = nil
	a.poke()
}

func (a *ahead) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// write sees a command of chromedp before it is sent; true when it is
// answered from a row instead.
func (a *ahead) write(msg *cdproto.Message) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if msg.SessionID == "" {
		if msg.Method == cdptarget.CommandAttachToTarget && len(a.want) > 0 {
			var p cdptarget.AttachToTargetParams
			if json.Unmarshal(msg.Params, &p) == nil && a.want[p.TargetID] {
				delete(a.want, p.TargetID)
				a.attaches[msg.ID] = true
			}
		}
		return false
	}
	r := a.rows[msg.SessionID]
	if r == nil {
		return false
	}
	// chromedp has registered the session: what was held may go to it.
	a.release(r)
	if r.pos >= len(r.cmds) {
		a.dropRow(r.sid, false)
		return false
	}
	c := r.cmds[r.pos]
	if string(msg.Method) != c.method || !bytes.Equal(msg.Params, c.params) {
		a.dropRow(r.sid, false)
		return false
	}
	r.pos++
	a.answered.Add(1)
	if c.answer != nil {
		a.ready = append(a.ready, answerAs(c.answer, msg.ID))
		a.poke()
	} else {
		c.waiting = msg.ID
	}
	if r.pos == len(r.cmds) {
		delete(a.rows, r.sid)
	}
	return true
}

// answerAs is answer m given chromedp's id.
func answerAs(m *cdproto.Message, id int64) *cdproto.Message {
	c := *m
	c.ID = id
	return &c
}
