package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// newLifeHarness is newHarnessWith with the proxy config changed by edit
// and the session manager's expiry sweep (Manager.Run) running, as serve
// runs it.
func newLifeHarness(t *testing.T, scfg session.Config, edit func(*Config)) *harness {
	t.Helper()
	h := buildHarness(t, harnessSetup{session: scfg, edit: edit})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.mgr.Run(ctx) }()
	// Cleanups run last-in first-out: the sweep stops before the harness.
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// dialStreamableGET opens the standalone GET stream of streamable session
// sid on a connection of its own.
func dialStreamableGET(t *testing.T, h *harness, tok, sid string) *rawStream {
	t.Helper()
	get, err := dialStream(h, "/mcp", map[string]string{"Authorization": "Bearer " + tok, server.HeaderKeySessionID: sid,
		mcp.HeaderProtocolVersion: mcp.ProtocolVersion20251125})
	if err != nil || get.resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mcp: %v %v", err, get)
	}
	return get
}

// waitUntil waits up to within for cond, then fails the test.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawStream is a GET stream (SSE) on a TCP connection of its own, so that a
// test can read it line by line and cut it like a vanished client would.
type rawStream struct {
	conn net.Conn
	resp *http.Response
	body *bufio.Reader
}

// dialStream sends GET path with headers on a new connection and reads the
// answer's head.
func dialStream(h *harness, path string, headers map[string]string) (*rawStream, error) {
	u, err := url.Parse(h.URL)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest(http.MethodGet, h.URL+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return &rawStream{conn: conn, resp: resp, body: bufio.NewReader(resp.Body)}, nil
}

// line reads the next line of the stream, waiting at most within.
func (s *rawStream) line(within time.Duration) (string, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(within))
	l, err := s.body.ReadString('\n')
	if err != nil && l != "" {
		return strings.TrimRight(l, "\r\n"), nil
	}
	return strings.TrimRight(l, "\r\n"), err
}

// waitLine reads lines until one satisfies match, for at most within.
func (s *rawStream) waitLine(within time.Duration, match func(string) bool) (string, error) {
	deadline := time.Now().Add(within)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return "", fmt.Errorf("no matching line within %s", within)
		}
		l, err := s.line(left)
		if err != nil {
			return "", err
		}
		if match(l) {
			return l, nil
		}
	}
}

// ended reports whether the server ends the stream within the bound: the
// body reaches its end rather than the read deadline.
func (s *rawStream) ended(within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		_, err := s.line(time.Until(deadline))
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	return false
}

// reset cuts the connection with a TCP reset, as a client that vanishes.
func (s *rawStream) reset() {
	if tc, ok := s.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	s.conn.Close()
}

// rpcResponse matches the JSON-RPC response (not a ping request) of id.
func rpcResponse(id int) func(string) bool {
	return func(l string) bool {
		return strings.HasPrefix(l, "data:") && strings.Contains(l, fmt.Sprintf(`"id":%d`, id)) &&
			(strings.Contains(l, `"result"`) || strings.Contains(l, `"error"`))
	}
}

func isPingLine(l string) bool {
	return strings.HasPrefix(l, "data:") && strings.Contains(l, `"method":"ping"`)
}

