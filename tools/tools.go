// Package tools holds the MCP tools, one file per tool group. Tools work on
// the per-call Workspace (the calling session's page set) that the session
// package puts in the context; they never reach back into the HTTP layer.
package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
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

// Config bounds the tools.
type Config struct {
	// CallTimeout bounds every CDP exchange of a tool that has no timeout
	// parameter of its own.
	CallTimeout time.Duration
	// NavigationTimeout is the default wait for a page load.
	NavigationTimeout time.Duration
	// Navigation decides which URLs navigate_page and new_page may load.
	Navigation NavPolicy
	// MaxCallTimeout is the ceiling of every timeout a caller gives (the
	// timeout argument of navigate_page, new_page, wait_for): a larger one
	// is refused, so that no call holds its session, tab and browser for
	// longer. Default 5m.
	MaxCallTimeout time.Duration
}

func (c *Config) fill() {
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.NavigationTimeout <= 0 {
		c.NavigationTimeout = 30 * time.Second
	}
	if c.MaxCallTimeout <= 0 {
		c.MaxCallTimeout = DefaultMaxCallTimeout
	}
}

// DefaultMaxCallTimeout is Config.MaxCallTimeout when none is set.
const DefaultMaxCallTimeout = 5 * time.Minute

// Tool is one MCP tool with the permission it needs.
type Tool struct {
	Tool mcp.Tool
	Perm string
	// ArgPerms names the arguments that need a permission beyond Perm when
	// given (any value but null or ""), e.g. navigate_page's initScript runs
	// JavaScript and needs browser:script.
	ArgPerms map[string]string
	Handler  server.ToolHandlerFunc
}

// MissingPerm returns the permission p lacks to call tl with args, and the
// argument that needs it ("" when the tool itself does); perm is "" when p
// may make the call.
func (tl Tool) MissingPerm(p auth.Principal, args map[string]any) (perm, arg string) {
	if !p.Has(tl.Perm) {
		return tl.Perm, ""
	}
	for _, name := range slices.Sorted(maps.Keys(tl.ArgPerms)) {
		if v, ok := args[name]; ok && v != nil && v != "" && !p.Has(tl.ArgPerms[name]) {
			return tl.ArgPerms[name], name
		}
	}
	return "", ""
}

// Refusal is the answer to a call that MissingPerm refused.
func (tl Tool) Refusal(perm, arg string) string {
	if arg == "" {
		return PermissionRefusal(tl.Tool.Name, perm)
	}
	return ArgPermissionRefusal(tl.Tool.Name, arg, perm)
}

// All returns every tool, wired to cfg.
func All(cfg Config) []Tool {
	cfg.fill()
	t := &toolset{cfg: cfg}
	list := []Tool{
		t.listPages(), t.newPage(), t.selectPage(), t.closePage(), t.navigatePage(), t.waitFor(),
		t.takeSnapshot(), t.click(), t.fill(),
		t.takeScreenshot(), t.evaluateScript(), t.getCSSStyles(),
	}
	// One constructor per tool group, each in its own file.
	for _, group := range [][]Tool{
		t.inputTools(), t.consoleTools(), t.networkTools(), t.emulationTools(),
		t.storageTools(), t.performanceTools(), t.extensionTools(),
	} {
		list = append(list, group...)
	}
	return list
}

// Register adds the tools to s, each guarded by its permission, and hides
// tools the caller lacks the permission for from tools/list when
// server.WithToolFilter(Filter(tools)) is set.
func Register(s *server.MCPServer, list []Tool) {
	for _, tl := range list {
		s.AddTool(tl.Tool, guard(tl))
	}
}

// HideForbidden returns a tools/list hook that drops the tools the caller's
// principal may not call. Calls are not filtered: a forbidden call reaches a
// guard that says which permission is missing.
func HideForbidden(list []Tool) func(context.Context, any, *mcp.ListToolsRequest, *mcp.ListToolsResult) {
	perms := map[string]string{}
	for _, tl := range list {
		perms[tl.Tool.Name] = tl.Perm
	}
	return func(ctx context.Context, _ any, _ *mcp.ListToolsRequest, res *mcp.ListToolsResult) {
		if res == nil {
			return
		}
		p, _ := auth.FromContext(ctx)
		res.Tools = slices.DeleteFunc(res.Tools, func(tl mcp.Tool) bool {
			perm, ok := perms[tl.Name]
			return ok && !p.Has(perm)
		})
	}
}

