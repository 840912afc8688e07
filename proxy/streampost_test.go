package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// rawAnswer is an HTTP answer of POST /mcp, as a client sees it.
type rawAnswer struct {
	status int
	header http.Header // without Date and X-Request-Id, which differ anyway
	body   string
}

func (a rawAnswer) String() string {
	return fmt.Sprintf("%d %v %q", a.status, a.header, a.body)
}

// postClient sends MCP messages over plain HTTP, so that a test sees the bytes.
type postClient struct {
	t   testing.TB
	url string
	tok string
}

func (c postClient) send(method, sid, body string, extra map[string]string) rawAnswer {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, c.url+"/mcp", rd)
	req.Header.Set("Authorization", "Bearer "+c.tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set(server.HeaderKeySessionID, sid)
		req.Header.Set(mcp.HeaderProtocolVersion, mcp.ProtocolVersion20251125)
	}
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s /mcp: %v", method, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s /mcp: read: %v", method, err)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	h.Del("X-Request-Id")
	return rawAnswer{status: resp.StatusCode, header: h, body: string(data)}
}

func (c postClient) post(sid, body string) rawAnswer {
	c.t.Helper()
	return c.send(http.MethodPost, sid, body, nil)
}

// open initializes a session of protocol 2025-11-25 and returns its ID.
func (c postClient) open() string {
	c.t.Helper()
	a := c.post("", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`)
	sid := a.header.Get(server.HeaderKeySessionID)
	if a.status != http.StatusOK || sid == "" {
		c.t.Fatalf("initialize: %v", a)
	}
	if a := c.post(sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); a.status != http.StatusAccepted {
		c.t.Fatalf("notifications/initialized: %v", a)
	}
	return sid
}

// both sends body on sid twice, once to the proxy's POST path and once,
// with it off, to mcp-go's, and returns the two answers and whether the
// first was answered by the proxy's path.
func (c postClient) both(h *harness, sid, body string) (fast, slow rawAnswer, taken bool) {
	c.t.Helper()
	before := h.srv.post.taken.Load()
	fast = c.post(sid, body)
	taken = h.srv.post.taken.Load() > before
	h.srv.post.off.Store(true)
	defer h.srv.post.off.Store(false)
	mid := h.srv.post.taken.Load()
	slow = c.post(sid, body)
	if h.srv.post.taken.Load() != mid {
		c.t.Fatal("the proxy's POST path answered while off")
	}
	return fast, slow, taken
}

// addTestTools adds tools for these tests: test_echo answers its argument,
// test_progress sends a progress notification first, test_gate waits for
// its gate.
func addTestTools(h *harness) (entered chan struct{}, gate chan struct{}) {
	entered, gate = make(chan struct{}, 4), make(chan struct{})
	h.srv.mcp.AddTool(mcp.NewTool("test_echo", mcp.WithString("say")), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("echo: " + req.GetString("say", "")), nil
	})
	h.srv.mcp.AddTool(mcp.NewTool("test_progress"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var token mcp.ProgressToken
		if req.Params.Meta != nil {
			token = req.Params.Meta.ProgressToken
		}
		err := h.srv.mcp.SendNotificationToClient(ctx, "notifications/progress",
			map[string]any{"progressToken": token, "progress": 1, "total": 2, "message": "half way"})
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return mcp.NewToolResultText("done"), nil
	})
	h.srv.mcp.AddTool(mcp.NewTool("test_gate"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		entered <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return mcp.NewToolResultText("through the gate"), nil
	})
	return entered, gate
}

// TestStreamPostAnswersAsMCPGo: what the proxy's POST path answers is, to
// the byte, what mcp-go's StreamableHTTPServer answers for the same
// request on the same session; what it does not recognise goes to mcp-go.
func TestStreamPostAnswersAsMCPGo(t *testing.T) {
	h := newHarness(t, "")
	addTestTools(h)
	c := postClient{t: t, url: h.URL, tok: h.token("alice")}
	sid := c.open()

	fastCases := map[string]string{
		"tools/call":                `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_echo","arguments":{"say":"<hi> & \u00e9"}}}`,
		"tools/call string":         `{"jsonrpc":"2.0","id":"x-1","method":"tools/call","params":{"name":"test_echo","arguments":{"say":"a"},"_meta":{"progressToken":"p"}}}`,
		"tools/call unknown":        `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}`,
		"tools/call of the proxy's": `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"list_pages","arguments":{}}}`,
		"tools/list":                `{"jsonrpc":"2.0","id":10,"method":"tools/list"}`,
		"ping":                      `{"jsonrpc":"2.0","id":11,"method":"ping"}`,
		"unknown method":            `{"jsonrpc":"2.0","id":12,"method":"no/such/method","params":{}}`,
		"bad version":               `{"jsonrpc":"1.0","id":14,"method":"ping"}`,
		"legacy _meta":              `{"jsonrpc":"2.0","id":15,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}`,
	}
	slowCases := map[string]string{
		"malformed JSON":        `{"jsonrpc":"2.0","id":1,"method":`,
		"params not an object":  `{"jsonrpc":"2.0","id":13,"method":"tools/call","params":"not an object"}`,
		"not JSON":              `hello`,
		"notification":          `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}`,
		"batch":                 `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`,
		"id null":               `{"jsonrpc":"2.0","id":null,"method":"ping"}`,
		"client response":       `{"jsonrpc":"2.0","id":5,"result":{}}`,
		"client error response": `{"jsonrpc":"2.0","id":5,"error":{"code":-1,"message":"no"}}`,
		"initialize again":      `{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`,
		"stateless _meta":       `{"jsonrpc":"2.0","id":3,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		"odd _meta":             `{"jsonrpc":"2.0","id":4,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":20260728}}}`,
	}
	for name, body := range fastCases {
		fast, slow, taken := c.both(h, sid, body)
		if !taken {
			t.Errorf("%s: not answered by the proxy's POST path", name)
		}
		if fast.String() != slow.String() {
			t.Errorf("%s:\nproxy:  %v\nmcp-go: %v", name, fast, slow)
		}
		if fast.header.Get("Content-Type") != "application/json" || fast.status != http.StatusOK {
			t.Errorf("%s: want a 200 JSON answer, got %v", name, fast)
		}
	}
	if t.Failed() {
		return
	}
	for name, body := range slowCases {
		fast, slow, taken := c.both(h, sid, body)
		if taken {
			t.Errorf("%s: answered by the proxy's POST path, want mcp-go's", name)
		}
		if name == "initialize again" { // a new session ID each time
			fast.header.Del(server.HeaderKeySessionID)
			slow.header.Del(server.HeaderKeySessionID)
		}
		if fast.String() != slow.String() {
			t.Errorf("%s:\nfirst:  %v\nsecond: %v", name, fast, slow)
		}
	}
	if a := c.post(sid, slowCases["notification"]); a.status != http.StatusAccepted {
		t.Errorf("notification: want 202, got %v", a)
	}

	// Requests of the common shape whose headers mcp-go would treat apart.
	ping := `{"jsonrpc":"2.0","id":20,"method":"ping"}`
	for name, hdr := range map[string]map[string]string{
		"bad session ID":         {server.HeaderKeySessionID: "mcp-session-00000000-0000-0000-0000-000000000000"},
		"other content type":     {"Content-Type": "text/plain"},
		"unsupported version":    {mcp.HeaderProtocolVersion: "1999-01-01"},
		"stateless version":      {mcp.HeaderProtocolVersion: "2026-07-28"},
		"accepts no JSON":        {"Accept": "text/event-stream"},
		"JSON refused":           {"Accept": "application/json;q=0, text/event-stream"},
		"rebinding Host":         {"Host": "evil.example"},
		"no session, no version": {server.HeaderKeySessionID: "", mcp.HeaderProtocolVersion: ""},
	} {
		send := func() rawAnswer {
			r := c
			if hv, ok := hdr["Host"]; ok {
				return r.withHost(sid, ping, hv)
			}
			return r.send(http.MethodPost, sid, ping, hdr)
		}
		before := h.srv.post.taken.Load()
		fast := send()
		if h.srv.post.taken.Load() != before {
			t.Errorf("%s: answered by the proxy's POST path, want mcp-go's", name)
		}
		h.srv.post.off.Store(true)
		slow := send()
		h.srv.post.off.Store(false)
		if fast.String() != slow.String() {
			t.Errorf("%s:\nfirst:  %v\nsecond: %v", name, fast, slow)
		}
		if name == "bad session ID" && fast.status != http.StatusNotFound {
			t.Errorf("bad session ID: want 404, got %v", fast)
		}
	}

	// A body that breaks the body limit while it is read (chunked, so that
	// its size is not known before).
	big := `{"jsonrpc":"2.0","id":21,"method":"ping","params":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}`
	chunked := func() rawAnswer {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/mcp", io.MultiReader(strings.NewReader(big)))
		req.Header.Set("Authorization", "Bearer "+c.tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(server.HeaderKeySessionID, sid)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		hd := resp.Header.Clone()
		hd.Del("Date")
		hd.Del("X-Request-Id")
		return rawAnswer{status: resp.StatusCode, header: hd, body: string(data)}
	}
	before := h.srv.post.taken.Load()
	fastBig := chunked()
	h.srv.post.off.Store(true)
	slowBig := chunked()
	h.srv.post.off.Store(false)
	if h.srv.post.taken.Load() != before || fastBig.String() != slowBig.String() || fastBig.status == http.StatusOK {
		t.Errorf("body over the limit:\nfirst:  %v\nsecond: %v", fastBig, slowBig)
	}

	// An mcp-go client's session goes through the proxy's path.
	cl := h.connect(viaStreamable, c.tok, "")
	before = h.srv.post.taken.Load()
	if got := mustCall(t, cl, "test_echo", map[string]any{"say": "client"}); got != "echo: client" {
		t.Errorf("test_echo: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.ListTools(ctx, mcp.ListToolsRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.post.taken.Load() - before; n != 2 {
		t.Errorf("the client's tools/call and tools/list: %d answered by the proxy's POST path, want 2", n)
	}
}

// withHost posts body with the Host header host.
func (c postClient) withHost(sid, body, host string) rawAnswer {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/mcp", strings.NewReader(body))
	req.Host = host
	req.Header.Set("Authorization", "Bearer "+c.tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(server.HeaderKeySessionID, sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	hd := resp.Header.Clone()
	hd.Del("Date")
	hd.Del("X-Request-Id")
	return rawAnswer{status: resp.StatusCode, header: hd, body: string(data)}
}

var eventIDLine = regexp.MustCompile(`(?m)^id: [0-9]+$`)

// eventIDs returns the event IDs of an event stream, in order.
func eventIDs(body string) []string {
	var ids []string
	for _, l := range eventIDLine.FindAllString(body, -1) {
		ids = append(ids, strings.TrimPrefix(l, "id: "))
	}
	return ids
}

// TestStreamPostProgress: a call whose handler sends a notification gets
// an event stream, as from mcp-go: the notification, then the answer, each
// with an event ID; the session's later answers are event streams too (from
// mcp-go), and a client that resumes after the first event is replayed the
// answer.
func TestStreamPostProgress(t *testing.T) {
	h := newHarness(t, "")
	addTestTools(h)
	c := postClient{t: t, url: h.URL, tok: h.token("alice")}
	fastSID, slowSID := c.open(), c.open()
	progress := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_progress","arguments":{},"_meta":{"progressToken":"tok-1"}}}`
	echo := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"test_echo","arguments":{"say":"after"}}}`

	before := h.srv.post.taken.Load()
	fast := c.post(fastSID, progress)
	if h.srv.post.taken.Load() != before+1 {
		t.Fatal("the call was not answered by the proxy's POST path")
	}
	h.srv.post.off.Store(true)
	slow := c.post(slowSID, progress)
	h.srv.post.off.Store(false)
	norm := func(a rawAnswer) string {
		a.body = eventIDLine.ReplaceAllString(a.body, "id: N")
		return a.String()
	}
	if norm(fast) != norm(slow) {
		t.Fatalf("progress call:\nproxy:  %v\nmcp-go: %v", fast, slow)
	}
	if ct := fast.header.Get("Content-Type"); ct != "text/event-stream" || !strings.Contains(fast.body, `"method":"notifications/progress"`) ||
		!strings.Contains(fast.body, `"progressToken":"tok-1"`) || strings.Index(fast.body, "notifications/progress") > strings.Index(fast.body, `"result"`) {
		t.Fatalf("want the notification, then the answer, as events: %v", fast)
	}
	ids := eventIDs(fast.body)
	if len(ids) != 2 {
		t.Fatalf("want 2 events with IDs, got %q", ids)
	}

	// The session answers as event streams from now on, through mcp-go.
	before = h.srv.post.taken.Load()
	fastNext := c.post(fastSID, echo)
	if h.srv.post.taken.Load() != before {
		t.Error("the next call of the session was answered by the proxy's POST path, want mcp-go's")
	}
	h.srv.post.off.Store(true)
	slowNext := c.post(slowSID, echo)
	h.srv.post.off.Store(false)
	if norm(fastNext) != norm(slowNext) || fastNext.header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("next call:\nproxy:  %v\nmcp-go: %v", fastNext, slowNext)
	}

	// Resuming after the notification replays the answer, as mcp-go's.
	resume := func(sid, last string) rawAnswer {
		return c.send(http.MethodGet, sid, "", map[string]string{"Accept": "text/event-stream", "Last-Event-ID": last})
	}
	fastResume := resume(fastSID, ids[0])
	slowResume := resume(slowSID, eventIDs(slow.body)[0])
	if norm(fastResume) != norm(slowResume) || !strings.Contains(fastResume.body, `"text":"done"`) ||
		!slices.Equal(eventIDs(fastResume.body), ids[1:]) {
		t.Errorf("resume:\nproxy:  %v\nmcp-go: %v", fastResume, slowResume)
	}
}

// TestStreamPostSessionEnded: a session that ended is answered 404 as
// before and forgotten by the proxy's POST path; a session that ends during
// a call gets the same answer to that call as from mcp-go.
func TestStreamPostSessionEnded(t *testing.T) {
	h := newHarness(t, "")
	entered, gate := addTestTools(h)
	c := postClient{t: t, url: h.URL, tok: h.token("alice")}
	ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`

	sid := c.open()
	if _, _, taken := c.both(h, sid, ping); !taken {
		t.Fatal("ping not answered by the proxy's POST path")
	}
	if !h.mgr.End(sid, session.CloseAPI) {
		t.Fatal("End: no such session")
	}
	if h.srv.post.state(sid) != nil {
		t.Error("the proxy's POST path still knows the ended session")
	}
	fast, slow, taken := c.both(h, sid, ping)
	if taken || fast.status != http.StatusNotFound || fast.String() != slow.String() {
		t.Errorf("ended session:\nfirst:  %v\nsecond: %v (taken %v)", fast, slow, taken)
	}

	// Ended during a call.
	call := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_gate","arguments":{}}}`
	duringCall := func(off bool) rawAnswer {
		sid := c.open()
		h.srv.post.off.Store(off)
		defer h.srv.post.off.Store(false)
		var a rawAnswer
		var wg sync.WaitGroup
		wg.Go(func() { a = c.post(sid, call) })
		select {
		case <-entered:
		case <-time.After(20 * time.Second):
			t.Fatal("the call did not start")
		}
		if !h.mgr.End(sid, session.CloseAPI) {
			t.Error("End: no such session")
		}
		select { // the end of the session may have ended the call already
		case gate <- struct{}{}:
		default:
		}
		wg.Wait()
		return a
	}
	before := h.srv.post.taken.Load()
	fast = duringCall(false)
	if h.srv.post.taken.Load() != before+1 {
		t.Error("the call was not answered by the proxy's POST path")
	}
	slow = duringCall(true)
	if fast.String() != slow.String() || !strings.Contains(fast.body, "closed") {
		t.Errorf("session ended during the call:\nproxy:  %v\nmcp-go: %v", fast, slow)
	}
}

// TestStreamPostKeepsSweepAway: a session used only through the proxy's
// POST path is not swept by mcp-go's idle sweep (WithSessionIdleTTL, twice
// the idle timeout) while in use: now and then a request goes to mcp-go,
// which counts it.
func TestStreamPostKeepsSweepAway(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 7 s")
	}
	h := newHarnessWith(t, "", session.Config{IdleTimeout: 2 * time.Second})
	c := postClient{t: t, url: h.URL, tok: h.token("alice")}
	sid := c.open()
	ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`
	before := h.srv.post.taken.Load()
	n := 0
	// mcp-go sweeps sessions it saw nothing of for 4 s, looking every 2 s.
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); n++ {
		if a := c.post(sid, ping); a.status != http.StatusOK {
			t.Fatalf("ping %d: %v", n, a)
		}
		time.Sleep(100 * time.Millisecond)
	}
	taken := h.srv.post.taken.Load() - before
	if taken == 0 || taken == int64(n) {
		t.Errorf("%d of %d pings answered by the proxy's POST path, want most but not all", taken, n)
	}
	if h.srv.post.state(sid) == nil {
		t.Error("mcp-go's sweep ended a session in use")
	}
}
