package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// nodeRef names a node of a snapshot. Backend node ids are only unique
// within one renderer process, so a node is named together with the frame
// target whose session knows it; frame is "" for the page target itself
// (which also holds the same-site iframes).
type nodeRef struct {
	frame target.ID
	id    cdp.BackendNodeID
}

// element is a snapshot node made ready for the CDP work of one call.
type element struct {
	ref nodeRef
	// ctx is the call, on the session of the target that knows the node.
	ctx context.Context
	// owner is the iframe element that shows the node's frame target, in
	// the parent target; nil for a node of the page target.
	owner *element
	// src is the attachment to the node's frame target; nil for a node of
	// the page target.
	src *frameSource
	// obj is the node as a remote object, once prepare resolved it; the
	// action releases it.
	obj runtime.RemoteObjectID
	// center is where the node is on screen, once prepare scrolled it into
	// view and measured it; nil when the CDP path must measure it.
	center *[2]float64
	// objs keeps the remote objects of the tab's nodes between calls; nil
	// for a node of a frame target.
	objs *objectCache
	// observe says the element's action call starts the change counter
	// itself (fill), instead of a call of its own before it.
	observe bool
}

// prepJS does, in one call on the node, what an action needs before its
// input: it starts counting the document's changes (observeJS, whose
// answer, document.visibilityState, it passes on) and, with geometry,
// scrolls the node into view and measures the centre of its first box.
// It measures only in the top document at scale 1, where the page's
// viewport is the frame's: elsewhere it answers no box and the CDP path
// measures. A node that left the document throws staleNodeMark.
const prepJS = `function(geometry) {
  const vis = ` + observeJS + `;
  if (!geometry) return [vis, false, 0, 0];
  if (!this.isConnected) throw new Error('` + staleNodeMark + `');
  const doc = this.ownerDocument, vv = window.visualViewport;
  if (doc !== document || window !== window.top || (vv && (vv.scale !== 1 || vv.offsetLeft !== 0 || vv.offsetTop !== 0))) return [vis, false, 0, 0];
  const el = this.nodeType === 1 ? this : this.parentElement;
  if (el) { if (el.scrollIntoViewIfNeeded) el.scrollIntoViewIfNeeded(true); else el.scrollIntoView({block: 'center', inline: 'center'}); }
  let rects;
  if (this.nodeType === 1) rects = this.getClientRects();
  else { const r = doc.createRange(); r.selectNodeContents(this); rects = r.getClientRects(); }
  for (const r of rects) if (r.width > 0 && r.height > 0) return [vis, true, r.left + r.width / 2, r.top + r.height / 2];
  return [vis, false, 0, 0];
}`

// staleNodeMark is the error prepJS throws for a node that is no longer in
// its document.
const staleNodeMark = "mcp-browser-proxy: node detached"

// errStaleNode is a node that left its document.
var errStaleNode = errors.New("the node is detached from document")

// prepare resolves the node, starts counting the changes of its document
// and, with geometry, scrolls it into view and measures it, in one round
// trip when the node's remote object is kept from an earlier call, else
// two; it answers document.visibilityState. Without a box it leaves center
// nil, for the CDP path.
func (e *element) prepare(geometry bool) (string, error) {
	res, err := e.callOn(prepJS, jsonValue(geometry))
	if err != nil {
		return "", err
	}
	if res.ExceptionDetails != nil {
		if strings.Contains(exceptionText(res.ExceptionDetails), staleNodeMark) {
			return "", errStaleNode
		}
		return "", errors.New(exceptionText(res.ExceptionDetails))
	}
	var out []any
	if err := json.Unmarshal(res.Result.Value, &out); err != nil || len(out) != 4 {
		return "", fmt.Errorf("unexpected answer %s", res.Result.Value)
	}
	vis, _ := out[0].(string)
	if box, _ := out[1].(bool); box {
		x, _ := out[2].(float64)
		y, _ := out[3].(float64)
		e.center = &[2]float64{x, y}
	}
	return vis, nil
}

