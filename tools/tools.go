// Package tools holds the MCP tools. Tools work on the per-call Workspace
// (the calling session's page set) that the session package puts in the
// context; they never reach back into the HTTP layer.
//
// Where things are:
//
//	tools.go       Tool, the tool list (All, Register) and the permission rule
//	args.go        argument structs: bind, pageId and paging, INVALID_ARGUMENT
//	page.go        Tab, Workspace, page lookup, per-call contexts and timeouts
//	state.go       TabState, what the proxy remembers of one tab
//	element.go     snapshot uids to DOM nodes: scroll, geometry, click, fill
//	eval.go        Runtime.evaluate helpers
//	activity.go    what an input action set off: navigation, requests, DOM changes
//	listing.go     per-navigation rings, paging and list formatting
//	remoteobj.go   console values (remote objects) as text, with this package's caps
//	oopif.go       cross-site iframes (their own CDP targets)
//	keys.go        sending press_key combinations and typed text
//	logbudget.go   the byte budget of the console and network logs
//	files.go       the files directory of filePath arguments
//
// Browser-free logic lives in leaf packages under internal/, each tested
// without Chromium: tracesum (the performance trace summary), keys (key
// names and typed text to key events), remoteobj (remote objects as text).
//
// One file per tool group: pages.go, navigation.go, snapshot.go, input.go,
// debug.go (screenshot, evaluate), css.go, console.go, network.go,
// dialog.go, emulate.go, storage.go, performance.go, extensions.go.
package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// Config bounds the tools.
type Config struct {
	// CallTimeout bounds every CDP exchange of a tool that has no timeout
	// parameter of its own.
	CallTimeout time.Duration
	// NavigationTimeout is the default wait for a page load.
	NavigationTimeout time.Duration
	// Navigation decides which URLs navigate_page and new_page may load.
	Navigation NavPolicy
	// Toolsets are the tool groups the server offers (ParseToolsets); nil
	// offers them all. A tool outside them is neither listed nor callable.
	Toolsets []string
	// MaxCallTimeout is the ceiling of every timeout a caller gives (the
	// timeout argument of navigate_page, new_page, wait_for): a larger one
	// is refused, so that no call holds its session, tab and browser for
	// longer. Default 5m.
	MaxCallTimeout time.Duration
	// ReadyCap bounds how long navigate_page and new_page wait, after the
	// load, for the page to settle (its requests done, its DOM still):
	// apps that render after load are then whole in the first snapshot.
	// Default 3s; negative: return at the load.
	ReadyCap time.Duration
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
	if c.ReadyCap == 0 {
		c.ReadyCap = DefaultReadyCap
	}
}

// DefaultReadyCap is Config.ReadyCap when none is set.
const DefaultReadyCap = 3 * time.Second

// DefaultMaxCallTimeout is Config.MaxCallTimeout when none is set.
const DefaultMaxCallTimeout = 5 * time.Minute

// Tool is one MCP tool with its group and the permission it needs.
type Tool struct {
	Tool mcp.Tool
	// Group is the tool group (one of the Group constants) the tool is
	// listed in.
	Group string
	Perm  string
	// ArgPerms names the arguments that need a permission beyond Perm when
	// given (any value but null or ""), e.g. navigate_page's initScript runs
	// JavaScript and needs browser:script.
	ArgPerms map[string]string
	// Handler answers a call, with the arguments decoded into the tool's
	// argument struct (bind).
	Handler Handler
}

// The tool groups, which are also the toolsets a server (serve --toolsets)
// and a token (its toolsets claim) select.
const (
	// GroupCore is what most tasks need: pages, navigation, snapshot,
	// click, fill, press_key, screenshot, evaluate, wait_for.
	GroupCore = "core"
	// GroupInput is the rest of the input: hover, drag, fill_form,
	// type_text, upload_file, handle_dialog.
	GroupInput   = "input"
	GroupConsole = "console"
	GroupNetwork = "network"
	// GroupEmulation changes how the page is rendered or what it sees:
	// emulate, resize_page, and get_css_styles, which reads what that
	// rendering made of an element.
	GroupEmulation   = "emulation"
	GroupStorage     = "storage"
	GroupPerformance = "performance"
	GroupExtensions  = "extensions"
)

// Toolsets returns the names of every toolset, in listing order.
func Toolsets() []string {
	return []string{GroupCore, GroupInput, GroupNetwork, GroupConsole, GroupEmulation, GroupPerformance, GroupStorage, GroupExtensions}
}

