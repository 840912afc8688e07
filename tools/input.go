package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// The wait after an input action is only as long as the page stays busy.
const (
	// settleCap bounds the wait for a navigation that an input action started.
	settleCap = 10 * time.Second
	// busyCap bounds the wait for the requests and DOM changes an action set off.
	busyCap = 3 * time.Second
)

func (t *toolset) click() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("click",
			mcp.WithDescription("Click the element with the given uid from the latest take_snapshot. Waits while the page is busy with what the click set off, and reports a navigation or whether the page changed."),
			mcp.WithString("uid", mcp.Required(), mcp.Description("uid of the element, from take_snapshot")),
			mcp.WithBoolean("dblClick", mcp.Description("Double-click instead of a single click. Default false.")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			uid, res := requireUID(req, "click")
			if res != nil {
				return res, nil
			}
			clicks := int64(1)
			if req.GetBool("dblClick", false) {
				clicks = 2
			}
			return t.act(ctx, req, "click", []uidArg{{uid: uid}}, func(cctx context.Context, elems []*element) error {
				return clickNode(cctx, elems[0], clicks)
			}, "Clicked uid="+bareUID(uid)), nil
		},
	}
}

func (t *toolset) fill() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("fill",
			mcp.WithDescription("Type a value into an input or textarea, or choose an option of a select, or set a checkbox (value \"true\"/\"false\"). The element is the uid from the latest take_snapshot."),
			mcp.WithString("uid", mcp.Required(), mcp.Description("uid of the element, from take_snapshot")),
			mcp.WithString("value", mcp.Required(), mcp.Description("Value to fill in")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			uid, res := requireUID(req, "fill")
			if res != nil {
				return res, nil
			}
			value, err := req.RequireString("value")
			if err != nil {
				return mcp.NewToolResultError("fill needs a value (a string)"), nil
			}
			return t.act(ctx, req, "fill", []uidArg{{uid: uid}}, func(cctx context.Context, elems []*element) error {
				return fillNode(elems[0], value)
			}, "Filled uid="+bareUID(uid)), nil
		},
	}
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
func requireUID(req mcp.CallToolRequest, tool string) (string, *mcp.CallToolResult) {
	uid, err := req.RequireString("uid")
	if err != nil {
		return "", mcp.NewToolResultErrorf("%s needs a uid; call take_snapshot to get one", tool)
	}
	return uid, nil
}

// act runs an input action on the page of req's pageId argument, on the
// elements of targets, then waits while the page is busy with what the
// action set off, and says what happened. It never waits on a page frozen by
// a JavaScript dialog. do gets the call context on the page's session, for
// input events and page-wide commands, and the elements, each with a context
// on its own session. Callers check their other arguments first: a bad
// argument should not open a page.
func (t *toolset) act(ctx context.Context, req mcp.CallToolRequest, name string, targets []uidArg, do func(context.Context, []*element) error, done string) *mcp.CallToolResult {
	tab, res := pageOf(ctx, req)
	if res != nil {
		return res
	}
	if p := tab.State.dialog.current(); p != nil {
		return mcp.NewToolResultErrorf("%s: page %d cannot take input: %s; call handle_dialog first", name, tab.ID, lowerFirst(p.describe()))
	}
	cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
	defer cancel()
	elems := make([]*element, len(targets))
	for i, tg := range targets {
		e, err := elementOf(cctx, tab, tg.uid)
		if err != nil {
			if tg.label != "" {
				return mcp.NewToolResultErrorf("%s: %s: %v", name, tg, err)
			}
			return mcp.NewToolResultErrorf("%s: %v", name, err)
		}
		elems[i] = e
	}
	nav, reqs := tab.State.mark(), tab.State.activity.mark()

	// One call watches the DOM from now on and tells whether the tab is
	// hidden: a hidden tab gets no frames, so input would stall.
	visibility, open, err := untilDialog(cctx, tab, func(c context.Context) (string, error) {
		return evalValue[string](c, observeJS)
	})
	if err == nil && !open && visibility != "visible" {
		_, err = chromedp.Call(cctx, page.BringToFront, cdp.Empty{})
	}
	if open {
		return mcp.NewToolResultErrorf("%s: page %d cannot take input: %s; call handle_dialog first", name, tab.ID, lowerFirst(tab.State.dialog.current().describeOr("a dialog opened")))
	}
	if err != nil {
		return cdpError(name, cctx, tab, t.cfg.CallTimeout, err)
	}
	frames := watchFrames(elems)
	defer frames.release()
	_, open, err = untilDialog(cctx, tab, func(c context.Context) (struct{}, error) { return struct{}{}, do(c, elems) })
	if open {
		return dialogResult(tab, nav, done)
	}
	if err != nil {
		return actionError(name, cctx, tab, t.cfg.CallTimeout, targets, err)
	}
	return t.settleAfter(ctx, tab, nav, reqs, frames.changed(), done)
}

