package tools

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// inputTools returns the input tools beyond click and fill: hover, drag,
// fill_form, press_key, type_text, upload_file, handle_dialog.
func (t *toolset) inputTools() []Tool {
	return []Tool{t.hover(), t.drag(), t.fillForm(), t.pressKey(), t.typeText(), t.uploadFile(), t.handleDialog()}
}

// maxTracked bounds the requests activity remembers: a page can open
// requests that never end (event streams, long polls).
const maxTracked = 256

// activity tracks what a tab is busy with, for the wait after an input action:
// the requests in flight, each with the sequence number of its start, so that
// the wait only counts the requests that the action started.
type activity struct {
	mu       sync.Mutex
	seq      uint64
	inflight map[network.RequestID]uint64
	changed  chan struct{} // closed on every change; nil until needed
}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (a *activity) listen(ev any) {
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.inflight == nil {
			a.inflight = map[network.RequestID]uint64{}
		}
		if _, ok := a.inflight[e.RequestID]; ok {
			return // a redirect of a request already counted
		}
		if len(a.inflight) >= maxTracked {
			a.evictLocked()
		}
		a.seq++
		a.inflight[e.RequestID] = a.seq
		a.signalLocked()
	case *network.EventLoadingFinished:
		a.done(e.RequestID)
	case *network.EventLoadingFailed:
		a.done(e.RequestID)
	}
}

func (a *activity) done(id network.RequestID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.inflight[id]; ok {
		delete(a.inflight, id)
		a.signalLocked()
	}
}

// evictLocked forgets the older half of the tracked requests; those are the
// ones least likely to belong to the action being waited for.
func (a *activity) evictLocked() {
	floor := a.seq - maxTracked/2
	for id, s := range a.inflight {
		if s <= floor {
			delete(a.inflight, id)
		}
	}
}

func (a *activity) signalLocked() {
	if a.changed != nil {
		close(a.changed)
		a.changed = nil
	}
}

// mark returns the request sequence number now.
func (a *activity) mark() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seq
}

// since reports how many requests started after m, how many of those are
// still in flight, and a channel closed at the next change.
func (a *activity) since(m uint64) (started, inflight int, changed <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.inflight {
		if s > m {
			inflight++
		}
	}
	if a.changed == nil {
		a.changed = make(chan struct{})
	}
	return int(a.seq - m), inflight, a.changed
}

// navChanged returns a channel closed at the next start or stop of a
// main-frame navigation.
func (s *TabState) navChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// navSince returns the URL of the latest main-frame navigation when one
// started after m.
func (s *TabState) navSince(m navMark) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastURL, navMark(s.started) != m
}

func (t *toolset) hover() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("hover",
			mcp.WithDescription("Move the mouse over the element with the given uid from the latest take_snapshot."),
			mcp.WithString("uid", mcp.Required(), mcp.Description("uid of the element, from take_snapshot")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			uid, res := requireUID(req, "hover")
			if res != nil {
				return res, nil
			}
			return t.act(ctx, req, "hover", []uidArg{{uid: uid}}, func(cctx context.Context, elems []*element) error {
				x, y, err := nodeCenter(elems[0])
				if err != nil {
					return err
				}
				_, err = chromedp.Call(cctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseMoved, X: x, Y: y})
				return err
			}, "Hovered over uid="+bareUID(uid)), nil
		},
	}
}