// callOn calls fn on the node, by value. The node's remote object is
// resolved once and kept for the next calls on it while its document
// lives; a kept object that is gone (its document's context was
// destroyed) is resolved again.
func (e *element) callOn(fn string, args ...[]byte) (*runtime.CallFunctionOnResult, error) {
	call := func() (*runtime.CallFunctionOnResult, error) {
		p := runtime.CallFunctionOnParams{FunctionDeclaration: fn, ObjectID: e.obj, ReturnByValue: ptr(true)}
		for _, a := range args {
			p.Arguments = append(p.Arguments, &runtime.CallArgument{Value: a})
		}
		res, err := chromedp.Call(e.ctx, runtime.CallFunctionOn, p)
		return &res, err
	}
	if e.obj == "" {
		if id, ok := e.objs.get(e.ref); ok {
			e.obj = id
			res, err := call()
			if err == nil || !isGoneObject(err) {
				return res, err
			}
			e.objs.forget(e.ref, id)
			e.obj = ""
		}
		obj, err := chromedp.Call(e.ctx, dom.ResolveNode, dom.ResolveNodeParams{BackendNodeID: e.ref.id})
		if err != nil {
			return nil, err
		}
		e.obj = obj.Object.ObjectID
	}
	return call()
}

// isGoneObject says that a remote object the call named no longer exists.
func isGoneObject(err error) bool {
	var cerr *cdproto.Error
	return errors.As(err, &cerr) && (strings.Contains(cerr.Message, "Could not find object") ||
		strings.Contains(cerr.Message, "Cannot find context") || strings.Contains(cerr.Message, "Invalid remote object id"))
}

// release lets go of the node's remote object, off the action's path, or
// keeps it for the next call on the node.
func (e *element) release(tab *Tab) {
	if e.obj == "" {
		return
	}
	obj, sess := e.obj, e.ctx
	if e.src == nil {
		sess = tab.Ctx
	}
	e.obj = ""
	drop := e.objs.put(e.ref, obj)
	if len(drop) == 0 {
		return
	}
	go func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(sess), 5*time.Second)
		defer cancel()
		for _, id := range drop {
			_, _ = chromedp.Call(c, runtime.ReleaseObject, runtime.ReleaseObjectParams{ObjectID: id})
		}
	}()
}

// objectCache is the remote objects of a tab's nodes that actions
// resolved, kept so that the next action on a node needs no DOM.resolveNode.
// They die with their document, and are forgotten when the main frame
// navigates; at most maxKeptObjects are kept (each keeps its node alive).
type objectCache struct {
	mu  sync.Mutex
	ids map[nodeRef]runtime.RemoteObjectID
}

// maxKeptObjects bounds the remote objects a tab keeps between calls.
const maxKeptObjects = 32

func (c *objectCache) get(ref nodeRef) (runtime.RemoteObjectID, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[ref]
	return id, ok
}

// put keeps id for ref and returns the objects to release: id itself when
// the cache does not keep it, or the ones it let go to make room.
func (c *objectCache) put(ref nodeRef, id runtime.RemoteObjectID) []runtime.RemoteObjectID {
	if c == nil {
		return []runtime.RemoteObjectID{id}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.ids[ref]; ok {
		if old == id {
			return nil
		}
		c.ids[ref] = id
		return []runtime.RemoteObjectID{old}
	}
	var drop []runtime.RemoteObjectID
	if len(c.ids) >= maxKeptObjects {
		for r, o := range c.ids {
			drop = append(drop, o)
			delete(c.ids, r)
		}
	}
	if c.ids == nil {
		c.ids = map[nodeRef]runtime.RemoteObjectID{}
	}
	c.ids[ref] = id
	return drop
}

// forget drops ref's object id when it is still the one kept.
func (c *objectCache) forget(ref nodeRef, id runtime.RemoteObjectID) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids[ref] == id {
		delete(c.ids, ref)
	}
}