// actionError says why an action failed and what to do about it.
func actionError(name string, cctx context.Context, tab *Tab, d time.Duration, targets []uidArg, err error) *mcp.CallToolResult {
	prefix, uid := name, ""
	if len(targets) == 1 {
		uid = bareUID(targets[0].uid)
	}
	var ue *uidError
	if errors.As(err, &ue) {
		uid = bareUID(ue.arg.uid)
		if ue.arg.label != "" {
			prefix = name + ": " + ue.arg.String()
		}
		err = ue.err
	}
	if isStaleNode(err) {
		if uid == "" {
			return mcp.NewToolResultErrorf("%s: an element is no longer on the page (it changed or navigated); call take_snapshot and use fresh uids", prefix)
		}
		return mcp.NewToolResultErrorf("%s: uid %s no longer exists on the page (it changed or navigated); call take_snapshot and use a fresh uid", prefix, uid)
	}
	var usr userError
	if errors.As(err, &usr) {
		return mcp.NewToolResultErrorf("%s: %s", prefix, usr.msg)
	}
	return cdpError(prefix, cctx, tab, d, err)
}

// settleAfter waits after an action: for the load of a navigation it
// started, else while requests it started are in flight or the DOM keeps
// changing, up to busyCap. A page that did not change returns at once.
// framesChanged says the action changed a cross-site frame (frameWatch).
func (t *toolset) settleAfter(ctx context.Context, tab *Tab, nav navMark, reqs uint64, framesChanged bool, done string) *mcp.CallToolResult {
	sctx, cancel := callCtx(ctx, tab, busyCap)
	defer cancel()
	// The read is also a round trip through the renderer: a navigation that
	// the action started has been announced by the time it answers.
	w := changeWatch{tab: tab, changed: framesChanged}
	if open := w.read(sctx); open {
		return dialogResult(tab, nav, done)
	}
	if tab.State.mark() != nav {
		return t.navResult(ctx, tab, nav, done)
	}
	if started, _, _ := tab.State.activity.since(reqs); !w.changed && started == 0 {
		return textResult("%s. The page did not change.", done)
	}
	dialogOpened := tab.State.dialog.openedChan()
	for {
		_, inflight, reqChange := tab.State.activity.since(reqs)
		if inflight == 0 {
			// The page counts as settled once two turns of its task queue
			// pass with no new change and no request in flight, instead of
			// a fixed quiet period: a page that stays still answers at once.
			if open := w.readAfterFrame(sctx); open {
				return dialogResult(tab, nav, done)
			}
			if tab.State.mark() != nav {
				return t.navResult(ctx, tab, nav, done)
			}
			if sctx.Err() == nil && !w.moved {
				var started int
				if started, inflight, _ = tab.State.activity.since(reqs); inflight == 0 {
					return textResult("%s. %s", done, changeSummary(w.changed, started))
				}
			}
		}
		if sctx.Err() == nil && inflight > 0 {
			select {
			case <-reqChange:
			case <-tab.State.navChanged():
			case <-dialogOpened:
				return dialogResult(tab, nav, done)
			case <-sctx.Done():
			}
		}
		if err := sctx.Err(); err != nil {
			if ctx.Err() != nil {
				return mcp.NewToolResultErrorf("%s, but the call was cancelled while waiting for the page to settle", done)
			}
			return textResult("%s. The page was still busy after %s (%d request(s) in flight); call wait_for or take_snapshot to see where it got.", done, busyCap, inflight)
		}
		if tab.State.mark() != nav {
			return t.navResult(ctx, tab, nav, done)
		}
	}
}

// changeWatch follows the change counter that observeJS set up.
type changeWatch struct {
	tab     *Tab
	last    int
	changed bool // the page changed since the action
	moved   bool // the last read saw new changes
}

