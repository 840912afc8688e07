package browserpool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	cdptarget "github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// RequestPolicy decides which requests the guarded targets of a browser may
// make; *router.PagePolicy implements it.
type RequestPolicy interface {
	// Check refuses a URL, saying why.
	Check(ctx context.Context, url string) error
	// FetchPatterns are the CDP Fetch URL patterns that cover every URL
	// Check may refuse.
	FetchPatterns() []string
	// Ports are the ports no websocket may reach.
	Ports() []int
}

// Owner is told what happens to the targets it guards. Its methods run on
// goroutines of the guard and must return quickly.
type Owner interface {
	// Opening says that a guarded target opened target id, which the
	// guard is guarding for the owner; Popup follows.
	Opening(id cdptarget.ID)
	// Popup says that target id, opened by the guarded page opener, is
	// guarded for the owner now and running; or, when !ok, that it could
	// not be guarded and was closed.
	Popup(id, opener cdptarget.ID, ok bool)
	// Refused says that a request of a guarded target was failed.
	Refused(id cdptarget.ID, url, reason string)
}

// Guard enforces the RequestPolicy in the browser on the targets that
// sessions own (Protect), their popups, and everything those start
// (cross-site iframes, workers, prerendered pages): it keeps a CDP session
// of its own on each, with the Fetch domain pausing the requests the policy
// may refuse and an offline network rule for websockets to protected ports
// (the Fetch domain does not see websocket handshakes). New targets start
// paused (Target.setAutoAttach with waitForDebuggerOnStart, on the browser
// and on every guarded session), so a popup or a frame is guarded before its
// first request. The guard speaks on the websocket directly, beside
// chromedp, which drops the messages of sessions it did not open.
type Guard struct {
	conn   *tapped
	policy RequestPolicy
	ctx    context.Context
	wg     sync.WaitGroup

	calls *rawCalls // the guard's own commands (ids from rawIDBase)

	mu sync.Mutex
	// sessions are the guard's own sessions: the target each is on and
	// who owns it (nil: a worker of the browser, guarded for everyone).
	sessions map[cdptarget.SessionID]*guarded
	owners   map[cdptarget.ID]Owner // targets guarded for an owner
	// holders are, for each page, every owner that Protect guarded it for
	// (or whose popup it is) and that has not released it: the page stays
	// guarded until the last one lets go, so a session that attached to a
	// page another session holds cannot take the guard off it.
	holders map[cdptarget.ID][]Owner
	tops    map[cdptarget.ID]cdptarget.ID // the page of each guarded frame, for popups opened by frames
	initial bool                          // setAutoAttach on the browser is in flight

	// broken says why the guard could not be turned on; set before the
	// guard is handed out, then only read.
	broken error
}

type guarded struct {
	target cdptarget.ID
	top    cdptarget.ID // the page it belongs to
	owner  Owner
	parent cdptarget.SessionID // "" for a session on the browser
}

// rawIDBase starts the ids of the guard's own commands (CDP ids are
// 32-bit), far above
// chromedp's, so that their replies are told apart.
const rawIDBase = 1 << 30

// guardTimeout bounds each exchange of the guard with the browser; a
// target that cannot be guarded within it is resumed (not the sessions')
// or closed (a session's popup).
const guardTimeout = 5 * time.Second

var errGuardClosed = errors.New("the connection to the browser is closed")

func newGuard(ctx context.Context, c *tapped, p RequestPolicy) *Guard {
	g := &Guard{conn: c, policy: p, ctx: ctx,
		calls: newRawCalls(c, rawIDBase), sessions: map[cdptarget.SessionID]*guarded{}, owners: map[cdptarget.ID]Owner{}, tops: map[cdptarget.ID]cdptarget.ID{}, holders: map[cdptarget.ID][]Owner{}}
	c.tap = g.tap
	return g
}

// start turns on auto-attach with waiting on the browser session; the
// targets that exist already are attached too, not waiting, and are let go.
func (g *Guard) start(bctx context.Context) error {
	g.mu.Lock()
	g.initial = true
	g.mu.Unlock()
	_, err := chromedp.CallBrowser(bctx, cdptarget.SetAutoAttach, cdptarget.SetAutoAttachParams{AutoAttach: true, WaitForDebuggerOnStart: true, Flatten: ptr(true)})
	g.mu.Lock()
	g.initial = false
	g.mu.Unlock()
	return err
}