// clear forgets every object: their document is gone.
func (c *objectCache) clear() {
	c.mu.Lock()
	clear(c.ids)
	c.mu.Unlock()
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
	if ref.frame == "" {
		e.objs = &tab.State.objs
	}
	for cur, hops := e, 0; cur.ref.frame != ""; hops++ {
		f, owner := tab.State.frames.lookup(cur.ref.frame)
		// A frame attached for the collectors has no owner until a snapshot
		// meets it; uids only come from snapshots, but stay safe.
		if f == nil || owner.id == 0 || hops >= maxFrames {
			return nil, fmt.Errorf("uid %s is in a frame that is gone (it navigated or was removed); call take_snapshot and use a fresh uid", bareUID(uid))
		}
		cur.ctx, cur.src = onSession(cctx, f.ctx), f.src
		cur.owner = &element{ref: owner, ctx: cctx}
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
// its frames, the requests of the page, and those of the frames the
// action works in (listenFrame, while acting); but a cross-site frame's
// document lives in another process. So the frame's document is watched
// here, like the page's: whether it changed, after it ran the next two
// tasks that the action set off. Not seen: when a navigation of the frame
// finishes loading.
type frameWatch []*element

// watchFrames starts counting the changes and the requests of the frames of
// elems, until release.
func watchFrames(elems []*element) frameWatch {
	var w frameWatch
	for _, e := range elems {
		if e.inFrame() && !slices.ContainsFunc(w, func(o *element) bool { return o.ref.frame == e.ref.frame }) {
			w = append(w, e)
			e.src.acting.Add(1)
			c, cancel := context.WithTimeout(e.ctx, frameSettle)
			// A frame that breaks the counter reads as changed later.
			_, _ = evalValue[string](c, observeJS)
			cancel()
		}
	}
	return w
}

// release stops counting the frames' requests as the tab's activity.
func (w frameWatch) release() {
	for _, e := range w {
		e.src.acting.Add(-1)
	}
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

// uidArg is a uid argument of an input tool; label names it in messages of
// tools that take several (fill_form, drag).
type uidArg struct{ uid, label string }

func (u uidArg) String() string {
	if u.label == "" {
		return "uid=" + bareUID(u.uid)
	}
	return fmt.Sprintf("%s (uid=%s)", u.label, bareUID(u.uid))
}

// wrap ties err to the element it happened on.
func (u uidArg) wrap(err error) error {
	if err == nil {
		return nil
	}
	return &uidError{arg: u, err: err}
}

// uidError is a failure on one element of an action.
type uidError struct {
	arg uidArg
	err error
}

func (e *uidError) Error() string { return e.arg.String() + ": " + e.err.Error() }

func (e *uidError) Unwrap() error { return e.err }

func bareUID(uid string) string { return strings.TrimPrefix(uid, "uid=") }

// requireUID reads the uid argument of tool, which names an element of the
// latest take_snapshot.
func requireUID(uid string) (string, error) {
	if uid == "" {
		return "", needf("needs a uid; call take_snapshot to get one")
	}
	return uid, nil
}

// isStaleNode reports whether err says the node is no longer in the page,
// or its cross-site frame went away.
func isStaleNode(err error) bool {
	if errors.Is(err, chromedp.ErrTargetDetached) || errors.Is(err, errStaleNode) {
		return true
	}
	var cerr *cdproto.Error
	if !errors.As(err, &cerr) {
		return false
	}
	m := cerr.Message
	return strings.Contains(m, "No node") || strings.Contains(m, "not found") || strings.Contains(m, "does not belong to the document") ||
		strings.Contains(m, "detached from document")
}

// clickNode scrolls the element into view and clicks its centre. Mouse
// events go to the page's session (ctx), in the page's viewport
// coordinates: the browser routes them to the frame under the pointer.
func clickNode(ctx context.Context, e *element, clicks int64) error {
	x, y, err := nodeCenter(e)
	if err != nil {
		return err
	}
	// No separate mouseMoved: Blink aligns moves to animation frames, which
	// costs a frame per click, and a press at a new position updates the
	// hover state (mouseover, mouseenter) by itself.
	var evs []input.DispatchMouseEventParams
	for i := int64(1); i <= clicks; i++ {
		for _, typ := range []input.DispatchMouseEventType{input.DispatchMouseEventTypeMousePressed, input.DispatchMouseEventTypeMouseReleased} {
			evs = append(evs, input.DispatchMouseEventParams{Type: typ, X: x, Y: y, Button: input.MouseButtonLeft, ClickCount: i})
		}
	}
	return inRow(ctx, input.DispatchMouseEvent, evs)
}

// nodeCenter scrolls the element into view and returns its centre.
func nodeCenter(e *element) (float64, float64, error) {
	if e.center != nil {
		return e.center[0], e.center[1], nil
	}
	if err := e.scrollIntoView(); err != nil {
		return 0, 0, err
	}
	return quadCenter(e)
}

// quadCenter returns the centre of the element's first box on screen, in
// the page's viewport coordinates.
func quadCenter(e *element) (float64, float64, error) {
	p, err := e.quad()
	if err != nil {
		return 0, 0, err
	}
	return (p[0] + p[2] + p[4] + p[6]) / 4, (p[1] + p[3] + p[5] + p[7]) / 4, nil
}

// fillJS prepares an element for a value. It sets selects and checkboxes
// itself and answers "done"; for text it focuses the element and selects its
// content so that Input.insertText replaces it, and answers "type".
const fillJS = `function(v) {
  const fire = (el) => { el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); };
  if (this.tagName === 'SELECT') {
    const o = Array.from(this.options).find(o => o.value === v || o.textContent.trim() === v);
    if (!o) throw new Error('no option "' + v + '" in this select; options are: ' + Array.from(this.options).map(o => o.textContent.trim()).join(', '));
    this.value = o.value; fire(this); return 'done';
  }
  if (this.type === 'checkbox' || this.type === 'radio') {
    const want = ['true', 'on', 'checked', 'yes', '1'].includes(String(v).toLowerCase());
    if (this.checked !== want) this.click();
    return 'done';
  }
  if (!(this.isContentEditable || this.tagName === 'INPUT' || this.tagName === 'TEXTAREA')) throw new Error('the element is not fillable (not an input, textarea, select or editable element)');
  this.focus();
  if (typeof this.select === 'function') this.select(); else document.getSelection().selectAllChildren(this);
  if (v === '') { if ('value' in this) this.value = ''; else this.textContent = ''; fire(this); return 'done'; }
  return 'type';
}`

// fillObserveJS is fillJS after observeJS, for an element whose fill
// starts the change counter: it answers [document.visibilityState, what
// fillJS answered].
const fillObserveJS = `function(v) {
  const vis = ` + observeJS + `;
  return [vis, (` + fillJS + `).call(this, v)];
}`

// fillNode fills the element, all on the element's own session: the text
// goes to the focused element of the element's frame. When e.observe is
// set, the same call starts the change counter, and a hidden tab is
// brought to the front before the text is typed.
func fillNode(e *element, value string) error {
	fn := fillJS
	if e.observe {
		fn = fillObserveJS
	}
	res, err := e.callOn(fn, jsonValue(value))
	if err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return userError{exceptionText(res.ExceptionDetails)}
	}
	answer := res.Result.Value
	if e.observe {
		var out []string
		if err := json.Unmarshal(answer, &out); err != nil || len(out) != 2 {
			return fmt.Errorf("unexpected answer %s", answer)
		}
		if out[0] != "visible" {
			if _, err := chromedp.Call(e.ctx, page.BringToFront, cdp.Empty{}); err != nil {
				return err
			}
		}
		answer = []byte(strconv.Quote(out[1]))
	}
	if string(answer) != `"type"` {
		return nil
	}
	_, err = chromedp.Call(e.ctx, input.InsertText, input.InsertTextParams{Text: value})
	return err
}

// ensureVisible brings the tab to the front when it is hidden: a hidden tab
// gets no frames, so input events and screenshots stall until the browser
// gives up on them. Several sessions share one browser window, so another
// session's new tab may have covered this one.
func ensureVisible(ctx context.Context) error {
	res, err := chromedp.Call(ctx, runtime.Evaluate, runtime.EvaluateParams{Expression: "document.visibilityState", ReturnByValue: ptr(true)})
	if err != nil {
		return err
	}
	if string(res.Result.Value) == `"visible"` {
		return nil
	}
	_, err = chromedp.Call(ctx, page.BringToFront, cdp.Empty{})
	return err
}

// attr returns the value of attribute name in a DOM attribute list
// (name, value, name, value...).
func attr(attrs []string, name string) string {
	for i := 0; i+1 < len(attrs); i += 2 {
		if strings.EqualFold(attrs[i], name) {
			return attrs[i+1]
		}
	}
	return ""
}

func hasAttr(attrs []string, name string) bool {
	for i := 0; i < len(attrs); i += 2 {
		if strings.EqualFold(attrs[i], name) {
			return true
		}
	}
	return false
}
