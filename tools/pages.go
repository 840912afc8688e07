package tools

import (
	"context"
	"fmt"
	"strings"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

func (t *toolset) listPages() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("list_pages",
			mcp.WithDescription("List this session's pages: id, title, URL, selected. all: your browser's other tabs too."),
			mcp.WithBoolean("all"),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			ws, err := workspaceFrom(ctx)
			if err != nil {
				return mcp.NewToolResultError(err.Error()), nil
			}
			all := req.GetBool("all", false)
			if err := needAllTabs(ctx, all, "list_pages with all=true"); err != nil {
				return nil, err
			}
			tabs, err := ws.Tabs(ctx)
			if err != nil {
				return mcp.NewToolResultError(err.Error()), nil
			}
			text := formatTabs(tabs)
			if all {
				others, err := ws.BrowserTabs(ctx)
				if err != nil {
					return mcp.NewToolResultError(err.Error()), nil
				}
				text += formatBrowserTabs(others)
			}
			return mcp.NewToolResultText(text), nil
		},
	}
}

// needAllTabs refuses what without the browser:all-tabs permission, when
// wanted.
func needAllTabs(ctx context.Context, wanted bool, what string) error {
	if !wanted {
		return nil
	}
	if p, _ := auth.FromContext(ctx); !p.Has(auth.PermAllTabs) {
		return fmt.Errorf("%s needs the %s permission, which your token lacks; without it a session sees only the pages it opened", what, auth.PermAllTabs)
	}
	return nil
}

func formatBrowserTabs(tabs []BrowserTab) string {
	var b strings.Builder
	b.WriteString("## Other tabs of your browser\n")
	if len(tabs) == 0 {
		b.WriteString("None.\n")
	}
	for _, tb := range tabs {
		fmt.Fprintf(&b, "targetId=%s %s %s\n", tb.TargetID, quote(tb.Title), tb.URL)
	}
	b.WriteString("select_page {targetId} attaches to one; the proxy never closes such a tab, close_page only detaches.\n")
	return b.String()
}

func formatTabs(tabs []TabInfo) string {
	if len(tabs) == 0 {
		return "## Pages\nThis session has no pages yet. new_page opens one; any page tool opens one on first use."
	}
	var b strings.Builder
	b.WriteString("## Pages\n")
	for _, tb := range tabs {
		fmt.Fprintf(&b, "%d: %s %s", tb.ID, quote(tb.Title), tb.URL)
		if tb.Attached {
			b.WriteString(" [attached]")
		}
		if tb.Opener > 0 {
			fmt.Fprintf(&b, " [popup of %d]", tb.Opener)
		}
		if tb.Selected {
			b.WriteString(" [selected]")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func (t *toolset) newPage() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("new_page",
			mcp.WithDescription("Open a tab at url (default about:blank) and select it. Returns pageId, URL, title."),
			mcp.WithString("url"),
			mcp.WithBoolean("background", mcp.Description("Not to the front")),
			mcp.WithNumber("timeout"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			ws, err := workspaceFrom(ctx)
			if err != nil {
				return mcp.NewToolResultError(err.Error()), nil
			}
			target := req.GetString("url", "")
			if target != "" {
				if err := t.cfg.Navigation.Check(target); err != nil {
					return mcp.NewToolResultError("new_page: " + err.Error()), nil
				}
			}
			timeout, err := t.timeoutArg(req, t.cfg.NavigationTimeout)
			if err != nil {
				return nil, err
			}
			tab, err := ws.NewTab(ctx, req.GetBool("background", false))
			if err != nil {
				return mcp.NewToolResultError(err.Error()), nil
			}
			msg := fmt.Sprintf("Opened page %d and selected it.", tab.ID)
			if sw, ok := ws.(SharedWorkspace); ok && sw.Shared() {
				msg = fmt.Sprintf("Opened page %d; pass pageId %d in every call, as your other agents share the selected page.", tab.ID, tab.ID)
			}
			if target != "" {
				res, err := t.navigate(ctx, tab, timeout, func(cctx context.Context) error {
					return navigateURL(cctx, target)
				}, "")
				if err != nil {
					return nil, err
				}
				if res.IsError {
					return res, nil
				}
				msg += "\n" + resultText(res)
			}
			return mcp.NewToolResultText(msg), nil
		},
	}
}

func (t *toolset) selectPage() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("select_page",
			mcp.WithDescription("Select the page calls default to; targetId attaches to a tab of list_pages all=true."),
			mcp.WithNumber("pageId"),
			mcp.WithString("targetId"),
			mcp.WithBoolean("bringToFront"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			ws, err := workspaceFrom(ctx)
			if err != nil {
				return mcp.NewToolResultError(err.Error()), nil
			}
			id, targetID := req.GetInt("pageId", 0), req.GetString("targetId", "")
			var tab *Tab
			switch {
			case targetID != "" && id > 0:
				return mcp.NewToolResultError("select_page takes a pageId or a targetId, not both"), nil
			case targetID != "":
				if err := needAllTabs(ctx, true, "select_page with a targetId"); err != nil {
					return nil, err
				}
				tab, err = ws.AttachTab(ctx, target.ID(targetID))
			case id > 0:
				tab, err = ws.SelectTab(ctx, id)
			default:
				return mcp.NewToolResultError("select_page needs a pageId from list_pages"), nil
			}
			if err != nil {
				return mcp.NewToolResultError(err.Error()), nil
			}
			if req.GetBool("bringToFront", false) {
				cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
				defer cancel()
				if _, err := chromedp.Call(cctx, page.BringToFront, cdp.Empty{}); err != nil {
					return nil, cdpError("select_page", cctx, tab, t.cfg.CallTimeout, err)
				}
			}
			if !tab.Owned {
				return textResult("Attached to your tab as page %d and selected it. close_page %d detaches from it; the tab stays open.", tab.ID, tab.ID), nil
			}
			return textResult("Selected page %d.", tab.ID), nil
		},
	}
}

func (t *toolset) closePage() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("close_page",
			mcp.WithDescription("Close a page this session opened (a tab it attached to is only detached)."),
			mcp.WithNumber("pageId", mcp.Required()),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			ws, id, err := requiredPage(ctx, req)
			if err != nil {
				return nil, err
			}
			verb := "Closed"
			for _, tb := range ws.OpenTabs() {
				if tb.ID == id && !tb.Owned {
					verb = "Detached from (the tab stays open)"
				}
			}
			if err := ws.CloseTab(ctx, id); err != nil {
				return mcp.NewToolResultError(err.Error()), nil
			}
			tabs, _ := ws.Tabs(ctx)
			return textResult("%s page %d.\n%s", verb, id, formatTabs(tabs)), nil
		},
	}
}
