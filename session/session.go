// Package session binds MCP sessions to their owners and gives each one its
// own set of tabs in the owner's browser.
package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// logged adds the session's user and ID to e, an event of the manager's
// log, where a logger of the session's own (zerolog's With) would have put
// them: the same line, without the 500-byte context such a logger
// reserves and keeps for the session's life.
func (s *Session) logged(e *zerolog.Event) *zerolog.Event {
	return e.Str("user", s.UserID).Str("session", s.ID)
}

// Session is one MCP session (or a user's default workspace): its owner and
// the tabs it opened. It implements tools.Workspace.
type Session struct {
	ID     string
	UserID string

	mgr *Manager

	calls sync.Mutex // tool calls of one session run in order
	// ctx ends when the session closes, and with it the call in flight:
	// closing never waits for a call (see Manager.finish).
	ctx    context.Context
	cancel context.CancelFunc

	// lastUsed is when the session last ran a tool or took a request
	// (touch), as a monotonic offset from clockBase: atomic, so that
	// UserStats reads it under the manager's lock without taking s.mu.
	lastUsed atomic.Int64
	// userLast is the latest lastUsed of the owner's open sessions, set
	// while the session is among them (Manager.addLocked, dropLocked).
	userLast atomic.Pointer[latest]

	mu         sync.Mutex
	tabs       map[int]*tab
	order      []int
	selected   int
	nextID     int
	generation uint64 // browser connection the tabs belong to
	notice     string // told once, with the next tool result
	closed     bool
	filesDir   string        // made on first use
	tempFiles  bool          // filesDir is this session's own temp dir
	adopting   int           // popups being attached to (popups.go)
	adopted    chan struct{} // closed when adopting drops to 0

	toolState tools.WorkspaceState // what the tools keep between calls
	// handled marks a default workspace, whose page ids are page handles
	// (handles.go).
	handled bool
}

type tab struct {
	tools.Tab
	cancel context.CancelFunc
	opener int // the page that opened it, for a popup
}

var _ tools.Workspace = (*Session)(nil)

