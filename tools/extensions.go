package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/extensions"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools/internal/remoteobj"
)

// Bounds of the extension tools.
const (
	// extConsoleCap is how many messages a console collector keeps.
	extConsoleCap = 1000
	// extConsolesPerSession bounds the extensions one session collects from.
	extConsolesPerSession = 8
	// extNameLookups bounds how many workers list_extensions attaches to
	// for the names of extensions Chrome does not describe.
	extNameLookups = 10
	// extReloadWait bounds the wait for a reloaded extension's new worker.
	extReloadWait = 5 * time.Second
)

// extensionTools returns list_extensions, reload_extension,
// list_extension_service_workers and the extension console tool.
func (t *toolset) extensionTools() []Tool {
	return []Tool{t.listExtensions(), t.listExtensionServiceWorkers(), t.reloadExtension(), t.listExtensionConsoleMessages()}
}

var extensionIDRE = regexp.MustCompile(`^[a-p]{32}$`)

var extensionIDOption = mcp.WithString("extensionId", mcp.Required())

func (t *toolset) listExtensions() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("list_extensions",
			mcp.WithDescription("List your browser's extensions: id, name, version, enabled, worker (packed: while running)."),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a noArgs) (*mcp.CallToolResult, error) {
			tab, err := browserTab(ctx)
			if err != nil {
				return nil, err
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			exts, listed, err := findExtensions(cctx)
			if err != nil {
				return nil, cdpError("list_extensions", cctx, tab, t.cfg.CallTimeout, err)
			}
			lookupNames(cctx, tab, exts)
			return mcp.NewToolResultText(formatExtensions(exts, listed)), nil
		}),
	}
}

func formatExtensions(exts []*extension, listed bool) string {
	var b strings.Builder
	b.WriteString("## Extensions\n")
	if len(exts) == 0 {
		b.WriteString("No extension found: no unpacked extension is installed and no extension runs a service worker or page.\n")
	}
	for _, e := range exts {
		name := e.name
		if name == "" {
			name = "(name unknown)"
		}
		fmt.Fprintf(&b, "- %s id=%s", quote(name), e.id)
		if e.version != "" {
			fmt.Fprintf(&b, " version %s", e.version)
		}
		switch {
		case e.enabled == nil:
			b.WriteString(", enabled (it runs)")
		case *e.enabled:
			b.WriteString(", enabled")
		default:
			b.WriteString(", disabled")
		}
		if e.path != "" {
			fmt.Fprintf(&b, ", unpacked from %s", e.path)
		}
		b.WriteByte('\n')
		if len(e.targets) == 0 {
			b.WriteString("  no running service worker or page\n")
		}
		for _, ti := range e.targets {
			fmt.Fprintf(&b, "  %s %s %s\n", ti.Type, ti.TargetID, ti.URL)
		}
	}
	if !listed {
		b.WriteString("\nThis browser does not list its unpacked extensions over CDP (Extensions.getExtensions); only running extensions are shown.\n")
	}
	return b.String()
}

// extensionArgs are the arguments of a tool on one extension (or, for
// list_extension_service_workers, on all of them without an id).
type extensionArgs struct {
	ExtensionID string `json:"extensionId"`
}

func (t *toolset) listExtensionServiceWorkers() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("list_extension_service_workers",
			mcp.WithDescription("List running extension service workers: target and extension id, URL, debugger."),
			mcp.WithString("extensionId"),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a extensionArgs) (*mcp.CallToolResult, error) {
			only := a.ExtensionID
			if only != "" && !extensionIDRE.MatchString(only) {
				return mcp.NewToolResultErrorf("list_extension_service_workers: %q is not an extension id (32 letters a-p); call list_extensions", only), nil
			}
			tab, err := browserTab(ctx)
			if err != nil {
				return nil, err
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			infos, err := chromedp.CallBrowser(cctx, target.GetTargets, target.GetTargetsParams{})
			if err != nil {
				return nil, cdpError("list_extension_service_workers", cctx, tab, t.cfg.CallTimeout, err)
			}
			collected := collectedWorkers(ctx)
			var b strings.Builder
			b.WriteString("## Extension service workers\n")
			n := 0
			for _, ti := range infos.TargetInfos {
				id := extensionOf(ti.URL)
				if ti.Type != "service_worker" || id == "" || (only != "" && id != only) {
					continue
				}
				n++
				attached := "no"
				if ti.Attached {
					attached = "yes"
				}
				fmt.Fprintf(&b, "- %s extension=%s %s attached=%s", ti.TargetID, id, ti.URL, attached)
				if collected[ti.TargetID] {
					b.WriteString(" (this session collects its console)")
				}
				b.WriteByte('\n')
			}
			if n == 0 {
				b.WriteString("None runs now. An extension's service worker starts on its next event (opening its popup, a message, an alarm) and stops when idle.\n")
			}
			return mcp.NewToolResultText(b.String()), nil
		}),
	}
}

