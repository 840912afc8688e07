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
			mcp.WithDescription("List the pages of this session: id, title, URL, and which one is selected. With all=true (needs browser:all-tabs) also list the other tabs of your browser, which select_page {targetId} can attach to."),
			mcp.WithBoolean("all", mcp.Description("Also list the browser's other tabs. Needs the browser:all-tabs permission. Default false.")),
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
			mcp.WithDescription("Open a new page (tab) in your browser, load a URL in it, and select it."),
			mcp.WithString("url", mcp.Description("URL to load. Default about:blank.")),
			mcp.WithBoolean("background", mcp.Description("Open the tab without bringing it to the front. Default false.")),
			mcp.WithNumber("timeout", mcp.Description("Milliseconds to wait for the load. Default 30000.")),
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
				msg += " " + resultText(res)
			}
			tabs, err := ws.Tabs(ctx)
			if err == nil {
				msg += "\n" + formatTabs(tabs)
			}
			return mcp.NewToolResultText(msg), nil
		},
	}
}

func (t *toolset) selectPage() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("select_page",
			mcp.WithDescription("Select the page that later calls act on by default. With targetId (needs browser:all-tabs), attach to one of your browser's other tabs from list_pages {all:true} and select it."),
			mcp.WithNumber("pageId", mcp.Description("Page id from list_pages")),
			mcp.WithString("targetId", mcp.Description("A tab of your browser from list_pages {all:true}, to attach to. Needs browser:all-tabs.")),
			mcp.WithBoolean("bringToFront", mcp.Description("Also bring the tab to the front of the browser window. Default false.")),
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
			mcp.WithDescription("Close a page this session opened; for a tab of yours it attached to, detach and leave the tab open."),
			mcp.WithNumber("pageId", mcp.Required(), mcp.Description("Page id from list_pages")),
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