func (t *toolset) drag() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("drag",
			mcp.WithDescription("Drag the element from_uid onto the element to_uid (uids from the latest take_snapshot), with a real mouse press, moves and release; HTML5 drag and drop works too."),
			mcp.WithString("from_uid", mcp.Required(), mcp.Description("uid of the element to drag")),
			mcp.WithString("to_uid", mcp.Required(), mcp.Description("uid of the element to drop on")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			from, err1 := req.RequireString("from_uid")
			to, err2 := req.RequireString("to_uid")
			if err1 != nil || err2 != nil {
				return mcp.NewToolResultError("drag needs from_uid and to_uid; call take_snapshot to get them"), nil
			}
			targets := []uidArg{{uid: from, label: "from_uid"}, {uid: to, label: "to_uid"}}
			return t.act(ctx, req, "drag", targets, dragNodes(targets),
				fmt.Sprintf("Dragged uid=%s onto uid=%s", bareUID(from), bareUID(to))), nil
		},
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

func (t *toolset) fillForm() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("fill_form",
			mcp.WithDescription("Fill several form elements at once, each like fill. Stops at the first element that fails and says which."),
			mcp.WithArray("elements", mcp.Required(), mcp.Description("Elements from the latest take_snapshot and the values to fill in"),
				mcp.MinItems(1),
				mcp.Items(map[string]any{
					"type": "object",
					"properties": map[string]any{
						"uid":   map[string]any{"type": "string", "description": "uid of the element, from take_snapshot"},
						"value": map[string]any{"type": "string", "description": "Value to fill in"},
					},
					"required": []string{"uid", "value"},
				})),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			targets, values, err := formElements(req.GetArguments()["elements"])
			if err != nil {
				return mcp.NewToolResultError("fill_form: " + err.Error()), nil
			}
			return t.act(ctx, req, "fill_form", targets, func(cctx context.Context, elems []*element) error {
				for i, e := range elems {
					if err := fillNode(e, values[i]); err != nil {
						return targets[i].wrap(err)
					}
				}
				return nil
			}, fmt.Sprintf("Filled %d elements", len(targets))), nil
		},
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

func (t *toolset) pressKey() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("press_key",
			mcp.WithDescription("Press a key or a key combination in the page, e.g. to submit with Enter, move focus with Tab, or select all with Control+A. The key goes to the focused element."),
			mcp.WithString("key", mcp.Required(), mcp.Description(`A key or combination: "Enter", "Tab", "Escape", "ArrowDown", "a", "Control+A", "Shift+ArrowLeft", "Control+Shift+R". Modifiers: Control, Shift, Alt, Meta.`)),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			spec, err := req.RequireString("key")
			if err != nil {
				return mcp.NewToolResultError(`press_key needs a key, e.g. "Enter" or "Control+A"`), nil
			}
			combo, err := parseKey(spec)
			if err != nil {
				return mcp.NewToolResultError("press_key: " + err.Error()), nil
			}
			return t.act(ctx, req, "press_key", nil, func(cctx context.Context, _ []*element) error {
				return dispatchKeys(cctx, combo.events())
			}, "Pressed "+spec), nil
		},
	}
}

func (t *toolset) typeText() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("type_text",
			mcp.WithDescription("Type text into the focused element with key events, as a user would; then optionally press a key such as Enter. Focus an element first, e.g. with click."),
			mcp.WithString("text", mcp.Required(), mcp.Description("Text to type")),
			mcp.WithString("submitKey", mcp.Description(`Key to press after the text, e.g. "Enter" or "Tab"`)),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			text, err := req.RequireString("text")
			if err != nil {
				return mcp.NewToolResultError("type_text needs a text (a string)"), nil
			}
			n := utf8.RuneCountInString(text)
			if n > maxTypedRunes {
				return mcp.NewToolResultErrorf("type_text: the text has %d characters, more than %d; use fill to set a long value at once", n, maxTypedRunes), nil
			}
			var submit *keyCombo
			done := fmt.Sprintf("Typed %d characters", n)
			if s := req.GetString("submitKey", ""); s != "" {
				c, err := parseKey(s)
				if err != nil {
					return mcp.NewToolResultError("type_text: submitKey: " + err.Error()), nil
				}
				submit = &c
				done += " and pressed " + s
			}
			return t.act(ctx, req, "type_text", nil, func(cctx context.Context, _ []*element) error {
				if err := typeRunes(cctx, text); err != nil {
					return err
				}
				if submit != nil {
					return dispatchKeys(cctx, submit.events())
				}
				return nil
			}, done), nil
		},
	}
}

// maxTypedRunes bounds type_text: each character is a few browser calls.
const maxTypedRunes = 1000

// typeRunes types text with key events where a key makes the character, so
// that key handlers of the page run, and inserts the other characters.
func typeRunes(ctx context.Context, text string) error {
	var other []rune
	flush := func() error {
		if len(other) == 0 {
			return nil
		}
		_, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: string(other)})
		other = other[:0]
		return err
	}
	for _, r := range text {
		if r == '\n' {
			r = '\r'
		}
		// Only ASCII: kb also maps private-use runes to keys like ArrowLeft.
		if _, ok := kb.Keys[r]; !ok || r >= utf8.RuneSelf {
			other = append(other, r)
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		for _, ev := range kb.Encode(r) {
			if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, *ev); err != nil {
				return err
			}
		}
	}
	return flush()
}