func (t *toolset) reloadExtension() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("reload_extension",
			mcp.WithDescription("Reload an extension (unpacked: from disk) and its service worker."),
			extensionIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a extensionArgs) (*mcp.CallToolResult, error) {
			id, err := extensionArg(a.ExtensionID)
			if err != nil {
				return nil, err
			}
			tab, err := browserTab(ctx)
			if err != nil {
				return nil, err
			}
			return t.reload(ctx, tab, id)
		}),
	}
}

// reload reloads extension id and reports whether its worker came back.
func (t *toolset) reload(ctx context.Context, tab *Tab, id string) (*mcp.CallToolResult, error) {
	cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
	defer cancel()
	exts, _, err := findExtensions(cctx)
	if err != nil {
		return nil, cdpError("reload_extension", cctx, tab, t.cfg.CallTimeout, err)
	}
	var ext *extension
	for _, e := range exts {
		if e.id == id {
			ext = e
		}
	}
	if ext == nil {
		return mcp.NewToolResultErrorf("reload_extension: no extension %s is installed unpacked or running; call list_extensions for the ids", id), nil
	}
	if ext.enabled != nil && !*ext.enabled {
		return mcp.NewToolResultErrorf("reload_extension: extension %s is disabled; enable it in chrome://extensions first", id), nil
	}
	before := ext.worker()
	how := ""
	var loadErr error
	if ext.path != "" {
		// Chrome's own reload of an unpacked extension: unlike
		// chrome.runtime.reload(), it works without developer mode.
		if _, loadErr = chromedp.CallBrowser(cctx, extensions.LoadUnpacked, extensions.LoadUnpackedParams{Path: ext.path}); loadErr == nil {
			how = "loaded it again from " + ext.path
		}
	}
	if how == "" {
		if before == nil {
			msg := fmt.Sprintf("reload_extension: extension %s runs no service worker or background page to reload it from", id)
			if loadErr != nil {
				msg += fmt.Sprintf(", and loading it again from %s failed (%v)", ext.path, loadErr)
			}
			return mcp.NewToolResultError(msg + "; reload it from chrome://extensions"), nil
		}
		// The reload ends the worker: let the evaluation answer first.
		err := inTarget(cctx, tab, before.TargetID, t.cfg.CallTimeout, func(wctx context.Context) error {
			res, err := chromedp.Call(wctx, runtime.Evaluate, runtime.EvaluateParams{
				Expression: "setTimeout(() => chrome.runtime.reload(), 0); true", ReturnByValue: ptr(true),
			})
			if err == nil && res.ExceptionDetails != nil {
				err = userError{exceptionText(res.ExceptionDetails)}
			}
			return err
		})
		if err != nil {
			return mcp.NewToolResultErrorf("reload_extension: chrome.runtime.reload() in %s of extension %s failed: %v", before.Type, id, err), nil
		}
		how = "called chrome.runtime.reload() in its " + strings.ReplaceAll(before.Type, "_", " ")
	}
	after, enabled := waitReloaded(ctx, tab, id, before)
	name := ext.name
	if name == "" {
		name = id
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Reloaded extension %s (%s): %s.", quote(name), id, how)
	switch {
	case after != nil:
		fmt.Fprintf(&b, " Its %s restarted as target %s.", strings.ReplaceAll(after.Type, "_", " "), after.TargetID)
	case before != nil:
		fmt.Fprintf(&b, " Its %s has not restarted within %s; a service worker starts again on its next event.", strings.ReplaceAll(before.Type, "_", " "), extReloadWait)
	}
	if enabled != nil && !*enabled {
		b.WriteString(" But Chrome now shows it as disabled")
		if ext.path != "" && loadErr != nil {
			// Seen with Chromium 156: the runtime reload of an unpacked
			// extension disables it unless developer mode is on.
			b.WriteString(": chrome.runtime.reload() of an unpacked extension disables it when developer mode is off")
		}
		b.WriteString("; turn on developer mode in chrome://extensions and enable it there.")
		return mcp.NewToolResultError(b.String()), nil
	}
	return mcp.NewToolResultText(b.String()), nil
}

// waitReloaded waits, bounded, for a worker of extension id other than
// before, and returns it with the enabled state Chrome last reported. A
// reload disables the extension for a moment, so only the state at the end
// of the wait tells that it stayed disabled.
func waitReloaded(ctx context.Context, tab *Tab, id string, before *target.Info) (*target.Info, *bool) {
	cctx, cancel := callCtx(ctx, tab, extReloadWait)
	defer cancel()
	var enabled *bool
	for {
		if exts, _, err := findExtensions(cctx); err == nil {
			for _, e := range exts {
				if e.id != id {
					continue
				}
				enabled = e.enabled
				if w := e.worker(); w != nil && (before == nil || w.TargetID != before.TargetID) {
					return w, enabled
				}
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-cctx.Done():
			return nil, enabled
		}
	}
}

type extensionConsoleArgs struct {
	extensionArgs
	PageSize int `json:"pageSize"`
	PageIdx  int `json:"pageIdx"`
}

func (t *toolset) listExtensionConsoleMessages() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("list_extension_console_messages",
			mcp.WithDescription("List an extension worker's console messages and errors since it started (latest 1000)."),
			extensionIDOption,
			mcp.WithNumber("pageSize"),
			mcp.WithNumber("pageIdx"),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a extensionConsoleArgs) (*mcp.CallToolResult, error) {
			id, err := extensionArg(a.ExtensionID)
			if err != nil {
				return nil, err
			}
			size := a.PageSize
			if size <= 0 {
				size = 50
			}
			size = min(size, extConsoleCap)
			idx := max(a.PageIdx, 0)
			ws, err := workspaceFrom(ctx)
			if err != nil {
				return mcp.NewToolResultError(err.Error()), nil
			}
			tab, err := browserTab(ctx)
			if err != nil {
				return nil, err
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			infos, err := chromedp.CallBrowser(cctx, target.GetTargets, target.GetTargetsParams{})
			if err != nil {
				return nil, cdpError("list_extension_console_messages", cctx, tab, t.cfg.CallTimeout, err)
			}
			var worker *target.Info
			for _, ti := range infos.TargetInfos {
				if extensionOf(ti.URL) == id && (ti.Type == "service_worker" || (worker == nil && ti.Type == "background_page")) {
					worker = ti
				}
			}
			col, err := extConsoleFor(ws, id, tab, worker != nil)
			if err != nil {
				return nil, err
			}
			note := ""
			if worker != nil {
				if note, err = col.follow(worker, t.cfg.CallTimeout); err != nil {
					return mcp.NewToolResultErrorf("list_extension_console_messages: could not attach to the %s of extension %s: %v", worker.Type, id, err), nil
				}
			} else if col.attached() {
				note = "The worker does not run now; these messages are from before it stopped."
			}
			return mcp.NewToolResultText(col.format(id, note, size, idx)), nil
		}),
	}
}

