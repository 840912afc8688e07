package browserpool

import (
	"context"
	"sync"
	"time"

	cdptarget "github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// Spare keeps one blank tab of a managed browser opened and guarded ahead,
// for the next session's first page tool. A tab opened blank runs its
// renderer start-up (80-140 ms) before its navigation can start: sending
// the navigation sooner is not safe (the guard's websocket rule needs the
// renderer's Network domain, and Chromium holds that command back while a
// navigation is pending, so the new document's first script can open a
// websocket unguarded). A tab made ahead has paid that start-up already.
//
// Only managed browsers have one: they are headless and driven only by the
// proxy over a pipe, so nobody sees the extra tab, and each is one user's,
// so the tab only ever goes to a session of that user. There is at most one
// spare per connection; it dies with the browser process, and a new
// connection (every reconnect starts a new process) starts afresh.
type Spare struct {
	ctx   context.Context // the connection's chromedp browser context
	guard *Guard

	mu    sync.Mutex
	id    cdptarget.ID // the ready tab; "" when none
	owner *spareOwner
	// pending is the tab being made, from its creation until it is ready
	// or closed: no session may attach to it meanwhile either.
	pending cdptarget.ID
	making  chan struct{} // closed when the tab being made is ready or failed; nil when none is
}

// spareTimeout bounds the making of a spare tab.
const spareTimeout = 10 * time.Second

// spareWait bounds how long Take waits for a tab still being made.
const spareWait = 2 * time.Second

// spareRefillDelay is how long after a spare is taken the next is made:
// making a tab starts a renderer, which would compete for the CPU with the
// first navigation of the session that took the last one.
const spareRefillDelay = time.Second

func newSpare(ctx context.Context, g *Guard) *Spare {
	s := &Spare{ctx: ctx, guard: g}
	s.refill()
	return s
}

// refill starts making a tab unless one is ready or being made.
func (s *Spare) refill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id != "" || s.making != nil || s.ctx.Err() != nil {
		return
	}
	done := make(chan struct{})
	s.making = done
	go s.make(done)
}

func (s *Spare) make(done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithTimeout(s.ctx, spareTimeout)
	defer cancel()
	// In the background: the session's tabs stay in front while it waits.
	created, err := chromedp.CallBrowser(ctx, cdptarget.CreateTarget, cdptarget.CreateTargetParams{
		URL: "about:blank", NewWindow: ptr(false), Background: ptr(true),
	})
	if err != nil {
		s.finish("", nil)
		return
	}
	id, o := created.TargetID, &spareOwner{}
	s.mu.Lock()
	s.pending = id
	s.mu.Unlock()
	if err := s.guard.Protect(ctx, id, o); err != nil {
		// Protect let go of its part; the tab is closed unused.
		_, _ = chromedp.CallBrowser(ctx, cdptarget.CloseTarget, cdptarget.CloseTargetParams{TargetID: id})
		s.finish("", nil)
		return
	}
	s.finish(id, o)
}

func (s *Spare) finish(id cdptarget.ID, o *spareOwner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.making, s.pending = nil, ""
	s.id, s.owner = id, o
}

// Take hands the ready tab to a session, brought to the front as a tab the
// session opened itself would be, waiting (bounded by ctx) for one being
// made; the next is made shortly after. The caller adopts the tab with
// adopt before it drives it: from then on the guard reports the tab's
// popups and refusals to owner. ok is false when there is no tab: the
// caller opens one itself.
func (s *Spare) Take(ctx context.Context) (id cdptarget.ID, adopt func(owner Owner), ok bool) {
	if s == nil {
		return "", nil, false
	}
	s.mu.Lock()
	making := s.making
	s.mu.Unlock()
	if making != nil {
		// A tab being made is ready in a few hundred milliseconds; one
		// that takes longer is not waited for past spareWait, so the
		// caller still has its call's time to open a tab of its own.
		wait := time.NewTimer(spareWait)
		defer wait.Stop()
		select {
		case <-making:
		case <-wait.C:
			return "", nil, false
		case <-ctx.Done():
			return "", nil, false
		}
	}
	s.mu.Lock()
	id, o := s.id, s.owner
	s.id, s.owner = "", nil
	s.mu.Unlock()
	if id == "" {
		s.refill()
		return "", nil, false
	}
	time.AfterFunc(spareRefillDelay, s.refill)
	if _, err := chromedp.CallBrowser(ctx, cdptarget.ActivateTarget, cdptarget.ActivateTargetParams{TargetID: id}); err != nil {
		s.guard.Release(id, o)
		cctx, cancel := context.WithTimeout(s.ctx, spareTimeout)
		defer cancel()
		_, _ = chromedp.CallBrowser(cctx, cdptarget.CloseTarget, cdptarget.CloseTargetParams{TargetID: id})
		return "", nil, false
	}
	return id, func(owner Owner) {
		o.adopt(owner)
		s.guard.Hand(id, o, owner)
	}, true
}

// Is reports whether id is the spare tab, ready or being made, which no
// session may attach to.
func (s *Spare) Is(id cdptarget.ID) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return id != "" && (id == s.id || id == s.pending)
}

// spareOwner stands for the session a spare tab will be given to: the
// guard learns the tab's owner when it is guarded, before it is taken. A
// blank tab no one drives opens no popup and makes no request, so nothing
// is lost before adopt.
type spareOwner struct {
	mu    sync.Mutex
	owner Owner
}

func (o *spareOwner) adopt(owner Owner) {
	o.mu.Lock()
	o.owner = owner
	o.mu.Unlock()
}

func (o *spareOwner) get() Owner {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owner
}

func (o *spareOwner) Opening(id cdptarget.ID) {
	if w := o.get(); w != nil {
		w.Opening(id)
	}
}

func (o *spareOwner) Popup(id, opener cdptarget.ID, ok bool) {
	if w := o.get(); w != nil {
		w.Popup(id, opener, ok)
	}
}

func (o *spareOwner) Refused(id cdptarget.ID, url, reason string) {
	if w := o.get(); w != nil {
		w.Refused(id, url, reason)
	}
}

// Ready returns the tab waiting to be taken; "" when none is.
func (s *Spare) Ready() cdptarget.ID {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}
