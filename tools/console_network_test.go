package tools

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
)

func cnAll[T any](T) bool { return true }

func cnView[T any](r *navRing[T], all bool) []navEntry[T] {
	es, _, _ := r.pick(all, cnAll[T])
	return es
}

func cnIDs[T any](es []navEntry[T]) []int {
	var out []int
	for _, e := range es {
		out = append(out, e.id)
	}
	return out
}

func TestNavRingKeepsThreeNavigations(t *testing.T) {
	var r navRing[string]
	r.add("before", 10)
	r.navigate("http://a/", nil)
	r.add("a1", 10)
	r.add("a2", 10)
	r.navigate("http://b/", nil)
	r.add("b1", 10)
	if got := cnIDs(cnView(&r, false)); fmt.Sprint(got) != "[4]" {
		t.Errorf("current view = %v, want [4]", got)
	}
	r.navigate("http://c/", nil)
	dropped := r.navigate("http://d/", nil)
	if fmt.Sprint(dropped) != "[a1 a2]" {
		t.Errorf("the 4th navigation dropped %v, want the first navigation's [a1 a2]", dropped)
	}
	r.add("d1", 10)
	if got := cnIDs(cnView(&r, true)); fmt.Sprint(got) != "[4 5]" {
		t.Errorf("preserved view = %v, want [4 5]", got)
	}
	if got := cnIDs(cnView(&r, false)); fmt.Sprint(got) != "[5]" {
		t.Errorf("current view = %v, want [5]", got)
	}
	if _, ok := r.find(2); ok || !r.forgotten(2) {
		t.Error("a dropped id is still found, or not known as given out")
	}
	if _, ok := r.find(99); ok || r.forgotten(99) {
		t.Error("an id never given out is found or known")
	}
	if e, ok := r.find(4); !ok || e.v != "b1" {
		t.Errorf("find(4) = %v, %v", e, ok)
	}
	if l := r.navLabel(r.nav); l != "Current navigation: http://d/" {
		t.Errorf("label of the current navigation: %q", l)
	}
	if l := r.navLabel(r.nav - 2); l != "Earlier navigation: http://b/" {
		t.Errorf("label of an earlier navigation: %q", l)
	}
}

func TestNavRingLimitAndIDs(t *testing.T) {
	var r navRing[int]
	var dropped []int
	for i := 1; i <= 7; i++ {
		id, d := r.add(i*10, 5)
		if id != i {
			t.Fatalf("add #%d got id %d", i, id)
		}
		dropped = append(dropped, d...)
	}
	if fmt.Sprint(dropped) != "[10 20]" || fmt.Sprint(cnIDs(cnView(&r, true))) != "[3 4 5 6 7]" {
		t.Errorf("dropped %v, kept %v; want the two oldest dropped", dropped, cnIDs(cnView(&r, true)))
	}
	// Ids go on after drops and navigations: never reused.
	r.navigate("x", nil)
	if id, _ := r.add(0, 5); id != 8 {
		t.Errorf("next id %d, want 8", id)
	}
}

func TestNavRingCarriesTheDocumentRequest(t *testing.T) {
	var r navRing[string]
	r.add("old page xhr", 10)
	r.add("new document", 10)
	r.navigate("http://new/", func(s string) bool { return s == "new document" })
	if got := cnView(&r, false); len(got) != 1 || got[0].v != "new document" {
		t.Errorf("current view %v, want the new document's own request", got)
	}
	r.navigate("2", nil)
	r.navigate("3", nil)
	if got := cnView(&r, true); len(got) != 1 || got[0].v != "new document" {
		t.Errorf("after 2 more navigations %v, want only the carried request", got)
	}
}

func cnStr(s string) *runtime.RemoteObject {
	return &runtime.RemoteObject{Type: runtime.RemoteObjectTypeString, Value: []byte(fmt.Sprintf("%q", s))}
}

func cnNum(n string) *runtime.RemoteObject {
	return &runtime.RemoteObject{Type: runtime.RemoteObjectTypeNumber, Value: []byte(n), Description: n}
}

