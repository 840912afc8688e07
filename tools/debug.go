package tools

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

func (t *toolset) takeScreenshot() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("take_screenshot",
			mcp.WithDescription("Take a screenshot of the page's viewport, or of the whole page."),
			mcp.WithString("format", mcp.Enum("png", "jpeg", "webp"), mcp.Description("Image format. Default png.")),
			mcp.WithNumber("quality", mcp.Min(0), mcp.Max(100), mcp.Description("Compression quality for jpeg and webp, 0-100.")),
			mcp.WithBoolean("fullPage", mcp.Description("Capture the whole scrollable page, not only the viewport. Default false.")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			format := req.GetString("format", "png")
			switch format {
			case "png", "jpeg", "webp":
			default:
				return mcp.NewToolResultErrorf("take_screenshot: format %q is not supported; use png, jpeg or webp", format), nil
			}
			params := page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormat(format)}
			if q := req.GetInt("quality", -1); q >= 0 && format != "png" {
				params.Quality = ptr(int64(min(q, 100)))
			}
			tab, res := pageOf(ctx, req)
			if res != nil {
				return res, nil
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			if err := ensureVisible(cctx); err != nil {
				return cdpError("take_screenshot", cctx, tab, t.cfg.CallTimeout, err), nil
			}
			if req.GetBool("fullPage", false) {
				m, err := chromedp.Call(cctx, page.GetLayoutMetrics, cdp.Empty{})
				if err != nil {
					return cdpError("take_screenshot", cctx, tab, t.cfg.CallTimeout, err), nil
				}
				if m.CSSContentSize != nil {
					params.Clip = &page.Viewport{Width: m.CSSContentSize.Width, Height: m.CSSContentSize.Height, Scale: 1}
					params.CaptureBeyondViewport = ptr(true)
				}
			}
			shot, err := chromedp.Call(cctx, page.CaptureScreenshot, params)
			if err != nil {
				return cdpError("take_screenshot", cctx, tab, t.cfg.CallTimeout, err), nil
			}
			return mcp.NewToolResultImage(fmt.Sprintf("Screenshot of page %d (%s, %d bytes).", tab.ID, format, len(shot.Data)),
				base64.StdEncoding.EncodeToString(shot.Data), "image/"+format), nil
		},
	}
}

func (t *toolset) evaluateScript() Tool {
	return Tool{
		Perm: auth.PermScript,
		Tool: mcp.NewTool("evaluate_script",
			mcp.WithDescription("Run a JavaScript function in the page and return its result as JSON. The function may be async; its return value must be JSON-serializable."),
			mcp.WithString("function", mcp.Required(), mcp.Description("A function declaration, e.g. `() => document.title` or `async () => { ... }`")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			fn, err := req.RequireString("function")
			if err != nil || fn == "" {
				return mcp.NewToolResultError("evaluate_script needs a function, e.g. `() => document.title`"), nil
			}
			tab, res := pageOf(ctx, req)
			if res != nil {
				return res, nil
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			out, err := chromedp.Call(cctx, runtime.Evaluate, runtime.EvaluateParams{
				Expression:    "(" + fn + "\n)()",
				AwaitPromise:  ptr(true),
				ReturnByValue: ptr(true),
			})
			if err != nil {
				return cdpError("evaluate_script", cctx, tab, t.cfg.CallTimeout, err), nil
			}
			if out.ExceptionDetails != nil {
				return mcp.NewToolResultErrorf("evaluate_script: the script threw: %s", exceptionText(out.ExceptionDetails)), nil
			}
			value := "undefined"
			if out.Result != nil && len(out.Result.Value) > 0 {
				value = string(out.Result.Value)
			} else if out.Result != nil && out.Result.UnserializableValue != "" {
				value = string(out.Result.UnserializableValue)
			}
			return textResult("Script ran on page %d and returned:\n```json\n%s\n```", tab.ID, value), nil
		},
	}
}