// ParseToolsets checks a list of toolset names, as serve --toolsets takes
// them, and returns them in listing order without repeats; "all" selects
// every toolset and returns nil. An unknown name, or no name at all, is an
// error that lists the valid ones.
func ParseToolsets(names []string) ([]string, error) {
	want := map[string]bool{}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		switch {
		case n == "":
		case n == "all":
			return nil, nil
		case !slices.Contains(Toolsets(), n):
			return nil, fmt.Errorf("unknown toolset %q; valid toolsets: %s (or all)", n, strings.Join(Toolsets(), ", "))
		default:
			want[n] = true
		}
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("no toolset given; name some of %s, or all", strings.Join(Toolsets(), ", "))
	}
	var out []string
	for _, n := range Toolsets() {
		if want[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// MissingPerm returns the permission p lacks to call tl with args, and the
// argument that needs it ("" when the tool itself does); perm is "" when p
// may make the call.
func (tl Tool) MissingPerm(p auth.Principal, args map[string]any) (perm, arg string) {
	if !p.Has(tl.Perm) {
		return tl.Perm, ""
	}
	if len(args) == 0 || len(tl.ArgPerms) == 0 {
		return "", "" // no argument to check (tools/list asks with none)
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
	var list []Tool
	// One constructor per tool group, each in its own file.
	for _, g := range []struct {
		name  string
		tools []Tool
	}{
		{GroupCore, []Tool{
			t.listPages(), t.newPage(), t.selectPage(), t.closePage(), t.navigatePage(), t.waitFor(),
			t.takeSnapshot(), t.click(), t.fill(), t.pressKey(),
			t.takeScreenshot(), t.evaluateScript(),
		}},
		{GroupInput, t.inputTools()},
		{GroupConsole, t.consoleTools()},
		{GroupNetwork, t.networkTools()},
		{GroupEmulation, t.emulationTools()},
		{GroupStorage, t.storageTools()},
		{GroupPerformance, t.performanceTools()},
		{GroupExtensions, t.extensionTools()},
	} {
		for _, tl := range g.tools {
			tl.Group = g.name
			tl.Tool.Annotations = terseAnnotations(tl.Tool.Annotations)
			list = append(list, tl)
		}
	}
	return list
}

// terseAnnotations leaves out the hints that say what the MCP spec assumes
// anyway (readOnlyHint false, destructiveHint true, idempotentHint false,
// openWorldHint true; destructiveHint means nothing for a read-only tool):
// every tool repeats them, and they cost tools/list bytes without telling a
// client anything.
func terseAnnotations(a mcp.ToolAnnotation) mcp.ToolAnnotation {
	drop := func(h **bool, def bool) {
		if *h != nil && **h == def {
			*h = nil
		}
	}
	readOnly := a.ReadOnlyHint != nil && *a.ReadOnlyHint
	drop(&a.ReadOnlyHint, false)
	if readOnly {
		a.DestructiveHint = nil
	}
	drop(&a.DestructiveHint, true)
	drop(&a.IdempotentHint, false)
	drop(&a.OpenWorldHint, true)
	return a
}

// Register adds the tools to s. It checks no permission: Access does, for
// tools/list (HideForbidden) and for tools/call (the session middleware).
// Each tool's schemas are encoded here, once: mcp-go re-encodes structured
// schemas on every tools/list, which was a third of the proxy's CPU time of
// an SSE session's setup; an encoded one (RawInputSchema) it copies. The
// bytes on the wire are the same.
func Register(s *server.MCPServer, list []Tool) {
	for _, tl := range list {
		s.AddTool(encodedSchemas(tl.Tool), guard(tl))
	}
}

// encodedSchemas returns t with its structured schemas replaced by their
// JSON, or t itself if one fails to encode (mcp-go then reports it on
// tools/list as before).
func encodedSchemas(t mcp.Tool) mcp.Tool {
	if t.RawInputSchema == nil {
		raw, err := json.Marshal(t.InputSchema)
		if err != nil {
			return t
		}
		t.RawInputSchema, t.InputSchema = raw, mcp.ToolInputSchema{}
	}
	if t.RawOutputSchema == nil && t.OutputSchema.Type != "" {
		raw, err := json.Marshal(t.OutputSchema)
		if err != nil {
			return t
		}
		t.RawOutputSchema, t.OutputSchema = raw, mcp.ToolOutputSchema{}
	}
	return t
}

// Access is the one permission rule of a tool list: tools/list shows the
// tools that Check allows without arguments, and a call runs only when
// Check allows it with its arguments.
type Access struct {
	byName map[string]Tool
	// toolsets are the groups the server offers; nil: all.
	toolsets []string
}

// NewAccess returns the permission rule of list, offering only the tools of
// toolsets (from ParseToolsets; none: every tool). A token's toolsets claim
// narrows them further, never widens them.
func NewAccess(list []Tool, toolsets ...string) *Access {
	a := &Access{byName: make(map[string]Tool, len(list))}
	if len(toolsets) > 0 {
		a.toolsets = slices.Clone(toolsets)
	}
	for _, tl := range list {
		a.byName[tl.Tool.Name] = tl
	}
	return a
}

// toolsetRefusal returns why p may not use tl's toolset, or "".
func (a *Access) toolsetRefusal(p auth.Principal, tl Tool) string {
	if a.toolsets != nil && !slices.Contains(a.toolsets, tl.Group) {
		return fmt.Sprintf("%s is in the %s toolset, which this proxy does not offer (it offers %s); ask its admin to add %s to serve --toolsets",
			tl.Tool.Name, tl.Group, strings.Join(a.toolsets, ","), tl.Group)
	}
	if p.Toolsets != nil && !slices.Contains(p.Toolsets, tl.Group) && !slices.Contains(p.Toolsets, "all") {
		have := strings.Join(p.Toolsets, ",")
		if have == "" {
			have = "none"
		}
		if p.KeyID != "" {
			// The toolsets of an API key, or of a token minted with one.
			return fmt.Sprintf("%s is in the %s toolset, which your API key's toolsets (%s) leave out; ask an admin for an API key with --toolsets %s",
				tl.Tool.Name, tl.Group, have, tl.Group)
		}
		return fmt.Sprintf("%s is in the %s toolset, which your token's toolsets claim (%s) leaves out; ask an admin for a token with --toolsets %s",
			tl.Tool.Name, tl.Group, have, tl.Group)
	}
	return ""
}

// Check returns the permission p lacks to call tool with args, the argument
// that needs it ("" when the tool itself does) and the refusal to answer
// with; perm is "" when p may make the call. A tool outside the server's or
// p's toolsets lacks "toolset:<group>". A tool not in the list is not
// checked: mcp-go answers that it does not exist.
func (a *Access) Check(p auth.Principal, tool string, args map[string]any) (perm, arg, refusal string) {
	tl, ok := a.byName[tool]
	if !ok {
		return "", "", ""
	}
	if r := a.toolsetRefusal(p, tl); r != "" {
		return "toolset:" + tl.Group, "", r
	}
	if perm, arg = tl.MissingPerm(p, args); perm == "" {
		return "", "", ""
	}
	return perm, arg, tl.Refusal(perm, arg)
}

// HideForbidden returns a tools/list hook that drops the tools the caller's
// principal may not call, those outside its toolsets included. It is a hook rather than mcp-go's tool filter
// because that filter also answers calls, with "tool not found": a call of a
// hidden tool must instead reach the session middleware, which audits it and
// names the missing permission.
func (a *Access) HideForbidden() func(context.Context, any, *mcp.ListToolsRequest, *mcp.ListToolsResult) {
	return func(ctx context.Context, _ any, _ *mcp.ListToolsRequest, res *mcp.ListToolsResult) {
		if res == nil {
			return
		}
		p, _ := auth.FromContext(ctx)
		res.Tools = slices.DeleteFunc(res.Tools, func(tl mcp.Tool) bool {
			perm, _, _ := a.Check(p, tl.Name, nil)
			return perm != ""
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

// guard is the one place where a tool's error becomes its error result, and
// it tells with every result which pages wait on a JavaScript dialog: such
// a page answers no script, so any tool may stall on it, and the caller
// must learn why.
func guard(tl Tool) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := tl.Handler.call(ctx, req)
		if err != nil {
			res, err = errorResult(tl.Tool.Name, err), nil
		}
		return withDialogNotice(ctx, res), err
	}
}

// errorResult is the error result of tool for err: an argument error
// (argErrorf, needf, invalidArgf) is said with the tool's name in front,
// after its code if it has one, any other error as it is.
func errorResult(tool string, err error) *mcp.CallToolResult {
	if te, ok := err.(*toolError); ok {
		if te.code != "" {
			return mcp.NewToolResultError(te.code + ": " + tool + te.sep + te.msg)
		}
		return mcp.NewToolResultError(tool + te.sep + te.msg)
	}
	return mcp.NewToolResultError(err.Error())
}

// toolError is an error that errorResult says after the tool's name.
type toolError struct{ code, sep, msg string }

func (e *toolError) Error() string { return e.msg }

// argErrorf returns an error said as "<tool>: <message>".
func argErrorf(format string, args ...any) error {
	return &toolError{sep: ": ", msg: fmt.Sprintf(format, args...)}
}

// needf returns an error said as "<tool> <message>", for a message that
// starts with "needs".
func needf(format string, args ...any) error {
	return &toolError{sep: " ", msg: fmt.Sprintf(format, args...)}
}

type toolset struct {
	cfg Config
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
