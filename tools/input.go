package tools

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// elementArgs are the arguments of a tool on one element.
type elementArgs struct {
	pageArg
	UID string `json:"uid"`
}

type clickArgs struct {
	elementArgs
	DblClick bool `json:"dblClick"`
}

func (t *toolset) click() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("click",
			mcp.WithDescription("Click an element; says what changed."),
			mcp.WithString("uid", mcp.Required()),
			mcp.WithBoolean("dblClick"),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a clickArgs) (*mcp.CallToolResult, error) {
			uid, err := requireUID(a.UID)
			if err != nil {
				return nil, err
			}
			clicks := int64(1)
			if a.DblClick {
				clicks = 2
			}
			return t.act(ctx, a.PageID, "click", []uidArg{{uid: uid}}, func(cctx context.Context, elems []*element) error {
				return clickNode(cctx, elems[0], clicks)
			}, "Clicked uid="+bareUID(uid))
		}),
	}
}

type fillArgs struct {
	elementArgs
	// Value is a pointer because "" is a value (it empties the input).
	Value *string `json:"value"`
}

func (t *toolset) fill() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("fill",
			mcp.WithDescription("Fill an input, textarea, select or checkbox (\"true\"/\"false\"); says what changed."),
			mcp.WithString("uid", mcp.Required()),
			mcp.WithString("value", mcp.Required()),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a fillArgs) (*mcp.CallToolResult, error) {
			uid, err := requireUID(a.UID)
			if err != nil {
				return nil, err
			}
			if a.Value == nil {
				return mcp.NewToolResultError("fill needs a value (a string)"), nil
			}
			value := *a.Value
			return t.act(ctx, a.PageID, "fill", []uidArg{{uid: uid}}, func(cctx context.Context, elems []*element) error {
				return fillNode(elems[0], value)
			}, "Filled uid="+bareUID(uid))
		}),
	}
}

// act runs an input action on the page pageID, on the
// elements of targets, then waits while the page is busy with what the
// action set off, and says what happened. It never waits on a page frozen by
// a JavaScript dialog. do gets the call context on the page's session, for
// input events and page-wide commands, and the elements, each with a context
// on its own session. Callers check their other arguments first: a bad
// argument should not open a page.
func (t *toolset) act(ctx context.Context, pageID int, name string, targets []uidArg, do func(context.Context, []*element) error, done string) (*mcp.CallToolResult, error) {
	tab, err := pageOf(ctx, pageID)
	if err != nil {
		return nil, err
	}
	if p := tab.State.dialog.current(); p != nil {
		return mcp.NewToolResultErrorf("%s: page %d cannot take input: %s; call handle_dialog first", name, tab.ID, lowerFirst(p.describe())), nil
	}
	cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
	defer cancel()
	if tab.Send != nil {
		cctx = context.WithValue(cctx, rowKey{}, tab.Send)
	}
	elems := make([]*element, len(targets))
	for i, tg := range targets {
		e, err := elementOf(cctx, tab, tg.uid)
		if err != nil {
			if tg.label != "" {
				return mcp.NewToolResultErrorf("%s: %s: %v", name, tg, err), nil
			}
			return mcp.NewToolResultErrorf("%s: %v", name, err), nil
		}
		elems[i] = e
		defer e.release(tab)
	}
	nav, reqs := tab.State.mark(), tab.State.activity.mark()

	// One call watches the DOM from now on and tells whether the tab is
	// hidden: a hidden tab gets no frames, so input would stall. For an
	// action on one element of the page's own document, the same call on
	// the element also scrolls it into view and measures it.
	observe := func(c context.Context) (string, error) { return evalValue[string](c, observeJS) }
	if geometry, ok := prepared[name]; ok && len(elems) == 1 && !elems[0].inFrame() {
		e := elems[0]
		observe = func(context.Context) (string, error) { return e.prepare(geometry) }
		if name == "fill" {
			// fill's own call on the element starts the counter.
			e.observe = true
			observe = func(context.Context) (string, error) { return "visible", nil }
		}
	}
	// A press_key on a document whose counter runs already needs no call
	// before its key: the key events reach a hidden tab too (only mouse
	// input waits for frames), and the settle round counts the changes
	// since the key.
	keyed := name == "press_key" && tab.State.observerArmed()
	if keyed {
		observe = func(context.Context) (string, error) { return "visible", nil }
	}
	doc := tab.State.docMark()
	visibility, open, err := untilDialog(cctx, tab, observe)
	if err == nil && !open && visibility != "visible" {
		_, err = chromedp.Call(cctx, page.BringToFront, cdp.Empty{})
	}
	if open {
		return mcp.NewToolResultErrorf("%s: page %d cannot take input: %s; call handle_dialog first", name, tab.ID, lowerFirst(tab.State.dialog.current().describeOr("a dialog opened"))), nil
	}
	if err != nil {
		if len(targets) == 1 && isStaleNode(err) {
			return actionError(name, cctx, tab, t.cfg.CallTimeout, targets, err)
		}
		return nil, cdpError(name, cctx, tab, t.cfg.CallTimeout, err)
	}
	frames := watchFrames(elems)
	defer frames.release()
	_, open, err = untilDialog(cctx, tab, func(c context.Context) (struct{}, error) { return struct{}{}, do(c, elems) })
	if open {
		return dialogResult(tab, nav, done), nil
	}
	if err != nil {
		return actionError(name, cctx, tab, t.cfg.CallTimeout, targets, err)
	}
	if !keyed {
		tab.State.armObserver(doc)
	}
	res := t.settleAfter(ctx, tab, nav, reqs, frames.changed(), keyed, done)
	if keyed {
		tab.State.armObserver(doc) // the settle round kept it alive
	}
	return res, nil
}

