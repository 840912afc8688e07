package tools

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/mark3labs/mcp-go/mcp"
)

// Tab is one page that a session owns.
type Tab struct {
	// ID is the small integer that tools call pageId; unique in a session.
	ID       int
	TargetID target.ID
	// Ctx is the chromedp context of the tab, already attached. Derive
	// per-call contexts from it; never cancel it from a tool.
	Ctx   context.Context
	State *TabState
	// Owned says the session opened the tab. A tab it only attached to
	// (browser:all-tabs) is never closed by the proxy, only detached.
	Owned bool
	// Send, when set, sends a command on the tab's session beside
	// chromedp and returns the wait for its answer: commands sent one
	// after another reach the tab in that order, so input events go out
	// in a row instead of one round trip each.
	Send func(ctx context.Context, method string, params any) (func() ([]byte, error), error)
}

// BrowserTab is a page of the user's browser outside the session.
type BrowserTab struct {
	TargetID target.ID
	Title    string
	URL      string
}

// TabInfo describes a page for list_pages.
type TabInfo struct {
	ID       int
	Title    string
	URL      string
	Selected bool
	Attached bool // a tab of the user's that the session attached to
	Opener   int  // the page that opened it, for a popup; 0 otherwise
}

// Workspace is the page set of the calling session, as the tools see it.
type Workspace interface {
	// Tab returns the page pageID, or the selected page when pageID is 0;
	// a session without pages gets a new one.
	Tab(ctx context.Context, pageID int) (*Tab, error)
	// NewTab opens a page (about:blank) and selects it; a background tab is
	// not brought to the front of the browser window.
	NewTab(ctx context.Context, background bool) (*Tab, error)
	// SelectTab makes pageID the selected page.
	SelectTab(ctx context.Context, pageID int) (*Tab, error)
	// CloseTab closes a page the session opened, or detaches from a page
	// it only attached to.
	CloseTab(ctx context.Context, pageID int) error
	// BrowserTabs lists the pages of the user's browser that are not the
	// session's; AttachTab makes one of them a page of the session.
	BrowserTabs(ctx context.Context) ([]BrowserTab, error)
	AttachTab(ctx context.Context, id target.ID) (*Tab, error)
	// Tabs lists the session's pages, in the order they were opened.
	Tabs(ctx context.Context) ([]TabInfo, error)
	// OpenTabs returns the session's open tabs without any browser call and
	// without opening one.
	OpenTabs() []*Tab
	// FilesDir is the only directory tools may write files to (filePath
	// arguments); it exists when FilesDir returns without error.
	FilesDir() (string, error)
	// State is what the tools keep for the session between calls; the
	// session owns it, and it goes with the session.
	State() *WorkspaceState
}

// WorkspaceState is what the tools keep for one session between calls:
// the toolset is shared by all sessions, so its per-session state lives in
// the session, which hands it out through Workspace.State. The zero value
// is ready to use.
type WorkspaceState struct {
	mu sync.Mutex
	// extConsoles are the console collectors of extension workers, by
	// extension id (extensions.go).
	extConsoles map[string]*extConsole
}

// SharedWorkspace is a Workspace that may tell it is shared by every agent
// of its user (the stateless protocol's default workspace): its selected
// page is theirs too, so an agent passes the pageId of its own pages, which
// are handles bound to the user.
type SharedWorkspace interface {
	Shared() bool
}

type workspaceKey struct{}

// WithWorkspace returns ctx carrying ws for the tool handlers.
func WithWorkspace(ctx context.Context, ws Workspace) context.Context {
	return context.WithValue(ctx, workspaceKey{}, ws)
}

// WorkspaceFrom returns the workspace bound to ctx by WithWorkspace.
func WorkspaceFrom(ctx context.Context) (Workspace, bool) {
	ws, ok := ctx.Value(workspaceKey{}).(Workspace)
	return ws, ok
}

func workspaceFrom(ctx context.Context) (Workspace, error) {
	ws, ok := WorkspaceFrom(ctx)
	if !ok {
		return nil, errors.New("no browser session is bound to this call")
	}
	return ws, nil
}

// callCtx bounds one CDP exchange on tab: it ends after d, or when the tool
// call is cancelled, whichever is first. The tab's own context stays alive.
func callCtx(toolCtx context.Context, tab *Tab, d time.Duration) (context.Context, context.CancelFunc) {
	c, cancel := context.WithTimeout(tab.Ctx, d)
	stop := context.AfterFunc(toolCtx, cancel)
	return c, func() { stop(); cancel() }
}

// errConnLost is a command that could not be written to the browser's
// connection (Tab.Send): the connection is closing.
var errConnLost = errors.New("the browser connection dropped")

// cdpError turns a CDP failure into a message that says what happened and
// what to do next.
func cdpError(what string, cctx context.Context, tab *Tab, d time.Duration, err error) error {
	switch {
	case tab.Ctx.Err() != nil || errors.Is(err, errConnLost):
		return fmt.Errorf("%s: page %d is gone (the tab was closed or the browser connection dropped); call list_pages and retry", what, tab.ID)
	case errors.Is(cctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: the browser did not answer within %s; the page may be busy, retry or raise the timeout", what, d)
	default:
		return fmt.Errorf("%s: %v", what, err)
	}
}

// pageOf resolves the pageId argument to a tab of the calling session: the
// selected page when id is 0.
func pageOf(ctx context.Context, id int) (*Tab, error) {
	ws, err := workspaceFrom(ctx)
	if err != nil {
		return nil, err
	}
	tab, err := ws.Tab(ctx, id)
	if err != nil {
		return nil, err
	}
	return tab, nil
}

// pageIDOption is the pageId parameter, described once in the server
// instructions (proxy/mcp.go).
var pageIDOption = mcp.WithNumber("pageId")

// timeoutArg reads the timeout argument of a tool in milliseconds: def
// when it is missing or not positive, an error when it is above the
// ceiling (Config.MaxCallTimeout). The ceiling is compared in milliseconds,
// before any conversion can overflow.
func (t *toolset) timeoutArg(ms float64, def time.Duration) (time.Duration, error) {
	if ms <= 0 {
		return min(def, t.cfg.MaxCallTimeout), nil
	}
	if ceiling := t.cfg.MaxCallTimeout.Milliseconds(); ms > float64(ceiling) {
		return 0, argErrorf("timeout %.0f ms is above this proxy's ceiling of %d ms (--max-call-timeout); pass a timeout of at most %d, or leave it out for the default %d",
			ms, ceiling, ceiling, min(def, t.cfg.MaxCallTimeout).Milliseconds())
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// requiredPage returns the workspace and the pageId argument of a tool that
// must name a page.
func requiredPage(ctx context.Context, id int) (Workspace, int, error) {
	ws, err := workspaceFrom(ctx)
	if err != nil {
		return nil, 0, err
	}
	if id <= 0 {
		return nil, 0, needf("needs a pageId from list_pages")
	}
	return ws, id, nil
}
