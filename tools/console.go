package tools

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
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

// navRing is a bounded log of a tab's entries, each tagged with the
// main-frame navigation it belongs to. It keeps the entries of the last
// keptNavigations navigations and at most a given number of entries, oldest
// dropped first. Ids count up from 1 and are never reused, so an id from an
// older list names the same entry or none. The zero value is ready to use;
// the owner guards it.
type navRing[T any] struct {
	entries []navEntry[T] // in id order
	lastID  int
	nav     int            // number of the current navigation
	navURLs map[int]string // URL of each kept navigation
}

type navEntry[T any] struct {
	id, nav int
	v       T
}

// add appends v to the current navigation and returns its id, and the
// entries dropped to stay within limit.
func (r *navRing[T]) add(v T, limit int) (int, []T) {
	r.lastID++
	r.entries = append(r.entries, navEntry[T]{id: r.lastID, nav: r.nav, v: v})
	var dropped []T
	for len(r.entries) > limit {
		dropped = append(dropped, r.entries[0].v)
		r.entries[0] = navEntry[T]{} // let the dropped value go before the array is reallocated
		r.entries = r.entries[1:]
	}
	return r.lastID, dropped
}

// dropOldest drops the oldest entry and returns it.
func (r *navRing[T]) dropOldest() (T, bool) {
	if len(r.entries) == 0 {
		var zero T
		return zero, false
	}
	v := r.entries[0].v
	r.entries[0] = navEntry[T]{}
	r.entries = r.entries[1:]
	return v, true
}

// navigate starts a new navigation to url. Entries of the navigation that
// just ended for which carry is true move to the new one: a document's own
// request is sent before the browser announces the navigation. Entries
// older than keptNavigations navigations are dropped and returned.
func (r *navRing[T]) navigate(url string, carry func(T) bool) []T {
	prev := r.nav
	r.nav++
	if r.navURLs == nil {
		r.navURLs = map[int]string{}
	}
	r.navURLs[r.nav] = url
	delete(r.navURLs, r.nav-keptNavigations)
	oldest := r.nav - keptNavigations + 1
	var dropped []T
	kept := r.entries[:0]
	for _, e := range r.entries {
		if e.nav == prev && carry != nil && carry(e.v) {
			e.nav = r.nav
		}
		if e.nav < oldest {
			dropped = append(dropped, e.v)
			continue
		}
		kept = append(kept, e)
	}
	clear(r.entries[len(kept):])
	r.entries = kept
	return dropped
}

// find returns the entry with id.
func (r *navRing[T]) find(id int) (navEntry[T], bool) {
	i := sort.Search(len(r.entries), func(i int) bool { return r.entries[i].id >= id })
	if i < len(r.entries) && r.entries[i].id == id {
		return r.entries[i], true
	}
	return navEntry[T]{}, false
}

// pick returns the entries of the current navigation (or of every kept
// navigation when all is true) that keep accepts, oldest first, as a copy;
// how many entries the earlier navigations hold; and the header of each
// navigation picked from.
func (r *navRing[T]) pick(all bool, keep func(T) bool) ([]navEntry[T], int, map[int]string) {
	var out []navEntry[T]
	earlier := 0
	labels := map[int]string{}
	for _, e := range r.entries {
		if e.nav != r.nav && !all {
			earlier++
			continue
		}
		if keep(e.v) {
			out = append(out, e)
			labels[e.nav] = r.navLabel(e.nav)
		}
	}
	return out, earlier, labels
}

// forgotten says why id names no entry: whether it was given out once and
// dropped since, or never given out.
func (r *navRing[T]) forgotten(id int) bool { return id >= 1 && id <= r.lastID }

// navLabel names navigation nav for a list header.
func (r *navRing[T]) navLabel(nav int) string {
	url, ok := r.navURLs[nav]
	switch {
	case nav == r.nav && ok:
		return "Current navigation: " + clipMiddle(url, listURLWidth)
	case nav == r.nav:
		return "Current navigation"
	case ok:
		return "Earlier navigation: " + clipMiddle(url, listURLWidth)
	default:
		return "Before the first navigation seen"
	}
}

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