// rpcPost sends a JSON-RPC message to path with the MCP headers and returns the
// answer and its body.
func rpcPost(c *http.Client, h *harness, path, tok, sid, body string) (*http.Response, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	if sid != "" {
		req.Header.Set(server.HeaderKeySessionID, sid)
		req.Header.Set(mcp.HeaderProtocolVersion, mcp.ProtocolVersion20251125)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

const (
	initializeMsg  = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + mcp.ProtocolVersion20251125 + `","capabilities":{},"clientInfo":{"name":"leak","version":"0"}}}`
	initializedMsg = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	newPageMsg     = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"new_page","arguments":{}}}`
)

// openStreamable opens a streamable session (protocol 2025-11-25) and
// returns its ID.
func openStreamable(c *http.Client, h *harness, tok string) (string, error) {
	resp, body, err := rpcPost(c, h, "/mcp", tok, "", initializeMsg)
	if err != nil {
		return "", err
	}
	sid := resp.Header.Get(server.HeaderKeySessionID)
	if resp.StatusCode != http.StatusOK || sid == "" {
		return "", fmt.Errorf("initialize: %d %q", resp.StatusCode, body)
	}
	if resp, body, err = rpcPost(c, h, "/mcp", tok, sid, initializedMsg); err != nil || resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("initialized: %v %v %q", err, resp, body)
	}
	return sid, nil
}

// dialSSE opens a raw SSE stream and returns it with its session's message
// endpoint (path and query).
func dialSSE(h *harness, tok string) (*rawStream, string, error) {
	st, err := dialStream(h, "/sse", map[string]string{"Authorization": "Bearer " + tok})
	if err != nil {
		return nil, "", err
	}
	if st.resp.StatusCode != http.StatusOK {
		st.reset()
		return nil, "", fmt.Errorf("GET /sse: %d", st.resp.StatusCode)
	}
	l, err := st.waitLine(10*time.Second, func(l string) bool { return strings.HasPrefix(l, "data:") })
	if err != nil {
		st.reset()
		return nil, "", fmt.Errorf("endpoint event: %w", err)
	}
	return st, strings.TrimSpace(strings.TrimPrefix(l, "data:")), nil
}

func sseSessionOf(endpoint string) string {
	u, _ := url.Parse(endpoint)
	return u.Query().Get("sessionId")
}

// TestKeepAliveOnIdleStreams checks that idle SSE and streamable GET streams
// carry keep-alive pings, so that clients' body timeouts do not drop them.
func TestKeepAliveOnIdleStreams(t *testing.T) {
	h := newLifeHarness(t, session.Config{}, func(c *Config) { c.KeepAlive = 50 * time.Millisecond })
	tok := h.token("alice")

	sse, _, err := dialSSE(h, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer sse.reset()
	sid, err := openStreamable(http.DefaultClient, h, tok)
	if err != nil {
		t.Fatal(err)
	}
	get := dialStreamableGET(t, h, tok, sid)
	defer get.reset()
	for name, st := range map[string]*rawStream{"SSE": sse, "streamable GET": get} {
		for i := range 2 { // pings keep coming, not just one
			if _, err := st.waitLine(10*time.Second, isPingLine); err != nil {
				t.Errorf("%s stream: ping %d: %v", name, i+1, err)
			}
		}
	}
}

// TestIdleSessionsEndWithStreamsOpen checks that sessions idle for the idle
// timeout are closed even with a stream open and a client answering the
// keep-alive pings: their streams end, their count and stream slots free up,
// and the close is audited.
func TestIdleSessionsEndWithStreamsOpen(t *testing.T) {
	h := newLifeHarness(t, session.Config{IdleTimeout: 2 * time.Second, MaxSessionsPerUser: 3}, func(c *Config) {
		c.KeepAlive = 100 * time.Millisecond
		c.MaxStreams = 3
	})
	tok := h.token("alice")

	answering := h.connect(viaSSE, tok, "") // mcp-go answers every ping
	raw, _, err := dialSSE(h, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.reset()
	sid, err := openStreamable(http.DefaultClient, h, tok)
	if err != nil {
		t.Fatal(err)
	}
	get := dialStreamableGET(t, h, tok, sid)
	defer get.reset()

	if !raw.ended(20 * time.Second) {
		t.Error("the idle SSE stream was not ended")
	}
	if !get.ended(20 * time.Second) {
		t.Error("the idle streamable GET stream was not ended")
	}
	waitUntil(t, 20*time.Second, "every idle session closed", func() bool { return h.mgr.Count() == 0 })
	waitUntil(t, 10*time.Second, "the closes audited with reason idle_timeout", func() bool {
		return strings.Count(h.logs.String(), `"reason":"idle_timeout"`) >= 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := answering.ListTools(ctx, mcp.ListToolsRequest{}); err == nil {
		t.Error("the expired SSE session still answers")
	}
	if resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", tok, sid, `{"jsonrpc":"2.0","id":3,"method":"ping"}`); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("a request on the expired streamable session: %v %v %q, want 404", err, resp, body)
	}

	// The sessions' stream slots and session counts are free again: three
	// new streams open (each slot frees once its old stream's handler ends).
	var fresh []*rawStream
	defer func() {
		for _, st := range fresh {
			st.reset()
		}
	}()
	waitUntil(t, 10*time.Second, "three new streams after expiry", func() bool {
		if st, _, err := dialSSE(h, tok); err == nil {
			fresh = append(fresh, st)
		}
		return len(fresh) == 3
	})
}

// TestVanishedSSEClientClosesAtOnce checks that an SSE client that vanishes
// (TCP reset, nothing else) has its session closed when the connection
// breaks, long before the idle timeout.
func TestVanishedSSEClientClosesAtOnce(t *testing.T) {
	h := newHarnessWith(t, "", session.Config{IdleTimeout: time.Hour})
	tok := h.token("alice")
	st, endpoint, err := dialSSE(h, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.mgr.Owner(sseSessionOf(endpoint)); !ok {
		t.Fatal("the SSE session is not open")
	}
	st.reset()
	waitUntil(t, 10*time.Second, "the vanished client's session closed", func() bool {
		_, ok := h.mgr.Owner(sseSessionOf(endpoint))
		return !ok && h.mgr.Count() == 0
	})
	if !strings.Contains(h.logs.String(), `"reason":"client"`) {
		t.Errorf("the close was not audited as the client's:\n%s", h.logs)
	}
}

// TestRequestsKeepSessionsAlive checks that any MCP request of a client, not
// only tool calls, counts as activity.
func TestRequestsKeepSessionsAlive(t *testing.T) {
	h := newHarness(t, "")
	tok := h.token("alice")
	sid, err := openStreamable(http.DefaultClient, h, tok)
	if err != nil {
		t.Fatal(err)
	}
	_, before := h.mgr.UserStats("alice")
	time.Sleep(20 * time.Millisecond)
	if resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", tok, sid, `{"jsonrpc":"2.0","id":3,"method":"ping"}`); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("ping: %v %v %q", err, resp, body)
	}
	if _, after := h.mgr.UserStats("alice"); !after.After(before) {
		t.Errorf("a ping did not count as activity: last activity %s, then %s", before, after)
	}
}

// TestSessionLifetimeEndsBusySessions checks that a session busy all along
// is still closed at the end of its lifetime.
func TestSessionLifetimeEndsBusySessions(t *testing.T) {
	h := newLifeHarness(t, session.Config{IdleTimeout: time.Hour, Lifetime: 2 * time.Second}, nil)
	tok := h.token("alice")
	c := h.connect(viaSSE, tok, "")
	ended := false
	deadline := time.Now().Add(20 * time.Second)
	for !ended && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.ListTools(ctx, mcp.ListToolsRequest{}) // a request of the client: activity
		ended = err != nil
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	if !ended {
		t.Fatal("a busy session outlived its lifetime")
	}
	waitUntil(t, 10*time.Second, "the close audited with reason lifetime", func() bool {
		return strings.Contains(h.logs.String(), `"reason":"lifetime"`) && h.mgr.Count() == 0
	})
}

// TestStreamableResumesAfterReconnect checks that a client whose GET stream
// broke gets, by reconnecting with Last-Event-ID, exactly the messages it
// missed, then the live ones.
func TestStreamableResumesAfterReconnect(t *testing.T) {
	h := newHarness(t, "")
	tok := h.token("alice")
	sid, err := openStreamable(http.DefaultClient, h, tok)
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string]string{"Authorization": "Bearer " + tok, server.HeaderKeySessionID: sid,
		mcp.HeaderProtocolVersion: mcp.ProtocolVersion20251125}
	notify := func(n int) {
		t.Helper()
		if err := h.srv.mcp.SendNotificationToSpecificClient(sid, "notifications/message",
			map[string]any{"level": "info", "data": fmt.Sprintf("note-%d", n)}); err != nil {
			t.Fatalf("notify %d: %v", n, err)
		}
	}
	// readNote reads the next notification and the event ID it came with.
	readNote := func(st *rawStream) (id, data string) {
		t.Helper()
		for {
			l, err := st.line(10 * time.Second)
			if err != nil {
				t.Fatalf("read stream: %v", err)
			}
			switch {
			case strings.HasPrefix(l, "id:"):
				id = strings.TrimSpace(strings.TrimPrefix(l, "id:"))
			case strings.HasPrefix(l, "data:") && strings.Contains(l, "note-"):
				i := strings.Index(l, "note-")
				return id, strings.TrimRight(l[i:i+len("note-")+1], `"`)
			}
		}
	}

	first, err := dialStream(h, "/mcp", headers)
	if err != nil || first.resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mcp: %v %v", err, first)
	}
	notify(1)
	lastID, data := readNote(first)
	if lastID == "" || data != "note-1" {
		t.Fatalf("first event: id %q data %q", lastID, data)
	}
	first.reset() // the connection breaks
	notify(2)
	notify(3)

	headers["Last-Event-ID"] = lastID
	resumed, err := dialStream(h, "/mcp", headers)
	if err != nil || resumed.resp.StatusCode != http.StatusOK {
		t.Fatalf("resume: %v %v", err, resumed)
	}
	defer resumed.reset()
	var got []string
	for range 2 {
		id, data := readNote(resumed)
		if id == "" {
			t.Errorf("replayed %s without an event ID", data)
		}
		got = append(got, data)
	}
	notify(4) // live again on the resumed stream
	_, live := readNote(resumed)
	got = append(got, live)
	if strings.Join(got, ",") != "note-2,note-3,note-4" {
		t.Errorf("after resuming: %v, want note-2, note-3, note-4", got)
	}

	headers["Last-Event-ID"] = "999999999"
	unknown, err := dialStream(h, "/mcp", headers)
	if err != nil {
		t.Fatal(err)
	}
	defer unknown.reset()
	if unknown.resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an unknown Last-Event-ID: %d, want 400", unknown.resp.StatusCode)
	}
}