// wait ends the guard's goroutines; the connection is closed already.
func (g *Guard) wait() { g.wg.Wait() }

// tap sees every message read from the browser, on chromedp's read loop,
// and keeps those of the guard (its replies and its sessions' messages)
// from chromedp. It never blocks.
func (g *Guard) tap(msg *cdproto.Message) bool {
	if msg.ID >= rawIDBase {
		g.calls.deliver(msg)
		return true
	}
	if msg.Method == "" {
		return false
	}
	g.mu.Lock()
	sess, ours := g.sessions[msg.SessionID]
	initial := g.initial
	g.mu.Unlock()
	if msg.SessionID != "" && !ours {
		return false
	}
	switch msg.Method {
	case cdproto.EventTargetAttachedToTarget:
		var ev cdptarget.EventAttachedToTarget
		if jsonv2.Unmarshal(msg.Params, &ev, chromedp.DefaultUnmarshalOptions) != nil || ev.TargetInfo == nil {
			return ours
		}
		var parent cdptarget.SessionID
		if ours {
			parent = msg.SessionID
		}
		switch {
		case ev.WaitingForDebugger:
			g.wg.Go(func() { g.attached(&ev, parent, sess) })
		case initial && parent == "":
			// Attached by the browser because it existed already: let go.
			g.wg.Go(func() {
				_, _ = g.call("", "", cdptarget.CommandDetachFromTarget, cdptarget.DetachFromTargetParams{SessionID: ev.SessionID})
			})
		case parent != "":
			// A child that exists already when a guarded session turns on
			// auto-attach: guard it too (it runs already).
			g.wg.Go(func() { g.attached(&ev, parent, sess) })
		}
		return ours
	case cdproto.EventTargetDetachedFromTarget:
		var ev cdptarget.EventDetachedFromTarget
		if jsonv2.Unmarshal(msg.Params, &ev, chromedp.DefaultUnmarshalOptions) == nil {
			g.mu.Lock()
			_, mine := g.sessions[ev.SessionID]
			if mine {
				delete(g.sessions, ev.SessionID)
			}
			g.mu.Unlock()
			return ours || mine
		}
		return ours
	case cdproto.EventFetchRequestPaused:
		var ev fetch.EventRequestPaused
		if jsonv2.Unmarshal(msg.Params, &ev, chromedp.DefaultUnmarshalOptions) == nil {
			sid := msg.SessionID
			g.wg.Go(func() { g.decide(sid, sess, &ev) })
		}
		return true
	}
	return ours
}

// attached decides about a target the browser attached the guard to.
func (g *Guard) attached(ev *cdptarget.EventAttachedToTarget, parent cdptarget.SessionID, parentSess *guarded) {
	info := ev.TargetInfo
	var owner Owner
	guard := false
	top, opener := info.TargetID, info.OpenerID
	switch {
	case parent != "":
		// A child of a guarded target (frame, worker, prerender): its owner's.
		g.mu.Lock()
		owner, guard, top = parentSess.owner, true, parentSess.top
		g.mu.Unlock()
	case info.Type == "service_worker" || info.Type == "shared_worker":
		// Workers of an origin, not of a page: guarded for everyone.
		guard = true
	case info.OpenerID != "":
		g.mu.Lock()
		owner, guard = g.owners[info.OpenerID]
		if t, ok := g.tops[info.OpenerID]; ok {
			opener = t
		}
		g.mu.Unlock()
	}
	if !guard {
		g.release(ev.SessionID, parent)
		return
	}
	g.mu.Lock()
	g.sessions[ev.SessionID] = &guarded{target: info.TargetID, top: top, owner: owner, parent: parent}
	popup := parent == "" && info.Type == "page" && owner != nil
	if popup {
		g.owners[info.TargetID] = owner
		g.holders[info.TargetID] = append(g.holders[info.TargetID], owner)
	}
	if parent != "" && owner != nil && info.Type == "iframe" {
		g.owners[info.TargetID], g.tops[info.TargetID] = owner, top
	}
	g.mu.Unlock()
	if popup {
		owner.Opening(info.TargetID)
	}
	if err := g.enable(ev.SessionID, info.Type, ev.WaitingForDebugger); err != nil {
		if popup {
			// Never leave a session's popup running unguarded.
			g.mu.Lock()
			delete(g.owners, info.TargetID)
			delete(g.holders, info.TargetID)
			g.mu.Unlock()
			ctx, cancel := context.WithTimeout(g.ctx, guardTimeout)
			defer cancel()
			_, _ = g.callCtx(ctx, "", cdptarget.CommandCloseTarget, cdptarget.CloseTargetParams{TargetID: info.TargetID})
			owner.Popup(info.TargetID, opener, false)
			return
		}
		g.release(ev.SessionID, parent)
		return
	}
	if popup {
		owner.Popup(info.TargetID, opener, true)
	}
}