func argKind(o *runtime.RemoteObject) string {
	if o.Subtype != "" {
		return string(o.Subtype)
	}
	return string(o.Type)
}

// formatConsoleArgs renders the arguments of a console call as DevTools
// prints them: a first string argument is a format with %s, %d, %i, %f, %o,
// %O and %c; the other arguments follow, separated by spaces.
func formatConsoleArgs(args []*runtime.RemoteObject) string {
	if len(args) == 0 {
		return ""
	}
	var b strings.Builder
	rest := args
	if args[0].Type == runtime.RemoteObjectTypeString {
		format := remoteText(args[0], false)
		rest = args[1:]
		for i := 0; i < len(format); i++ {
			ch := format[i]
			if ch != '%' || i+1 >= len(format) {
				b.WriteByte(ch)
				continue
			}
			verb := format[i+1]
			if verb == '%' {
				b.WriteByte('%')
				i++
				continue
			}
			if !strings.ContainsRune("sdifoOc", rune(verb)) || len(rest) == 0 {
				b.WriteByte(ch)
				continue
			}
			a := rest[0]
			rest = rest[1:]
			i++
			switch verb {
			case 'c': // CSS styling has no text
			case 'd', 'i':
				f, err := strconv.ParseFloat(remoteText(a, false), 64)
				if err != nil {
					b.WriteString("NaN")
				} else {
					b.WriteString(strconv.FormatInt(int64(f), 10))
				}
			case 'f':
				f, err := strconv.ParseFloat(remoteText(a, false), 64)
				if err != nil {
					b.WriteString("NaN")
				} else {
					b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
				}
			default:
				b.WriteString(remoteText(a, false))
			}
			if b.Len() > maxCollectedText {
				return b.String()
			}
		}
	}
	for _, a := range rest {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(remoteText(a, false))
		if b.Len() > maxCollectedText {
			break
		}
	}
	return b.String()
}

// remoteText renders a value of the page from what the event carries,
// without asking the page: primitives as they are, objects from their
// preview. full keeps the whole description of errors (with their stack);
// otherwise only its first line.
func remoteText(o *runtime.RemoteObject, full bool) string {
	return remoteTextN(o, full, maxCollectedText)
}

// keptText is remoteText cut to maxKeptText, to keep: a long string is only
// decoded as far as it is kept, and its marker counts what the page logged.
func keptText(o *runtime.RemoteObject, full bool) string {
	s := remoteTextN(o, full, maxKeptText)
	if o != nil && o.Type == runtime.RemoteObjectTypeString && len(s) <= maxKeptText+len("…[cut 1,000,000,000 bytes]") {
		return s // cut while decoding already, with its marker
	}
	return cutText(s, maxKeptText)
}

// remoteTextN is remoteText with strings decoded up to about n bytes.
func remoteTextN(o *runtime.RemoteObject, full bool, n int) string {
	if o == nil {
		return ""
	}
	if o.UnserializableValue != "" {
		return string(o.UnserializableValue)
	}
	switch o.Type {
	case runtime.RemoteObjectTypeString:
		if s, ok := jsonStringPrefix(o.Value, n); ok {
			return s
		}
		return o.Description
	case runtime.RemoteObjectTypeUndefined:
		return "undefined"
	case runtime.RemoteObjectTypeNumber, runtime.RemoteObjectTypeBoolean, runtime.RemoteObjectTypeBigint:
		if len(o.Value) > 0 {
			return string(o.Value)
		}
		return o.Description
	case runtime.RemoteObjectTypeObject:
		switch o.Subtype {
		case runtime.RemoteObjectSubtypeNull:
			return "null"
		case runtime.RemoteObjectSubtypeError:
			if full {
				return o.Description
			}
			first, _, _ := strings.Cut(o.Description, "\n")
			return first
		}
		if o.Preview != nil {
			return previewText(o.Preview, 0)
		}
		if len(o.Value) > 0 {
			return string(o.Value)
		}
		return o.Description
	default: // function, symbol
		if !full {
			first, _, _ := strings.Cut(o.Description, "\n")
			return first
		}
		return o.Description
	}
}