func extensionArg(id string) (string, error) {
	if id == "" {
		return "", needf("needs an extensionId; call list_extensions for the ids")
	}
	if !extensionIDRE.MatchString(id) {
		return "", argErrorf("%q is not an extension id (32 letters a-p); call list_extensions for the ids", id)
	}
	return id, nil
}

// browserTab returns a live page of the calling session, opening one if it
// has none: the extension tools work on the browser, which chromedp reaches
// through a page's context. The oldest page is the likeliest to stay open.
func browserTab(ctx context.Context) (*Tab, error) {
	ws, err := workspaceFrom(ctx)
	if err != nil {
		return nil, err
	}
	for _, tab := range ws.OpenTabs() {
		if tab.Ctx.Err() == nil {
			return tab, nil
		}
	}
	tab, err := ws.Tab(ctx, 0)
	if err != nil {
		return nil, err
	}
	return tab, nil
}

// extension is one extension as the browser shows it.
type extension struct {
	id, name, version, path string
	enabled                 *bool          // known for unpacked extensions only
	targets                 []*target.Info // its running workers and pages
}

// worker returns the extension's service worker, or its background page.
func (e *extension) worker() *target.Info {
	var page *target.Info
	for _, ti := range e.targets {
		switch ti.Type {
		case "service_worker":
			return ti
		case "background_page":
			page = ti
		}
	}
	return page
}

