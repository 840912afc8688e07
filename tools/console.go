package tools

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// Bounds of the console and network collectors of one tab. A page decides
// how much it logs and loads, so every list and every text is capped.
const (
	// keptNavigations is how many main-frame navigations a tab remembers:
	// the current one and the two before it, as chrome-devtools-mcp does.
	keptNavigations = 3
	// maxConsoleMessages and maxNetworkRequests cap the entries of a tab;
	// the oldest go first.
	maxConsoleMessages = 1000
	maxNetworkRequests = 1000
	// maxCollectedText caps one stored text (a message, an argument, a
	// request body from the event) and the bodies shown inline.
	maxCollectedText = 10000
	// maxStackFrames caps the frames kept of one stack trace.
	maxStackFrames = 30
	// maxConsoleArgs caps the arguments kept of one console call.
	maxConsoleArgs = 20
	// defaultListPageSize is the page size of the list tools when the caller
	// gives none; the footer says how to get the next page.
	defaultListPageSize = 100
	// listTextWidth and listURLWidth keep a list line short.
	listTextWidth = 160
	listURLWidth  = 100
)

// consoleMsg is one collected console message; it does not change once
// stored, so readers may keep it after the lock is released.
type consoleMsg struct {
	typ      string // as list_console_messages filters it: log, warn, error, ...
	uncaught bool   // an uncaught exception or promise rejection
	source   string // "console API", "uncaught exception", or the browser's log source
	text     string
	args     []consoleArg
	url      string
	line     int64 // 1-based, 0 when unknown
	col      int64 // 1-based, 0 when unknown
	stack    []string
	at       time.Time
	// src is the cross-site frame that logged the message, nil for the
	// page's session; frame is the frame's URL then.
	src   *frameSource
	frame string
	cost  int64 // bytes it keeps, estimated (logbudget.go)
}

// consoleArg is one argument of a console call, rendered when it came in;
// objectID lets get_console_message ask the page for the whole value while
// the page that logged it is still there.
type consoleArg struct {
	kind     string
	text     string
	objectID runtime.RemoteObjectID
}

// consoleLog collects a tab's console messages, uncaught exceptions and the
// browser's own log entries (failed loads, violations, deprecations).
type consoleLog struct {
	mu   sync.Mutex
	ring navRing[*consoleMsg]
	acct logAccount // bytes kept, bounded per tab and by the shared budget
	// marks holds the time of the latest message of each cross-site frame
	// (at most maxFrameMarks), to tell the messages that a new attachment
	// to the frame replays.
	marks map[target.ID]runtime.Timestamp
}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (c *consoleLog) listen(ev any) {
	if e, ok := ev.(*page.EventFrameNavigated); ok {
		if e.Frame != nil && e.Frame.ParentID == "" {
			c.mu.Lock()
			c.uncharge(c.ring.navigate(e.Frame.URL, nil))
			c.mu.Unlock()
		}
		return
	}
	c.take(nil, ev)
}

// uncharge takes the bytes of dropped messages off the account; c.mu is held.
func (c *consoleLog) uncharge(dropped []*consoleMsg) {
	for _, m := range dropped {
		c.acct.charge(-m.cost)
	}
}

// evictTo drops the oldest messages until at most n bytes are kept.
func (c *consoleLog) evictTo(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.acct.bytes.Load() > n {
		m, ok := c.ring.dropOldest()
		if !ok {
			return
		}
		c.acct.charge(-m.cost)
	}
}

// take keeps ev when it is a message, from src (nil for the page's session).
// The events of a cross-site frame come here straight (TabState.listenFrame),
// not through listen: the frame's navigations start no navigation of the tab.
func (c *consoleLog) take(src *frameSource, ev any) {
	var m *consoleMsg
	var ts runtime.Timestamp
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		m, ts = consoleCall(e), e.Timestamp
	case *runtime.EventExceptionThrown:
		m, ts = uncaughtException(e), e.Timestamp
	case *log.EventEntryAdded:
		m = browserLogEntry(e)
		if e.Entry != nil {
			ts = e.Entry.Timestamp
		}
	}
	if m == nil {
		return
	}
	if src != nil {
		m.src, m.frame = src, cutText(src.URL(), maxKeptText)
	}
	m.cost = m.keptBytes()
	c.mu.Lock()
	if src != nil {
		// A replayed message at or before the frame's latest one when the
		// attachment started was collected by an earlier attachment.
		if src.replaying.Load() && ts <= src.before {
			c.mu.Unlock()
			return
		}
		c.markFrame(src.id, ts)
	}
	_, dropped := c.ring.add(m, maxConsoleMessages)
	c.acct.charge(m.cost)
	c.uncharge(dropped)
	for c.acct.over() && len(c.ring.entries) > 1 {
		old, _ := c.ring.dropOldest()
		c.acct.charge(-old.cost)
	}
	c.mu.Unlock()
	c.acct.settle()
}

