package tools

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// An iframe of another site runs in a renderer process of its own, as a CDP
// target of type "iframe" whose ID is the frame's ID, and the page's session
// does not reach into it. A tab attaches to such a frame target the first
// time a snapshot meets it, keeps the attachment for the calls that follow,
// and drops it when the frame target goes away, when the page shows a new
// document, or when the tab ends.

// nodeRef names a node of a snapshot. Backend node ids are only unique
// within one renderer process, so a node is named together with the frame
// target whose session knows it; frame is "" for the page target itself
// (which also holds the same-site iframes).
type nodeRef struct {
	frame target.ID
	id    cdp.BackendNodeID
}

// frameTarget is a cross-site iframe that a tab is attached to.
type frameTarget struct {
	// ctx is the attached chromedp context of the frame target. It ends
	// when the frame target goes away, when it is evicted or stopped, or
	// with the tab.
	ctx context.Context
	// stop ends ctx without waiting; the watcher of attachFrame then
	// detaches and forgets the frame.
	stop context.CancelFunc
	// owner is the iframe element that shows the frame, in its parent. A
	// frame ID belongs to one iframe element for the element's life.
	owner nodeRef
	used  uint64 // clock of the last use, for eviction
}

// frameRegistry holds the frame targets a tab is attached to; at most
// maxFrames, as many as one snapshot descends into.
type frameRegistry struct {
	mu     sync.Mutex
	frames map[target.ID]*frameTarget
	clock  uint64
}

// get returns the attached frame target id, or nil.
func (r *frameRegistry) get(id target.ID) *frameTarget {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.frames[id]
	if f != nil {
		r.clock++
		f.used = r.clock
	}
	return f
}