// conn returns the live connection to the owner's browser, noting when it is
// a new one: the tabs of the old connection are then gone.
func (s *Session) conn(ctx context.Context) (browserpool.Conn, error) {
	// A user with no registered browser gets a managed one here, when the
	// proxy runs them: the first page tool of a session starts it.
	b, err := s.mgr.pool.Use(s.UserID)
	if errors.Is(err, browserpool.ErrNoBrowser) {
		return browserpool.Conn{}, fmt.Errorf("no browser is registered for %s; run `mcp-browser-proxy connect --server <proxy URL>` on your machine, or register one with POST /api/register {\"userId\":%q,\"browserURL\":\"http://127.0.0.1:9222\"} (or ask the operator to run serve --managed-browsers)", s.UserID, s.UserID)
	}
	var le *browserpool.ManagedLimitError
	if errors.As(err, &le) {
		s.mgr.refuse(s.UserID, s.ID, "", ReasonManagedLimit, le.Error())
		return browserpool.Conn{}, err
	}
	if err != nil {
		return browserpool.Conn{}, fmt.Errorf("no managed browser for %s: %w", s.UserID, err)
	}
	c, err := b.Conn(ctx, s.mgr.cfg.BrowserWait)
	if err != nil {
		return c, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.generation != c.Generation {
		// Any session that ever had a page is told, even when its pages
		// were already dropped on the way down.
		if s.generation != 0 && s.nextID > 0 {
			for _, t := range s.tabs {
				t.cancel()
			}
			s.releaseHandles(s.order...)
			clear(s.tabs)
			s.order = nil
			s.selected = 0
			s.notice = "Note: the browser restarted or reconnected since the last call; this session's pages were reset. New page ids start fresh (old ids are not reused)."
		}
		s.generation = c.Generation
	}
	return c, nil
}

// Tab implements tools.Workspace.
func (s *Session) Tab(ctx context.Context, pageID int) (*tools.Tab, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if pageID == 0 {
		pageID = s.selected
	}
	if pageID == 0 {
		s.mu.Unlock()
		return s.newTab(ctx, c, false)
	}
	t, ok := s.tabs[pageID]
	s.mu.Unlock()
	if !ok {
		return nil, s.notFound(pageID)
	}
	if t.Ctx.Err() != nil {
		if c.Ctx.Err() != nil {
			return nil, fmt.Errorf("page %d: the connection to the browser was lost; retry in a few seconds", pageID)
		}
		s.drop(pageID)
		return nil, fmt.Errorf("page %d was closed outside this session; call list_pages, or new_page to open another", pageID)
	}
	return &t.Tab, nil
}

// NewTab implements tools.Workspace.
func (s *Session) NewTab(ctx context.Context, background bool) (*tools.Tab, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	return s.newTab(ctx, c, background)
}

// newTab creates a tab in the owner's browser, attaches to it and selects it.
func (s *Session) newTab(ctx context.Context, c browserpool.Conn, background bool) (*tools.Tab, error) {
	if err := s.roomForTab(); err != nil {
		return nil, err
	}
	cctx, cancel := s.browserCall(ctx, c)
	defer cancel()
	if !background {
		// A managed browser's tab opened and guarded ahead.
		if id, adopt, ok := c.Spare.Take(cctx); ok {
			adopt(s)
			done := c.Sessions.AttachAhead(id)
			t, err := s.attachAs(cctx, c, id, true, 0, false, true)
			done()
			if err != nil {
				closeTarget(c.Ctx, id)
				return nil, s.browserError("open a new page", c, err)
			}
			return t, nil
		}
	}
	created, err := chromedp.CallBrowser(cctx, target.CreateTarget, target.CreateTargetParams{
		URL: "about:blank", NewWindow: ptr(false), Background: ptr(background),
	})
	if err != nil {
		return nil, s.browserError("open a new page", c, err)
	}
	// chromedp's attach commands go out in one row (browserpool.ahead).
	done := c.Sessions.AttachAhead(created.TargetID)
	t, err := s.attach(cctx, c, created.TargetID, true)
	done()
	if err != nil {
		closeTarget(c.Ctx, created.TargetID)
		return nil, s.browserError("open a new page", c, err)
	}
	return t, nil
}

// AttachTab implements tools.Workspace: it attaches the session to a page
// of the owner's browser that the session did not open. Such a page is
// never closed by the proxy: close_page and the end of the session only
// detach from it.
func (s *Session) AttachTab(ctx context.Context, id target.ID) (*tools.Tab, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, pid := range s.order {
		if t := s.tabs[pid]; t.TargetID == id {
			s.selected = pid
			s.mu.Unlock()
			return &t.Tab, nil
		}
	}
	s.mu.Unlock()
	if err := s.roomForTab(); err != nil {
		return nil, err
	}
	cctx, cancel := s.browserCall(ctx, c)
	defer cancel()
	res, err := chromedp.CallBrowser(cctx, target.GetTargets, target.GetTargetsParams{})
	if err != nil {
		return nil, s.browserError("list tabs", c, err)
	}
	if c.Spare.Is(id) || !slices.ContainsFunc(res.TargetInfos, func(ti *target.Info) bool { return ti.TargetID == id && ti.Type == "page" }) {
		return nil, fmt.Errorf("no tab %q in your browser; call list_pages with all=true to see them", id)
	}
	return s.attach(cctx, c, id, false)
}

// BrowserTabs implements tools.Workspace: every page of the owner's
// browser that is not one of this session's pages.
func (s *Session) BrowserTabs(ctx context.Context) ([]tools.BrowserTab, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := s.browserCall(ctx, c)
	defer cancel()
	res, err := chromedp.CallBrowser(cctx, target.GetTargets, target.GetTargetsParams{})
	if err != nil {
		return nil, s.browserError("list tabs", c, err)
	}
	s.mu.Lock()
	mine := map[target.ID]bool{}
	for _, t := range s.tabs {
		mine[t.TargetID] = true
	}
	s.mu.Unlock()
	var out []tools.BrowserTab
	for _, ti := range res.TargetInfos {
		if ti.Type == "page" && !mine[ti.TargetID] && !c.Spare.Is(ti.TargetID) {
			out = append(out, tools.BrowserTab{TargetID: ti.TargetID, Title: ti.Title, URL: ti.URL})
		}
	}
	return out, nil
}

// browserError says why a browser-level exchange failed and what to do.
func (s *Session) browserError(what string, c browserpool.Conn, err error) error {
	switch {
	case c.Ctx.Err() != nil:
		return fmt.Errorf("%s: the connection to the browser was lost; retry in a few seconds", what)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: the browser did not answer within %s; it may be busy or hung, retry later", what, s.mgr.cfg.CallTimeout)
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}

func (s *Session) roomForTab() error {
	s.mu.Lock()
	n := len(s.tabs)
	s.mu.Unlock()
	if max := s.mgr.cfg.MaxTabsPerSession; max > 0 && n >= max {
		s.mgr.cfg.Metrics.LimitRejected(LimitTabsPerSession)
		return fmt.Errorf("this session has %d pages, the limit; close_page one first", n)
	}
	return nil
}

// browserCall bounds one browser-level exchange: CallTimeout, or the end of
// the tool call, whichever comes first.
func (s *Session) browserCall(ctx context.Context, c browserpool.Conn) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithTimeout(c.Ctx, s.mgr.cfg.CallTimeout)
	stop := context.AfterFunc(ctx, cancel)
	return cctx, func() { stop(); cancel() }
}

// attach attaches the session to page target id, adds it with the next page
// ID and selects it. owned says whether the session opened it.
func (s *Session) attach(cctx context.Context, c browserpool.Conn, id target.ID, owned bool) (*tools.Tab, error) {
	return s.attachAs(cctx, c, id, owned, 0, false, false)
}

// attachAs is attach, for a popup of page opener when popup is set. The
// page policy is on in the browser before the session can drive the page;
// a popup was guarded by the connection's guard before it started, and so
// was a spare tab (guarded set) before it was taken. A popup does not take
// the selection.
func (s *Session) attachAs(cctx context.Context, c browserpool.Conn, id target.ID, owned bool, opener int, popup, guarded bool) (*tools.Tab, error) {
	// The guard's session and the session's own attach to the page side by
	// side; the session gets the page only once both are done.
	protected := make(chan error, 1)
	if popup || guarded {
		protected <- nil
	} else {
		go func() { protected <- c.Guard.Protect(cctx, id, s) }()
	}
	state := tools.NewTabState(id, tools.WithLogBudget(s.mgr.cfg.LogBudget))
	state.OnListenerPanic(func(p tools.ListenerPanic) {
		s.logged(s.mgr.cfg.Log.Error()).Str("collector", p.Collector).Str("panic", p.Value).Str("stack", p.Stack).
			Msg("recovered a panic in a tab's event listener; the tab goes on")
	})
	// Detach, never close, when the context ends: closing is done on purpose
	// by closeTarget, so no cancel can close a tab by accident.
	tctx, tcancel := chromedp.NewContext(c.Ctx, chromedp.WithTargetID(id),
		chromedp.WithDetachOnCancel(), chromedp.WithListener(state.Listen))
	guard := c.Guard
	release := func() {
		// Each waits up to 5 s for a browser that does not answer:
		// side by side, not one after the other.
		var wg sync.WaitGroup
		wg.Go(tcancel)
		wg.Go(func() { guard.Release(id, s) })
		wg.Wait()
	}
	attachErr := tools.Attach(cctx, tctx)
	if err := <-protected; err != nil {
		// Protect releases the guard's part itself when it fails.
		tcancel()
		return nil, err
	}
	if attachErr != nil {
		release()
		return nil, attachErr
	}
	state.Bind(tctx) // the tab's cross-site frames are attached to from now on
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		release()
		return nil, fmt.Errorf("the session was closed")
	}
	s.nextID++
	pid := s.nextID
	if s.handled {
		pid = s.mgr.handles.take(s.UserID)
	}
	t := &tab{Tab: tools.Tab{ID: pid, TargetID: id, Ctx: tctx, State: state, Owned: owned, Send: rowSender(c, tctx)}, cancel: release, opener: opener}
	s.tabs[t.ID] = t
	s.order = append(s.order, t.ID)
	if !popup || s.selected == 0 {
		s.selected = t.ID
	}
	s.logged(s.mgr.cfg.Log.Debug()).Int("page", t.ID).Bool("owned", owned).Msg("page attached")
	return &t.Tab, nil
}