// size estimates the bytes m keeps.
func (m *consoleMsg) keptBytes() int64 {
	n := entryOverhead + len(m.typ) + len(m.source) + len(m.text) + len(m.url) + len(m.frame)
	for _, a := range m.args {
		n += elementOverhead + len(a.kind) + len(a.text) + len(a.objectID)
	}
	for _, f := range m.stack {
		n += elementOverhead + len(f)
	}
	return int64(n)
}

// markFrame notes a message of frame id at ts; c.mu is held.
func (c *consoleLog) markFrame(id target.ID, ts runtime.Timestamp) {
	if old, ok := c.marks[id]; ok {
		c.marks[id] = max(old, ts)
		return
	}
	if c.marks == nil {
		c.marks = map[target.ID]runtime.Timestamp{}
	}
	if len(c.marks) >= maxFrameMarks {
		var oldest target.ID
		for k, v := range c.marks {
			if oldest == "" || v < c.marks[oldest] {
				oldest = k
			}
		}
		delete(c.marks, oldest)
	}
	c.marks[id] = ts
}

// frameMark returns the time of the latest message of frame id, 0 if none.
func (c *consoleLog) frameMark(id target.ID) runtime.Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.marks[id]
}

// list returns the messages that keep accepts, as navRing.pick does.
func (c *consoleLog) list(all bool, keep func(*consoleMsg) bool) ([]navEntry[*consoleMsg], int, map[int]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ring.pick(all, keep)
}

// get returns message id; known says whether the id was given out once.
func (c *consoleLog) get(id int) (m *consoleMsg, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.ring.find(id)
	if !ok {
		return nil, c.ring.forgotten(id)
	}
	return e.v, true
}

// consoleTypes are the message types list_console_messages filters on: the
// console API's, as chrome-devtools-mcp names them, and "exception" for
// uncaught exceptions only.
var consoleTypes = []string{
	"log", "debug", "info", "error", "warn", "dir", "dirxml", "table", "trace", "clear",
	"startGroup", "startGroupCollapsed", "endGroup", "assert", "profile", "profileEnd",
	"count", "timeEnd", "verbose", "exception",
}

// consoleCall keeps a console API call. Its arguments are rendered now,
// from the previews the event carries: the objects may be gone when the
// message is read.
func consoleCall(e *runtime.EventConsoleAPICalled) *consoleMsg {
	typ := string(e.Type)
	if e.Type == runtime.ConsoleAPICalledTypeWarning {
		typ = "warn"
	}
	m := &consoleMsg{typ: typ, source: "console API", at: consoleTime(e.Timestamp)}
	args := e.Args
	if len(args) > maxConsoleArgs {
		args = args[:maxConsoleArgs]
	}
	for _, a := range args {
		m.args = append(m.args, consoleArg{kind: argKind(a), text: keptText(a, false), objectID: a.ObjectID})
	}
	m.text = cutText(formatConsoleArgs(e.Args), maxKeptText)
	if len(e.Args) > maxConsoleArgs {
		m.text += fmt.Sprintf(" …(%d more arguments)", len(e.Args)-maxConsoleArgs)
	}
	if m.text == "" {
		m.text = "console." + typ + "()"
	}
	m.setStack(e.StackTrace)
	return m
}

// uncaughtException shows an exception as DevTools does: "Uncaught" (or
// "Uncaught (in promise)") and the first line of the error.
func uncaughtException(e *runtime.EventExceptionThrown) *consoleMsg {
	d := e.ExceptionDetails
	if d == nil {
		return nil
	}
	m := &consoleMsg{typ: "error", uncaught: true, source: "uncaught exception", at: consoleTime(e.Timestamp)}
	m.text = d.Text
	if d.Exception != nil {
		first := remoteText(d.Exception, false)
		if first != "" && !strings.Contains(d.Text, first) {
			m.text = strings.TrimSpace(d.Text + " " + first)
		}
		m.args = []consoleArg{{kind: argKind(d.Exception), text: keptText(d.Exception, true), objectID: d.Exception.ObjectID}}
	}
	m.text = cutText(m.text, maxKeptText)
	m.url, m.line, m.col = cutText(d.URL, maxKeptText), d.LineNumber+1, d.ColumnNumber+1
	m.setStack(d.StackTrace)
	return m
}