// read reads the counter, unless a dialog opens, which it reports. A
// counter that is gone means a new document: that is a change, and the
// counter starts again in it.
func (w *changeWatch) read(ctx context.Context) (dialog bool) {
	return w.update(ctx, func(c context.Context) (int, error) { return evalValue[int](c, changesJS) })
}

// readAfterFrame is read, after the page has run two more tasks.
func (w *changeWatch) readAfterFrame(ctx context.Context) (dialog bool) {
	return w.update(ctx, func(c context.Context) (int, error) { return evalPromise[int](c, changesAfterFrameJS) })
}

func (w *changeWatch) update(ctx context.Context, count func(context.Context) (int, error)) (dialog bool) {
	n, open, err := untilDialog(ctx, w.tab, count)
	if open {
		return true
	}
	w.moved = false
	switch {
	case err != nil && ctx.Err() != nil:
		// No answer in time: nothing learnt, the caller sees ctx end.
	case err != nil || n < 0:
		w.changed, w.moved, w.last = true, true, 0
		if err == nil {
			_, _, _ = untilDialog(ctx, w.tab, func(c context.Context) (string, error) {
				return evalValue[string](c, observeJS)
			})
		}
	case n != w.last:
		w.changed, w.moved, w.last = true, true, n
	}
	return false
}

func changeSummary(changed bool, requests int) string {
	s := "The page did not change."
	if changed {
		s = "The page changed."
	}
	if requests > 0 {
		s += fmt.Sprintf(" It made %d network request(s).", requests)
	}
	return s
}

// navResult waits for the load of the navigation that an action started,
// unless a dialog opens: a dialog holds the load until it is handled.
func (t *toolset) navResult(ctx context.Context, tab *Tab, nav navMark, done string) *mcp.CallToolResult {
	nctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-tab.State.dialog.openedChan():
			cancel()
		case <-nctx.Done():
		}
	}()
	url, finished := tab.State.settle(nctx, nav, settleCap)
	if tab.State.dialog.current() != nil {
		return dialogResult(tab, nav, done)
	}
	if finished {
		return textResult("%s. The page navigated to %s.", done, url)
	}
	if ctx.Err() != nil {
		return mcp.NewToolResultErrorf("%s, but the call was cancelled while the page was loading %s", done, url)
	}
	return textResult("%s. The page is navigating to %s and had not finished loading after %s.", done, url, settleCap)
}

// dialogResult reports an action that opened a dialog: the page is frozen
// until handle_dialog answers it, so waiting longer is pointless.
func dialogResult(tab *Tab, nav navMark, done string) *mcp.CallToolResult {
	if url, ok := tab.State.navSince(nav); ok {
		done += ". The page is navigating to " + url
	}
	return textResult("%s. %s; call handle_dialog to accept or dismiss it.", done, tab.State.dialog.current().describeOr("A dialog opened"))
}

// describeOr describes p, or says fallback when the dialog is already gone.
func (p *pendingDialog) describeOr(fallback string) string {
	if p == nil {
		return fallback
	}
	return p.describe()
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// untilDialog runs fn, giving up when a JavaScript dialog opens: the page
// then answers no script until the dialog is handled. It reports whether a
// dialog is open when it returns. fn may outlive the call, until its context
// ends, so it hands its result back only through its return values.
func untilDialog[T any](ctx context.Context, tab *Tab, fn func(context.Context) (T, error)) (T, bool, error) {
	var zero T
	opened := tab.State.dialog.openedChan()
	select {
	case <-opened:
		return zero, true, nil
	default:
	}
	c, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn(c)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		select {
		case <-opened:
			return zero, true, nil
		default:
			return r.v, false, r.err
		}
	case <-opened:
		return zero, true, nil
	}
}

// observeKey names the page property that holds the change counter of the
// current action; a symbol keeps it out of the page's own names.
const observeKey = `Symbol.for('mcp-browser-proxy.changes')`

// observeJS starts counting the changes of the document: DOM mutations
// (except style attributes, which animations rewrite every frame) and input
// or change events (a checkbox changes no attribute). It replaces the counter
// of an earlier action, stops by itself after a while, and answers
// document.visibilityState. A page that breaks the observer gets a counter
// that stays at 0: the action must not fail for it.
const observeJS = `(() => {
  const key = ` + observeKey + `;
  const old = window[key];
  if (old) old.stop();
  const s = {n: 0, stop() {}};
  try {
    const bump = () => { s.n++; };
    const obs = new MutationObserver(records => {
      for (const r of records) if (r.type !== 'attributes' || r.attributeName !== 'style') s.n++;
    });
    obs.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
    document.addEventListener('input', bump, true);
    document.addEventListener('change', bump, true);
    const timer = setTimeout(() => s.stop(), 15000);
    s.stop = () => {
      obs.disconnect();
      document.removeEventListener('input', bump, true);
      document.removeEventListener('change', bump, true);
      clearTimeout(timer);
      if (window[key] === s) delete window[key];
    };
  } catch (e) {}
  Object.defineProperty(window, key, {value: s, configurable: true});
  return document.visibilityState;
})()`

