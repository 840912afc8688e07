package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

const (
	// defaultSnapshotLength caps a snapshot returned inline; a model that
	// needs more asks for it or writes the snapshot to a file.
	defaultSnapshotLength = 100_000
	// maxFrames bounds how many iframes one snapshot descends into.
	maxFrames = 20
)

type takeSnapshotArgs struct {
	pageArg
	Verbose   bool   `json:"verbose"`
	FilePath  string `json:"filePath"`
	MaxLength *int   `json:"maxLength"`
}

func (t *toolset) takeSnapshot() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("take_snapshot",
			mcp.WithDescription("Read the page as a text accessibility tree (iframes too) with element uids. Prefer it to screenshots."),
			mcp.WithBoolean("verbose", mcp.Description("All nodes")),
			mcp.WithString("filePath"),
			mcp.WithNumber("maxLength", mcp.Description("Default 100000 chars")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a takeSnapshotArgs) (*mcp.CallToolResult, error) {
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			text, err := t.snapshot(ctx, tab, a.Verbose)
			if err != nil {
				return nil, err
			}
			if fp := a.FilePath; fp != "" {
				p, err := writeOutput(ctx, fp, []byte(text))
				if err != nil {
					return mcp.NewToolResultError("take_snapshot: " + err.Error()), nil
				}
				return textResult("Saved the snapshot of page %d (%d bytes, %d lines) to %s.", tab.ID, len(text), strings.Count(text, "\n"), p), nil
			}
			limit := defaultSnapshotLength
			if a.MaxLength != nil {
				limit = *a.MaxLength
			}
			if limit > 0 && len(text) > limit {
				cut := strings.LastIndexByte(text[:limit], '\n') + 1
				text = text[:cut] + fmt.Sprintf("[snapshot truncated: %d of %d characters shown; pass a larger maxLength or a filePath]\n", cut, len(text))
			}
			return mcp.NewToolResultText(text), nil
		}),
	}
}

// snapshot renders the accessibility tree of tab, descending into iframes.
func (t *toolset) snapshot(ctx context.Context, tab *Tab, verbose bool) (string, error) {
	cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
	defer cancel()
	tree, err := chromedp.Call(cctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		return "", cdpError("take_snapshot", cctx, tab, t.cfg.CallTimeout, err)
	}
	if len(tree.Nodes) == 0 {
		return "The page has no accessibility tree yet; wait for it to load and retry.", nil
	}
	w := &snapWriter{call: cctx, ctx: cctx, tab: tab, verbose: verbose}
	root := tree.Nodes[0]
	tab.State.resetIfNewDocument(root.BackendDOMNodeID)
	w.walk(root, indexNodes(tree.Nodes), 0, "")
	return w.b.String(), nil
}

func indexNodes(nodes []*accessibility.Node) map[accessibility.NodeID]*accessibility.Node {
	byID := make(map[accessibility.NodeID]*accessibility.Node, len(nodes))
	for _, n := range nodes {
		byID[n.NodeID] = n
	}
	return byID
}

type snapWriter struct {
	call    context.Context // the snapshot call, on the page's session
	ctx     context.Context // the call, on the session of scope
	scope   target.ID       // the target being walked: "" for the page, else a cross-site frame
	tab     *Tab
	verbose bool
	frames  int
	b       strings.Builder
}

// walk writes n and its subtree. Ignored nodes and nameless containers are
// skipped but their children are kept, one level up; text that only repeats
// its parent's name is dropped.
func (w *snapWriter) walk(n *accessibility.Node, byID map[accessibility.NodeID]*accessibility.Node, depth int, parentName string) {
	role, name := axString(n.Role), axString(n.Name)
	if role == "InlineTextBox" {
		return
	}
	emit := !n.Ignored
	if !w.verbose {
		switch {
		case role == "StaticText":
			emit = emit && strings.TrimSpace(name) != "" && !strings.Contains(parentName, strings.TrimSpace(name))
		case role == "RootWebArea" || role == "Iframe":
		case name == "" && axString(n.Value) == "" && !interactiveRoles[role]:
			// A nameless container (list, section, paragraph, generic...)
			// says little to a model: its children move up one level.
			emit = false
		}
	}
	childDepth, childParent := depth, parentName
	if emit {
		w.line(n, depth, role, name)
		childDepth, childParent = depth+1, name
	}
	for _, id := range n.ChildIDs {
		if c, ok := byID[id]; ok {
			w.walk(c, byID, childDepth, childParent)
		}
	}
	if role == "Iframe" && len(n.ChildIDs) == 0 {
		w.frame(n, childDepth)
	}
}