// release resumes a target the guard does not keep, and detaches from it.
func (g *Guard) release(sid, parent cdptarget.SessionID) {
	_, _ = g.call(sid, "", "Runtime.runIfWaitingForDebugger", nil)
	_, _ = g.call(parent, "", cdptarget.CommandDetachFromTarget, cdptarget.DetachFromTargetParams{SessionID: sid})
}

// enable turns the guard on in session sid (on a target of type typ), and
// resumes the target when it waits. Every command goes out in one row and
// is waited for once: they reach the target in order, so its children
// start paused and its requests are paused before it resumes.
func (g *Guard) enable(sid cdptarget.SessionID, typ string, waiting bool) error {
	switch typ {
	case "page", "iframe", "worker", "shared_worker", "service_worker", "other", "webview":
		// Its own children start paused and are guarded in turn.
		return g.sendRules(sid, typ == "page" || typ == "iframe", waiting, true, typ == "page")
	}
	return g.rulesThen(sid, typ == "page" || typ == "iframe", waiting)
}

// rules (re)sends the policy's Fetch patterns and websocket rules.
func (g *Guard) rules(sid cdptarget.SessionID, frame bool) error {
	return g.rulesThen(sid, frame, false)
}

// rulesThen is rules, and resumes the target after them when resume is set:
// a paused target answers the Network domain only once it runs, so those
// commands and the resume go out in a row, and are waited for together.
func (g *Guard) rulesThen(sid cdptarget.SessionID, frame, resume bool) error {
	return g.sendRules(sid, frame, resume, false, false)
}

