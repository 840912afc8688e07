package proxy

// Fault tests of the HTTP surface: malformed requests, the readiness probe,
// panicking tool handlers, and the drain of Serve.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testsse"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// malOpenStream sends GET path with the bearer token and returns the
// stream, which the test's cleanup closes.
func malOpenStream(t *testing.T, base, path, tok string, hdr map[string]string) *testsse.Stream {
	t.Helper()
	h := map[string]string{"Authorization": "Bearer " + tok}
	for k, v := range hdr {
		h[k] = v
	}
	return testsse.Open(t, base+path, h)
}

// malSSESession opens a legacy SSE session and returns its stream and its
// POST /message URL.
func malSSESession(t *testing.T, base, tok string) (*testsse.Stream, string) {
	t.Helper()
	s := malOpenStream(t, base, "/sse", tok, nil)
	l, err := s.Until(10*time.Second, func(l string) bool { return strings.HasPrefix(l, "data:") })
	if err != nil {
		t.Fatalf("no endpoint event: %v", err)
	}
	return s, base + strings.TrimSpace(strings.TrimPrefix(l, "data:"))
}

// malPost sends one POST and returns the status and the body.
func malPost(t *testing.T, url, tok, ctype string, hdr map[string]string, body io.Reader) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

const malInit = `{"jsonrpc":"2.0","id":%d,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}`

const malInitialized = `{"jsonrpc":"2.0","method":"notifications/initialized"}`

// malSSEInit initializes the legacy session of stream s.
func malSSEInit(t *testing.T, s *testsse.Stream, msgURL, tok string) {
	t.Helper()
	if st, body := malPost(t, msgURL, tok, "application/json", nil, strings.NewReader(fmt.Sprintf(malInit, 1))); st != http.StatusAccepted {
		t.Fatalf("initialize: %d %s", st, body)
	}
	if _, err := s.Until(10*time.Second, func(l string) bool { return strings.Contains(l, `"id":1,"result"`) }); err != nil {
		t.Fatalf("initialize answer: %v", err)
	}
	if st, body := malPost(t, msgURL, tok, "application/json", nil, strings.NewReader(malInitialized)); st != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", st, body)
	}
}

// malStreamableInit opens a streamable session and returns its ID.
func malStreamableInit(t *testing.T, base, tok string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/mcp", strings.NewReader(fmt.Sprintf(malInit, 1)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sid := resp.Header.Get(server.HeaderKeySessionID)
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("streamable initialize: %d %q %s", resp.StatusCode, sid, body)
	}
	hdr := map[string]string{server.HeaderKeySessionID: sid, "Mcp-Protocol-Version": "2025-11-25"}
	if st, body := malPost(t, base+"/mcp", tok, "application/json", hdr, strings.NewReader(malInitialized)); st != http.StatusAccepted {
		t.Fatalf("streamable initialized: %d %s", st, body)
	}
	return sid
}

// jsonRPCError reports whether body is a JSON-RPC error answer, as JSON or
// as the data of an SSE event.
func jsonRPCError(body []byte) bool {
	for _, part := range [][]byte{body, sseData(body)} {
		var msg struct {
			JSONRPC string          `json:"jsonrpc"`
			Error   json.RawMessage `json:"error"`
			Result  json.RawMessage `json:"result"`
		}
		if part != nil && json.NewDecoder(bytes.NewReader(part)).Decode(&msg) == nil {
			return msg.JSONRPC == "2.0" && len(msg.Error) > 0 && len(msg.Result) == 0
		}
	}
	return false
}