func dispatchKeys(ctx context.Context, evs []input.DispatchKeyEventParams) error {
	for _, ev := range evs {
		if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, ev); err != nil {
			return err
		}
	}
	return nil
}

// keyCombo is a parsed press_key argument: modifier keys held around one key.
type keyCombo struct {
	mods []*kb.Key
	key  *kb.Key
}

var modifierBits = map[string]int64{"Alt": 1, "Control": 2, "Meta": 4, "Shift": 8}

// modifierNames maps the accepted spellings of modifiers to the DOM name.
var modifierNames = map[string]string{
	"control": "Control", "ctrl": "Control",
	"shift": "Shift",
	"alt":   "Alt", "option": "Alt",
	"meta": "Meta", "cmd": "Meta", "command": "Meta", "super": "Meta",
}

// keyAliases are other spellings of key names.
var keyAliases = map[string]string{
	"esc": "Escape", "return": "Enter", "del": "Delete", "space": " ", "spacebar": " ",
	"up": "ArrowUp", "down": "ArrowDown", "left": "ArrowLeft", "right": "ArrowRight",
	"plus": "+", "ctrl": "Control", "cmd": "Meta", "command": "Meta", "option": "Alt",
}

// namedKeys maps the lower-case DOM key names of kb (Enter, ArrowLeft, F5...)
// to their keys.
var namedKeys = func() map[string]*kb.Key {
	m := map[string]*kb.Key{}
	runes := make([]rune, 0, len(kb.Keys))
	for r := range kb.Keys {
		runes = append(runes, r)
	}
	slices.Sort(runes) // the lowest rune wins a shared name, every run alike
	for _, r := range runes {
		k := kb.Keys[r]
		if utf8.RuneCountInString(k.Key) <= 1 {
			continue
		}
		if _, ok := m[strings.ToLower(k.Key)]; !ok {
			m[strings.ToLower(k.Key)] = k
		}
	}
	return m
}()

// parseKey parses "Enter", "a", "Control+A", "Control++", "Meta+Shift+K".
func parseKey(spec string) (keyCombo, error) {
	if spec == "" {
		return keyCombo{}, errors.New(`the key is empty; give one like "Enter" or "Control+A"`)
	}
	keyName, rest := spec, ""
	switch {
	case spec == "+":
	case strings.HasSuffix(spec, "++"):
		keyName, rest = "+", strings.TrimSuffix(spec, "++")
	default:
		if i := strings.LastIndex(spec, "+"); i >= 0 {
			keyName, rest = spec[i+1:], spec[:i]
		}
	}
	if keyName == "" {
		return keyCombo{}, fmt.Errorf(`%q ends with "+" but names no key; give one like "Control+A"`, spec)
	}
	var c keyCombo
	var bits int64
	if rest != "" {
		for _, m := range strings.Split(rest, "+") {
			name, ok := modifierNames[strings.ToLower(m)]
			if !ok {
				return keyCombo{}, fmt.Errorf(`%q in %q is not a modifier; use Control, Shift, Alt or Meta joined with "+", e.g. "Control+A" or "Control+Shift+K"`, m, spec)
			}
			if bits&modifierBits[name] != 0 {
				continue
			}
			bits |= modifierBits[name]
			c.mods = append(c.mods, namedKeys[strings.ToLower(name)])
		}
	}
	k, err := lookupKey(keyName, spec, bits)
	if err != nil {
		return keyCombo{}, err
	}
	c.key = k
	return c, nil
}

// lookupKey finds the key for a name of spec, given the modifiers held with
// it.
func lookupKey(name, spec string, bits int64) (*kb.Key, error) {
	where := ""
	if spec != name {
		where = fmt.Sprintf(" in %q", spec)
	}
	if a, ok := keyAliases[strings.ToLower(name)]; ok {
		name = a
	}
	if utf8.RuneCountInString(name) == 1 {
		r, _ := utf8.DecodeRuneInString(name)
		// A letter with Shift is the capital; with only Control, Alt or Meta
		// it is the plain key, so that Control+A is not Control+Shift+A.
		if r < utf8.RuneSelf && ('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			switch {
			case bits&modifierBits["Shift"] != 0:
				r = []rune(strings.ToUpper(string(r)))[0]
			case bits != 0:
				r = []rune(strings.ToLower(string(r)))[0]
			}
		}
		if k, ok := kb.Keys[r]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("unknown key %q%s: no keyboard key types it; use type_text to enter such text", name, where)
	}
	if k, ok := namedKeys[strings.ToLower(name)]; ok {
		return k, nil
	}
	return nil, fmt.Errorf(`unknown key %q%s; use a key name such as Enter, Tab, Escape, Backspace, Delete, ArrowLeft, ArrowDown, Home, End, PageDown, F1-F12, Space, or a single character, with modifiers Control, Shift, Alt, Meta joined by "+" (e.g. "Control+A")`, name, where)
}