// jsonStringPrefix decodes the JSON string v, or only its first n bytes or
// so when it is longer: a page may log megabytes, and the listener must not
// spend its time decoding what is cut anyway.
func jsonStringPrefix(v []byte, n int) (string, bool) {
	clipped, orig := false, v
	if len(v) > n+2 {
		cut := n + 1
		// Do not cut an escape in two: back up to the backslash that starts
		// the last escape when it is within reach of the cut.
		for i := cut - 1; i >= max(cut-6, 1); i-- {
			if v[i] != '\\' {
				continue
			}
			j := i
			for j > 0 && v[j-1] == '\\' {
				j--
			}
			if (i-j)%2 == 0 { // v[i] starts an escape
				cut = i
			}
			break
		}
		v = append(v[:cut:cut], '"')
		clipped = true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	if clipped {
		// What was cut, counted in the JSON text: exact unless it has
		// escapes.
		s += "…[cut " + groupDigits(len(orig)-len(v)) + " bytes]"
	}
	return s, true
}

// previewText renders an object preview the way DevTools abbreviates it:
// {a: 1, b: "x"}, [1, 2], Map(1) {"k" => 1}.
func previewText(p *runtime.ObjectPreview, depth int) string {
	if depth > 3 {
		return p.Description
	}
	switch p.Subtype {
	case runtime.ObjectPreviewSubtypeNull:
		return "null"
	case runtime.ObjectPreviewSubtypeNode, runtime.ObjectPreviewSubtypeRegexp, runtime.ObjectPreviewSubtypeDate,
		runtime.ObjectPreviewSubtypeError, runtime.ObjectPreviewSubtypePromise:
		return p.Description
	}
	if p.Type != runtime.ObjectPreviewTypeObject {
		return p.Description
	}
	var parts []string
	switch p.Subtype {
	case runtime.ObjectPreviewSubtypeArray, runtime.ObjectPreviewSubtypeTypedarray:
		for _, pp := range p.Properties {
			if _, err := strconv.Atoi(pp.Name); err == nil {
				parts = append(parts, propertyText(pp, depth))
			} else {
				parts = append(parts, pp.Name+": "+propertyText(pp, depth))
			}
		}
		return withOverflow("[", parts, p.Overflow, "]", prefixOf(p.Description, "Array"))
	case runtime.ObjectPreviewSubtypeMap, runtime.ObjectPreviewSubtypeSet, runtime.ObjectPreviewSubtypeWeakmap, runtime.ObjectPreviewSubtypeWeakset:
		for _, en := range p.Entries {
			v := previewText(en.Value, depth+1)
			if en.Value != nil && en.Value.Type == runtime.ObjectPreviewTypeString {
				v = strconv.Quote(en.Value.Description)
			}
			if en.Key != nil {
				k := previewText(en.Key, depth+1)
				if en.Key.Type == runtime.ObjectPreviewTypeString {
					k = strconv.Quote(en.Key.Description)
				}
				v = k + " => " + v
			}
			parts = append(parts, v)
		}
		return p.Description + " " + withOverflow("{", parts, p.Overflow, "}", "")
	}
	for _, pp := range p.Properties {
		parts = append(parts, pp.Name+": "+propertyText(pp, depth))
	}
	prefix := ""
	if p.Description != "Object" {
		prefix = p.Description + " "
	}
	return withOverflow(prefix+"{", parts, p.Overflow, "}", "")
}

// prefixOf returns the description of an array-like preview worth showing
// before its items: a typed array's class, not "Array(3)".
func prefixOf(desc, plain string) string {
	if strings.HasPrefix(desc, plain+"(") {
		return ""
	}
	name, _, _ := strings.Cut(desc, "(")
	return name + " "
}

func withOverflow(open string, parts []string, overflow bool, close, prefix string) string {
	if overflow {
		parts = append(parts, "…")
	}
	return prefix + open + strings.Join(parts, ", ") + close
}

func propertyText(pp *runtime.PropertyPreview, depth int) string {
	switch {
	case pp.ValuePreview != nil:
		return previewText(pp.ValuePreview, depth+1)
	case pp.Type == runtime.PropertyPreviewTypeString:
		return strconv.Quote(pp.Value)
	case pp.Type == runtime.PropertyPreviewTypeAccessor:
		return "(getter)"
	default:
		return pp.Value
	}
}

// clipEnd shortens s to at most n bytes (on a rune boundary), marking the cut.
func clipEnd(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// clipMiddle shortens s to about n bytes by cutting out its middle, so a URL
// keeps its host and its file name.
func clipMiddle(s string, n int) string {
	if len(s) <= n {
		return s
	}
	head, tail := n*2/3, n-n*2/3-1
	for head > 0 && s[head]&0xC0 == 0x80 {
		head--
	}
	start := len(s) - tail
	for start < len(s) && s[start]&0xC0 == 0x80 {
		start++
	}
	return s[:head] + "…" + s[start:]
}

// singleLine makes s fit a list line.
func singleLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	return clipEnd(s, n)
}

// listPaging reads pageSize and pageIdx and returns the range of n items to
// show, or an error result.
func listPaging(req mcp.CallToolRequest, tool string, n int) (from, to int, res *mcp.CallToolResult) {
	size := req.GetInt("pageSize", defaultListPageSize)
	idx := req.GetInt("pageIdx", 0)
	if size <= 0 {
		return 0, 0, mcp.NewToolResultErrorf("%s: pageSize must be a positive integer", tool)
	}
	if idx < 0 {
		return 0, 0, mcp.NewToolResultErrorf("%s: pageIdx must be 0 or more (0 is the first page)", tool)
	}
	pages := max(1, (n+size-1)/size)
	if idx >= pages {
		return 0, 0, mcp.NewToolResultErrorf("%s: pageIdx %d is past the last page; with pageSize %d there are %d page(s), pageIdx 0 to %d", tool, idx, size, pages, pages-1)
	}
	from = idx * size
	return from, min(from+size, n), nil
}

// pagingFooter tells which items a list shows and how to get the others.
func pagingFooter(from, to, n int, req mcp.CallToolRequest, noun string) string {
	if n == 0 {
		return ""
	}
	s := fmt.Sprintf("Showing %d-%d of %d %s.", from+1, to, n, noun)
	idx := req.GetInt("pageIdx", 0)
	if to < n {
		s += fmt.Sprintf(" Next page: pageIdx=%d.", idx+1)
	}
	if from > 0 {
		s += fmt.Sprintf(" Previous page: pageIdx=%d.", idx-1)
	}
	return s
}

// typeFilter reads an array of names and checks each against valid.
func typeFilter(req mcp.CallToolRequest, tool, arg string, valid []string) (map[string]bool, *mcp.CallToolResult) {
	raw, ok := req.GetArguments()[arg]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, mcp.NewToolResultErrorf("%s: %s must be an array of strings, e.g. [%q]", tool, arg, valid[0])
	}
	set := map[string]bool{}
	for _, v := range list {
		s, _ := v.(string)
		if !slices.Contains(valid, s) {
			return nil, mcp.NewToolResultErrorf("%s: %v is not one of the %s; use %s", tool, v, arg, strings.Join(valid, ", "))
		}
		set[s] = true
	}
	if len(set) == 0 {
		return nil, nil
	}
	return set, nil
}