// TestMalformedRequests sends a table of bad bodies with several content
// types to every route that takes a body, and odd methods to /sse: each
// answer must be a 4xx or a JSON-RPC error (for /message, the 202 of an
// answer that then comes as an error on the stream), never a 5xx; and the
// proxy must still answer afterwards.
func TestMalformedRequests(t *testing.T) {
	h := newHarness(t, "")
	tok := h.token("alice")
	sse, msgURL := malSSESession(t, h.URL, tok)
	malSSEInit(t, sse, msgURL, tok)
	sid := malStreamableInit(t, h.URL, tok)

	huge := 1<<20 + 4096 // over the harness's 1M body limit
	bodies := []struct {
		name string
		body string
	}{
		{"empty", ""},
		{"bad JSON", "{"},
		{"not JSON", "hello, proxy"},
		{"truncated JSON-RPC", `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"list_pa`},
		{"unknown method", `{"jsonrpc":"2.0","id":12,"method":"no/such/method","params":{}}`},
		{"invalid UTF-8 method", "{\"jsonrpc\":\"2.0\",\"id\":13,\"method\":\"\xff\xfe\xfd\"}"},
		{"invalid UTF-8 bytes", "\xff\xfe\xfd\x00\x01"},
		{"null", "null"},
		{"number", "42"},
		{"empty batch", "[]"},
		{"wrong params type", `{"jsonrpc":"2.0","id":14,"method":"tools/call","params":"oops"}`},
		{"object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"no/such/method"}`},
		{"deep nesting", strings.Repeat("[", 20000) + strings.Repeat("]", 20000)},
		{"register bad user", "{\"userId\":\"\xff\xfe\",\"browserURL\":\"http://127.0.0.1:9222\"}"},
		{"register unknown field", `{"userId":"alice","browserURL":"http://127.0.0.1:9222","admin":true}`},
	}
	ctypes := []string{"application/json", "text/plain", "application/x-www-form-urlencoded", ""}
	type route struct {
		name, url string
		hdr       map[string]string
	}
	routes := []route{
		{"register", h.URL + "/api/register", nil},
		{"message live session", msgURL, nil},
		{"message unknown session", h.URL + "/message?sessionId=0123456789abcdef0123456789abcdef", nil},
		{"mcp live session", h.URL + "/mcp", map[string]string{server.HeaderKeySessionID: sid, "Mcp-Protocol-Version": "2025-11-25"}},
		{"mcp no session", h.URL + "/mcp", nil},
	}

	n, accepted := 0, 0 // accepted: 202s of /message, answered on the stream
	check := func(what string, status int, body []byte, message bool) {
		t.Helper()
		n++
		switch {
		case status >= 500:
			t.Errorf("%s: status %d %.200s", what, status, body)
		case status >= 400:
		case status == http.StatusAccepted && message:
			accepted++
		case !jsonRPCError(body):
			t.Errorf("%s: status %d without a JSON-RPC error: %.300s", what, status, body)
		}
	}
	for _, r := range routes {
		for _, b := range bodies {
			for _, ct := range ctypes {
				st, body := malPost(t, r.url, tok, ct, r.hdr, strings.NewReader(b.body))
				check(fmt.Sprintf("%s, %s, %q", r.name, b.name, ct), st, body, strings.HasPrefix(r.name, "message"))
			}
		}
		// Huge bodies, with a Content-Length and chunked.
		big := `{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":"x","arguments":{"a":"` + strings.Repeat("a", huge) + `"}}}`
		st, body := malPost(t, r.url, tok, "application/json", r.hdr, strings.NewReader(big))
		check(r.name+", huge", st, body, false)
		st, body = malPost(t, r.url, tok, "application/json", r.hdr, io.MultiReader(strings.NewReader(big)))
		check(r.name+", huge chunked", st, body, false)
		// Bad credentials are 401 before any body is read.
		st, body = malPost(t, r.url, "not-a-token", "application/json", r.hdr, strings.NewReader("{"))
		check(r.name+", bad token", st, body, false)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodHead} {
		for _, b := range []string{"", "{"} {
			req, _ := http.NewRequest(m, h.URL+"/sse", strings.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s /sse: %v", m, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m == http.MethodOptions {
				// Not malformed: echo answers OPTIONS with the allowed methods.
				n++
				if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Allow"), http.MethodGet) {
					t.Errorf("OPTIONS /sse: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
				}
				continue
			}
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Errorf("%s /sse: status %d, want a 4xx", m, resp.StatusCode)
			}
			check(m+" /sse", resp.StatusCode, body, false)
		}
	}
	if n < 200 {
		t.Fatalf("only %d malformed requests", n)
	}

	// The 202s of /message are answered on the stream: every answer that
	// comes before that of a ping sent last must be an error.
	if st, body := malPost(t, msgURL, tok, "application/json", nil, strings.NewReader(`{"jsonrpc":"2.0","id":999,"method":"ping"}`)); st != http.StatusAccepted {
		t.Fatalf("ping: %d %s", st, body)
	}
	errs := 0
	for {
		l, err := sse.Until(10*time.Second, func(l string) bool { return strings.HasPrefix(l, "data:") && isAnswer(sseData([]byte(l))) })
		if err != nil {
			t.Fatalf("after %d JSON-RPC errors on the stream: %v", errs, err)
		}
		if strings.Contains(l, `"id":999`) {
			break
		}
		if !jsonRPCError([]byte(l)) {
			t.Errorf("a malformed message got a non-error answer: %.300s", l)
		}
		errs++
	}
	if accepted == 0 || errs == 0 {
		t.Errorf("%d malformed messages accepted on the live session, %d errors on its stream", accepted, errs)
	}

	var health Health
	if resp := h.do(http.MethodGet, "/health", "", nil, &health); resp.StatusCode != http.StatusOK || health.Status != "ok" {
		t.Fatalf("health after the malformed requests: %d %+v", resp.StatusCode, health)
	}
	if strings.Contains(h.logs.String(), `"status":5`) {
		t.Errorf("a request was answered with a 5xx:\n%s", grepLines(h.logs.String(), `"status":5`))
	}
	t.Logf("%d malformed requests; %d accepted on /message, %d JSON-RPC errors on the stream", n, accepted, errs)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReadyReflectsStoreAndSessionLimit: /ready is 503 at the total session
// limit and while the store is unreachable, 200 otherwise.
func TestReadyReflectsStoreAndSessionLimit(t *testing.T) {
	h := newHarnessWith(t, "", session.Config{MaxSessions: 1})
	ready := func() (int, APIError, http.Header) {
		var e APIError
		resp := h.do(http.MethodGet, "/ready", "", nil, &e)
		return resp.StatusCode, e, resp.Header
	}
	if st, _, _ := ready(); st != http.StatusOK {
		t.Fatalf("ready with no session: %d", st)
	}
	c := h.connect(viaStreamable, h.token("alice"), "")
	st, e, hdr := ready()
	if st != http.StatusServiceUnavailable || e.Code != CodeLimitExceeded || hdr.Get("Retry-After") == "" {
		t.Fatalf("ready at the session limit: %d %+v Retry-After=%q", st, e, hdr.Get("Retry-After"))
	}
	c.Close()
	waitUntil(t, 10*time.Second, "ready once the session closed", func() bool {
		st, _, _ := ready()
		return st == http.StatusOK
	})
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	if st, e, _ := ready(); st != http.StatusServiceUnavailable || e.Code != CodeInternal || !strings.Contains(e.Message, "store") {
		t.Fatalf("ready with the store closed: %d %+v", st, e)
	}
}

// TestToolPanicFailsOnlyThatCall: a panicking tool handler gives an error
// result for that call, logged with its stack and audited as an error; the
// session's next call works.
func TestToolPanicFailsOnlyThatCall(t *testing.T) {
	h := newHarness(t, "")
	h.srv.mcp.AddTool(mcp.NewTool("test_panic"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		panicInTestTool()
		return nil, nil
	})
	h.srv.mcp.AddTool(mcp.NewTool("test_ok"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("still fine"), nil
	})
	for _, kind := range []transportKind{viaSSE, viaStreamable} {
		c := h.connect(kind, h.token("alice"), "")
		text, res := call(t, c, "test_panic", nil)
		if !res.IsError || !strings.Contains(text, "INTERNAL") || !strings.Contains(text, "test_panic") || strings.Contains(text, "boom") {
			t.Fatalf("%s: panicking tool: error=%v %q", kind, res.IsError, text)
		}
		if text := mustCall(t, c, "test_ok", nil); text != "still fine" {
			t.Fatalf("%s: next call: %q", kind, text)
		}
	}
	logs := h.logs.String()
	panics := grepLines(logs, "tool handler panicked")
	if strings.Count(panics, "\n")+1 != 2 || !strings.Contains(panics, "boom in a test tool") ||
		!strings.Contains(panics, "panicInTestTool") || !strings.Contains(panics, `"user":"alice"`) {
		t.Fatalf("panic log lines (want 2, with the value, stack and user):\n%s", panics)
	}
	if !strings.Contains(grepLines(logs, `"tool":"test_panic"`), `"outcome":"error"`) {
		t.Errorf("the panicking call was not audited as an error:\n%s", grepLines(logs, `"tool":"test_panic"`))
	}
}

func panicInTestTool() { panic("boom in a test tool") }

// TestServeDrainsInFlightCalls: on shutdown Serve stops accepting at once,
// lets a tool call over SSE (answered on the stream) and one over
// streamable HTTP (an HTTP request in flight) finish, ends the SSE stream
// with a retry hint after the answer (the streamable GET stream too),
// closes every session and returns nil.
func TestServeDrainsInFlightCalls(t *testing.T) {
	h := newHarness(t, "")
	// Each call waits for its own gate, so the SSE call can outlast the
	// HTTP request.
	gates := map[string]chan struct{}{"sse": make(chan struct{}), "http": make(chan struct{})}
	started := make(chan struct{}, 2)
	h.srv.mcp.AddTool(mcp.NewTool("test_slow", mcp.WithString("gate")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		gate := gates[req.GetString("gate", "")]
		started <- struct{}{}
		select {
		case <-gate:
			return mcp.NewToolResultText("slow call done"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(30 * time.Second):
			return nil, errors.New("never released")
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ctx, ln) }()

	tok := h.token("alice")
	sse, msgURL := malSSESession(t, base, tok)
	malSSEInit(t, sse, msgURL, tok)
	call := `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"test_slow","arguments":{"gate":%q}}}`
	if st, body := malPost(t, msgURL, tok, "application/json", nil, strings.NewReader(fmt.Sprintf(call, 7, "sse"))); st != http.StatusAccepted {
		t.Fatalf("SSE tool call: %d %s", st, body)
	}
	sid := malStreamableInit(t, base, tok)
	sh := map[string]string{server.HeaderKeySessionID: sid, "Mcp-Protocol-Version": "2025-11-25"}
	listening := malOpenStream(t, base, "/mcp", tok, sh) // the streamable session's GET stream
	type answer struct {
		status int
		body   []byte
	}
	streamed := make(chan answer, 1)
	go func() {
		st, body := malPost(t, base+"/mcp", tok, "application/json", sh, strings.NewReader(fmt.Sprintf(call, 8, "http")))
		streamed <- answer{st, body}
	}()
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow calls did not start")
		}
	}

	cancel() // shutdown
	waitUntil(t, 10*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with two calls in flight", err)
	default:
	}
	close(gates["http"])
	select {
	case a := <-streamed:
		if a.status != http.StatusOK || !bytes.Contains(a.body, []byte("slow call done")) {
			t.Fatalf("streamable call in flight: %d %s", a.status, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the streamable call did not finish")
	}
	// No request is in flight now, but the SSE call still owes its answer:
	// the stream stays open and Serve waits.
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with an SSE call in flight", err)
	case l := <-sse.Lines():
		if strings.HasPrefix(l, "retry:") || strings.Contains(l, `"id":7`) {
			t.Fatalf("stream before the SSE call was released: %q", l)
		}
	case <-time.After(200 * time.Millisecond):
	}
	close(gates["sse"])

	if _, err := sse.Until(10*time.Second, func(l string) bool { return strings.Contains(l, `"id":7`) && strings.Contains(l, "slow call done") }); err != nil {
		t.Fatalf("SSE answer of the call in flight: %v", err)
	}
	if _, err := sse.Until(10*time.Second, func(l string) bool { return strings.HasPrefix(l, "retry:") }); err != nil {
		t.Fatalf("no retry hint after the answer: %v", err)
	}
	if _, err := sse.Until(10*time.Second, func(string) bool { return false }); !errors.Is(err, io.EOF) {
		t.Fatalf("the SSE stream did not end: %v", err)
	}
	if _, err := listening.Until(10*time.Second, func(l string) bool { return strings.HasPrefix(l, "retry:") }); err != nil {
		t.Fatalf("no retry hint at the end of the streamable GET stream: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
	if n := h.mgr.Count(); n != 0 {
		t.Errorf("%d sessions left open", n)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "drained") || strings.Contains(logs, "drain timeout") {
		t.Errorf("drain log:\n%s", grepLines(logs, "drain"))
	}
}