// events returns the key events of the combination: each modifier goes down
// in order, the key is pressed, and the modifiers come up in reverse order.
// Text is only sent when no Control, Alt or Meta is held, as a keyboard
// would: Control+A selects, it does not type "a".
func (c keyCombo) events() []input.DispatchKeyEventParams {
	var evs []input.DispatchKeyEventParams
	var bits int64
	base := func(k *kb.Key) input.DispatchKeyEventParams {
		return input.DispatchKeyEventParams{Key: k.Key, Code: k.Code, WindowsVirtualKeyCode: k.Windows, NativeVirtualKeyCode: k.Native}
	}
	for _, m := range c.mods {
		bits |= modifierBits[m.Key]
		ev := base(m)
		ev.Type, ev.Modifiers, ev.Location = input.DispatchKeyEventTypeRawKeyDown, bits, 1
		evs = append(evs, ev)
	}
	keyBits := bits
	text := c.key.Text
	if bits&^modifierBits["Shift"] != 0 {
		text = ""
	}
	if c.key.Shift && text != "" {
		keyBits |= modifierBits["Shift"]
	}
	down := base(c.key)
	down.Modifiers = keyBits
	down.Type = input.DispatchKeyEventTypeRawKeyDown
	if text != "" {
		down.Type, down.Text, down.UnmodifiedText = input.DispatchKeyEventTypeKeyDown, text, c.key.Unmodified
	}
	up := base(c.key)
	up.Type, up.Modifiers = input.DispatchKeyEventTypeKeyUp, keyBits
	evs = append(evs, down, up)
	for i := len(c.mods) - 1; i >= 0; i-- {
		m := c.mods[i]
		bits &^= modifierBits[m.Key]
		ev := base(m)
		ev.Type, ev.Modifiers, ev.Location = input.DispatchKeyEventTypeKeyUp, bits, 1
		evs = append(evs, ev)
	}
	return evs
}

func (t *toolset) uploadFile() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("upload_file",
			mcp.WithDescription("Choose files for a file input (or for the element, such as a button, that opens a file chooser), by uid from the latest take_snapshot. The files must be in this session's files directory."),
			mcp.WithString("uid", mcp.Required(), mcp.Description("uid of the file input, or of the element that opens the file chooser")),
			mcp.WithArray("filePaths", mcp.Required(), mcp.MinItems(1), mcp.WithStringItems(),
				mcp.Description("Files to upload: names relative to the session's files directory, or absolute paths inside it")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			uid, res := requireUID(req, "upload_file")
			if res != nil {
				return res, nil
			}
			raw, ok := req.GetArguments()["filePaths"].([]any)
			if !ok || len(raw) == 0 {
				return mcp.NewToolResultError("upload_file needs filePaths, a non-empty array of file names"), nil
			}
			files := make([]string, 0, len(raw))
			for _, r := range raw {
				s, ok := r.(string)
				if !ok {
					return mcp.NewToolResultError("upload_file: filePaths must be strings"), nil
				}
				p, err := inputPath(ctx, s)
				if err != nil {
					return mcp.NewToolResultError("upload_file: " + err.Error()), nil
				}
				files = append(files, p)
			}
			return t.act(ctx, req, "upload_file", []uidArg{{uid: uid}}, func(cctx context.Context, elems []*element) error {
				return uploadFiles(cctx, elems[0], files)
			}, fmt.Sprintf("Chose %d file(s) for uid=%s", len(files), bareUID(uid))), nil
		},
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

// attr returns the value of attribute name in a DOM attribute list
// (name, value, name, value...).
func attr(attrs []string, name string) string {
	for i := 0; i+1 < len(attrs); i += 2 {
		if strings.EqualFold(attrs[i], name) {
			return attrs[i+1]
		}
	}
	return ""
}

func hasAttr(attrs []string, name string) bool {
	for i := 0; i < len(attrs); i += 2 {
		if strings.EqualFold(attrs[i], name) {
			return true
		}
	}
	return false
}