// consoleTools returns list_console_messages and get_console_message.
func (t *toolset) consoleTools() []Tool {
	return []Tool{t.listConsoleMessages(), t.getConsoleMessage()}
}

func (t *toolset) listConsoleMessages() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("list_console_messages",
			mcp.WithDescription("List the console messages of the page since the last navigation: console calls, uncaught exceptions and the browser's own messages (failed loads, violations). Each line has a msgid for get_console_message."),
			mcp.WithInteger("pageSize", mcp.Min(1), mcp.Description(fmt.Sprintf("Maximum number of messages to return. Default %d.", defaultListPageSize))),
			mcp.WithInteger("pageIdx", mcp.Min(0), mcp.Description("Page number to return (0-based). Default 0, the oldest messages.")),
			mcp.WithArray("types", mcp.WithStringEnumItems(consoleTypes),
				mcp.Description(`Only return messages of these types. "error" includes uncaught exceptions; "exception" selects only them. When omitted or empty, returns all messages.`)),
			mcp.WithBoolean("includePreservedMessages", mcp.Description(fmt.Sprintf("Also return the messages of the %d navigations before the current one. Default false.", keptNavigations-1))),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			types, res := typeFilter(req, "list_console_messages", "types", consoleTypes)
			if res != nil {
				return res, nil
			}
			tab, res := pageOf(ctx, req)
			if res != nil {
				return res, nil
			}
			all := req.GetBool("includePreservedMessages", false)
			msgs, earlier, labels := tab.State.console.list(all, func(m *consoleMsg) bool {
				return len(types) == 0 || types[m.typ] || (m.uncaught && types["exception"])
			})
			from, to, res := listPaging(req, "list_console_messages", len(msgs))
			if res != nil {
				return res, nil
			}
			text := formatList(consoleWords, tab.ID, msgs[from:to], func(e navEntry[*consoleMsg]) int { return e.nav },
				func(e navEntry[*consoleMsg]) string { return consoleLine(e.id, e.v) }, labels, all, earlier, types != nil)
			return mcp.NewToolResultText(text +
				pagingFooter(from, to, len(msgs), req, "messages")), nil
		},
	}
}