// rowSender returns the tools.Tab.Send of the attached tab tctx: commands
// on its session through the connection's Sessions; nil without them.
func rowSender(c browserpool.Conn, tctx context.Context) func(context.Context, string, any) (func() ([]byte, error), error) {
	cc := chromedp.FromContext(tctx)
	if c.Sessions == nil || cc == nil || cc.Target == nil {
		return nil
	}
	sid, sessions := cc.Target.SessionID, c.Sessions
	return func(ctx context.Context, method string, params any) (func() ([]byte, error), error) {
		return sessions.Send(ctx, sid, method, params)
	}
}

// SelectTab implements tools.Workspace.
func (s *Session) SelectTab(ctx context.Context, pageID int) (*tools.Tab, error) {
	if _, err := s.conn(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	t, ok := s.tabs[pageID]
	if ok {
		s.selected = pageID
	}
	s.mu.Unlock()
	if !ok {
		return nil, s.notFound(pageID)
	}
	return &t.Tab, nil
}

// CloseTab implements tools.Workspace.
func (s *Session) CloseTab(ctx context.Context, pageID int) error {
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	t, ok := s.tabs[pageID]
	s.mu.Unlock()
	if !ok {
		return s.notFound(pageID)
	}
	s.drop(pageID)
	if t.Owned {
		closeTarget(c.Ctx, t.TargetID)
	}
	t.cancel()
	return nil
}

// drop forgets a tab; the selection moves to the most recent other tab.
func (s *Session) drop(pageID int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tabs[pageID]; ok {
		s.releaseHandles(pageID)
	}
	delete(s.tabs, pageID)
	s.order = slices.DeleteFunc(s.order, func(id int) bool { return id == pageID })
	if s.selected == pageID {
		s.selected = 0
		if n := len(s.order); n > 0 {
			s.selected = s.order[n-1]
		}
	}
}

// Tabs implements tools.Workspace.
func (s *Session) Tabs(ctx context.Context) ([]tools.TabInfo, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := s.browserCall(ctx, c)
	defer cancel()
	res, err := chromedp.CallBrowser(cctx, target.GetTargets, target.GetTargetsParams{})
	if err != nil {
		return nil, s.browserError("list pages", c, err)
	}
	live := map[target.ID]*target.Info{}
	for _, ti := range res.TargetInfos {
		live[ti.TargetID] = ti
	}
	s.mu.Lock()
	order := slices.Clone(s.order)
	tabs := make(map[int]*tab, len(s.tabs))
	for id, t := range s.tabs {
		tabs[id] = t
	}
	s.mu.Unlock()
	var out []tools.TabInfo
	for _, id := range order {
		t := tabs[id]
		ti, ok := live[t.TargetID]
		if !ok {
			s.drop(id) // closed from outside
			continue
		}
		out = append(out, tools.TabInfo{ID: id, Title: ti.Title, URL: ti.URL, Attached: !t.Owned, Opener: t.opener})
	}
	s.mu.Lock()
	for i := range out {
		out[i].Selected = out[i].ID == s.selected
	}
	s.mu.Unlock()
	return out, nil
}

// OpenTabs implements tools.Workspace.
func (s *Session) OpenTabs() []*tools.Tab {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*tools.Tab, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, &s.tabs[id].Tab)
	}
	return out
}

