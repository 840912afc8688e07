package tools

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/css"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// An iframe of another site runs in a renderer process of its own, as a CDP
// target of type "iframe" whose ID is the frame's ID, and the page's session
// does not reach into it: not its nodes, nor its console, nor its requests.
// A tab attaches to such a frame target as soon as the browser announces it
// (chromedp auto-attaches every page session to its frames, but drops the
// events of those sessions), so that the console and network collectors
// hear the frame; or, past maxFrames, the first time a snapshot meets it.
// What the frame logged before the attachment is replayed by the browser;
// what it fetched before is not, and is missed (its document request comes
// on the page's session). The attachment lasts until the frame target goes
// away, the page shows a new document, or the tab ends.

// frameAttachTimeout bounds an attachment that no tool call waits for.
const frameAttachTimeout = 10 * time.Second

// maxFrameMarks bounds the frames whose latest console message a tab
// remembers, to tell the messages that a new attachment replays.
const maxFrameMarks = 4 * maxFrames

// frameSource is one attachment to a cross-site frame as the collectors see
// it: they tag what the frame logs and loads with it, so that a message or
// a request can be asked about on the session that knows it.
type frameSource struct {
	id  target.ID
	gen uint64 // the page document the frame belongs to (frameRegistry.gen)
	// before is the time of the frame's latest console message when the
	// attachment started. Runtime.enable and Log.enable replay what the
	// frame logged before them; what an earlier attachment already
	// collected is not collected twice.
	before    runtime.Timestamp
	replaying atomic.Bool // until the attachment is made
	// acting counts the input actions under way on the frame's nodes: only
	// then do the frame's new requests count as the tab's activity, so that
	// a busy frame (an ad, a widget that polls) does not hold up the wait
	// after every click on the page.
	acting atomic.Int32
	url    atomic.Pointer[string]
}

// URL returns the frame's document URL, or its origin until it navigates
// while attached; "" when not known yet.
func (src *frameSource) URL() string {
	if u := src.url.Load(); u != nil {
		return *u
	}
	return ""
}

// sawContext learns the frame's origin from its main world, which
// Runtime.enable announces before it replays the messages.
func (src *frameSource) sawContext(e *runtime.EventExecutionContextCreated) {
	if src.URL() != "" || e.Context == nil || e.Context.Origin == "" || len(e.Context.AuxData) == 0 {
		return
	}
	var aux struct {
		IsDefault bool        `json:"isDefault"`
		FrameID   cdp.FrameID `json:"frameId"`
	}
	if json.Unmarshal(e.Context.AuxData, &aux) == nil && aux.IsDefault && target.ID(aux.FrameID) == src.id {
		src.url.CompareAndSwap(nil, &e.Context.Origin)
	}
}

// frameTarget is a cross-site iframe that a tab is attached to, or is
// attaching to.
type frameTarget struct {
	// ctx is the attached chromedp context of the frame target, set (under
	// the registry's mu) once the attachment is made and before ready is
	// closed: nil while attaching, and for good if that failed. It ends
	// when the frame target goes away, when it is evicted or stopped, or
	// with the tab.
	ctx context.Context
	// stop ends ctx without waiting; the watcher then detaches and forgets
	// the frame.
	stop context.CancelFunc
	src  *frameSource
	// ready is closed once the attachment is made or failed; err says why
	// it failed, and is read after ready.
	ready chan struct{}
	err   error

	// owner and used are guarded by the registry's mu.
	//
	// owner is the iframe element that shows the frame, in its parent; the
	// zero nodeRef until a snapshot meets the frame. A frame ID belongs to
	// one iframe element for the element's life.
	owner nodeRef
	used  uint64 // clock of the last use, for eviction
}

// frameRegistry holds the frame targets a tab is attached to or attaching
// to; at most maxFrames, as many as one snapshot descends into.
type frameRegistry struct {
	mu     sync.Mutex
	frames map[target.ID]*frameTarget
	clock  uint64
	// gen counts the page's documents: a frame announced for an older one
	// is not attached to.
	gen uint64
	// tabCtx is the tab's context (Bind), which attachments derive from;
	// frames announced before it is known wait in pending.
	tabCtx  context.Context
	pending []*target.Info
}

// lookup returns the attached frame target id and its owner, or nil, and
// marks it used: the least recently used frame is the one evicted.
func (r *frameRegistry) lookup(id target.ID) (*frameTarget, nodeRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.frames[id]
	if f == nil || f.ctx == nil {
		return nil, nodeRef{}
	}
	r.clock++
	f.used = r.clock
	return f, f.owner
}

// known says whether id is attached or being attached to: a cross-site frame.
func (r *frameRegistry) known(id target.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frames[id] != nil
}

// generation returns the number of the page's current document.
func (r *frameRegistry) generation() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen
}