// add registers f as frame id. When the registry is full it evicts the
// least recently used frame and returns its id, for the caller to forget
// its uids.
func (r *frameRegistry) add(id target.ID, f *frameTarget) (evicted target.ID, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.frames == nil {
		r.frames = map[target.ID]*frameTarget{}
	}
	if _, dup := r.frames[id]; dup {
		return "", false
	}
	if len(r.frames) >= maxFrames {
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
	return evicted, true
}

// stopAll ends every attachment. A new page document has frames of its
// own, and the old one's may live on in the back-forward cache, frozen and
// unlisted, without a detach.
func (r *frameRegistry) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
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

// attachFrame returns frame target id of tab, shown by the iframe element
// owner; it attaches to it on first use. The attachment outlives the call
// that makes it, so its first run gets the frame's own context and the
// call only bounds the wait (see session.attach).
func attachFrame(call context.Context, tab *Tab, id target.ID, owner nodeRef) (*frameTarget, error) {
	r := &tab.State.frames
	if f := r.get(id); f != nil {
		return f, nil
	}
	base, stop := context.WithCancel(tab.Ctx)
	// Detach, never close, when the context ends: the frame belongs to the page.
	fctx, cancel := chromedp.NewContext(base, chromedp.WithTargetID(id), chromedp.WithDetachOnCancel(),
		chromedp.WithListener(func(ev any) { tab.State.listenFrame(id, ev) }))
	err := Attach(call, fctx)
	var detached <-chan struct{}
	if err == nil {
		detached, err = chromedp.Detached(fctx)
	}
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	f := &frameTarget{ctx: fctx, stop: stop, owner: owner}
	evicted, ok := r.add(id, f)
	if !ok { // attached twice at once: keep the first
		stop()
		cancel()
		if f = r.get(id); f == nil {
			return nil, errors.New("the frame went away while it was being attached")
		}
		return f, nil
	}
	// Uids of an earlier attachment may name nodes of another process, and
	// an evicted frame is no longer watched for new documents.
	tab.State.forgetFrame(id)
	if evicted != "" {
		tab.State.forgetFrame(evicted)
	}
	go func() {
		select {
		case <-detached:
		case <-fctx.Done():
		}
		stop()
		cancel()
		if r.remove(id, f) {
			tab.State.forgetFrame(id)
		}
	}()
	return f, nil
}

// Attach makes the first run of tctx, a new chromedp context made with
// chromedp.WithTargetID, which attaches it to its target. The first run
// binds the context's read loop to the context it gets, so it gets tctx
// itself, and call only bounds the wait: when call ends first, Attach
// returns context.DeadlineExceeded and the attachment goes on until tctx is
// cancelled.
func Attach(call, tctx context.Context) error {
	attached := make(chan error, 1)
	go func() { attached <- chromedp.Do(tctx) }()
	select {
	case err := <-attached:
		return err
	case <-call.Done():
		return context.DeadlineExceeded
	}
}

// listenFrame takes the events of an attached frame target, on its read
// loop. A new document in the frame makes its uids stale: it may run in
// another process, whose backend node ids can repeat old ones. The frame's
// requests count as activity of the tab, so that the wait after an action
// in the frame sees them.
func (s *TabState) listenFrame(id target.ID, ev any) {
	s.guard("frames", func(ev any) {
		switch e := ev.(type) {
		case *page.EventFrameNavigated:
			if e.Frame != nil && target.ID(e.Frame.ID) == id {
				s.forgetFrame(id)
			}
		case *network.EventRequestWillBeSent, *network.EventLoadingFinished, *network.EventLoadingFailed:
			s.activity.listen(ev)
		}
	}, ev)
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

// element is a snapshot node made ready for the CDP work of one call.
type element struct {
	ref nodeRef
	// ctx is the call, on the session of the target that knows the node.
	ctx context.Context
	// owner is the iframe element that shows the node's frame target, in
	// the parent target; nil for a node of the page target.
	owner *element
}

// elementOf resolves a uid argument for the call cctx on tab. A node of a
// cross-site frame gets a context on the frame's session that ends with
// cctx.
func elementOf(cctx context.Context, tab *Tab, uid string) (*element, error) {
	ref, err := tab.State.node(uid)
	if err != nil {
		return nil, err
	}
	e := &element{ref: ref, ctx: cctx}
	for cur, hops := e, 0; cur.ref.frame != ""; hops++ {
		f := tab.State.frames.get(cur.ref.frame)
		if f == nil || hops >= maxFrames {
			return nil, fmt.Errorf("uid %s is in a frame that is gone (it navigated or was removed); call take_snapshot and use a fresh uid", bareUID(uid))
		}
		cur.ctx = onSession(cctx, f.ctx)
		cur.owner = &element{ref: f.owner, ctx: cctx}
		cur = cur.owner
	}
	return e, nil
}

// onSession returns a context for calls on the session of sess (an attached
// chromedp context) that also ends with call, and is released with it. A
// call that runs out of time ends it as cancelled: error messages look at
// call to tell a timeout.
func onSession(call, sess context.Context) context.Context {
	c, cancel := context.WithCancel(sess)
	context.AfterFunc(call, cancel)
	return c
}

// inFrame says whether the node is in a cross-site frame.
func (e *element) inFrame() bool { return e.owner != nil }

// scrollIntoView scrolls the node into view: the iframe elements that show
// its frame first, outermost first, then the node inside its frame.
//
// The browser sends input to a cross-site frame by where the documents
// around it last drew it, so a click right after a scroll can miss the
// frame: for a node of such a frame, it then waits until each of those
// documents has drawn anew.
func (e *element) scrollIntoView() error {
	if err := e.scroll(); err != nil {
		return err
	}
	for o := e.owner; o != nil; o = o.owner {
		if _, err := evalPromise[int](o.ctx, drawnJS); err != nil {
			return err
		}
	}
	return nil
}

func (e *element) scroll() error {
	if e.owner != nil {
		if err := e.owner.scroll(); err != nil {
			return err
		}
	}
	_, err := chromedp.Call(e.ctx, dom.ScrollIntoViewIfNeeded, dom.ScrollIntoViewIfNeededParams{BackendNodeID: e.ref.id})
	return err
}

// drawnJS resolves once the document has drawn two more frames: the first
// shows its latest layout, the second starts after it.
const drawnJS = `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(0))))`

// quad returns the node's first box on screen, in the page's viewport
// coordinates. A frame's session gives boxes in the frame's own viewport:
// the content box of each iframe element on the way up moves them.
func (e *element) quad() (dom.Quad, error) {
	q, err := chromedp.Call(e.ctx, dom.GetContentQuads, dom.GetContentQuadsParams{BackendNodeID: e.ref.id})
	if err != nil {
		return nil, err
	}
	if len(q.Quads) == 0 || len(q.Quads[0]) < 8 {
		return nil, userError{"the element is not visible (it has no box on screen); take_snapshot again or scroll to it"}
	}
	p := q.Quads[0]
	if e.owner == nil {
		return p, nil
	}
	x, y, err := e.owner.frameOrigin()
	if err != nil {
		return nil, err
	}
	out := make(dom.Quad, len(p))
	for i := 0; i+1 < len(p); i += 2 {
		out[i], out[i+1] = p[i]+x, p[i+1]+y
	}
	return out, nil
}

// frameOrigin returns where the content of the iframe element e starts, in
// the page's viewport coordinates.
func (e *element) frameOrigin() (float64, float64, error) {
	var ox, oy float64
	if e.owner != nil {
		var err error
		if ox, oy, err = e.owner.frameOrigin(); err != nil {
			return 0, 0, err
		}
	}
	bm, err := chromedp.Call(e.ctx, dom.GetBoxModel, dom.GetBoxModelParams{BackendNodeID: e.ref.id})
	if err != nil {
		return 0, 0, err
	}
	if bm.Model == nil || len(bm.Model.Content) < 2 {
		return 0, 0, userError{"the frame of the element is not on screen; take_snapshot again or scroll to it"}
	}
	return ox + bm.Model.Content[0], oy + bm.Model.Content[1], nil
}

// frameSettle bounds each wait on a cross-site frame around an action.
const frameSettle = time.Second

// frameWatch watches the documents of the cross-site frames that an action
// works in, one element per frame. The wait after an action watches the
// page's own document (changes, navigations), the dialogs of the page and
// its frames, and the requests of the page and of its attached frames
// (listenFrame); but a cross-site frame's document lives in another
// process. So the frame's document is watched here, like the page's:
// whether it changed, after it ran the next two tasks that the action set
// off. Not seen: when a navigation of the frame finishes loading.
type frameWatch []*element

// watchFrames starts counting the changes of the frames of elems.
func watchFrames(elems []*element) frameWatch {
	var w frameWatch
	for _, e := range elems {
		if e.inFrame() && !slices.ContainsFunc(w, func(o *element) bool { return o.ref.frame == e.ref.frame }) {
			w = append(w, e)
			c, cancel := context.WithTimeout(e.ctx, frameSettle)
			// A frame that breaks the counter reads as changed later.
			_, _ = evalValue[string](c, observeJS)
			cancel()
		}
	}
	return w
}

// changed waits until each frame has run two more tasks, and says whether
// any of them changed, navigated or did not answer.
func (w frameWatch) changed() bool {
	changed := false
	for _, e := range w {
		c, cancel := context.WithTimeout(e.ctx, frameSettle)
		n, err := evalPromise[int](c, changesAfterFrameJS)
		cancel()
		changed = changed || err != nil || n != 0
	}
	return changed
}