// browserLogEntry keeps a message of the browser itself (a failed load, a
// violation, a deprecation), which the Log domain reports.
func browserLogEntry(e *log.EventEntryAdded) *consoleMsg {
	en := e.Entry
	// A worker's messages come again through the worker's own target.
	if en == nil || en.Source == log.EntrySourceWorker {
		return nil
	}
	typ := string(en.Level)
	if en.Level == log.EntryLevelWarning {
		typ = "warn"
	}
	m := &consoleMsg{typ: typ, source: "browser (" + string(en.Source) + ")", at: consoleTime(en.Timestamp)}
	m.text = cutText(en.Text, maxKeptText)
	m.url = cutText(en.URL, maxKeptText)
	if en.LineNumber > 0 {
		m.line = en.LineNumber + 1
	}
	m.setStack(en.StackTrace)
	return m
}

// setStack keeps the frames of st and takes the message's location from the
// top frame when it has none.
func (m *consoleMsg) setStack(st *runtime.StackTrace) {
	for s := st; s != nil && len(m.stack) < maxStackFrames; s = s.Parent {
		if s != st {
			m.stack = append(m.stack, cutText("--- async "+cmp.Or(s.Description, "call")+" ---", maxKeptFrame))
		}
		for _, f := range s.CallFrames {
			if len(m.stack) >= maxStackFrames {
				break
			}
			m.stack = append(m.stack, cutText(fmt.Sprintf("at %s (%s:%d:%d)", cmp.Or(f.FunctionName, "(anonymous)"), f.URL, f.LineNumber+1, f.ColumnNumber+1), maxKeptFrame))
		}
	}
	if m.url == "" && st != nil && len(st.CallFrames) > 0 {
		f := st.CallFrames[0]
		m.url, m.line, m.col = cutText(f.URL, maxKeptText), f.LineNumber+1, f.ColumnNumber+1
	}
}

func consoleTime(ms runtime.Timestamp) time.Time {
	return time.UnixMilli(int64(ms)).UTC()
}

// consoleTools returns list_console_messages and get_console_message.
func (t *toolset) consoleTools() []Tool {
	return []Tool{t.listConsoleMessages(), t.getConsoleMessage()}
}

type listConsoleMessagesArgs struct {
	pageArg
	pagingArgs
	// Types is checked by typeFilter, for its own message.
	Types                    any  `json:"types"`
	IncludePreservedMessages bool `json:"includePreservedMessages"`
}

func (t *toolset) listConsoleMessages() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("list_console_messages",
			mcp.WithDescription("List the page's console messages, exceptions and browser messages since the last navigation, with msgids."),
			mcp.WithInteger("pageSize", mcp.Min(1)),
			mcp.WithInteger("pageIdx", mcp.Min(0)),
			mcp.WithArray("types", mcp.WithStringEnumItems(consoleTypes),
				mcp.Description(`"error" includes exceptions`)),
			mcp.WithBoolean("includePreservedMessages"),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a listConsoleMessagesArgs) (*mcp.CallToolResult, error) {
			types, err := typeFilter(a.Types, "types", consoleTypes)
			if err != nil {
				return nil, err
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			all := a.IncludePreservedMessages
			msgs, earlier, labels := tab.State.console.list(all, func(m *consoleMsg) bool {
				return len(types) == 0 || types[m.typ] || (m.uncaught && types["exception"])
			})
			from, to, err := listPaging(a.pagingArgs, len(msgs))
			if err != nil {
				return nil, err
			}
			text := formatList(consoleWords, tab.ID, msgs[from:to], func(e navEntry[*consoleMsg]) int { return e.nav },
				func(e navEntry[*consoleMsg]) string { return consoleLine(e.id, e.v) }, labels, all, earlier, types != nil)
			return mcp.NewToolResultText(text +
				pagingFooter(from, to, len(msgs), a.pagingArgs, "messages")), nil
		}),
	}
}

var consoleWords = listWords{
	title:       "Console messages",
	noneOfTypes: "No messages of those types.", none: "No console messages.",
	noneSinceNav: "No console messages since the last navigation.",
	kept:         "message(s)", preserveArg: "includePreservedMessages",
}

func consoleLine(id int, m *consoleMsg) string {
	s := fmt.Sprintf("msgid=%d [%s] %s", id, m.typ, singleLine(m.text, listTextWidth))
	if m.url != "" {
		s += " (" + clipMiddle(m.url, listURLWidth)
		if m.line > 0 {
			s += ":" + strconv.FormatInt(m.line, 10)
		}
		s += ")"
	}
	if m.src != nil {
		s += " (frame " + clipMiddle(originOf(m.frame), listURLWidth) + ")"
	}
	return s
}

