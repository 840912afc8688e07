package tools

import (
	"context"
	"fmt"
	"strings"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/css"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// defaultStyleProperties are the computed properties get_css_styles shows
// when the caller names none: the ones that decide layout and visibility.
var defaultStyleProperties = []string{
	"display", "visibility", "opacity", "position", "top", "left", "z-index",
	"width", "height", "margin", "padding", "box-sizing", "overflow",
	"color", "background-color", "font-family", "font-size", "font-weight",
	"line-height", "text-align", "border", "cursor", "pointer-events",
	"flex-direction", "justify-content", "align-items", "grid-template-columns",
}

const maxStyleRules = 30

type getCSSStylesArgs struct {
	pageArg
	UID        string   `json:"uid"`
	Properties []string `json:"properties"`
}

func (t *toolset) getCSSStyles() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("get_css_styles",
			mcp.WithDescription("Get an element's computed styles (default layout and visibility) and matching author rules."),
			mcp.WithString("uid", mcp.Required()),
			mcp.WithArray("properties", mcp.Description(`["*"]: all`), mcp.WithStringItems()),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a getCSSStylesArgs) (*mcp.CallToolResult, error) {
			uid, err := requireUID(a.UID)
			if err != nil {
				return nil, err
			}
			props := a.Properties
			if props == nil {
				props = defaultStyleProperties
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			e, err := elementOf(cctx, tab, uid)
			if err != nil {
				return mcp.NewToolResultError("get_css_styles: " + err.Error()), nil
			}
			text, err := cssStyles(e.ctx, e.ref.id, props)
			if err != nil {
				if isStaleNode(err) {
					return mcp.NewToolResultErrorf("get_css_styles: uid %s no longer exists on the page; call take_snapshot and use a fresh uid", bareUID(uid)), nil
				}
				return nil, cdpError("get_css_styles", cctx, tab, t.cfg.CallTimeout, err)
			}
			return mcp.NewToolResultText(text), nil
		}),
	}
}

// cssStyles renders the computed properties props of node and the author
// rules that match it.
func cssStyles(ctx context.Context, node cdp.BackendNodeID, props []string) (string, error) {
	// Attach leaves both domains off; CSS needs DOM on. Turning on what is
	// on already is a no-op.
	if _, err := chromedp.Call(ctx, dom.Enable, dom.EnableParams{}); err != nil {
		return "", err
	}
	if _, err := chromedp.Call(ctx, css.Enable, cdp.Empty{}); err != nil {
		return "", err
	}
	// The CSS domain takes frontend node ids, which exist only once the
	// document has been requested in this session.
	if _, err := chromedp.Call(ctx, dom.GetDocument, dom.GetDocumentParams{Depth: ptr(int64(0))}); err != nil {
		return "", err
	}
	pushed, err := chromedp.Call(ctx, dom.PushNodesByBackendIDsToFrontend, dom.PushNodesByBackendIDsToFrontendParams{BackendNodeIDs: []cdp.BackendNodeID{node}})
	if err != nil {
		return "", err
	}
	if len(pushed.NodeIDs) == 0 || pushed.NodeIDs[0] == 0 {
		return "", userError{"the element is not in the page any more; call take_snapshot"}
	}
	id := pushed.NodeIDs[0]
	computed, err := chromedp.Call(ctx, css.GetComputedStyleForNode, css.GetComputedStyleForNodeParams{NodeID: id})
	if err != nil {
		return "", err
	}
	matched, err := chromedp.Call(ctx, css.GetMatchedStylesForNode, css.GetMatchedStylesForNodeParams{NodeID: id})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("## Computed\n")
	all := len(props) == 1 && props[0] == "*"
	want := map[string]bool{}
	for _, p := range props {
		want[strings.ToLower(strings.TrimSpace(p))] = true
	}
	values := map[string]string{}
	for _, p := range computed.ComputedStyle {
		values[p.Name] = p.Value
		if all {
			fmt.Fprintf(&b, "%s: %s\n", p.Name, p.Value)
		}
	}
	if !all {
		for _, p := range props {
			name := strings.ToLower(strings.TrimSpace(p))
			if v, ok := values[name]; ok {
				fmt.Fprintf(&b, "%s: %s\n", name, v)
			} else if name != "" {
				// Shorthands are not in the computed list: build them from
				// their longhands when all four sides are there.
				if v := shorthand(values, name); v != "" {
					fmt.Fprintf(&b, "%s: %s\n", name, v)
				} else {
					fmt.Fprintf(&b, "%s: (not a computed property)\n", name)
				}
			}
		}
	}
	b.WriteString("## Matched rules (most specific last)\n")
	if st := matched.InlineStyle; st != nil && strings.TrimSpace(st.CSSText) != "" {
		fmt.Fprintf(&b, "style attribute { %s }\n", strings.TrimSpace(st.CSSText))
	}
	n := 0
	for _, m := range matched.MatchedCSSRules {
		if m.Rule == nil || m.Rule.Origin == css.StyleSheetOriginUserAgent || m.Rule.Style == nil {
			continue
		}
		if n++; n > maxStyleRules {
			fmt.Fprintf(&b, "(%d more rules not shown)\n", len(matched.MatchedCSSRules)-maxStyleRules)
			break
		}
		sel := ""
		if m.Rule.SelectorList != nil {
			sel = m.Rule.SelectorList.Text
		}
		fmt.Fprintf(&b, "%s { %s }\n", sel, truncate(strings.Join(strings.Fields(m.Rule.Style.CSSText), " "), 500))
	}
	if n == 0 && (matched.InlineStyle == nil || strings.TrimSpace(matched.InlineStyle.CSSText) == "") {
		b.WriteString("(no author rules: only the browser's defaults apply)\n")
	}
	return b.String(), nil
}

// shorthand rebuilds a box shorthand (margin, padding) from its longhands.
func shorthand(values map[string]string, name string) string {
	sides := []string{"top", "right", "bottom", "left"}
	var parts []string
	for _, s := range sides {
		v, ok := values[name+"-"+s]
		if !ok {
			return ""
		}
		parts = append(parts, v)
	}
	return strings.Join(parts, " ")
}