// frame writes the tree of the document inside an iframe element. A frame
// of the same site is in the session that is walked; a frame of another
// site is a target of its own, whose ID is the frame's.
func (w *snapWriter) frame(n *accessibility.Node, depth int) {
	if w.frames >= maxFrames || n.BackendDOMNodeID == 0 {
		return
	}
	w.frames++
	desc, err := chromedp.Call(w.ctx, dom.DescribeNode, dom.DescribeNodeParams{BackendNodeID: n.BackendDOMNodeID})
	if err != nil || desc.Node == nil || desc.Node.FrameID == "" {
		return
	}
	id := target.ID(desc.Node.FrameID)
	if !w.tab.State.frames.known(id) {
		sub, err := chromedp.Call(w.ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{FrameID: desc.Node.FrameID})
		if err == nil && len(sub.Nodes) > 0 {
			w.children(sub.Nodes, depth)
			return
		}
	}
	if err := w.crossSite(id, n.BackendDOMNodeID, depth); err != nil {
		w.b.WriteString(strings.Repeat("  ", depth) + "(frame content not available: " + err.Error() + "; take_snapshot again to retry)\n")
	}
}

// crossSite writes the tree of cross-site frame id, shown by the iframe
// element owner of the target being walked. The frame is attached to on
// first use, making room for it if need be, and learns its owner here:
// input on its nodes goes through the owner (elementOf).
func (w *snapWriter) crossSite(id target.ID, owner cdp.BackendNodeID, depth int) error {
	st := w.tab.State
	f, err := st.attachFrame(w.call, w.tab.Ctx, id, "", st.frames.generation(), true)
	if err != nil {
		if w.call.Err() != nil {
			return errors.New("no time left to attach to it")
		}
		return errors.New("the frame has not loaded")
	}
	st.frames.setOwner(f, nodeRef{frame: w.scope, id: owner})
	fctx := onSession(w.call, f.ctx)
	sub, err := chromedp.Call(fctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil || len(sub.Nodes) == 0 {
		return errors.New("the frame has no accessibility tree yet")
	}
	parentCtx, parent := w.ctx, w.scope
	w.ctx, w.scope = fctx, id
	w.children(sub.Nodes, depth)
	w.ctx, w.scope = parentCtx, parent
	return nil
}

// children writes the tree of a frame's document below its root.
func (w *snapWriter) children(nodes []*accessibility.Node, depth int) {
	root := nodes[0]
	byID := indexNodes(nodes)
	for _, id := range root.ChildIDs {
		if c, ok := byID[id]; ok {
			w.walk(c, byID, depth, "")
		}
	}
}

func (w *snapWriter) line(n *accessibility.Node, depth int, role, name string) {
	w.b.WriteString(strings.Repeat("  ", depth))
	if n.BackendDOMNodeID != 0 {
		fmt.Fprintf(&w.b, "uid=%d ", w.tab.State.uid(nodeRef{frame: w.scope, id: n.BackendDOMNodeID}))
	}
	if role == "StaticText" && !w.verbose {
		// Text is the most common line: the quotes say what it is.
		w.b.WriteString(quote(name) + "\n")
		return
	}
	w.b.WriteString(role)
	if name != "" {
		w.b.WriteString(" " + quote(name))
	}
	if v := axString(n.Value); v != "" && v != name {
		w.b.WriteString(" value=" + quote(v))
	}
	for _, p := range n.Properties {
		if p.Value == nil {
			continue
		}
		switch p.Name {
		case "focused":
			if axString(p.Value) == "true" && role != "RootWebArea" {
				w.b.WriteString(" focused")
			}
		case "checked", "disabled", "expanded", "selected", "pressed", "required", "readonly", "multiselectable", "modal", "invalid":
			switch v := axString(p.Value); v {
			case "true":
				w.b.WriteString(" " + string(p.Name))
			case "", "false":
			default:
				w.b.WriteString(" " + string(p.Name) + "=" + quote(v))
			}
		case "level":
			if role == "heading" || w.verbose {
				w.b.WriteString(" level=" + axString(p.Value))
			}
		case "url":
			if v := axString(p.Value); v != "" && !strings.HasPrefix(v, "javascript:") && (role != "RootWebArea" || w.verbose) {
				w.b.WriteString(" url=" + quote(v))
			}
		}
	}
	w.b.WriteByte('\n')
}

// axString decodes an accessibility value (raw JSON) to text.
func axString(v *accessibility.Value) string {
	if v == nil || len(v.Value) == 0 {
		return ""
	}
	var s string
	if err := json.Unmarshal(v.Value, &s); err == nil {
		return s
	}
	return strings.Trim(string(v.Value), `"`)
}

// interactiveRoles are kept in a compact snapshot even without a name: they
// are what a model acts on.
var interactiveRoles = map[string]bool{
	"button": true, "link": true, "textbox": true, "searchbox": true, "checkbox": true,
	"radio": true, "combobox": true, "listbox": true, "option": true, "menuitem": true,
	"menuitemcheckbox": true, "menuitemradio": true, "tab": true, "slider": true,
	"spinbutton": true, "switch": true, "treeitem": true, "heading": true,
	"img": true, "image": true, "video": true, "audio": true, "dialog": true, "alertdialog": true,
	"alert": true, "progressbar": true, "scrollbar": true, "gridcell": true, "columnheader": true,
	"rowheader": true,
}
