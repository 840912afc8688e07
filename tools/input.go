package tools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// settleCap bounds the wait for a navigation that an input action started.
const settleCap = 10 * time.Second

func (t *toolset) click() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("click",
			mcp.WithDescription("Click the element with the given uid from the latest take_snapshot. Reports a navigation if the click started one."),
			mcp.WithString("uid", mcp.Required(), mcp.Description("uid of the element, from take_snapshot")),
			mcp.WithBoolean("dblClick", mcp.Description("Double-click instead of a single click. Default false.")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			uid, err := req.RequireString("uid")
			if err != nil {
				return mcp.NewToolResultError("click needs a uid; call take_snapshot to get one"), nil
			}
			tab, res := pageOf(ctx, req)
			if res != nil {
				return res, nil
			}
			clicks := int64(1)
			if req.GetBool("dblClick", false) {
				clicks = 2
			}
			return t.act(ctx, tab, "click", uid, func(cctx context.Context, node cdp.BackendNodeID) error {
				return clickNode(cctx, node, clicks)
			}, "Clicked uid="+strings.TrimPrefix(uid, "uid=")), nil
		},
	}
}

func (t *toolset) fill() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("fill",
			mcp.WithDescription("Type a value into an input or textarea, or choose an option of a select, or set a checkbox (value \"true\"/\"false\"). The element is the uid from the latest take_snapshot."),
			mcp.WithString("uid", mcp.Required(), mcp.Description("uid of the element, from take_snapshot")),
			mcp.WithString("value", mcp.Required(), mcp.Description("Value to fill in")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			uid, err := req.RequireString("uid")
			if err != nil {
				return mcp.NewToolResultError("fill needs a uid; call take_snapshot to get one"), nil
			}
			value, err := req.RequireString("value")
			if err != nil {
				return mcp.NewToolResultError("fill needs a value (a string)"), nil
			}
			tab, res := pageOf(ctx, req)
			if res != nil {
				return res, nil
			}
			return t.act(ctx, tab, "fill", uid, func(cctx context.Context, node cdp.BackendNodeID) error {
				return fillNode(cctx, node, value)
			}, "Filled uid="+strings.TrimPrefix(uid, "uid=")), nil
		},
	}
}

// act runs an input action on the node of uid, then waits only if the action
// started a navigation, and says so in the result.
func (t *toolset) act(ctx context.Context, tab *Tab, name, uid string, do func(context.Context, cdp.BackendNodeID) error, done string) *mcp.CallToolResult {
	node, err := tab.State.node(uid)
	if err != nil {
		return mcp.NewToolResultError(err.Error())
	}
	cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
	defer cancel()
	mark := tab.State.mark()
	err = ensureVisible(cctx)
	if err == nil {
		err = do(cctx, node)
	}
	if err != nil {
		if isStaleNode(err) {
			return mcp.NewToolResultErrorf("%s: uid %s no longer exists on the page (it changed or navigated); call take_snapshot and use a fresh uid", name, strings.TrimPrefix(uid, "uid="))
		}
		var ue userError
		if errors.As(err, &ue) {
			return mcp.NewToolResultErrorf("%s: %s", name, ue.msg)
		}
		return cdpError(name, cctx, tab, t.cfg.CallTimeout, err)
	}
	// One round trip through the renderer: a navigation that the action
	// started synchronously has been announced by the time it answers.
	_, _ = chromedp.Call(cctx, runtime.Evaluate, runtime.EvaluateParams{Expression: "0"})
	url, finished := tab.State.settle(ctx, mark, settleCap)
	switch {
	case url == "":
		return mcp.NewToolResultText(done)
	case finished:
		return textResult("%s. The page navigated to %s.", done, url)
	default:
		return textResult("%s. The page is navigating to %s and had not finished loading after %s.", done, url, settleCap)
	}
}

// userError is a failure that the caller can fix, with a message for them.
type userError struct{ msg string }

func (e userError) Error() string { return e.msg }

// isStaleNode reports whether err says the node is no longer in the page.
func isStaleNode(err error) bool {
	var cerr *cdproto.Error
	if !errors.As(err, &cerr) {
		return false
	}
	m := cerr.Message
	return strings.Contains(m, "No node") || strings.Contains(m, "not found") || strings.Contains(m, "does not belong to the document")
}