func TestConsoleLogCollects(t *testing.T) {
	var c consoleLog
	obj := &runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, ClassName: "Object", Description: "Object", ObjectID: "obj-1",
		Preview: &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Description: "Object", Properties: []*runtime.PropertyPreview{
			{Name: "code", Type: runtime.PropertyPreviewTypeNumber, Value: "42"},
			{Name: "reason", Type: runtime.PropertyPreviewTypeString, Value: "nope"},
			{Name: "list", Type: runtime.PropertyPreviewTypeObject, Value: "Array(2)", Subtype: runtime.PropertyPreviewSubtypeArray,
				ValuePreview: &runtime.ObjectPreview{Type: runtime.ObjectPreviewTypeObject, Subtype: runtime.ObjectPreviewSubtypeArray, Description: "Array(2)",
					Properties: []*runtime.PropertyPreview{{Name: "0", Type: runtime.PropertyPreviewTypeNumber, Value: "1"}, {Name: "1", Type: runtime.PropertyPreviewTypeNumber, Value: "2"}}}},
		}}}
	stack := &runtime.StackTrace{CallFrames: []*runtime.CallFrame{{FunctionName: "load", URL: "http://h/app.js", LineNumber: 9, ColumnNumber: 4}}}
	c.listen(&runtime.EventConsoleAPICalled{Type: runtime.ConsoleAPICalledTypeLog, Args: []*runtime.RemoteObject{cnStr("%s has %d items%c"), cnStr("cart"), cnNum("3.7"), cnStr("color: red"), cnStr("extra")}, Timestamp: 1e12})
	c.listen(&runtime.EventConsoleAPICalled{Type: runtime.ConsoleAPICalledTypeWarning, Args: []*runtime.RemoteObject{cnStr("careful")}})
	c.listen(&runtime.EventConsoleAPICalled{Type: runtime.ConsoleAPICalledTypeError, Args: []*runtime.RemoteObject{cnStr("failed:"), obj}, StackTrace: stack})
	c.listen(&runtime.EventExceptionThrown{ExceptionDetails: &runtime.ExceptionDetails{Text: "Uncaught", LineNumber: 2, ColumnNumber: 7, URL: "http://h/",
		Exception: &runtime.RemoteObject{Type: runtime.RemoteObjectTypeObject, Subtype: runtime.RemoteObjectSubtypeError, Description: "Error: boom\n    at f (http://h/:3:8)"}}})
	c.listen(&log.EventEntryAdded{Entry: &log.Entry{Source: log.EntrySourceNetwork, Level: log.EntryLevelError, Text: "Failed to load resource: 404", URL: "http://h/missing"}})
	c.listen(&log.EventEntryAdded{Entry: &log.Entry{Source: log.EntrySourceWorker, Level: log.EntryLevelInfo, Text: "from a worker"}})
	c.listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: "child", ParentID: "main", URL: "http://h/frame"}})

	msgs, earlier, _ := c.list(false, func(*consoleMsg) bool { return true })
	if earlier != 0 || len(msgs) != 5 {
		t.Fatalf("got %d messages (%d earlier), want 5: the worker entry is skipped and a subframe navigation is no navigation", len(msgs), earlier)
	}
	want := []string{
		"msgid=1 [log] cart has 3 items extra",
		"msgid=2 [warn] careful",
		`msgid=3 [error] failed: {code: 42, reason: "nope", list: [1, 2]} (http://h/app.js:10)`,
		"msgid=4 [error] Uncaught Error: boom (http://h/:3)",
		"msgid=5 [error] Failed to load resource: 404 (http://h/missing)",
	}
	for i, m := range msgs {
		if got := consoleLine(m.id, m.v); got != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
	m, _ := c.get(3)
	if len(m.args) != 2 || m.args[1].objectID != "obj-1" || m.args[1].kind != "object" || len(m.stack) != 1 || m.stack[0] != "at load (http://h/app.js:10:5)" {
		t.Errorf("message 3: %+v", m)
	}
	if m, _ := c.get(4); !m.uncaught || !strings.Contains(m.args[0].text, "at f (") {
		t.Errorf("exception keeps no full description: %+v", m)
	}

	c.listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: "main", URL: "http://h/two"}})
	c.listen(&runtime.EventConsoleAPICalled{Type: runtime.ConsoleAPICalledTypeInfo, Args: []*runtime.RemoteObject{cnStr("second page")}})
	msgs, earlier, _ = c.list(false, func(*consoleMsg) bool { return true })
	if len(msgs) != 1 || msgs[0].id != 6 || earlier != 5 {
		t.Errorf("after a navigation: %d messages (first id %v), %d earlier; want 1 (id 6), 5 earlier", len(msgs), cnIDs(msgs), earlier)
	}
	msgs, _, labels := c.list(true, func(m *consoleMsg) bool { return m.typ == "error" })
	if len(msgs) != 3 || len(labels) != 1 {
		t.Errorf("errors of all navigations: %v (labels %v)", cnIDs(msgs), labels)
	}
	if _, known := c.get(42); known {
		t.Error("msgid 42 is known")
	}
}