// changesJS answers the change count, or -1 when the counter is gone (a new
// document).
const changesJS = `(() => { const s = window[` + observeKey + `]; return s ? s.n : -1; })()`

// changesAfterFrameJS answers the change count after two more turns of the
// page's task queue: updates that frameworks batch into microtasks or the
// next task (React, Vue, Angular) have landed by then.
const changesAfterFrameJS = `new Promise(resolve => setTimeout(() => setTimeout(() => {
  const s = window[` + observeKey + `]; resolve(s ? s.n : -1);
}, 0), 0))`

// evalValue evaluates expr in the page and decodes its JSON value.
func evalValue[T any](ctx context.Context, expr string) (T, error) {
	return evaluate[T](ctx, runtime.EvaluateParams{Expression: expr, ReturnByValue: ptr(true)})
}

// evalPromise is evalValue for an expression that yields a promise.
func evalPromise[T any](ctx context.Context, expr string) (T, error) {
	return evaluate[T](ctx, runtime.EvaluateParams{Expression: expr, ReturnByValue: ptr(true), AwaitPromise: ptr(true)})
}

func evaluate[T any](ctx context.Context, p runtime.EvaluateParams) (T, error) {
	var v T
	res, err := chromedp.Call(ctx, runtime.Evaluate, p)
	if err != nil {
		return v, err
	}
	if res.ExceptionDetails != nil {
		return v, errors.New(exceptionText(res.ExceptionDetails))
	}
	if res.Result == nil || len(res.Result.Value) == 0 {
		return v, errors.New("the page returned no value")
	}
	err = json.Unmarshal(res.Result.Value, &v)
	return v, err
}

// userError is a failure that the caller can fix, with a message for them.
type userError struct{ msg string }

func (e userError) Error() string { return e.msg }

// isStaleNode reports whether err says the node is no longer in the page,
// or its cross-site frame went away.
func isStaleNode(err error) bool {
	if errors.Is(err, chromedp.ErrTargetDetached) {
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
	for i := int64(1); i <= clicks; i++ {
		for _, typ := range []input.DispatchMouseEventType{input.DispatchMouseEventTypeMousePressed, input.DispatchMouseEventTypeMouseReleased} {
			p := input.DispatchMouseEventParams{Type: typ, X: x, Y: y, Button: input.MouseButtonLeft, ClickCount: i}
			if _, err := chromedp.Call(ctx, input.DispatchMouseEvent, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// nodeCenter scrolls the element into view and returns its centre.
func nodeCenter(e *element) (float64, float64, error) {
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

// fillNode fills the element, all on the element's own session: the text
// goes to the focused element of the element's frame.
func fillNode(e *element, value string) error {
	ctx := e.ctx
	obj, err := chromedp.Call(ctx, dom.ResolveNode, dom.ResolveNodeParams{BackendNodeID: e.ref.id})
	if err != nil {
		return err
	}
	defer func() {
		_, _ = chromedp.Call(ctx, runtime.ReleaseObject, runtime.ReleaseObjectParams{ObjectID: obj.Object.ObjectID})
	}()
	arg := jsonValue(value)
	res, err := chromedp.Call(ctx, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
		FunctionDeclaration: fillJS,
		ObjectID:            obj.Object.ObjectID,
		Arguments:           []*runtime.CallArgument{{Value: arg}},
		ReturnByValue:       ptr(true),
	})
	if err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return userError{exceptionText(res.ExceptionDetails)}
	}
	if string(res.Result.Value) != `"type"` {
		return nil
	}
	_, err = chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: value})
	return err
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil && d.Exception.Description != "" {
		first, _, _ := strings.Cut(d.Exception.Description, "\n    at ")
		return strings.TrimPrefix(first, "Error: ")
	}
	return fmt.Sprintf("%s (line %d)", d.Text, d.LineNumber)
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