// prepared are the actions whose element prepare readies in the call that
// starts watching the page, and whether they need its geometry.
var prepared = map[string]bool{"click": true, "hover": true, "fill": false}

// actionError says why an action failed and what to do about it.
func actionError(name string, cctx context.Context, tab *Tab, d time.Duration, targets []uidArg, err error) (*mcp.CallToolResult, error) {
	prefix, uid := name, ""
	if len(targets) == 1 {
		uid = bareUID(targets[0].uid)
	}
	var ue *uidError
	if errors.As(err, &ue) {
		uid = bareUID(ue.arg.uid)
		if ue.arg.label != "" {
			prefix = name + ": " + ue.arg.String()
		}
		err = ue.err
	}
	if isStaleNode(err) {
		if uid == "" {
			return mcp.NewToolResultErrorf("%s: an element is no longer on the page (it changed or navigated); call take_snapshot and use fresh uids", prefix), nil
		}
		return mcp.NewToolResultErrorf("%s: uid %s no longer exists on the page (it changed or navigated); call take_snapshot and use a fresh uid", prefix, uid), nil
	}
	var usr userError
	if errors.As(err, &usr) {
		return mcp.NewToolResultErrorf("%s: %s", prefix, usr.msg), nil
	}
	return nil, cdpError(prefix, cctx, tab, d, err)
}

// inputTools returns the input tools beyond click and fill: hover, drag,
// fill_form, press_key, type_text, upload_file, handle_dialog.
func (t *toolset) inputTools() []Tool {
	return []Tool{t.hover(), t.drag(), t.fillForm(), t.typeText(), t.uploadFile(), t.handleDialog()}
}

func (t *toolset) hover() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("hover",
			mcp.WithDescription("Hover an element; says what changed."),
			mcp.WithString("uid", mcp.Required()),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a elementArgs) (*mcp.CallToolResult, error) {
			uid, err := requireUID(a.UID)
			if err != nil {
				return nil, err
			}
			return t.act(ctx, a.PageID, "hover", []uidArg{{uid: uid}}, func(cctx context.Context, elems []*element) error {
				x, y, err := nodeCenter(elems[0])
				if err != nil {
					return err
				}
				_, err = chromedp.Call(cctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseMoved, X: x, Y: y})
				return err
			}, "Hovered over uid="+bareUID(uid))
		}),
	}
}