// reserve registers f as frame id, to be attached, for page document gen.
// It returns the frame already registered as id instead, if any. When the
// registry is full it evicts the least recently used frame if evict is
// set, and returns its id for the caller to forget its uids; if not, f is
// not registered. ok says whether f was.
func (r *frameRegistry) reserve(id target.ID, f *frameTarget, gen uint64, evict bool) (cur *frameTarget, evicted target.ID, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen {
		return nil, "", false
	}
	if r.frames == nil {
		r.frames = map[target.ID]*frameTarget{}
	}
	if cur := r.frames[id]; cur != nil {
		return cur, "", false
	}
	if len(r.frames) >= maxFrames {
		if !evict {
			return nil, "", false
		}
		for oid, o := range r.frames {
			if evicted == "" || o.used < r.frames[evicted].used {
				evicted = oid
			}
		}
		r.frames[evicted].stop()
		delete(r.frames, evicted)
	}
	r.clock++
	f.used = r.clock
	r.frames[id] = f
	return nil, evicted, true
}

// finish ends the attaching of f as frame id: with fctx attached, or with
// err. A frame stopped or evicted meanwhile fails.
func (r *frameRegistry) finish(id target.ID, f *frameTarget, fctx context.Context, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && r.frames[id] != f {
		err = errors.New("the attachment was given up (the page showed a new document, or more frames needed one)")
	}
	if err != nil {
		if r.frames[id] == f {
			delete(r.frames, id)
		}
	} else {
		f.ctx = fctx
	}
	f.err = err
	close(f.ready)
	return err
}

// setOwner records the iframe element that shows frame f.
func (r *frameRegistry) setOwner(f *frameTarget, owner nodeRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f.owner = owner
}

// stopAll ends every attachment, and those under way. A new page document
// has frames of its own, and the old one's may live on in the back-forward
// cache, frozen and unlisted, without a detach.
func (r *frameRegistry) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.pending = nil
	for id, f := range r.frames {
		f.stop()
		delete(r.frames, id)
	}
}

// remove forgets frame id if it is still f, and says whether it was.
func (r *frameRegistry) remove(id target.ID, f *frameTarget) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.frames[id] != f {
		return false
	}
	delete(r.frames, id)
	return true
}

// Bind gives the state the tab's attached context, which attachments to the
// tab's cross-site frames derive from and end with. Frames that the browser
// announced while the tab was being attached are attached to now.
func (s *TabState) Bind(tabCtx context.Context) {
	r := &s.frames
	r.mu.Lock()
	if r.tabCtx != nil {
		r.mu.Unlock()
		return
	}
	r.tabCtx = tabCtx
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	s.bindLogs(tabCtx) // logbudget.go
	for _, info := range pending {
		s.frameAppeared(info, nil)
	}
}

// frameAppeared takes the browser's word that a target was attached to by
// auto-attach on the page's session, or on the session of frame from. A
// cross-site frame is attached to off the read loop, unless it is known
// already or the registry is full: room is only made for frames a snapshot
// meets.
func (s *TabState) frameAppeared(info *target.Info, from *frameSource) {
	if info == nil || info.Type != "iframe" || info.TargetID == "" {
		return
	}
	r := &s.frames
	r.mu.Lock()
	defer r.mu.Unlock()
	if from != nil && from.gen != r.gen {
		return // a frame of a page document gone since
	}
	if r.tabCtx == nil {
		if len(r.pending) < maxFrames && !slices.ContainsFunc(r.pending, func(p *target.Info) bool { return p.TargetID == info.TargetID }) {
			r.pending = append(r.pending, info)
		}
		return
	}
	if r.frames[info.TargetID] != nil || len(r.frames) >= maxFrames {
		return
	}
	go s.attachEager(r.tabCtx, info.TargetID, info.URL, r.gen)
}

// attachEager attaches to frame id, announced by the browser, for the
// collectors; no call waits for it.
func (s *TabState) attachEager(tabCtx context.Context, id target.ID, url string, gen uint64) {
	call, cancel := context.WithTimeout(tabCtx, frameAttachTimeout)
	defer cancel()
	_, _ = s.attachFrame(call, tabCtx, id, url, gen, false)
}

// attachFrame returns frame target id: attached already, attached to now
// for page document gen, or once the attachment under way is made; see
// frameRegistry.reserve for evict. The attachment outlives the call that
// makes it, so its first run gets a context derived from tabCtx and call
// only bounds the wait (see Attach).
func (s *TabState) attachFrame(call, tabCtx context.Context, id target.ID, url string, gen uint64, evict bool) (*frameTarget, error) {
	r := &s.frames
	if f, _ := r.lookup(id); f != nil {
		return f, nil
	}
	base, stop := context.WithCancel(tabCtx)
	src := &frameSource{id: id, gen: gen}
	if url != "" {
		src.url.Store(&url)
	}
	f := &frameTarget{stop: stop, src: src, ready: make(chan struct{})}
	cur, evicted, ok := r.reserve(id, f, gen, evict)
	if !ok {
		stop()
		if cur == nil {
			return nil, errors.New("too many frames are attached, or the page showed a new document")
		}
		select {
		case <-cur.ready:
		case <-call.Done():
			return nil, context.DeadlineExceeded
		}
		if cur.err != nil {
			return nil, cur.err
		}
		return cur, nil
	}
	if evicted != "" {
		s.forgetFrame(evicted)
	}
	src.before = s.console.frameMark(id)
	src.replaying.Store(true)
	// Detach, never close, when the context ends: the frame belongs to the page.
	fctx, cancel := chromedp.NewContext(base, chromedp.WithTargetID(id), chromedp.WithDetachOnCancel(),
		chromedp.WithListener(func(ev any) { s.listenFrame(src, ev) }))
	err := Attach(call, fctx)
	var detached <-chan struct{}
	if err == nil {
		detached, err = chromedp.Detached(fctx)
	}
	// The replay, if any, came before the answers that Attach waited for.
	src.replaying.Store(false)
	if err = r.finish(id, f, fctx, err); err != nil {
		stop()
		cancel()
		return nil, err
	}
	// Uids of an earlier attachment may name nodes of another process.
	s.forgetFrame(id)
	go s.watchFrame(f, detached, cancel)
	return f, nil
}