func TestConsoleLogBounded(t *testing.T) {
	var c consoleLog
	long := strings.Repeat("x", 3*maxCollectedText)
	for range maxConsoleMessages + 10 {
		c.listen(&runtime.EventConsoleAPICalled{Type: runtime.ConsoleAPICalledTypeLog, Args: []*runtime.RemoteObject{cnStr(long)}})
	}
	msgs, _, _ := c.list(true, func(*consoleMsg) bool { return true })
	if len(msgs) != maxConsoleMessages || msgs[0].id != 11 {
		t.Errorf("kept %d messages from id %d; want %d from 11", len(msgs), msgs[0].id, maxConsoleMessages)
	}
	if m := msgs[0].v; len(m.text) > maxCollectedText+len("…") || len(m.args[0].text) > maxCollectedText+len("…") {
		t.Errorf("a message keeps %d bytes of text", len(m.text))
	}
	if line := consoleLine(1, msgs[0].v); len(line) > listTextWidth+40 {
		t.Errorf("list line is %d bytes long", len(line))
	}
}

func cnSent(id, loader, url, method string, typ network.ResourceType, at float64) *network.EventRequestWillBeSent {
	return &network.EventRequestWillBeSent{RequestID: network.RequestID(id), LoaderID: cdp.LoaderID(loader), Type: typ, Timestamp: cdp.MonotonicTime(at),
		Request: &network.Request{URL: url, Method: method, Headers: network.Headers{"Accept": "*/*"}}}
}

func TestNetworkLogCollects(t *testing.T) {
	var n networkLog
	n.listen(cnSent("1", "L0", "http://h/old.js", "GET", network.ResourceTypeScript, 1))
	n.listen(cnSent("2", "L1", "http://h/page", "GET", network.ResourceTypeDocument, 2))
	n.listen(&network.EventResponseReceived{RequestID: "2", Type: network.ResourceTypeDocument, Response: &network.Response{Status: 200, StatusText: "OK", MimeType: "text/html", RemoteIPAddress: "127.0.0.1", RemotePort: 80}})
	n.listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: "main", LoaderID: "L1", URL: "http://h/page"}})
	n.listen(&network.EventLoadingFinished{RequestID: "2", Timestamp: 2.035, EncodedDataLength: 1229})
	// A redirect keeps the browser's request id.
	n.listen(cnSent("3", "L1", "http://h/a", "POST", network.ResourceTypeFetch, 3))
	redirect := cnSent("3", "L1", "http://h/b", "GET", network.ResourceTypeFetch, 3.01)
	redirect.RedirectResponse = &network.Response{Status: 302, Headers: network.Headers{"Location": "/b"}}
	n.listen(redirect)
	n.listen(&network.EventResponseReceived{RequestID: "3", Type: network.ResourceTypeFetch, Response: &network.Response{Status: 404, StatusText: "Not Found"}})
	n.listen(&network.EventLoadingFinished{RequestID: "3", Timestamp: 3.02, EncodedDataLength: 10})
	n.listen(cnSent("4", "L1", "http://h/img.png", "GET", network.ResourceTypeImage, 4))
	n.listen(&network.EventLoadingFailed{RequestID: "4", Timestamp: 4.5, ErrorText: "net::ERR_CONNECTION_REFUSED", Type: network.ResourceTypeImage})
	n.listen(cnSent("5", "L1", "http://h/slow", "GET", network.ResourceTypeXHR, 5))
	n.listen(&network.EventResponseReceived{RequestID: "unknown", Response: &network.Response{Status: 200}})

	reqs, earlier, _ := n.list(false, func(*netRequest) bool { return true })
	if earlier != 1 {
		t.Errorf("%d requests of earlier navigations, want 1 (old.js)", earlier)
	}
	want := []string{
		"reqid=2 GET http://h/page [200] document 1.2 KB 35 ms",
		"reqid=3 POST http://h/a [302 redirect to reqid=4] fetch 10 ms",
		"reqid=4 GET http://h/b [404] fetch 10 B 10 ms",
		"reqid=5 GET http://h/img.png [failed: net::ERR_CONNECTION_REFUSED] image 500 ms",
		"reqid=6 GET http://h/slow [pending] xhr",
	}
	if len(reqs) != len(want) {
		t.Fatalf("got %d requests, want %d", len(reqs), len(want))
	}
	for i, r := range reqs {
		if got := networkLine(r); got != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
	hop, _, _ := n.get(3)
	final, _, _ := n.get(4)
	if hop.redirectTo != 4 || final.redirectOf != 3 || netHeader(hop.respHeaders, "location") != "/b" {
		t.Errorf("redirect not linked: hop %+v final %+v", hop.netRequest, final.netRequest)
	}
	doc, _, _ := n.get(2)
	text := formatNetworkRequest(1, doc, bodyResult{note: "none"}, bodyResult{data: []byte("<p>hi</p>")})
	for _, s := range []string{"GET http://h/page", "Status: 200 OK", "Remote address: 127.0.0.1:80", "Accept: */*", "### Response body\n<p>hi</p>", "Transferred: 1.2 KB"} {
		if !strings.Contains(text, s) {
			t.Errorf("request text lacks %q:\n%s", s, text)
		}
	}
	fetches, _, _ := n.list(true, func(r *netRequest) bool { return r.resType == "fetch" })
	if len(fetches) != 2 {
		t.Errorf("fetch filter: %d requests", len(fetches))
	}
}