type dragArgs struct {
	pageArg
	FromUID string `json:"from_uid"`
	ToUID   string `json:"to_uid"`
}

func (t *toolset) drag() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("drag",
			mcp.WithDescription("Drag from_uid onto to_uid with real mouse events (HTML5 drag and drop too)."),
			mcp.WithString("from_uid", mcp.Required()),
			mcp.WithString("to_uid", mcp.Required()),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a dragArgs) (*mcp.CallToolResult, error) {
			from, to := a.FromUID, a.ToUID
			if from == "" || to == "" {
				return mcp.NewToolResultError("drag needs from_uid and to_uid; call take_snapshot to get them"), nil
			}
			targets := []uidArg{{uid: from, label: "from_uid"}, {uid: to, label: "to_uid"}}
			return t.act(ctx, a.PageID, "drag", targets, dragNodes(targets),
				fmt.Sprintf("Dragged uid=%s onto uid=%s", bareUID(from), bareUID(to)))
		}),
	}
}

// dragNodes scrolls both elements into view, then drags between their
// centres. The centres are read after both scrolls, as the second can move
// the first.
func dragNodes(targets []uidArg) func(context.Context, []*element) error {
	return func(ctx context.Context, elems []*element) error {
		for i, e := range elems {
			if err := e.scrollIntoView(); err != nil {
				return targets[i].wrap(err)
			}
		}
		var pts [2][2]float64
		for i, e := range elems {
			x, y, err := quadCenter(e)
			if err != nil {
				return targets[i].wrap(err)
			}
			pts[i] = [2]float64{x, y}
		}
		if pts[0] == pts[1] {
			return userError{"from_uid and to_uid are at the same point; nothing to drag"}
		}
		// The mouse cannot scroll while it drags, so both ends must be on
		// screen at once.
		m, err := chromedp.Call(ctx, page.GetLayoutMetrics, cdp.Empty{})
		if err != nil {
			return err
		}
		if vp := m.CSSVisualViewport; vp != nil {
			for _, p := range pts {
				if p[0] < 0 || p[1] < 0 || p[0] > vp.ClientWidth || p[1] > vp.ClientHeight {
					return userError{"the two elements do not fit on screen together, and a drag cannot scroll; resize the page (emulate or resize_page) or drag in shorter steps"}
				}
			}
		}
		return chromedp.Do(ctx, chromedp.DragAndDropXY(pts[0][0], pts[0][1], pts[1][0], pts[1][1]))
	}
}

type fillFormArgs struct {
	pageArg
	// Elements is [{uid, value}, ...], checked by formElements.
	Elements any `json:"elements"`
}

func (t *toolset) fillForm() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("fill_form",
			mcp.WithDescription("Fill several elements like fill; stops at the first failure, named."),
			mcp.WithArray("elements", mcp.Required(),
				mcp.MinItems(1),
				mcp.Items(map[string]any{
					"type": "object",
					"properties": map[string]any{
						"uid":   map[string]any{"type": "string"},
						"value": map[string]any{"type": "string"},
					},
					"required": []string{"uid", "value"},
				})),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a fillFormArgs) (*mcp.CallToolResult, error) {
			targets, values, err := formElements(a.Elements)
			if err != nil {
				return mcp.NewToolResultError("fill_form: " + err.Error()), nil
			}
			return t.act(ctx, a.PageID, "fill_form", targets, func(cctx context.Context, elems []*element) error {
				for i, e := range elems {
					if err := fillNode(e, values[i]); err != nil {
						return targets[i].wrap(err)
					}
				}
				return nil
			}, fmt.Sprintf("Filled %d elements", len(targets)))
		}),
	}
}