// watchFrame detaches from frame f and forgets it when its target goes
// away or its attachment is stopped.
func (s *TabState) watchFrame(f *frameTarget, detached <-chan struct{}, cancel context.CancelFunc) {
	select {
	case <-detached:
	case <-f.ctx.Done():
	}
	f.stop()
	cancel()
	if s.frames.remove(f.src.id, f) {
		s.forgetFrame(f.src.id)
	}
}

// Attach makes the first run of tctx, a new chromedp context made with
// chromedp.WithTargetID, which attaches it to its target. The first run
// binds the context's read loop to the context it gets, so it gets tctx
// itself, and call only bounds the wait: when call ends first, Attach
// returns context.DeadlineExceeded and the attachment goes on until tctx is
// cancelled.
//
// chromedp turns on the DOM and CSS domains; Attach turns them off again:
// with DOM on, chromedp fetches the whole document (DOM.getDocument) on
// every new document before it handles the tab's next event, and no tool
// needs either but get_css_styles, which turns them on for itself.
func Attach(call, tctx context.Context) error {
	attached := make(chan error, 1)
	go func() {
		err := chromedp.Do(tctx)
		if err == nil {
			err = offDomains(tctx)
		}
		attached <- err
	}()
	select {
	case err := <-attached:
		return err
	case <-call.Done():
		return context.DeadlineExceeded
	}
}

// offDomains turns off the CSS and DOM domains of an attached target, both
// commands in flight at once. A worker has neither: its refusals are fine.
func offDomains(tctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = chromedp.Call(tctx, css.Disable, cdp.Empty{}) })
	wg.Go(func() { _, _ = chromedp.Call(tctx, dom.Disable, cdp.Empty{}) })
	wg.Wait()
	return tctx.Err()
}

// frameSession returns a context for calls on the session that src stands
// for, ending with call, once the attachment is made; false when that
// attachment is over (the frame navigated away, was removed or let go):
// what it knew is gone with it.
func (s *TabState) frameSession(call context.Context, src *frameSource) (context.Context, bool) {
	r := &s.frames
	r.mu.Lock()
	f := r.frames[src.id]
	r.mu.Unlock()
	if f == nil || f.src != src {
		return nil, false
	}
	select {
	case <-f.ready:
	case <-call.Done():
		return nil, false
	}
	if f.err != nil {
		return nil, false
	}
	return onSession(call, f.ctx), true
}

// listenFrame takes the events of an attached frame target, on its read
// loop. A new document in the frame makes its uids stale: it may run in
// another process, whose backend node ids can repeat old ones. The frame's
// console messages and requests are the tab's, and while an action works
// in the frame its new requests count as activity of the tab, so that the
// wait after the action sees them. The frame's own navigations are not the
// tab's: the collectors only ever see the top frame's.
func (s *TabState) listenFrame(src *frameSource, ev any) {
	s.guard("frames", func(ev any) {
		switch e := ev.(type) {
		case *page.EventFrameNavigated:
			if e.Frame != nil && target.ID(e.Frame.ID) == src.id {
				s.forgetFrame(src.id)
				src.url.Store(&e.Frame.URL)
			}
		case *runtime.EventExecutionContextCreated:
			src.sawContext(e)
		case *target.EventAttachedToTarget:
			s.frameAppeared(e.TargetInfo, src)
		case *network.EventRequestWillBeSent:
			if src.acting.Load() > 0 {
				s.activity.listen(ev)
			}
		case *network.EventLoadingFinished, *network.EventLoadingFailed:
			s.activity.listen(ev) // a no-op for a request not counted
		}
	}, ev)
	s.guard("console", func(ev any) { s.console.take(src, ev) }, ev)
	s.guard("network", func(ev any) { s.network.take(src, ev) }, ev)
}

// listenTargets attaches to the cross-site frames that the page's session
// announces.
func (s *TabState) listenTargets(ev any) {
	if e, ok := ev.(*target.EventAttachedToTarget); ok {
		s.frameAppeared(e.TargetInfo, nil)
	}
}

// forgetFrame drops the uids of the nodes of frame target id.
func (s *TabState) forgetFrame(id target.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref, uid := range s.byNodeRef {
		if ref.frame == id {
			delete(s.byNodeRef, ref)
			delete(s.byUID, uid)
		}
	}
}