// sendRules sends, in one row, the auto-attach of the target's children (when
// autoAttach; its failure is fatal when mustAttach), the policy's Fetch
// patterns (fatal for a frame: a worker has no Fetch domain, its requests
// are paused on the page's session or its own network), the Network domain
// and the websocket rule, and the resume when resume is set; then waits for
// all the answers.
func (g *Guard) sendRules(sid cdptarget.SessionID, frame, resume, autoAttach, mustAttach bool) error {
	var pats []*fetch.RequestPattern
	for _, p := range g.policy.FetchPatterns() {
		pats = append(pats, &fetch.RequestPattern{URLPattern: p})
	}
	conds := []*network.Conditions{}
	for _, port := range g.policy.Ports() {
		for _, scheme := range []string{"ws", "wss"} {
			conds = append(conds, &network.Conditions{URLPattern: fmt.Sprintf("%s://*:%d/*", scheme, port), Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
		}
	}
	type cmd struct {
		method string
		params any
		fatal  func(error) error
	}
	var cmds []cmd
	if autoAttach {
		cmds = append(cmds, cmd{cdptarget.CommandSetAutoAttach, cdptarget.SetAutoAttachParams{AutoAttach: true, WaitForDebuggerOnStart: true, Flatten: ptr(true)}, func(err error) error {
			if mustAttach {
				return err
			}
			return nil
		}})
	}
	fetchFatal := func(err error) error {
		if frame {
			return fmt.Errorf("enable the request guard: %w", err)
		}
		return nil
	}
	if len(pats) == 0 {
		cmds = append(cmds, cmd{fetch.CommandDisable, nil, fetchFatal})
	} else {
		cmds = append(cmds, cmd{fetch.CommandEnable, fetch.EnableParams{Patterns: pats}, fetchFatal})
	}
	// The rule applies once the Network domain is on in the target; the
	// session's own chromedp context turns it on in pages, but not before
	// a popup is adopted, nor ever in a worker.
	wsFatal := func(err error) error { return fmt.Errorf("block websockets to protected ports: %w", err) }
	cmds = append(cmds,
		cmd{network.CommandEnable, network.EnableParams{MaxTotalBufferSize: ptr(int64(1 << 16)), MaxResourceBufferSize: ptr(int64(1 << 12))}, wsFatal},
		cmd{network.CommandEmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: conds}, wsFatal})
	if resume {
		cmds = append(cmds, cmd{"Runtime.runIfWaitingForDebugger", nil, func(error) error { return nil }})
	}
	ctx, cancel := context.WithTimeout(g.ctx, guardTimeout)
	defer cancel()
	waits := make([]func() ([]byte, error), 0, len(cmds))
	for _, c := range cmds {
		w, err := g.send(ctx, sid, c.method, c.params)
		if err != nil {
			return wsFatal(err)
		}
		waits = append(waits, w)
	}
	var first error
	for i, w := range waits {
		if _, err := w(); err != nil && first == nil {
			first = cmds[i].fatal(err)
		}
	}
	return first
}

// decide answers a paused request: failed when the policy refuses it.
func (g *Guard) decide(sid cdptarget.SessionID, sess *guarded, ev *fetch.EventRequestPaused) {
	url := ""
	if ev.Request != nil {
		url = ev.Request.URL
		if ev.Request.URLFragment != "" {
			url += ev.Request.URLFragment
		}
	}
	ctx, cancel := context.WithTimeout(g.ctx, guardTimeout)
	defer cancel()
	if err := g.policy.Check(ctx, url); err != nil {
		_, _ = g.callCtx(ctx, sid, fetch.CommandFailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient})
		var owner Owner
		if sess != nil {
			g.mu.Lock()
			owner = sess.owner
			g.mu.Unlock()
		}
		if owner != nil {
			owner.Refused(sess.target, url, err.Error())
		}
		return
	}
	_, _ = g.callCtx(ctx, sid, fetch.CommandContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
}

// Protect guards target id (a page a session opened or attached to) for
// owner: its requests, and its popups, which are owner's too. The page
// should not have loaded anything yet that the policy refuses.
func (g *Guard) Protect(ctx context.Context, id cdptarget.ID, owner Owner) error {
	if g == nil {
		return nil
	}
	if g.broken != nil {
		return fmt.Errorf("no page can be opened safely: %w; retry once the browser answers", g.broken)
	}
	res, err := g.callCtx(ctx, "", cdptarget.CommandAttachToTarget, cdptarget.AttachToTargetParams{TargetID: id, Flatten: ptr(true)})
	if err != nil {
		return fmt.Errorf("guard the page: %w", err)
	}
	var r cdptarget.AttachToTargetResult
	if err := json.Unmarshal(res, &r); err != nil {
		return fmt.Errorf("guard the page: %w", err)
	}
	g.mu.Lock()
	g.sessions[r.SessionID] = &guarded{target: id, top: id, owner: owner}
	g.owners[id] = owner
	g.holders[id] = append(g.holders[id], owner)
	g.mu.Unlock()
	if err := g.enable(r.SessionID, "page", false); err != nil {
		g.Release(id, owner)
		return fmt.Errorf("guard the page: %w", err)
	}
	return nil
}

// Release lets go of target id for owner. Once no owner holds it, the
// guard stops guarding it and the targets guarded under it; while another
// does, what was owner's (its popups, refusals) becomes that one's, and a
// release by an owner that does not hold id changes nothing: the page stays
// guarded rather than lose its guard to a mismatch.
func (g *Guard) Release(id cdptarget.ID, owner Owner) {
	if g == nil || g.broken != nil {
		return
	}
	g.mu.Lock()
	hs := g.holders[id]
	i := slices.IndexFunc(hs, func(o Owner) bool { return o == owner })
	if i >= 0 {
		hs = slices.Delete(hs, i, i+1)
	}
	if len(hs) > 0 {
		g.holders[id] = hs
		if i >= 0 {
			g.handLocked(id, owner, hs[len(hs)-1])
		}
		g.mu.Unlock()
		return
	}
	delete(g.holders, id)
	delete(g.owners, id)
	for f, t := range g.tops {
		if t == id {
			delete(g.tops, f)
			delete(g.owners, f)
		}
	}
	var top []cdptarget.SessionID
	for sid, s := range g.sessions {
		if s.top == id {
			delete(g.sessions, sid)
			if s.parent == "" {
				top = append(top, sid)
			}
		}
	}
	g.mu.Unlock()
	for _, sid := range top {
		// Detaching ends the session's children and its rules.
		_, _ = g.call("", "", cdptarget.CommandDetachFromTarget, cdptarget.DetachFromTargetParams{SessionID: sid})
	}
}

// Hand makes to a holder of target id in place of from: a spare tab,
// guarded for a stand-in owner, handed to the session that took it.
func (g *Guard) Hand(id cdptarget.ID, from, to Owner) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, o := range g.holders[id] {
		if o == from {
			g.holders[id][i] = to
		}
	}
	g.handLocked(id, from, to)
}