// formElements reads the elements argument of fill_form.
func formElements(v any) ([]uidArg, []string, error) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, nil, errors.New(`elements must be a non-empty array of {"uid": ..., "value": ...}`)
	}
	targets := make([]uidArg, len(list))
	values := make([]string, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf(`element %d is not an object {"uid": ..., "value": ...}`, i+1)
		}
		uid, ok := m["uid"].(string)
		if !ok || uid == "" {
			return nil, nil, fmt.Errorf("element %d has no uid; call take_snapshot to get one", i+1)
		}
		switch x := m["value"].(type) {
		case string:
			values[i] = x
		case bool, float64:
			values[i] = fmt.Sprint(x)
		default:
			return nil, nil, fmt.Errorf("element %d (uid=%s) has no value (a string)", i+1, bareUID(uid))
		}
		targets[i] = uidArg{uid: uid, label: fmt.Sprintf("element %d", i+1)}
	}
	return targets, values, nil
}

type pressKeyArgs struct {
	pageArg
	Key string `json:"key"`
}

func (t *toolset) pressKey() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("press_key",
			mcp.WithDescription("Press a key or combination on the focused element; says what changed."),
			mcp.WithString("key", mcp.Required(), mcp.Description(`e.g. "Enter", "Control+Shift+R"`)),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a pressKeyArgs) (*mcp.CallToolResult, error) {
			spec := a.Key
			if spec == "" {
				return mcp.NewToolResultError(`press_key needs a key, e.g. "Enter" or "Control+A"`), nil
			}
			combo, err := parseKey(spec)
			if err != nil {
				return mcp.NewToolResultError("press_key: " + err.Error()), nil
			}
			return t.act(ctx, a.PageID, "press_key", nil, func(cctx context.Context, _ []*element) error {
				return dispatchKeys(cctx, combo.events())
			}, "Pressed "+spec)
		}),
	}
}

type typeTextArgs struct {
	pageArg
	// Text is a pointer because "" is a text (type nothing, then submitKey).
	Text      *string `json:"text"`
	SubmitKey string  `json:"submitKey"`
}

func (t *toolset) typeText() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("type_text",
			mcp.WithDescription("Type text into the focused element key by key, then submitKey if given."),
			mcp.WithString("text", mcp.Required()),
			mcp.WithString("submitKey", mcp.Description("e.g. Enter")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a typeTextArgs) (*mcp.CallToolResult, error) {
			if a.Text == nil {
				return mcp.NewToolResultError("type_text needs a text (a string)"), nil
			}
			text := *a.Text
			n := utf8.RuneCountInString(text)
			if n > maxTypedRunes {
				return mcp.NewToolResultErrorf("type_text: the text has %d characters, more than %d; use fill to set a long value at once", n, maxTypedRunes), nil
			}
			var submit *keyCombo
			done := fmt.Sprintf("Typed %d characters", n)
			if s := a.SubmitKey; s != "" {
				c, err := parseKey(s)
				if err != nil {
					return mcp.NewToolResultError("type_text: submitKey: " + err.Error()), nil
				}
				submit = &c
				done += " and pressed " + s
			}
			return t.act(ctx, a.PageID, "type_text", nil, func(cctx context.Context, _ []*element) error {
				if err := typeRunes(cctx, text); err != nil {
					return err
				}
				if submit != nil {
					return dispatchKeys(cctx, submit.events())
				}
				return nil
			}, done)
		}),
	}
}

type uploadFileArgs struct {
	elementArgs
	FilePaths []string `json:"filePaths"`
}

func (t *toolset) uploadFile() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("upload_file",
			mcp.WithDescription("Set the files of a file input, or of the element opening a file chooser."),
			mcp.WithString("uid", mcp.Required()),
			mcp.WithArray("filePaths", mcp.Required(), mcp.MinItems(1), mcp.WithStringItems()),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a uploadFileArgs) (*mcp.CallToolResult, error) {
			uid, err := requireUID(a.UID)
			if err != nil {
				return nil, err
			}
			if len(a.FilePaths) == 0 {
				return mcp.NewToolResultError("upload_file needs filePaths, a non-empty array of file names"), nil
			}
			files := make([]string, 0, len(a.FilePaths))
			for _, s := range a.FilePaths {
				p, err := inputPath(ctx, s)
				if err != nil {
					return mcp.NewToolResultError("upload_file: " + err.Error()), nil
				}
				files = append(files, p)
			}
			return t.act(ctx, a.PageID, "upload_file", []uidArg{{uid: uid}}, func(cctx context.Context, elems []*element) error {
				return uploadFiles(cctx, elems[0], files)
			}, fmt.Sprintf("Chose %d file(s) for uid=%s", len(files), bareUID(uid)))
		}),
	}
}