// State implements tools.Workspace: the session keeps the tools' state, so
// that it goes with the session.
func (s *Session) State() *tools.WorkspaceState { return &s.toolState }

// FilesDir implements tools.Workspace: --files-dir/<user> when the operator
// set one, else a temp directory of the session's own, removed when it closes.
func (s *Session) FilesDir() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Its temp dir is gone; a call cut short must not make another.
		return "", errSessionClosed
	}
	if s.filesDir != "" {
		return s.filesDir, nil
	}
	if base := s.mgr.cfg.FilesDir; base != "" {
		dir, err := userDir(base, s.UserID)
		if err != nil {
			return "", fmt.Errorf("files directory: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("files directory: %w", err)
		}
		s.filesDir = dir
		return dir, nil
	}
	dir, err := os.MkdirTemp("", "mbp-session-")
	if err != nil {
		return "", fmt.Errorf("files directory: %w", err)
	}
	s.filesDir, s.tempFiles = dir, true
	return dir, nil
}

// userDir returns base's directory for userID. The ID must be a valid user
// ID and one local path element: validation already keeps "." and ".." out,
// and this check keeps an ID that skipped it (an old store, a new caller)
// from naming base itself or anything outside it.
func userDir(base, userID string) (string, error) {
	if err := auth.ValidateUserID(userID); err != nil {
		return "", err
	}
	if !filepath.IsLocal(userID) || filepath.Base(userID) != userID {
		return "", fmt.Errorf("invalid user ID %q: not a single path element", userID)
	}
	return filepath.Join(base, userID), nil
}

