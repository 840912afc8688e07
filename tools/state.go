package tools

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
)

// TabState is what the tools remember about one tab: the snapshot uids and
// whether a navigation is under way. The session creates one per tab and
// feeds it the tab's events through Listen.
type TabState struct {
	mainFrame cdp.FrameID

	// Collectors, each fed every event of the tab; each guards itself.
	console  consoleLog
	network  networkLog
	dialog   dialogState
	activity activity
	trace    traceCollector

	emulation emulationState // what emulate set on the tab (emulate.go)

	frames frameRegistry // cross-site iframes attached to (frames.go)

	objs objectCache // remote objects of nodes that actions used (element.go)

	panics listenerPanics // panics recovered in Listen

	mu        sync.Mutex
	byNodeRef map[nodeRef]int
	byUID     map[int]nodeRef
	nextUID   int
	started   uint64 // main-frame cross-document navigations started
	// stopped is started as it was when the main frame last stopped
	// loading, or fired the load event of the latest navigation's
	// document: not a count, because Chrome stops a frame's loading once
	// for navigations that overlap (a refused navigation commits its error
	// page after the next navigation started, and only the last stops).
	stopped uint64
	lastURL string
	// navLoader is the loader of the latest cross-document navigation of
	// the main frame, and navCommitted says its document committed: the
	// load event after that commit ends the navigation (frameStoppedLoading
	// comes 5-15 ms later, and a load event of an older document, such as
	// a refused navigation's error page, must not end a newer one).
	navLoader    cdp.LoaderID
	navCommitted bool
	docRoot      cdp.BackendNodeID
	// docGen counts the main frame's documents; observed is the document
	// whose change counter (observeJS) was last started or used, at
	// observedAt.
	docGen     uint64
	observed   uint64
	observedAt time.Time
	changed    chan struct{} // closed on every started/stopped change
}

// NewTabState returns the state of the tab whose target is id. In Chrome a
// page target's ID is also its main frame's ID.
func NewTabState(id target.ID, opts ...TabOption) *TabState {
	s := &TabState{
		mainFrame: cdp.FrameID(id),
		byNodeRef: map[nodeRef]int{},
		byUID:     map[int]nodeRef{},
		changed:   make(chan struct{}),
	}
	s.setLogBudget(nil)
	for _, o := range opts {
		o(s)
	}
	return s
}

// TabOption configures a TabState.
type TabOption func(*TabState)

// WithLogBudget makes the tab's console and network collectors keep at
// most b's per-tab bytes and share b's total with every other tab of b,
// from the time the tab is bound (Bind). Without it a tab keeps at most
// DefaultLogBytesPerTab and counts in no total.
func WithLogBudget(b *LogBudget) TabOption {
	return func(s *TabState) { s.setLogBudget(b) }
}

func (s *TabState) setLogBudget(b *LogBudget) {
	limit := int64(DefaultLogBytesPerTab)
	if b != nil {
		limit = b.perTab
	}
	s.console.acct = logAccount{budget: b, limit: limit / 2, evictTo: s.console.evictTo}
	s.network.acct = logAccount{budget: b, limit: limit / 2, evictTo: s.network.evictTo}
}

// bindLogs counts the tab's collectors in their budget while tabCtx lasts.
func (s *TabState) bindLogs(tabCtx context.Context) {
	s.console.acct.join(tabCtx, &s.console.mu)
	s.network.acct.join(tabCtx, &s.network.mu)
}

// Listen takes the tab's events. It runs on the tab's read loop: it only
// updates counters and never blocks. A panic in one collector is recovered
// (counted, and reported to OnListenerPanic's func once per collector):
// that event is lost to it, and the read loop, the other collectors and the
// next events go on.
func (s *TabState) Listen(ev any) {
	s.guard("console", s.console.listen, ev)
	s.guard("network", s.network.listen, ev)
	s.guard("dialog", s.dialog.listen, ev)
	s.guard("activity", s.activity.listen, ev)
	s.guard("trace", s.trace.listen, ev)
	s.guard("navigation", s.listenNav, ev)
	s.guard("frames", s.listenTargets, ev)
}

// ListenerPanic is a panic that Listen recovered.
type ListenerPanic struct {
	Collector string // console, network, dialog, activity, trace, navigation or frames
	Value     string // the panic value, printed
	Stack     string // the stack of the panicking goroutine
}

// listenerPanics counts the panics Listen recovered.
type listenerPanics struct {
	mu     sync.Mutex
	count  uint64
	first  *ListenerPanic
	report func(ListenerPanic)
	told   map[string]bool // collectors already reported
}

// OnListenerPanic sets f to be told of the first panic of each collector of
// the tab, e.g. to log it with its stack; later panics of that collector are
// only counted. f runs on the tab's read loop and must not block.
func (s *TabState) OnListenerPanic(f func(ListenerPanic)) {
	s.panics.mu.Lock()
	s.panics.report = f
	s.panics.mu.Unlock()
}

// ListenerPanics returns how many panics Listen recovered and the first of
// them (nil when none).
func (s *TabState) ListenerPanics() (uint64, *ListenerPanic) {
	s.panics.mu.Lock()
	defer s.panics.mu.Unlock()
	if s.panics.first == nil {
		return s.panics.count, nil
	}
	first := *s.panics.first
	return s.panics.count, &first
}