// inputPath resolves a file to read for the page to a regular file inside the
// session's files directory; anything else on the host stays out of reach.
func inputPath(ctx context.Context, requested string) (string, error) {
	dir, err := filesDir(ctx)
	if err != nil {
		return "", err
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("files directory: %w", err)
	}
	if requested == "" || strings.ContainsRune(requested, 0) {
		return "", errors.New("a file path is empty or invalid")
	}
	p := requested
	if !filepath.IsAbs(p) {
		p = filepath.Join(root, p)
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(p))
	if err != nil {
		return "", fmt.Errorf("file %q does not exist in the session's files directory (%s)", requested, root)
	}
	if rel, err := filepath.Rel(root, real); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("file %q is outside the session's files directory (%s); only files in it can be uploaded", requested, root)
	}
	fi, err := os.Stat(real)
	if err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%q is not a regular file", requested)
	}
	return real, nil
}

// fileChooserWait bounds the wait for a file chooser after a click.
const fileChooserWait = 3 * time.Second

// uploadFiles sets the files of a file input. For another element it clicks
// it with the file chooser intercepted, and sets the files of the input
// whose chooser opened. The chooser of a cross-site frame is its target's:
// everything but the click goes to the element's own session.
func uploadFiles(top context.Context, e *element, files []string) error {
	ctx, node := e.ctx, e.ref.id
	d, err := chromedp.Call(ctx, dom.DescribeNode, dom.DescribeNodeParams{BackendNodeID: node})
	if err != nil {
		return err
	}
	if d.Node != nil && strings.EqualFold(d.Node.NodeName, "input") && strings.EqualFold(attr(d.Node.Attributes, "type"), "file") {
		if len(files) > 1 && !hasAttr(d.Node.Attributes, "multiple") {
			return userError{fmt.Sprintf("the file input takes one file (it has no multiple attribute), and %d were given", len(files))}
		}
		_, err := chromedp.Call(ctx, dom.SetFileInputFiles, dom.SetFileInputFilesParams{Files: files, BackendNodeID: node})
		return err
	}
	if _, err := chromedp.Call(ctx, page.SetInterceptFileChooserDialog, page.SetInterceptFileChooserDialogParams{Enabled: true}); err != nil {
		return err
	}
	defer func() {
		off, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = chromedp.Call(off, page.SetInterceptFileChooserDialog, page.SetInterceptFileChooserDialogParams{Enabled: false})
	}()
	wctx, cancel := context.WithTimeout(ctx, fileChooserWait)
	defer cancel()
	events := chromedp.Events(wctx, page.FileChooserOpened)
	if err := clickNode(top, e, 1); err != nil {
		return err
	}
	for ev, err := range events {
		if err != nil {
			break
		}
		if ev.BackendNodeID == 0 {
			return userError{"the page opened a file picker that is not a file input (showOpenFilePicker), which cannot be automated; use a page with an <input type=file>"}
		}
		if len(files) > 1 && ev.Mode != page.FileChooserOpenedModeSelectMultiple {
			return userError{fmt.Sprintf("the file chooser takes one file, and %d were given", len(files))}
		}
		_, err = chromedp.Call(ctx, dom.SetFileInputFiles, dom.SetFileInputFilesParams{Files: files, BackendNodeID: ev.BackendNodeID})
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return userError{fmt.Sprintf("the element is not a file input, and clicking it opened no file chooser within %s; give the uid of the file input or of the button that opens it", fileChooserWait)}
}
