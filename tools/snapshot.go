package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

func (t *toolset) takeSnapshot() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("take_snapshot",
			mcp.WithDescription("Take a text snapshot of the page's accessibility tree. Each element has a uid (uid=N) to use with click, fill and other input tools. Prefer it to a screenshot."),
			mcp.WithBoolean("verbose", mcp.Description("Include every node of the tree, also generic containers. Default false.")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			tab, res := pageOf(ctx, req)
			if res != nil {
				return res, nil
			}
			text, err := t.snapshot(ctx, tab, req.GetBool("verbose", false))
			if err != nil {
				return err, nil
			}
			return mcp.NewToolResultText(text), nil
		},
	}
}

// snapshot renders the accessibility tree of tab's main frame.
func (t *toolset) snapshot(ctx context.Context, tab *Tab, verbose bool) (string, *mcp.CallToolResult) {
	cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
	defer cancel()
	tree, err := chromedp.Call(cctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		return "", cdpError("take_snapshot", cctx, tab, t.cfg.CallTimeout, err)
	}
	if len(tree.Nodes) == 0 {
		return "The page has no accessibility tree yet; wait for it to load and retry.", nil
	}
	byID := make(map[accessibility.NodeID]*accessibility.Node, len(tree.Nodes))
	for _, n := range tree.Nodes {
		byID[n.NodeID] = n
	}
	w := &snapWriter{state: tab.State, byID: byID, verbose: verbose}
	root := tree.Nodes[0]
	w.state.resetIfNewDocument(root.BackendDOMNodeID)
	w.walk(root, 0, "")
	return w.b.String(), nil
}

type snapWriter struct {
	state   *TabState
	byID    map[accessibility.NodeID]*accessibility.Node
	verbose bool
	b       strings.Builder
}

// walk writes n and its subtree. Ignored nodes and nameless containers are
// skipped but their children are kept, one level up; text that only repeats
// its parent's name is dropped.
func (w *snapWriter) walk(n *accessibility.Node, depth int, parentName string) {
	role, name := axString(n.Role), axString(n.Name)
	if role == "InlineTextBox" {
		return
	}
	emit := !n.Ignored
	if !w.verbose {
		switch role {
		case "generic", "none", "presentation", "LineBreak":
			emit = emit && name != ""
		case "StaticText":
			emit = emit && name != "" && strings.TrimSpace(name) != strings.TrimSpace(parentName)
		}
	}
	childDepth, childParent := depth, parentName
	if emit {
		w.line(n, depth, role, name)
		childDepth, childParent = depth+1, name
	}
	for _, id := range n.ChildIDs {
		if c, ok := w.byID[id]; ok {
			w.walk(c, childDepth, childParent)
		}
	}
}

func (w *snapWriter) line(n *accessibility.Node, depth int, role, name string) {
	w.b.WriteString(strings.Repeat("  ", depth))
	if n.BackendDOMNodeID != 0 {
		fmt.Fprintf(&w.b, "uid=%d ", w.state.uid(n.BackendDOMNodeID))
	}
	w.b.WriteString(role)
	if name != "" {
		w.b.WriteString(" " + quote(name))
	}
	if v := axString(n.Value); v != "" {
		w.b.WriteString(" value=" + quote(v))
	}
	for _, p := range n.Properties {
		if p.Value == nil {
			continue
		}
		switch p.Name {
		case "focused", "checked", "disabled", "expanded", "selected", "pressed", "required", "readonly", "multiselectable", "modal":
			switch v := axString(p.Value); v {
			case "true":
				w.b.WriteString(" " + string(p.Name))
			case "", "false":
			default:
				w.b.WriteString(" " + string(p.Name) + "=" + quote(v))
			}
		case "level":
			w.b.WriteString(" level=" + axString(p.Value))
		case "url":
			if v := axString(p.Value); v != "" && !strings.HasPrefix(v, "javascript:") {
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