// PermissionRefusal is the answer to a call of tool by a token without
// perm: it names the permission and says how to get it.
func PermissionRefusal(tool, perm string) string {
	return fmt.Sprintf("%s needs the %s permission, which your token lacks; ask an admin for a token with --perms %s", tool, perm, perm)
}

// ArgPermissionRefusal is the answer to a call of tool with argument arg by
// a token without perm, which arg needs beyond the tool's own permission.
func ArgPermissionRefusal(tool, arg, perm string) string {
	return fmt.Sprintf("%s with %s needs the %s permission, which your token lacks; call it without %s, or ask an admin for a token with --perms %s", tool, arg, perm, arg, perm)
}

// guard checks the caller's permission for tl, and tells with every result
// which pages wait on a JavaScript dialog: such a page answers no script, so
// any tool may stall on it, and the caller must learn why.
func guard(tl Tool) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		p, _ := auth.FromContext(ctx)
		if perm, arg := tl.MissingPerm(p, req.GetArguments()); perm != "" {
			return withDialogNotice(ctx, mcp.NewToolResultError(tl.Refusal(perm, arg))), nil
		}
		res, err := tl.Handler(ctx, req)
		return withDialogNotice(ctx, res), err
	}
}

type toolset struct {
	cfg Config
}

// callCtx bounds one CDP exchange on tab: it ends after d, or when the tool
// call is cancelled, whichever is first. The tab's own context stays alive.
func callCtx(toolCtx context.Context, tab *Tab, d time.Duration) (context.Context, context.CancelFunc) {
	c, cancel := context.WithTimeout(tab.Ctx, d)
	stop := context.AfterFunc(toolCtx, cancel)
	return c, func() { stop(); cancel() }
}

// cdpError turns a CDP failure into a message that says what happened and
// what to do next.
func cdpError(what string, cctx context.Context, tab *Tab, d time.Duration, err error) *mcp.CallToolResult {
	switch {
	case tab.Ctx.Err() != nil:
		return mcp.NewToolResultErrorf("%s: page %d is gone (the tab was closed or the browser connection dropped); call list_pages and retry", what, tab.ID)
	case errors.Is(cctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return mcp.NewToolResultErrorf("%s: the browser did not answer within %s; the page may be busy, retry or raise the timeout", what, d)
	default:
		return mcp.NewToolResultErrorf("%s: %v", what, err)
	}
}

// pageOf resolves the pageId argument to a tab of the calling session.
func pageOf(ctx context.Context, req mcp.CallToolRequest) (*Tab, *mcp.CallToolResult) {
	ws, err := workspaceFrom(ctx)
	if err != nil {
		return nil, mcp.NewToolResultError(err.Error())
	}
	tab, err := ws.Tab(ctx, req.GetInt("pageId", 0))
	if err != nil {
		return nil, mcp.NewToolResultError(err.Error())
	}
	return tab, nil
}

var pageIDOption = mcp.WithNumber("pageId", mcp.Description("Page to act on, from list_pages. Defaults to the selected page."))

// timeoutArg reads the timeout argument of tool in milliseconds: def when
// it is missing or not positive, the error result when it is above the
// ceiling (Config.MaxCallTimeout). The ceiling is compared in milliseconds,
// before any conversion can overflow.
func (t *toolset) timeoutArg(tool string, req mcp.CallToolRequest, def time.Duration) (time.Duration, *mcp.CallToolResult) {
	ms := req.GetFloat("timeout", 0)
	if ms <= 0 {
		return min(def, t.cfg.MaxCallTimeout), nil
	}
	if ceiling := t.cfg.MaxCallTimeout.Milliseconds(); ms > float64(ceiling) {
		return 0, mcp.NewToolResultErrorf("%s: timeout %.0f ms is above this proxy's ceiling of %d ms (--max-call-timeout); pass a timeout of at most %d, or leave it out for the default %d",
			tool, ms, ceiling, ceiling, min(def, t.cfg.MaxCallTimeout).Milliseconds())
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

func quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	s = strings.ReplaceAll(s, "\n", `\n`)
	return `"` + s + `"`
}

func textResult(format string, args ...any) *mcp.CallToolResult {
	return mcp.NewToolResultText(fmt.Sprintf(format, args...))
}

func ptr[T any](v T) *T { return &v }

// jsonValue encodes v for a CDP argument; v is always encodable here.
func jsonValue(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