func TestNetworkLogBounded(t *testing.T) {
	var n networkLog
	for i := range maxNetworkRequests + 50 {
		n.listen(cnSent(fmt.Sprint(i), "L", fmt.Sprintf("http://h/%d", i), "GET", network.ResourceTypeFetch, float64(i)))
	}
	if len(n.byCDP) != maxNetworkRequests {
		t.Errorf("the index holds %d entries, want %d", len(n.byCDP), maxNetworkRequests)
	}
	for range keptNavigations {
		n.listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: "main", LoaderID: "other"}})
	}
	if len(n.byCDP) != 0 {
		t.Errorf("the index holds %d entries after every request was dropped", len(n.byCDP))
	}
	// Events for a dropped request change nothing.
	n.listen(&network.EventLoadingFinished{RequestID: "7"})
}

func TestListPaging(t *testing.T) {
	req := func(args map[string]any) pagingArgs { return pagingOf(t, args) }
	from, to, res := listPaging(req(map[string]any{"pageSize": 2.0, "pageIdx": 1.0}), 5)
	if res != nil || from != 2 || to != 4 {
		t.Errorf("page 1 of size 2: %d-%d %v", from, to, res)
	}
	if f := pagingFooter(2, 4, 5, req(map[string]any{"pageIdx": 1.0}), "messages"); f != "Showing 3-4 of 5 messages. Next page: pageIdx=2. Previous page: pageIdx=0." {
		t.Errorf("footer: %q", f)
	}
	if _, _, err := listPaging(req(map[string]any{"pageSize": 2.0, "pageIdx": 3.0}), 5); err == nil {
		t.Error("pageIdx past the end accepted")
	} else if got := resultText(errorResult("list_console_messages", err)); got != "list_console_messages: pageIdx 3 is past the last page; with pageSize 2 there are 3 page(s), pageIdx 0 to 2" {
		t.Errorf("pageIdx past the end: %q", got)
	}
	if _, _, res := listPaging(req(map[string]any{"pageSize": 0.0}), 5); res == nil {
		t.Error("pageSize 0 accepted")
	}
	if from, to, res := listPaging(req(nil), 0); res != nil || from != 0 || to != 0 {
		t.Errorf("an empty list: %d-%d %v", from, to, res)
	}
	if _, res := typeFilter([]any{"log", "bogus"}, "types", consoleTypes); res == nil {
		t.Error("an unknown type accepted")
	}
	if set, res := typeFilter([]any{}, "types", consoleTypes); res != nil || set != nil {
		t.Error("an empty types array filters")
	}
}