// extensionOf returns the extension id of a chrome-extension:// URL.
func extensionOf(u string) string {
	rest, ok := strings.CutPrefix(u, "chrome-extension://")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	if !extensionIDRE.MatchString(id) {
		return ""
	}
	return id
}

// findExtensions returns the unpacked extensions Chrome lists and every
// other extension with a running target, sorted by name. listed is false
// when the browser has no Extensions.getExtensions.
func findExtensions(ctx context.Context) (exts []*extension, listed bool, err error) {
	byID := map[string]*extension{}
	if res, err := chromedp.CallBrowser(ctx, extensions.GetExtensions, cdp.Empty{}); err == nil {
		listed = true
		for _, x := range res.Extensions {
			byID[x.ID] = &extension{id: x.ID, name: x.Name, version: x.Version, path: x.Path, enabled: ptr(x.Enabled)}
		}
	} else if ctx.Err() != nil {
		return nil, false, err
	}
	infos, err := chromedp.CallBrowser(ctx, target.GetTargets, target.GetTargetsParams{})
	if err != nil {
		return nil, listed, err
	}
	for _, ti := range infos.TargetInfos {
		id := extensionOf(ti.URL)
		if id == "" {
			continue
		}
		e := byID[id]
		if e == nil {
			e = &extension{id: id}
			byID[id] = e
		}
		e.targets = append(e.targets, ti)
	}
	for _, e := range byID {
		exts = append(exts, e)
	}
	sort.Slice(exts, func(i, j int) bool {
		if a, b := strings.ToLower(exts[i].name), strings.ToLower(exts[j].name); a != b {
			return a < b
		}
		return exts[i].id < exts[j].id
	})
	return exts, listed, nil
}

// lookupNames reads the manifest of extensions Chrome did not describe, in
// their running worker, within ctx and at most extNameLookups of them.
func lookupNames(ctx context.Context, tab *Tab, exts []*extension) {
	n := 0
	for _, e := range exts {
		w := e.worker()
		if e.name != "" || w == nil || n >= extNameLookups || ctx.Err() != nil {
			continue
		}
		n++
		_ = inTarget(ctx, tab, w.TargetID, time.Until(deadlineOf(ctx)), func(wctx context.Context) error {
			res, err := chromedp.Call(wctx, runtime.Evaluate, runtime.EvaluateParams{
				Expression: "(() => { const m = chrome.runtime.getManifest(); return {name: m.name, version: m.version}; })()", ReturnByValue: ptr(true),
			})
			if err != nil || res.ExceptionDetails != nil || res.Result == nil {
				return err
			}
			var m struct{ Name, Version string }
			if json.Unmarshal(res.Result.Value, &m) == nil {
				e.name, e.version = m.Name, m.Version
			}
			return nil
		})
	}
}

func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(10 * time.Second)
}

// attachTarget attaches to a target of the browser (an extension's worker)
// through the tab's browser connection. The context only detaches when it
// ends, never closes the target: that would stop the user's extension.
// listener, if not nil, gets the target's events from the first one on.
func attachTarget(tab *Tab, id target.ID, wait time.Duration, listener func(any)) (context.Context, context.CancelFunc, error) {
	opts := []chromedp.ContextOption{chromedp.WithTargetID(id), chromedp.WithDetachOnCancel()}
	if listener != nil {
		opts = append(opts, chromedp.WithListener(listener))
	}
	tctx, cancel := chromedp.NewContext(tab.Ctx, opts...)
	// The first Run binds the target's read loop to its context, so it
	// must get tctx itself; bound it from outside.
	attached := make(chan error, 1)
	go func() { attached <- chromedp.Do(tctx) }()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-attached:
		if err != nil {
			cancel()
			return nil, nil, err
		}
		return tctx, cancel, nil
	case <-timer.C:
		cancel()
		return nil, nil, fmt.Errorf("the browser did not attach within %s", wait)
	}
}

