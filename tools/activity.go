package tools

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/mark3labs/mcp-go/mcp"
)

// maxTracked bounds the requests activity remembers: a page can open
// requests that never end (event streams, long polls).
const maxTracked = 256

// activity tracks what a tab is busy with, for the wait after an input action:
// the requests in flight, each with the sequence number of its start, so that
// the wait only counts the requests that the action started.
type activity struct {
	mu       sync.Mutex
	seq      uint64
	inflight map[network.RequestID]request
	lastDone time.Time     // when a scripted request last finished
	changed  chan struct{} // closed on every change; nil until needed
}

// request is one request in flight.
type request struct {
	seq   uint64
	start time.Time
	// stream says the request may never end by design: an EventSource, or
	// a response of type text/event-stream. The wait for a page to be
	// ready does not wait for it.
	stream bool
	// scripted says the page's script asked for it (fetch, XHR, a script):
	// its end may change the DOM, so the wait for a page to be ready
	// waits for quiet after it. A document or an image does not.
	scripted bool
	// doc says it is a document's own request (its request id is its
	// loader's). The page's load ends it: the renderer reports its end,
	// and a renderer that was still starting when the request went out
	// (a tab's first navigation, sent while attaching) never does.
	doc bool
}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (a *activity) listen(ev any) {
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.inflight == nil {
			a.inflight = map[network.RequestID]request{}
		}
		if _, ok := a.inflight[e.RequestID]; ok {
			return // a redirect of a request already counted
		}
		if len(a.inflight) >= maxTracked {
			a.evictLocked()
		}
		a.seq++
		scripted := e.Type == network.ResourceTypeFetch || e.Type == network.ResourceTypeXHR || e.Type == network.ResourceTypeScript
		doc := e.Type == network.ResourceTypeDocument && string(e.RequestID) == string(e.LoaderID)
		a.inflight[e.RequestID] = request{seq: a.seq, start: time.Now(), stream: e.Type == network.ResourceTypeEventSource, scripted: scripted, doc: doc}
		a.signalLocked()
	case *page.EventLoadEventFired:
		a.mu.Lock()
		defer a.mu.Unlock()
		n := len(a.inflight)
		for id, r := range a.inflight {
			if r.doc {
				delete(a.inflight, id)
			}
		}
		if len(a.inflight) != n {
			a.signalLocked()
		}
	case *network.EventResponseReceived:
		if e.Response != nil && strings.HasPrefix(e.Response.MimeType, "text/event-stream") {
			a.mu.Lock()
			defer a.mu.Unlock()
			if r, ok := a.inflight[e.RequestID]; ok && !r.stream {
				r.stream = true
				a.inflight[e.RequestID] = r
				a.signalLocked()
			}
		}
	case *network.EventLoadingFinished:
		a.done(e.RequestID)
	case *network.EventLoadingFailed:
		a.done(e.RequestID)
	}
}

func (a *activity) done(id network.RequestID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.inflight[id]; ok {
		delete(a.inflight, id)
		if r.scripted {
			a.lastDone = time.Now()
		}
		a.signalLocked()
	}
}

// evictLocked forgets the older half of the tracked requests; those are the
// ones least likely to belong to the action being waited for.
func (a *activity) evictLocked() {
	floor := a.seq - maxTracked/2
	for id, r := range a.inflight {
		if r.seq <= floor {
			delete(a.inflight, id)
		}
	}
}

func (a *activity) signalLocked() {
	if a.changed != nil {
		close(a.changed)
		a.changed = nil
	}
}

// mark returns the request sequence number now.
func (a *activity) mark() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seq
}

// since reports how many requests started after m, how many of those are
// still in flight, and a channel closed at the next change.
func (a *activity) since(m uint64) (started, inflight int, changed <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.inflight {
		if r.seq > m {
			inflight++
		}
	}
	return int(a.seq - m), inflight, a.changedLocked()
}

func (a *activity) changedLocked() <-chan struct{} {
	if a.changed == nil {
		a.changed = make(chan struct{})
	}
	return a.changed
}

// busy reports the requests started after m that a page being ready waits
// for: in flight, not streams, and younger than longRequest at now (an
// older one is taken for a long poll). It also says when the youngest of
// them turns long, when a scripted request last finished, and gives a
// channel closed at the next change.
func (a *activity) busy(m uint64, now time.Time) (inflight int, turnsLong, lastDone time.Time, changed <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.inflight {
		if r.seq <= m || r.stream || now.Sub(r.start) >= longRequest {
			continue
		}
		inflight++
		if l := r.start.Add(longRequest); l.After(turnsLong) {
			turnsLong = l
		}
	}
	return inflight, turnsLong, a.lastDone, a.changedLocked()
}