// handLocked gives what target id guards for from to to: the page's and
// its frames' popups, and its sessions' refusals.
func (g *Guard) handLocked(id cdptarget.ID, from, to Owner) {
	if g.owners[id] == from {
		g.owners[id] = to
	}
	for f, t := range g.tops {
		if t == id && g.owners[f] == from {
			g.owners[f] = to
		}
	}
	for _, s := range g.sessions {
		if s.top == id && s.owner == from {
			s.owner = to
		}
	}
}

// Refresh sends the policy again to every guarded session, after the
// protected set changed.
func (g *Guard) Refresh() {
	if g == nil || g.broken != nil {
		return
	}
	g.mu.Lock()
	list := make([]cdptarget.SessionID, 0, len(g.sessions))
	for sid := range g.sessions {
		list = append(list, sid)
	}
	g.mu.Unlock()
	for _, sid := range list {
		g.mu.Lock()
		s := g.sessions[sid]
		frame := s != nil && (s.parent == "" || g.owners[s.target] != nil)
		g.mu.Unlock()
		g.wg.Go(func() { _ = g.rules(sid, frame) })
	}
}

func (g *Guard) call(sid, _ cdptarget.SessionID, method string, params any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(g.ctx, guardTimeout)
	defer cancel()
	return g.callCtx(ctx, sid, method, params)
}

// callCtx sends one command on session sid ("" the browser) and waits for
// its answer.
func (g *Guard) callCtx(ctx context.Context, sid cdptarget.SessionID, method string, params any) ([]byte, error) {
	wait, err := g.send(ctx, sid, method, params)
	if err != nil {
		return nil, err
	}
	return wait()
}

// send sends one command on session sid and returns the wait for its
// answer, bounded by ctx: commands sent in a row reach the target in order.
func (g *Guard) send(ctx context.Context, sid cdptarget.SessionID, method string, params any) (func() ([]byte, error), error) {
	return g.calls.send(ctx, g.ctx.Done(), errGuardClosed, sid, method, params)
}

func ptr[T any](v T) *T { return &v }

// startGuard turns on the guard of a new connection, bounded by d. A guard
// that could not be turned on is broken: the connection stays up (its
// status and health checks are the pool's business), but Protect refuses
// every page, so that no page of a session ever runs unguarded.
func startGuard(bctx context.Context, guards <-chan *Guard, d time.Duration) *Guard {
	var g *Guard
	select {
	case g = <-guards:
	default:
		return &Guard{broken: errors.New("the page guard was not set up")}
	}
	ctx, cancel := context.WithTimeout(bctx, d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.start(bctx) }()
	select {
	case err := <-done:
		if err != nil {
			g.broken = fmt.Errorf("the browser refused to turn on the page guard: %w", err)
		}
	case <-ctx.Done():
		g.broken = fmt.Errorf("the browser did not turn on the page guard within %s", d)
	}
	return g
}