// inTarget runs do attached to target id, then detaches.
func inTarget(ctx context.Context, tab *Tab, id target.ID, wait time.Duration, do func(context.Context) error) error {
	if wait <= 0 {
		return context.DeadlineExceeded
	}
	tctx, cancel, err := attachTarget(tab, id, wait, nil)
	if err != nil {
		return err
	}
	defer cancel()
	wctx, wcancel := context.WithTimeout(tctx, wait)
	defer wcancel()
	stop := context.AfterFunc(ctx, wcancel)
	defer stop()
	return do(wctx)
}

// extConsoleFor returns the collector of ws for extension ext, making one
// bound to tab when create is set. A collector lives in the session's
// state, bound to the session page it attached through: when that page
// closes (the session ends), the collector detaches and goes.
func extConsoleFor(ws Workspace, ext string, tab *Tab, create bool) (*extConsole, error) {
	st := ws.State()
	if st == nil {
		return nil, errors.New("list_extension_console_messages: this session cannot keep collectors")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if c := st.extConsoles[ext]; c != nil && c.parent.Ctx.Err() == nil {
		return c, nil
	}
	if !create {
		return nil, fmt.Errorf("list_extension_console_messages: extension %s runs no service worker or background page now; it starts on its next event (open its popup, send it a message), then call again", ext)
	}
	if n := len(st.extConsoles); n >= extConsolesPerSession {
		return nil, fmt.Errorf("list_extension_console_messages: this session already collects the consoles of %d extensions, the limit; open a new session for more", n)
	}
	c := &extConsole{parent: tab, since: time.Now()}
	if st.extConsoles == nil {
		st.extConsoles = map[string]*extConsole{}
	}
	st.extConsoles[ext] = c
	context.AfterFunc(tab.Ctx, func() {
		st.mu.Lock()
		if st.extConsoles[ext] == c {
			delete(st.extConsoles, ext)
		}
		st.mu.Unlock()
		c.detach()
	})
	return c, nil
}

// collectedWorkers returns the workers the calling session collects from.
func collectedWorkers(ctx context.Context) map[target.ID]bool {
	out := map[target.ID]bool{}
	ws, ok := WorkspaceFrom(ctx)
	if !ok {
		return out
	}
	st := ws.State()
	if st == nil {
		return out
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, c := range st.extConsoles {
		if c.attached() {
			out[c.current()] = true
		}
	}
	return out
}

// extConsole collects the console of one extension's worker.
type extConsole struct {
	parent *Tab // the session page it attaches through
	since  time.Time

	attach sync.Mutex // one attach at a time

	mu       sync.Mutex
	msgs     []extMessage // the latest extConsoleCap
	total    int
	target   target.ID // the worker attached now
	ctx      context.Context
	cancel   context.CancelFunc
	lastSeen float64 // newest message time of target
	skipTo   float64 // on a re-attach, drop the replay up to this time
}

type extMessage struct {
	n     int
	at    float64 // ms since the epoch
	level string
	text  string
	where string
}

func (c *extConsole) attached() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ctx != nil && c.ctx.Err() == nil
}

func (c *extConsole) current() target.ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.target
}

// follow keeps the collector attached to worker, the extension's running
// worker, re-attaching when the worker changed (a reload or a restart). It
// returns a note for the caller.
func (c *extConsole) follow(worker *target.Info, wait time.Duration) (string, error) {
	c.attach.Lock()
	defer c.attach.Unlock()
	c.mu.Lock()
	same := c.target == worker.TargetID
	live := c.ctx != nil && c.ctx.Err() == nil
	first := c.target == ""
	old := c.cancel
	c.mu.Unlock()
	if same && live {
		return "", nil
	}
	if old != nil {
		old()
	}
	id := worker.TargetID
	c.mu.Lock()
	// Runtime.enable replays what the worker logged so far: the whole of a
	// new worker's log, a repeat for the same one.
	c.skipTo = 0
	if same {
		c.skipTo = c.lastSeen
	}
	c.target, c.lastSeen, c.ctx, c.cancel = id, 0, nil, nil
	c.mu.Unlock()
	wctx, cancel, err := attachTarget(c.parent, id, wait, func(ev any) { c.listen(id, ev) })
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.ctx, c.cancel = wctx, cancel
	c.mu.Unlock()
	switch {
	case first:
		return fmt.Sprintf("Attached to the %s %s; this session collects its messages from now on.", strings.ReplaceAll(worker.Type, "_", " "), worker.URL), nil
	case same:
		return "", nil
	default:
		return fmt.Sprintf("The worker restarted (now target %s); its messages follow the older ones.", id), nil
	}
}