func TestFormatList(t *testing.T) {
	type item struct{ nav, id int }
	nav := func(i item) int { return i.nav }
	line := func(i item) string { return fmt.Sprintf("id=%d", i.id) }
	labels := map[int]string{1: "Navigation 1", 2: "Current navigation"}
	for _, tc := range []struct {
		name     string
		items    []item
		all      bool
		earlier  int
		filtered bool
		want     string
	}{
		{"none since the navigation, some kept", nil, false, 3, false,
			"## Network requests of page 7\nNo requests since the last navigation. 3 request(s) of earlier navigations are kept: pass includePreservedRequests=true to see them.\n"},
		{"none at all", nil, true, 0, false, "## Network requests of page 7\nNo requests.\n"},
		{"none of the types", nil, false, 0, true, "## Network requests of page 7\nNo requests of those resource types.\n"},
		{"current navigation only, no headers", []item{{2, 5}, {2, 6}}, false, 0, false, "## Network requests of page 7\nid=5\nid=6\n"},
		{"all, a header per navigation", []item{{1, 1}, {1, 2}, {2, 5}}, true, 0, false,
			"## Network requests of page 7\n### Navigation 1\nid=1\nid=2\n### Current navigation\nid=5\n"},
	} {
		if got := formatList(networkWords, 7, tc.items, nav, line, labels, tc.all, tc.earlier, tc.filtered); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
	if got := formatList(consoleWords, 1, []item(nil), nav, line, labels, false, 2, false); !strings.Contains(got, "2 message(s) of earlier navigations are kept: pass includePreservedMessages=true") {
		t.Errorf("console wording: %q", got)
	}
}

func TestClip(t *testing.T) {
	if got := clipEnd("héllo wörld", 2); got != "h…" {
		t.Errorf("clipEnd cut a rune: %q", got)
	}
	u := "http://127.0.0.1:8080/" + strings.Repeat("dir/", 50) + "file.js"
	got := clipMiddle(u, 60)
	if !strings.HasPrefix(got, "http://127.0.0.1:8080/") || !strings.HasSuffix(got, "file.js") || len(got) > 62 {
		t.Errorf("clipMiddle: %q", got)
	}
	if singleLine("a\n  b\tc", 10) != "a b c" {
		t.Error("singleLine keeps line breaks")
	}
}

func TestWriteBody(t *testing.T) {
	var b strings.Builder
	writeBody(&b, "Response body", bodyResult{data: []byte{0x89, 'P', 'N', 'G', 0, 1, 2}, binary: true, mime: "image/png"}, "responseFilePath")
	if !strings.Contains(b.String(), "binary, 7 bytes (image/png)") {
		t.Errorf("binary body: %q", b.String())
	}
	b.Reset()
	writeBody(&b, "Response body", bodyResult{data: []byte(strings.Repeat("é", maxCollectedText))}, "responseFilePath")
	if !strings.Contains(b.String(), "[truncated: the first") || len(b.String()) > maxCollectedText+300 {
		t.Errorf("long body not truncated (%d bytes)", len(b.String()))
	}
	if !bodyIsText([]byte(`{"a":1}`), "application/json; charset=utf-8") || bodyIsText([]byte("abc"), "image/png") || bodyIsText([]byte{0xff, 0xfe}, "") {
		t.Error("bodyIsText")
	}
}

func TestNetworkLogWebSocket(t *testing.T) {
	var n networkLog
	n.listen(&network.EventWebSocketCreated{RequestID: "w", URL: "ws://h/socket"})
	if reqs, _, _ := n.list(false, cnAll[*netRequest]); len(reqs) != 1 || networkLine(reqs[0]) != "reqid=1 GET ws://h/socket [pending] websocket" {
		t.Fatalf("a new WebSocket: %v", reqs)
	}
	n.listen(&network.EventWebSocketWillSendHandshakeRequest{RequestID: "w", Timestamp: 1, Request: &network.WebSocketRequest{Headers: network.Headers{"Upgrade": "websocket"}}})
	n.listen(&network.EventWebSocketHandshakeResponseReceived{RequestID: "w", Timestamp: 1.01, Response: &network.WebSocketResponse{Status: 101, StatusText: "Switching Protocols"}})
	if r, _, _ := n.get(1); networkLine(r) != "reqid=1 GET ws://h/socket [101, open] websocket" {
		t.Errorf("an open WebSocket: %s", networkLine(r))
	}
	n.listen(&network.EventWebSocketClosed{RequestID: "w", Timestamp: 3})
	r, _, _ := n.get(1)
	if networkLine(r) != "reqid=1 GET ws://h/socket [101, closed] websocket 2.00 s" {
		t.Errorf("a closed WebSocket: %s", networkLine(r))
	}
	if b := responseBody(t.Context(), r, 0, true); b.data != nil || !strings.Contains(b.note, "WebSocket") {
		t.Errorf("a WebSocket's body: %+v", b)
	}
}