// The wait after an input action is only as long as the page stays busy.
const (
	// settleCap bounds the wait for a navigation that an input action started.
	settleCap = 10 * time.Second
	// busyCap bounds the wait for the requests and DOM changes an action set off.
	busyCap = 3 * time.Second
)

// settleAfter waits after an action: for the load of a navigation it
// started, else while requests it started are in flight or the DOM keeps
// changing, up to busyCap. A page that did not change returns at once.
// framesChanged says the action changed a cross-site frame (frameWatch).
//
// keyed says the action is a press_key that started no counter of its own:
// the reads count the changes since its key (keyedCountJS).
func (t *toolset) settleAfter(ctx context.Context, tab *Tab, nav navMark, reqs uint64, framesChanged, keyed bool, done string) *mcp.CallToolResult {
	sctx, cancel := callCtx(ctx, tab, busyCap)
	defer cancel()
	// The read is also a round trip through the renderer: a navigation that
	// the action started has been announced by the time it answers.
	// One round: the counter; when the action has changed nothing yet,
	// read after one turn of the page's task queue (updates that
	// frameworks batch into microtasks or the next task have landed by
	// then). A page that changed needs no turn to say so, and after input
	// a turn waits for the next frame. Only an action that started
	// requests waits longer.
	w := changeWatch{tab: tab, changed: framesChanged, keyed: keyed}
	first := changesOrAfterTurnJS
	if keyed {
		first = keyedOrAfterTurnJS
	}
	if open := w.update(sctx, func(c context.Context) (int, error) { return evalPromise[int](c, first) }); open {
		return dialogResult(tab, nav, done)
	}
	if tab.State.mark() != nav {
		return t.navResult(ctx, tab, nav, done)
	}
	if started, _, _ := tab.State.activity.since(reqs); started == 0 && sctx.Err() == nil {
		return textResult("%s. %s", done, changeSummary(w.changed, 0))
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
	keyed   bool // a press_key's reads (keyedCountJS)
	last    int
	changed bool // the page changed since the action
	moved   bool // the last read saw new changes
}

// readAfterFrame reads the counter after the page has run one more task,
// unless a dialog opens, which it reports. A counter that is gone means a
// new document: that is a change, and the counter starts again in it.
func (w *changeWatch) readAfterFrame(ctx context.Context) (dialog bool) {
	expr := changesAfterTurnJS
	if w.keyed {
		expr = keyedAfterTurnJS
	}
	return w.update(ctx, func(c context.Context) (int, error) { return evalPromise[int](c, expr) })
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
// of an earlier action, stops by itself 30 s after it was last used, and
// answers document.visibilityState. A page that breaks the observer gets a
// counter that stays at 0: the action must not fail for it.
//
// It also keeps when each batch of changes was seen, and when the first
// trusted keydown after the last read was dispatched (its event timestamp,
// on the page's clock), so that press_key can count the changes since its
// key without a call of its own before it (keyedCountJS): the key event and
// a Runtime call reach the renderer on different channels, in no set order.
const observeJS = `(() => {
  const key = ` + observeKey + `;
  const old = window[key];
  if (old) old.stop();
  const s = {n: 0, last: 0, log: [], keys: 0, claimed: 0, at: 0, base: null, stop() {}, touch() {}};
  try {
    const note = k => { s.n += k; s.log.push(performance.now(), k); if (s.log.length > 256) s.log.splice(0, 2); };
    const bump = () => note(1);
    const obs = new MutationObserver(records => {
      let k = 0;
      for (const r of records) if (r.type !== 'attributes' || r.attributeName !== 'style') k++;
      if (k) note(k);
    });
    const onKey = e => { if (!e.isTrusted) return; if (s.keys === s.claimed) s.at = e.timeStamp; s.keys++; };
    obs.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
    document.addEventListener('input', bump, true);
    document.addEventListener('change', bump, true);
    window.addEventListener('keydown', onKey, true);
    let timer = setTimeout(() => s.stop(), 30000);
    s.touch = () => { clearTimeout(timer); timer = setTimeout(() => s.stop(), 30000); };
    s.stop = () => {
      obs.disconnect();
      document.removeEventListener('input', bump, true);
      document.removeEventListener('change', bump, true);
      window.removeEventListener('keydown', onKey, true);
      clearTimeout(timer);
      if (window[key] === s) delete window[key];
    };
  } catch (e) {}
  Object.defineProperty(window, key, {value: s, configurable: true});
  return document.visibilityState;
})()`

// seenJS is the count of counter s, noted as read: the keys so far are
// claimed, and a keyed read that finds no new key counts from here.
const seenJS = `(s.last = s.n, s.claimed = s.keys, s.n)`

// keyedCountJS is a function of first that answers the changes since the
// key of the current press_key, or -1 when the counter is gone: the
// changes seen at or after the first keydown since the last read, or, when
// no key reached the page's window (a focused frame took it), every change
// since the last read. The first read of an action claims the key; the
// next reads of the same action count from the same point. It keeps the
// counter alive.
const keyedCountJS = `(first => {
  const s = window[` + observeKey + `];
  if (!s || !s.log) return -1;
  s.touch();
  if (first || !s.base) {
    s.base = s.keys !== s.claimed ? {at: s.at} : {n: s.last};
    s.claimed = s.keys;
  }
  let k = 0;
  if (s.base.at !== undefined) { for (let i = 0; i < s.log.length; i += 2) if (s.log[i] >= s.base.at) k += s.log[i + 1]; }
  else k = s.n - s.base.n;
  s.last = s.n;
  return k;
})`

// keyedOrAfterTurnJS is changesOrAfterTurnJS for press_key: the keyed
// count at once when the page changed, else after one more turn.
const keyedOrAfterTurnJS = `(() => {
  const k = ` + keyedCountJS + `(true);
  if (k !== 0) return k;
  return new Promise(resolve => {
    const c = new MessageChannel();
    c.port1.onmessage = () => resolve(` + keyedCountJS + `(false));
    c.port2.postMessage(0);
  });
})()`

// keyedAfterTurnJS is changesAfterTurnJS for press_key.
const keyedAfterTurnJS = `new Promise(resolve => {
  const c = new MessageChannel();
  c.port1.onmessage = () => resolve(` + keyedCountJS + `(false));
  c.port2.postMessage(0);
})`

// changesAfterFrameJS answers the change count after two more turns of the
// page's task queue: updates that frameworks batch into microtasks or the
// next task (React, Vue, Angular) have landed by then.
const changesAfterFrameJS = `new Promise(resolve => setTimeout(() => setTimeout(() => {
  const s = window[` + observeKey + `]; resolve(s ? s.n : -1);
}, 0), 0))`

// The wait for a page to be ready after a navigation.
const (
	// longRequest is how long a request may be in flight before the wait
	// takes it for a long poll (or a stream) and stops waiting for it.
	longRequest = time.Second
	// readyQuiet is how long the DOM must stay still after the page last
	// did something after its load (a request finished, the DOM changed):
	// an app builds its view on a task after its data arrived. A page that
	// did nothing after its load needs no quiet period.
	readyQuiet = 50 * time.Millisecond
)

// readiness is how the wait for a page to be ready ended.
type readiness struct {
	capped   bool
	inflight int // requests in flight at the cap
	// loc is the page's URL and title, read together with the change
	// count that ended the wait; nil when something else ended it.
	loc []string
}

// readAnswer is a read of the change counter with where the page is.
type readAnswer struct {
	N     int    `json:"n"`
	Href  string `json:"href"`
	Title string `json:"title"`
}

// note says, for a wait that the cap ended, what the page was still doing.
func (r readiness) note(limit time.Duration) string {
	if !r.capped {
		return ""
	}
	busy := "its DOM kept changing"
	if r.inflight > 0 {
		busy = fmt.Sprintf("%d request(s) in flight", r.inflight)
	}
	return fmt.Sprintf(" The wait for the page to settle ended at its cap, %s after the load (%s), not because the page was done; take_snapshot shows it as it is now, wait_for waits for a text.", limit, busy)
}

// waitReady waits, after a navigation's load, until the page has settled
// the way the wait after an input action judges it: no request that the
// page started since reqs in flight (streams and long polls aside), and no
// DOM change for readyQuiet after the page last did something after its
// load, checked after a turn of its task queue. It gives up at
// Config.ReadyCap, and at once when a dialog opens.
func (t *toolset) waitReady(ctx context.Context, tab *Tab, reqs uint64) readiness {
	limit := t.cfg.ReadyCap
	if limit < 0 {
		return readiness{}
	}
	rctx, cancel := callCtx(ctx, tab, limit)
	defer cancel()
	loaded := time.Now()
	dialogOpened := tab.State.dialog.openedChan()
	// Each read also answers where the page is, so that a wait that ends
	// after a read needs no round trip of its own for it.
	var loc []string
	read := func(expr string) (int, bool, error) {
		a, open, err := untilDialog(rctx, tab, func(c context.Context) (readAnswer, error) {
			return evalPromise[readAnswer](c, "("+expr+").then(n => ({n, href: location.href, title: document.title}))")
		})
		if err == nil && !open {
			loc = []string{a.Href, a.Title}
		}
		return a.N, open, err
	}
	doc := tab.State.docMark()
	n, open, err := read(readyTwoTurnsJS)
	if open {
		return readiness{}
	}
	if err == nil {
		tab.State.armObserver(doc)
	}
	// A page still after two turns needs no second read when nothing it
	// started is in flight or finished since its load.
	quiet := err == nil && n == 0
	count := n
	var last time.Time // the page's last activity after its load
	if err != nil || n != 0 {
		last, count = time.Now(), max(n, -1)
	}
	nav := tab.State.mark()
	for {
		if rctx.Err() != nil {
			inflight, _, _, _ := tab.State.activity.busy(reqs, time.Now())
			return readiness{capped: ctx.Err() == nil, inflight: inflight}
		}
		if m := tab.State.mark(); m != nav {
			// The page navigated again (a script or a redirect): wait for
			// that load too, then for the new document.
			tab.State.settle(rctx, nav, limit)
			nav, last, count, quiet = m, time.Now(), -1, false
			continue
		}
		now := time.Now()
		inflight, turnsLong, lastDone, reqChange := tab.State.activity.busy(reqs, now)
		if lastDone.After(loaded) && lastDone.After(last) {
			last = lastDone
		}
		wait := time.Duration(0)
		if quiet && inflight == 0 && last.IsZero() {
			return readiness{loc: loc}
		}
		quiet = false
		if inflight > 0 {
			wait = turnsLong.Sub(now)
		} else {
			expr := changesAfterTurnJS
			if count < 0 {
				expr = readyJS
			}
			n, open, err := read(expr)
			switch {
			case open:
				return readiness{}
			case err != nil || n < 0:
				// The document went away under the read, or has no
				// counter: a new document, which gets one next round.
				last, count = time.Now(), -1
				wait = 10 * time.Millisecond
			case (expr == readyJS && n > 0) || (expr != readyJS && n != count):
				last, count = time.Now(), n
			default:
				count = n
			}
			if wait == 0 {
				if last.IsZero() || time.Since(last) >= readyQuiet {
					return readiness{loc: loc}
				}
				wait = readyQuiet - time.Since(last)
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-reqChange:
		case <-tab.State.navChanged():
		case <-dialogOpened:
			timer.Stop()
			return readiness{}
		case <-rctx.Done():
		}
		timer.Stop()
	}
}

// changesAfterTurnJS answers the change count after one more turn of the
// page's task queue, or -1 when the counter is gone (a new document).
const changesAfterTurnJS = `new Promise(resolve => {
  const c = new MessageChannel();
  c.port1.onmessage = () => { const s = window[` + observeKey + `]; resolve(s ? ` + seenJS + ` : -1); };
  c.port2.postMessage(0);
})`

// changesOrAfterTurnJS answers the change count at once when the page
// changed, else after one more turn of its task queue; -1 when the counter
// is gone.
const changesOrAfterTurnJS = `(() => {
  const s = window[` + observeKey + `];
  if (!s) return -1;
  if (s.n > 0) return ` + seenJS + `;
  return ` + changesAfterTurnJS + `;
})()`

// readyTwoTurnsJS is readyJS, with a second turn when the first saw no
// change: the first read after a load, which a still page ends.
const readyTwoTurnsJS = `(` + observeJS + `, ` + changesAfterTurnJS + `.then(n => n !== 0 ? n : ` + changesAfterTurnJS + `))`

// readyJS starts counting the changes of the document (observeJS) and
// answers the count after one turn of its task queue.
const readyJS = `(` + observeJS + `, ` + changesAfterTurnJS + `)`