func TestEventStoreIsBounded(t *testing.T) {
	ctx := context.Background()
	msg := func(n int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"n":%08d}`, n)) } // 14 bytes
	replay := func(e *eventStore, sess, after string) ([]string, error) {
		var got []string
		_, err := e.ReplayEventsAfter(ctx, sess, after, func(_ string, m json.RawMessage) error {
			got = append(got, string(m))
			return nil
		})
		return got, err
	}
	store := func(e *eventStore, sess, stream string, n int) string {
		t.Helper()
		id, err := e.StoreEvent(ctx, sess, stream, msg(n))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	// Per stream: the last 3 events.
	e := newEventStore(3, 1<<20)
	var ids []string
	for n := range 5 {
		ids = append(ids, store(e, "s", "a", n))
	}
	if _, err := replay(e, "s", ids[0]); !errors.Is(err, server.ErrUnknownEventID) {
		t.Errorf("replay after an evicted event: %v, want unknown", err)
	}
	if got, err := replay(e, "s", ids[2]); err != nil || len(got) != 2 || got[0] != string(msg(3)) || got[1] != string(msg(4)) {
		t.Errorf("replay after event 2: %v %v, want events 3 and 4", got, err)
	}
	if _, err := replay(e, "other", ids[2]); !errors.Is(err, server.ErrUnknownEventID) {
		t.Errorf("another session's event ID: %v, want unknown", err)
	}
	if n, _ := e.usage(); n != 3 {
		t.Errorf("%d events kept, want 3", n)
	}

	// In total: at most maxBytes, the oldest of any stream going first.
	e = newEventStore(100, 50) // three 14-byte messages
	a0 := store(e, "s", "a", 0)
	b1 := store(e, "s", "b", 1)
	store(e, "t", "c", 2)
	store(e, "t", "c", 3) // evicts a0
	if n, b := e.usage(); n != 3 || b > 50 {
		t.Errorf("usage %d events, %d bytes; want 3 events within 50 bytes", n, b)
	}
	if _, err := replay(e, "s", a0); !errors.Is(err, server.ErrUnknownEventID) {
		t.Errorf("the oldest event survived the total bound: %v", err)
	}
	if got, err := replay(e, "s", b1); err != nil || len(got) != 0 {
		t.Errorf("replay after the newest of its stream: %v %v", got, err)
	}
	if _, err := e.StoreEvent(ctx, "s", "a", make(json.RawMessage, 51)); err == nil {
		t.Error("a message larger than the store was stored")
	}

	// Purged sessions free everything, and the eviction queue stays bounded.
	e = newEventStore(10, 1<<20)
	for i := range 2000 {
		sess := fmt.Sprint("s", i)
		for n := range 5 {
			store(e, sess, "a", n)
		}
		if err := e.PurgeSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	if n, b := e.usage(); n != 0 || b != 0 || len(e.sessions) != 0 {
		t.Errorf("after purging every session: %d events, %d bytes, %d sessions", n, b, len(e.sessions))
	}
	if len(e.fifo) > 1024+1 {
		t.Errorf("eviction queue holds %d references to purged events", len(e.fifo))
	}
}

// TestAbandonedSessionsDoNotLeak opens abandonedSessions sessions (60 in
// make test, 500 in make soak) and abandons them the ways clients vanish: SSE streams cut with a TCP reset, streamable sessions
// never deleted, streamable GET streams cut with a reset; some of them opened
// a tab in a real browser. Within the idle bound, the goroutines, the
// manager's sessions and the browser's tabs return to their baseline.
func TestAbandonedSessionsDoNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skipf("opens %d sessions", abandonedSessions)
	}
	chrome := testchrome.Start(t)
	// The idle timeout is short, but long enough for a worker's few requests
	// on one session to come in time on a loaded machine.
	h := newLifeHarness(t, session.Config{IdleTimeout: 4 * time.Second, MaxSessionsPerUser: 1000, MaxSessions: 1000},
		func(c *Config) { c.MaxStreams = 1000 })
	tok := h.token("alice")
	h.register(tok, "alice", chrome.URL)
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	client := &http.Client{Transport: tr}

	// Warm up the browser connection with one tab, closed with its session.
	sid, err := openStreamable(client, h, tok)
	if err != nil {
		t.Fatal(err)
	}
	basePages := len(chrome.Pages(t))
	if resp, body, err := rpcPost(client, h, "/mcp", tok, sid, newPageMsg); err != nil || resp.StatusCode != 200 || strings.Contains(body, `"isError":true`) {
		t.Fatalf("warm-up new_page: %v %q", err, body)
	}
	h.mgr.Close(sid)
	waitUntil(t, 10*time.Second, "the warm-up tab closed", func() bool { return len(chrome.Pages(t)) == basePages })

	settle := func() int {
		tr.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections()
		runtime.GC()
		return runtime.NumGoroutine()
	}
	time.Sleep(200 * time.Millisecond)
	baseGoroutines := settle()

	const sessions, workers = abandonedSessions, 16
	var tabs, failures atomic.Int32
	var mu sync.Mutex
	var ids, errs []string
	fail := func(err error) {
		failures.Add(1)
		mu.Lock()
		if len(errs) < 5 {
			errs = append(errs, err.Error())
		}
		mu.Unlock()
	}
	newPage := func(resp *http.Response, body string, err error) {
		switch {
		case err != nil:
			fail(err)
		case resp.StatusCode/100 != 2 || !strings.Contains(body, `"result"`) || strings.Contains(body, `"isError":true`):
			fail(fmt.Errorf("new_page: %d %q", resp.StatusCode, body))
		default:
			tabs.Add(1)
		}
	}
	// Every kind of abandonment opens tabs: 3 of every 50 sessions, one per
	// kind (30 tabs at 500 sessions).
	hasTab := func(i int) bool { return i%50 == 0 || i%50 == 2 || i%50 == 4 }
	open := func(i int) error {
		withTab := hasTab(i)
		switch i % 5 {
		case 0, 1: // SSE stream, cut
			st, endpoint, err := dialSSE(h, tok)
			if err != nil {
				return err
			}
			defer st.reset()
			mu.Lock()
			ids = append(ids, sseSessionOf(endpoint))
			mu.Unlock()
			if !withTab {
				return nil
			}
			for _, m := range []struct {
				msg string
				id  int // of the response to wait for; 0: none
			}{{initializeMsg, 1}, {initializedMsg, 0}, {newPageMsg, 2}} {
				if resp, body, err := rpcPost(client, h, endpoint, tok, "", m.msg); err != nil || resp.StatusCode != http.StatusAccepted {
					return fmt.Errorf("POST %s: %v %v %q", endpoint, err, resp, body)
				}
				if m.id == 0 {
					continue
				}
				l, err := st.waitLine(30*time.Second, rpcResponse(m.id))
				if err != nil {
					return fmt.Errorf("SSE response %d: %w", m.id, err)
				}
				if strings.Contains(l, `"isError":true`) {
					return fmt.Errorf("SSE response %d: %s", m.id, l)
				}
			}
			tabs.Add(1)
			return nil
		default: // streamable session, never deleted
			sid, err := openStreamable(client, h, tok)
			if err != nil {
				return err
			}
			mu.Lock()
			ids = append(ids, sid)
			mu.Unlock()
			if withTab {
				newPage(rpcPost(client, h, "/mcp", tok, sid, newPageMsg))
			}
			if i%5 == 4 { // with a GET stream, cut
				st, err := dialStream(h, "/mcp", map[string]string{"Authorization": "Bearer " + tok,
					server.HeaderKeySessionID: sid, mcp.HeaderProtocolVersion: mcp.ProtocolVersion20251125})
				if err != nil {
					return err
				}
				st.reset()
				if st.resp.StatusCode != http.StatusOK {
					return fmt.Errorf("GET /mcp: %d", st.resp.StatusCode)
				}
			}
			return nil
		}
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := open(i); err != nil {
					fail(fmt.Errorf("session %d: %w", i, err))
				}
			}
		})
	}
	for i := range sessions {
		next <- i
	}
	close(next)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d of %d sessions failed to open, e.g. %v", failures.Load(), sessions, errs)
	}
	var want int32
	for i := range sessions {
		if hasTab(i) {
			want++
		}
	}
	if tabs.Load() != want {
		t.Fatalf("%d tabs opened, want %d", tabs.Load(), want)
	}
	if len(ids) != sessions {
		t.Fatalf("%d session IDs, want %d", len(ids), sessions)
	}

	var goroutines, pages int
	deadline := time.Now().Add(60 * time.Second)
	for {
		goroutines, pages = settle(), len(chrome.Pages(t))
		if h.mgr.Count() == 0 && pages == basePages && goroutines <= baseGoroutines+10 {
			break
		}
		if time.Now().After(deadline) {
			var dump bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Logf("goroutines:\n%.20000s", dump.String())
			t.Fatalf("no return to baseline: %d sessions open (want 0), %d pages (want %d), %d goroutines (baseline %d)",
				h.mgr.Count(), pages, basePages, goroutines, baseGoroutines)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, id := range ids {
		if _, ok := h.mgr.Owner(id); ok {
			t.Errorf("session %s is still known", id)
		}
	}
	if n := strings.Count(h.logs.String(), `"event":"session_close"`); n < sessions {
		t.Errorf("%d session closes audited, want at least %d", n, sessions)
	}
	t.Logf("%d sessions, %d tabs; goroutines %d (baseline %d)", sessions, tabs.Load(), goroutines, baseGoroutines)
}