// originOf shortens a frame's URL to its origin, enough to tell a frame on
// a list line; the message in full has the whole URL.
func originOf(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" || p.Host == "" {
		return cmp.Or(u, "cross-site iframe")
	}
	return p.Scheme + "://" + p.Host
}

// frameLine says which cross-site frame an entry came from, for the entry
// in full.
func frameLine(frame string) string {
	return "Frame: " + cmp.Or(frame, "(URL not known)") + " (a cross-site iframe)\n"
}

type getConsoleMessageArgs struct {
	pageArg
	MsgID *int `json:"msgid"`
}

func (t *toolset) getConsoleMessage() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("get_console_message",
			mcp.WithDescription("Get a console message by msgid: full text, arguments, source and stack trace."),
			mcp.WithNumber("msgid", mcp.Required()),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a getConsoleMessageArgs) (*mcp.CallToolResult, error) {
			if a.MsgID == nil {
				return mcp.NewToolResultError("get_console_message needs a msgid; call list_console_messages to get one"), nil
			}
			id := *a.MsgID
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			m, known := tab.State.console.get(id)
			if m == nil {
				if known {
					return mcp.NewToolResultErrorf("get_console_message: msgid %d of page %d is no longer kept (only the last %d navigations and %d messages are); call list_console_messages for the current ones", id, tab.ID, keptNavigations, maxConsoleMessages), nil
				}
				return mcp.NewToolResultErrorf("get_console_message: page %d has no message msgid=%d; call list_console_messages and use a msgid from its lines", tab.ID, id), nil
			}
			return mcp.NewToolResultText(t.formatConsoleMessage(ctx, tab, id, m)), nil
		}),
	}
}

// formatConsoleMessage renders one message in full. Object arguments are
// asked from the page when it still has them; otherwise, or when the page
// cannot answer, their preview stands in.
func (t *toolset) formatConsoleMessage(ctx context.Context, tab *Tab, id int, m *consoleMsg) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Console message msgid=%d of page %d\n", id, tab.ID)
	fmt.Fprintf(&b, "Type: %s\nSource: %s\nTime: %s\n", m.typ, m.source, m.at.Format("2006-01-02T15:04:05.000Z07:00"))
	if m.src != nil {
		b.WriteString(frameLine(m.frame))
	}
	if m.url != "" {
		loc := m.url
		if m.line > 0 {
			loc += ":" + strconv.FormatInt(m.line, 10)
			if m.col > 0 {
				loc += ":" + strconv.FormatInt(m.col, 10)
			}
		}
		fmt.Fprintf(&b, "Location: %s\n", loc)
	}
	fmt.Fprintf(&b, "### Text\n%s\n", m.text)
	if len(m.args) > 0 {
		b.WriteString("### Arguments\n")
		cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
		defer cancel()
		// A page with an open dialog answers no Runtime call until it closes.
		octx, live := cctx, tab.State.dialog.current() == nil
		if m.src != nil && live {
			// The objects of a frame's message are known to the frame's
			// session, while the attachment that collected it lasts.
			octx, live = tab.State.frameSession(cctx, m.src)
		}
		for i, a := range m.args {
			text := a.text
			if live && a.objectID != "" && (a.kind == "object" || a.kind == "array") {
				if v, ok := objectJSON(octx, a.objectID); ok {
					text = v
				} else {
					live = octx.Err() == nil
				}
			}
			fmt.Fprintf(&b, "%d (%s): %s\n", i, a.kind, text)
		}
	}
	if len(m.stack) > 0 {
		b.WriteString("### Stack trace\n")
		for _, f := range m.stack {
			b.WriteString(f)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// objectJSON asks the page for the whole value of an object that a console
// call logged, as indented JSON, cut in the page so that a huge value does
// not cross the wire. It fails once the page that logged it is gone, or
// when the value is no JSON (cycles, host objects).
func objectJSON(ctx context.Context, id runtime.RemoteObjectID) (string, bool) {
	res, err := chromedp.Call(ctx, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
		FunctionDeclaration: fmt.Sprintf("function() { const s = JSON.stringify(this, null, 2); return typeof s === 'string' ? s.slice(0, %d) : null; }", maxCollectedText+1),
		ObjectID:            id,
		ReturnByValue:       ptr(true),
		Silent:              ptr(true),
	})
	if err != nil || res.ExceptionDetails != nil || res.Result == nil {
		return "", false
	}
	var s *string
	if json.Unmarshal(res.Result.Value, &s) != nil || s == nil {
		return "", false
	}
	return clipEnd(*s, maxCollectedText), true
}
