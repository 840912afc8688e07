package tools

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

type takeScreenshotArgs struct {
	pageArg
	Format   string `json:"format"`
	Quality  *int   `json:"quality"`
	FullPage bool   `json:"fullPage"`
	UID      string `json:"uid"`
	FilePath string `json:"filePath"`
}

func (t *toolset) takeScreenshot() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("take_screenshot",
			mcp.WithDescription("Screenshot the viewport, whole page or an element. Returns the image."),
			mcp.WithString("format", mcp.Enum("png", "jpeg", "webp"), mcp.Description("Default png")),
			mcp.WithNumber("quality", mcp.Min(0), mcp.Max(100)),
			mcp.WithBoolean("fullPage"),
			mcp.WithString("uid"),
			mcp.WithString("filePath"),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a takeScreenshotArgs) (*mcp.CallToolResult, error) {
			format := a.Format
			if format == "" {
				format = "png"
			}
			switch format {
			case "png", "jpeg", "webp":
			default:
				return mcp.NewToolResultErrorf("take_screenshot: format %q is not supported; use png, jpeg or webp", format), nil
			}
			// Encoding speed over size: a screenshot is read once, right away.
			params := page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormat(format), OptimizeForSpeed: ptr(true)}
			if q := a.Quality; q != nil && *q >= 0 && format != "png" {
				params.Quality = ptr(int64(min(*q, 100)))
			}
			uid, fullPage := a.UID, a.FullPage
			if uid != "" && fullPage {
				return mcp.NewToolResultError("take_screenshot: give uid or fullPage, not both"), nil
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			if err := ensureVisible(cctx); err != nil {
				return nil, cdpError("take_screenshot", cctx, tab, t.cfg.CallTimeout, err)
			}
			switch {
			case uid != "":
				e, err := elementOf(cctx, tab, uid)
				if err != nil {
					return mcp.NewToolResultError("take_screenshot: " + err.Error()), nil
				}
				clip, err := nodeClip(cctx, e)
				if err != nil {
					if isStaleNode(err) {
						return mcp.NewToolResultErrorf("take_screenshot: uid %s no longer exists on the page; call take_snapshot and use a fresh uid", uid), nil
					}
					return nil, cdpError("take_screenshot", cctx, tab, t.cfg.CallTimeout, err)
				}
				params.Clip = clip
			case fullPage:
				m, err := chromedp.Call(cctx, page.GetLayoutMetrics, cdp.Empty{})
				if err != nil {
					return nil, cdpError("take_screenshot", cctx, tab, t.cfg.CallTimeout, err)
				}
				if m.CSSContentSize != nil {
					params.Clip = &page.Viewport{Width: m.CSSContentSize.Width, Height: m.CSSContentSize.Height, Scale: 1}
					params.CaptureBeyondViewport = ptr(true)
				}
			}
			shot, err := chromedp.Call(cctx, page.CaptureScreenshot, params)
			if err != nil {
				return nil, cdpError("take_screenshot", cctx, tab, t.cfg.CallTimeout, err)
			}
			if fp := a.FilePath; fp != "" {
				p, err := writeOutput(ctx, fp, shot.Data)
				if err != nil {
					return mcp.NewToolResultError("take_screenshot: " + err.Error()), nil
				}
				return textResult("Saved a screenshot of page %d (%s, %d bytes) to %s.", tab.ID, format, len(shot.Data), p), nil
			}
			return mcp.NewToolResultImage(fmt.Sprintf("Screenshot of page %d (%s, %d bytes).", tab.ID, format, len(shot.Data)),
				base64.StdEncoding.EncodeToString(shot.Data), "image/"+format), nil
		}),
	}
}

type evaluateScriptArgs struct {
	pageArg
	Function string `json:"function"`
	// Args is [{uid}, ...], checked by uidArgs.
	Args any `json:"args"`
}

func (t *toolset) evaluateScript() Tool {
	return Tool{
		Perm: auth.PermScript,
		Tool: mcp.NewTool("evaluate_script",
			mcp.WithDescription("Run a JavaScript function in the page. Returns its result (awaited) as JSON."),
			mcp.WithString("function", mcp.Required(), mcp.Description("e.g. `(el) => el.innerText` with args")),
			mcp.WithArray("args",
				mcp.Items(map[string]any{"type": "object", "properties": map[string]any{"uid": map[string]any{"type": "string"}}, "required": []string{"uid"}})),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a evaluateScriptArgs) (*mcp.CallToolResult, error) {
			fn := a.Function
			if fn == "" {
				return mcp.NewToolResultError("evaluate_script needs a function, e.g. `() => document.title`"), nil
			}
			uids, err := uidArgs(a.Args)
			if err != nil {
				return nil, err
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			out, err := evaluateFunction(cctx, tab, fn, uids)
			if err != nil {
				if isStaleNode(err) {
					return mcp.NewToolResultError("evaluate_script: an element of args no longer exists on the page; call take_snapshot and use fresh uids"), nil
				}
				var ue userError
				if errors.As(err, &ue) {
					return mcp.NewToolResultError("evaluate_script: " + ue.msg), nil
				}
				return nil, cdpError("evaluate_script", cctx, tab, t.cfg.CallTimeout, err)
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
		}),
	}
}

// uidArgs reads the args argument of evaluate_script: [{uid}, ...].
func uidArgs(raw any) ([]string, error) {
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, errors.New(`evaluate_script: args must be an array like [{"uid":"3"}]`)
	}
	uids := make([]string, 0, len(list))
	for _, a := range list {
		m, ok := a.(map[string]any)
		uid, _ := m["uid"].(string)
		if !ok || uid == "" {
			return nil, errors.New(`evaluate_script: each of args must be {"uid": "<uid from take_snapshot>"}`)
		}
		uids = append(uids, uid)
	}
	return uids, nil
}

// nodeClip returns the screenshot clip of an element: its box in page
// coordinates, after scrolling it into view. ctx is the call on the page's
// session, which takes the screenshot.
func nodeClip(ctx context.Context, e *element) (*page.Viewport, error) {
	if err := e.scrollIntoView(); err != nil {
		return nil, err
	}
	p, err := e.quad()
	if err != nil {
		return nil, err
	}
	m, err := chromedp.Call(ctx, page.GetLayoutMetrics, cdp.Empty{})
	if err != nil {
		return nil, err
	}
	minX, maxX, minY, maxY := p[0], p[0], p[1], p[1]
	for i := 0; i < 8; i += 2 {
		minX, maxX = min(minX, p[i]), max(maxX, p[i])
		minY, maxY = min(minY, p[i+1]), max(maxY, p[i+1])
	}
	var ox, oy float64
	if v := m.CSSVisualViewport; v != nil {
		ox, oy = v.PageX, v.PageY
	}
	return &page.Viewport{X: minX + ox, Y: minY + oy, Width: maxX - minX, Height: maxY - minY, Scale: 1}, nil
}