// takeNotice returns the pending one-time notice and clears it.
func (s *Session) takeNotice() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.notice
	s.notice = ""
	return n
}

func (s *Session) touch() { s.setLastUsed(time.Now()) }

// clockBase is the origin of Session.lastUsed; offsets from it keep the
// monotonic clock reading that idle expiry compares with.
var clockBase = time.Now()

func (s *Session) setLastUsed(t time.Time) {
	v := int64(t.Sub(clockBase))
	s.lastUsed.Store(v)
	if l := s.userLast.Load(); l != nil {
		l.raise(v)
	}
}

// LastUsed returns when the session last ran a tool or was opened.
func (s *Session) LastUsed() time.Time {
	return clockBase.Add(time.Duration(s.lastUsed.Load()))
}

// close closes the tabs the session opened (unless keep) and detaches.
func (s *Session) close(keep bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.cancel()
	tabs := make([]*tab, 0, len(s.tabs))
	for _, t := range s.tabs {
		tabs = append(tabs, t)
	}
	s.releaseHandles(s.order...)
	clear(s.tabs)
	s.order = nil
	gen := s.generation
	if s.tempFiles {
		_ = os.RemoveAll(s.filesDir)
	}
	s.mu.Unlock()
	if len(tabs) == 0 {
		return
	}
	var bctx context.Context
	if b, ok := s.mgr.pool.Get(s.UserID); ok {
		if c, err := b.Conn(context.Background(), 0); err == nil && c.Generation == gen {
			bctx = c.Ctx
		}
	}
	// The tabs close, and their contexts detach (chromedp waits up to 5 s
	// for each), side by side: a browser that answers nothing costs one
	// bound, not one per tab.
	var ctx context.Context = context.Background()
	if bctx != nil {
		c, cancel := context.WithTimeout(bctx, closeTabsBound)
		defer cancel()
		ctx = c
	}
	var wg sync.WaitGroup
	for _, t := range tabs {
		if !keep && bctx != nil && t.Owned {
			wg.Go(func() {
				_, _ = chromedp.CallBrowser(ctx, target.CloseTarget, target.CloseTargetParams{TargetID: t.TargetID})
			})
		}
		wg.Go(t.cancel)
	}
	wg.Wait()
}

// closeTabsBound bounds closing one tab, or the tabs of a session.
const closeTabsBound = 5 * time.Second

// closeTarget closes a tab the proxy opened, bounded in time.
func closeTarget(browserCtx context.Context, id target.ID) {
	ctx, cancel := context.WithTimeout(browserCtx, closeTabsBound)
	defer cancel()
	_, _ = chromedp.CallBrowser(ctx, target.CloseTarget, target.CloseTargetParams{TargetID: id})
}

func ptr[T any](v T) *T { return &v }

// notFound is the error for a pageId that is not one of s's pages. A page
// handle of another user gets the same answer as an unknown one, so that
// it tells nothing, and is audited.
func (s *Session) notFound(pageID int) error {
	if s.handled && s.mgr.handles.foreign(s.UserID, pageID) {
		s.mgr.refuse(s.UserID, "", "", ReasonPageHandle, "page handle "+strconv.Itoa(pageID)+" of another user")
	}
	return fmt.Errorf("page %d is not one of this session's pages; call list_pages to see them", pageID)
}

// releaseHandles forgets the page handles ids of a default workspace.
func (s *Session) releaseHandles(ids ...int) {
	if s.handled {
		s.mgr.handles.release(s.UserID, ids...)
	}
}