// guard feeds ev to one collector, recovering a panic.
func (s *TabState) guard(collector string, listen func(any), ev any) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		p := ListenerPanic{Collector: collector, Value: fmt.Sprint(v), Stack: string(debug.Stack())}
		s.panics.mu.Lock()
		s.panics.count++
		if s.panics.first == nil {
			s.panics.first = &p
		}
		report := s.panics.report
		if s.panics.told[collector] {
			report = nil
		} else if report != nil {
			if s.panics.told == nil {
				s.panics.told = map[string]bool{}
			}
			s.panics.told[collector] = true
		}
		s.panics.mu.Unlock()
		if report != nil {
			report(p)
		}
	}()
	listen(ev)
}

// listenNav tracks the main frame's navigations and documents.
func (s *TabState) listenNav(ev any) {
	switch e := ev.(type) {
	case *page.EventFrameStartedNavigating:
		if e.FrameID != s.mainFrame {
			return
		}
		switch e.NavigationType {
		case page.FrameStartedNavigatingNavigationTypeSameDocument, page.FrameStartedNavigatingNavigationTypeHistorySameDocument:
			return
		}
		s.bump(func() { s.started++; s.lastURL = e.URL; s.navLoader, s.navCommitted = e.LoaderID, false })
	case *page.EventFrameNavigated:
		// A new document: every uid of the old one is stale. The counter
		// goes on, so an old uid can never name a node of the new page.
		if e.Frame != nil && e.Frame.ID == s.mainFrame {
			s.mu.Lock()
			if e.Frame.LoaderID != "" && e.Frame.LoaderID == s.navLoader {
				s.navCommitted = true
			}
			clear(s.byNodeRef)
			clear(s.byUID)
			s.docRoot = 0
			s.docGen++
			s.mu.Unlock()
			s.objs.clear()
			s.frames.stopAll()
		}
	case *page.EventLoadEventFired:
		s.mu.Lock()
		done := s.navCommitted && s.stopped != s.started
		s.mu.Unlock()
		if done {
			s.bump(func() {
				if s.navCommitted {
					s.stopped = s.started
				}
			})
		}
	case *page.EventFrameStoppedLoading:
		if e.FrameID == s.mainFrame {
			s.bump(func() { s.stopped = s.started })
		}
	}
}

func (s *TabState) bump(f func()) {
	s.mu.Lock()
	f()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// navMark is the navigation counter at one moment.
type navMark uint64

func (s *TabState) mark() navMark {
	s.mu.Lock()
	defer s.mu.Unlock()
	return navMark(s.started)
}

// settle waits, when a navigation started after m, until the page stopped
// loading or maxWait passed. It returns the URL navigated to ("" when there
// was no navigation) and whether loading finished.
func (s *TabState) settle(ctx context.Context, m navMark, maxWait time.Duration) (string, bool) {
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		started, stopped, url, ch := s.started, s.stopped, s.lastURL, s.changed
		s.mu.Unlock()
		if navMark(started) == m {
			return "", true
		}
		if stopped >= started {
			return url, true
		}
		select {
		case <-ch:
		case <-timer.C:
			return url, false
		case <-ctx.Done():
			return url, false
		}
	}
}

// observerTrust is how long after its last use a document's change
// counter is taken to still run; it stops itself 30 s after (observeJS),
// and page timers only ever fire late.
const observerTrust = 20 * time.Second

// docMark returns the main frame's document generation, to be taken before
// a call that starts the change counter.
func (s *TabState) docMark() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.docGen
}

// armObserver notes that the change counter runs in document doc (a
// docMark taken before the call that started or used it). When the
// document changed since, nothing is noted.
func (s *TabState) armObserver(doc uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if doc == s.docGen {
		s.observed, s.observedAt = doc+1, time.Now()
	}
}

// observerArmed says whether the current document's change counter was
// started or used recently enough to still run.
func (s *TabState) observerArmed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observed == s.docGen+1 && time.Since(s.observedAt) < observerTrust
}

// uid returns the snapshot uid of a node, giving it one if it has none.
// A node keeps its uid for as long as its document lives, and uids are
// never reused within a tab, so a stale uid cannot hit another node.
func (s *TabState) uid(ref nodeRef) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.byNodeRef[ref]; ok {
		return u
	}
	s.nextUID++
	s.byNodeRef[ref] = s.nextUID
	s.byUID[s.nextUID] = ref
	return s.nextUID
}

// node returns the node of a uid from a snapshot. Use elementOf to act on
// it: a node of a cross-site frame is only known to the frame's session.
func (s *TabState) node(uid string) (nodeRef, error) {
	var n int
	if _, err := fmt.Sscan(strings.TrimPrefix(uid, "uid="), &n); err != nil {
		return nodeRef{}, fmt.Errorf("uid %q is not a snapshot uid; call take_snapshot and use a uid from its lines (uid=N)", uid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.byUID[n]
	if !ok {
		return nodeRef{}, fmt.Errorf("uid %d is not in the latest snapshot of this page (the page changed or navigated); call take_snapshot and use a fresh uid", n)
	}
	return id, nil
}

// resetIfNewDocument forgets every uid when the page shows a new document,
// so the map does not grow with every navigation. The uid counter goes on,
// so old uids stay invalid.
func (s *TabState) resetIfNewDocument(root cdp.BackendNodeID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.docRoot == root {
		return
	}
	s.docRoot = root
	clear(s.byNodeRef)
	clear(s.byUID)
}

// navChanged returns a channel closed at the next start or stop of a
// main-frame navigation.
func (s *TabState) navChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// navSince returns the URL of the latest main-frame navigation when one
// started after m.
func (s *TabState) navSince(m navMark) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastURL, navMark(s.started) != m
}