func (c *extConsole) detach() {
	c.mu.Lock()
	cancel := c.cancel
	c.ctx, c.cancel = nil, nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// listen takes one event of worker id; it runs on that target's read loop.
func (c *extConsole) listen(id target.ID, ev any) {
	var m extMessage
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		parts := make([]string, 0, len(e.Args))
		for _, a := range e.Args {
			parts = append(parts, remoteobj.Plain(a))
		}
		m = extMessage{at: float64(e.Timestamp), level: string(e.Type), text: strings.Join(parts, " ")}
		if e.StackTrace != nil && len(e.StackTrace.CallFrames) > 0 {
			f := e.StackTrace.CallFrames[0]
			m.where = fmt.Sprintf("%s:%d", f.URL, f.LineNumber+1)
		}
	case *runtime.EventExceptionThrown:
		if e.ExceptionDetails == nil {
			return
		}
		m = extMessage{at: float64(e.Timestamp), level: "error", text: "Uncaught " + exceptionText(e.ExceptionDetails)}
		if u := e.ExceptionDetails.URL; u != "" {
			m.where = fmt.Sprintf("%s:%d", u, e.ExceptionDetails.LineNumber+1)
		}
	case *log.EventEntryAdded:
		if e.Entry == nil {
			return
		}
		m = extMessage{at: float64(e.Entry.Timestamp), level: string(e.Entry.Level), text: e.Entry.Text, where: e.Entry.URL}
	default:
		return
	}
	const maxText = 2000
	if len(m.text) > maxText {
		m.text = m.text[:maxText] + "…"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id != c.target || (c.skipTo > 0 && m.at <= c.skipTo) {
		return
	}
	c.lastSeen = max(c.lastSeen, m.at)
	c.total++
	m.n = c.total
	if len(c.msgs) == extConsoleCap {
		copy(c.msgs, c.msgs[1:])
		c.msgs = c.msgs[:extConsoleCap-1]
	}
	c.msgs = append(c.msgs, m)
}

// format renders page idx of the collected messages, oldest first.
func (c *extConsole) format(ext, note string, size, idx int) string {
	c.mu.Lock()
	msgs := append([]extMessage(nil), c.msgs...)
	total, since := c.total, c.since
	c.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "## Console messages of extension %s\n", ext)
	if note != "" {
		b.WriteString(note + "\n")
	}
	dropped := total - len(msgs)
	fmt.Fprintf(&b, "Collected since %s", since.UTC().Format(time.RFC3339))
	if dropped > 0 {
		fmt.Fprintf(&b, "; the oldest %d were dropped, the latest %d kept", dropped, len(msgs))
	}
	b.WriteString(".\n")
	if len(msgs) == 0 {
		b.WriteString("No messages yet.\n")
		return b.String()
	}
	start := idx * size
	if start >= len(msgs) {
		fmt.Fprintf(&b, "Page %d is past the end: %d messages make %d pages of %d.\n", idx, len(msgs), (len(msgs)+size-1)/size, size)
		return b.String()
	}
	end := min(start+size, len(msgs))
	fmt.Fprintf(&b, "Showing %d-%d of %d messages.\n", start+1, end, len(msgs))
	for _, m := range msgs[start:end] {
		fmt.Fprintf(&b, "msgid=%d [%s] %s", m.n, m.level, m.text)
		if m.where != "" {
			fmt.Fprintf(&b, " (%s)", m.where)
		}
		b.WriteByte('\n')
	}
	if end < len(msgs) {
		fmt.Fprintf(&b, "More with pageIdx %d.\n", idx+1)
	}
	return b.String()
}