// listWords are the words of a list tool's answer (list_console_messages,
// list_network_requests).
type listWords struct {
	title                           string // "Console messages"
	noneOfTypes, none, noneSinceNav string // when the page of items is empty
	kept, preserveArg               string // "message(s)", "includePreservedMessages"
}

var consoleWords = listWords{
	title:       "Console messages",
	noneOfTypes: "No messages of those types.", none: "No console messages.",
	noneSinceNav: "No console messages since the last navigation.",
	kept:         "message(s)", preserveArg: "includePreservedMessages",
}

// formatList renders a page of items, one line each; with all, under a
// header per navigation.
func formatList[T any](w listWords, pageID int, items []T, nav func(T) int, line func(T) string, labels map[int]string, all bool, earlier int, filtered bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s of page %d\n", w.title, pageID)
	if len(items) == 0 {
		switch {
		case filtered:
			b.WriteString(w.noneOfTypes)
		case all:
			b.WriteString(w.none)
		default:
			b.WriteString(w.noneSinceNav)
		}
		if !all && earlier > 0 {
			fmt.Fprintf(&b, " %d %s of earlier navigations are kept: pass %s=true to see them.", earlier, w.kept, w.preserveArg)
		}
		b.WriteByte('\n')
		return b.String()
	}
	cur := -1
	for _, it := range items {
		if n := nav(it); all && n != cur {
			cur = n
			fmt.Fprintf(&b, "### %s\n", labels[cur])
		}
		b.WriteString(line(it))
		b.WriteByte('\n')
	}
	return b.String()
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

func (t *toolset) getConsoleMessage() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("get_console_message",
			mcp.WithDescription("Get one console message by its msgid from list_console_messages: its full text, each argument, where it was logged and its stack trace."),
			mcp.WithNumber("msgid", mcp.Required(), mcp.Description("The msgid of a message, from list_console_messages")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			id, err := req.RequireInt("msgid")
			if err != nil {
				return mcp.NewToolResultError("get_console_message needs a msgid; call list_console_messages to get one"), nil
			}
			tab, res := pageOf(ctx, req)
			if res != nil {
				return res, nil
			}
			m, known := tab.State.console.get(id)
			if m == nil {
				if known {
					return mcp.NewToolResultErrorf("get_console_message: msgid %d of page %d is no longer kept (only the last %d navigations and %d messages are); call list_console_messages for the current ones", id, tab.ID, keptNavigations, maxConsoleMessages), nil
				}
				return mcp.NewToolResultErrorf("get_console_message: page %d has no message msgid=%d; call list_console_messages and use a msgid from its lines", tab.ID, id), nil
			}
			return mcp.NewToolResultText(t.formatConsoleMessage(ctx, tab, id, m)), nil
		},
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