// clickNode scrolls the node into view and clicks its centre.
func clickNode(ctx context.Context, node cdp.BackendNodeID, clicks int64) error {
	x, y, err := nodeCenter(ctx, node)
	if err != nil {
		return err
	}
	if _, err := chromedp.Call(ctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseMoved, X: x, Y: y}); err != nil {
		return err
	}
	for i := int64(1); i <= clicks; i++ {
		for _, typ := range []input.DispatchMouseEventType{input.DispatchMouseEventTypeMousePressed, input.DispatchMouseEventTypeMouseReleased} {
			p := input.DispatchMouseEventParams{Type: typ, X: x, Y: y, Button: input.MouseButtonLeft, ClickCount: i}
			if _, err := chromedp.Call(ctx, input.DispatchMouseEvent, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func nodeCenter(ctx context.Context, node cdp.BackendNodeID) (float64, float64, error) {
	if _, err := chromedp.Call(ctx, dom.ScrollIntoViewIfNeeded, dom.ScrollIntoViewIfNeededParams{BackendNodeID: node}); err != nil {
		return 0, 0, err
	}
	q, err := chromedp.Call(ctx, dom.GetContentQuads, dom.GetContentQuadsParams{BackendNodeID: node})
	if err != nil {
		return 0, 0, err
	}
	if len(q.Quads) == 0 || len(q.Quads[0]) < 8 {
		return 0, 0, userError{"the element is not visible (it has no box on screen); take_snapshot again or scroll to it"}
	}
	p := q.Quads[0]
	return (p[0] + p[2] + p[4] + p[6]) / 4, (p[1] + p[3] + p[5] + p[7]) / 4, nil
}

// fillJS prepares an element for a value. It sets selects and checkboxes
// itself and answers "done"; for text it focuses the element and selects its
// content so that Input.insertText replaces it, and answers "type".
const fillJS = `function(v) {
  const fire = (el) => { el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); };
  if (this.tagName === 'SELECT') {
    const o = Array.from(this.options).find(o => o.value === v || o.textContent.trim() === v);
    if (!o) throw new Error('no option "' + v + '" in this select; options are: ' + Array.from(this.options).map(o => o.textContent.trim()).join(', '));
    this.value = o.value; fire(this); return 'done';
  }
  if (this.type === 'checkbox' || this.type === 'radio') {
    const want = ['true', 'on', 'checked', 'yes', '1'].includes(String(v).toLowerCase());
    if (this.checked !== want) this.click();
    return 'done';
  }
  if (!(this.isContentEditable || this.tagName === 'INPUT' || this.tagName === 'TEXTAREA')) throw new Error('the element is not fillable (not an input, textarea, select or editable element)');
  this.focus();
  if (typeof this.select === 'function') this.select(); else document.getSelection().selectAllChildren(this);
  if (v === '') { if ('value' in this) this.value = ''; else this.textContent = ''; fire(this); return 'done'; }
  return 'type';
}`

func fillNode(ctx context.Context, node cdp.BackendNodeID, value string) error {
	obj, err := chromedp.Call(ctx, dom.ResolveNode, dom.ResolveNodeParams{BackendNodeID: node})
	if err != nil {
		return err
	}
	defer func() {
		_, _ = chromedp.Call(ctx, runtime.ReleaseObject, runtime.ReleaseObjectParams{ObjectID: obj.Object.ObjectID})
	}()
	arg := jsonValue(value)
	res, err := chromedp.Call(ctx, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
		FunctionDeclaration: fillJS,
		ObjectID:            obj.Object.ObjectID,
		Arguments:           []*runtime.CallArgument{{Value: arg}},
		ReturnByValue:       ptr(true),
	})
	if err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return userError{exceptionText(res.ExceptionDetails)}
	}
	if string(res.Result.Value) != `"type"` {
		return nil
	}
	_, err = chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: value})
	return err
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil && d.Exception.Description != "" {
		first, _, _ := strings.Cut(d.Exception.Description, "\n    at ")
		return strings.TrimPrefix(first, "Error: ")
	}
	return fmt.Sprintf("%s (line %d)", d.Text, d.LineNumber)
}

// ensureVisible brings the tab to the front when it is hidden: a hidden tab
// gets no frames, so input events and screenshots stall until the browser
// gives up on them. Several sessions share one browser window, so another
// session's new tab may have covered this one.
func ensureVisible(ctx context.Context) error {
	res, err := chromedp.Call(ctx, runtime.Evaluate, runtime.EvaluateParams{Expression: "document.visibilityState", ReturnByValue: ptr(true)})
	if err != nil {
		return err
	}
	if string(res.Result.Value) == `"visible"` {
		return nil
	}
	_, err = chromedp.Call(ctx, page.BringToFront, cdp.Empty{})
	return err
}
