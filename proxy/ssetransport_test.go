package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// TestSSEStalledClientIsCut checks that a client that stops reading its
// stream holds up no one past the write bound: the writer of an event to it
// gets an error and the session ends, a notification to it does not block
// its sender, and another session's notification arrives meanwhile.
func TestSSEStalledClientIsCut(t *testing.T) {
	h := newHarnessWith(t, "", session.Config{IdleTimeout: time.Hour})
	h.srv.sse.writeBound = 300 * time.Millisecond
	stalled, endpoint, err := dialSSE(h, h.token("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.reset()
	stalledID := sseSessionOf(endpoint)
	healthy, endpoint, err := dialSSE(h, h.token("bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.reset()
	healthyID := sseSessionOf(endpoint)

	for _, st := range []struct{ tok, endpoint string }{{h.token("alice"), "/message?sessionId=" + stalledID}, {h.token("bob"), endpoint}} {
		for _, msg := range []string{initializeMsg, initializedMsg} {
			if resp, body, err := rpcPost(http.DefaultClient, h, st.endpoint, st.tok, "", msg); err != nil || resp.StatusCode != http.StatusAccepted {
				t.Fatalf("%s: %v %v %s", msg, err, resp, body)
			}
		}
	}
	if _, err := healthy.waitLine(10*time.Second, rpcResponse(1)); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	c := h.srv.sse.session(stalledID)
	if c == nil {
		t.Fatal("the stalled client's session is not in the transport")
	}
	// Events of 1 MB until the socket buffers are full and one write
	// misses its deadline; 64 MB is far beyond what loopback buffers take.
	big := []byte(`"` + strings.Repeat("x", 1<<20) + `"`)
	flood := make(chan error, 1)
	go func() {
		for range 64 {
			if err := c.sendMessage(big); err != nil {
				flood <- err
				return
			}
		}
		flood <- nil
	}()

	// Meanwhile: a notification to the stalled session returns to its
	// sender, and one to another session reaches it.
	sent := make(chan error, 1)
	go func() {
		sent <- h.srv.mcp.SendNotificationToSpecificClient(stalledID, "notifications/message", map[string]any{"level": "info", "data": "to-stalled"})
	}()
	select {
	case <-sent: // queued or refused as full: either way it came back
	case <-time.After(30 * time.Second):
		t.Fatal("a notification to the stalled session blocked its sender")
	}
	if err := h.srv.mcp.SendNotificationToSpecificClient(healthyID, "notifications/message", map[string]any{"level": "info", "data": "to-healthy"}); err != nil {
		t.Fatal(err)
	}
	if _, err := healthy.waitLine(10*time.Second, func(l string) bool { return strings.Contains(l, "to-healthy") }); err != nil {
		t.Fatalf("the healthy session's notification: %v", err)
	}

	select {
	case err := <-flood:
		if err == nil {
			t.Fatal("64 MB were written to a client that reads nothing")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a write to the stalled client outlived its bound")
	}
	waitUntil(t, 10*time.Second, "the stalled session closed", func() bool {
		_, open := h.mgr.Owner(stalledID)
		return !open && h.srv.sse.session(stalledID) == nil
	})
	if _, open := h.mgr.Owner(healthyID); !open {
		t.Fatal("the healthy session was closed too")
	}
	if err := h.srv.mcp.SendNotificationToSpecificClient(healthyID, "notifications/message", map[string]any{"level": "info", "data": "still-there"}); err != nil {
		t.Fatal(err)
	}
	if _, err := healthy.waitLine(10*time.Second, func(l string) bool { return strings.Contains(l, "still-there") }); err != nil {
		t.Fatalf("the healthy session after the cut: %v", err)
	}
}

// TestSSEClientCloseFreesSession checks that what an SSE session holds (its
// goroutines, its stream slot, its place in the transport and the manager)
// is given back when its client goes, and that an idle session holds one
// goroutine (its reader; no notification forwarder while none is sent).
func TestSSEClientCloseFreesSession(t *testing.T) {
	h := newLifeHarness(t, session.Config{IdleTimeout: time.Hour}, func(c *Config) { c.KeepAlive = 20 * time.Millisecond })
	settle := func() int {
		runtime.GC()
		return runtime.NumGoroutine()
	}
	tok := h.token("alice")
	// A first stream and its close, so that the baseline has the pools and
	// connections a stream leaves behind.
	first, _, err := dialSSE(h, tok)
	if err != nil {
		t.Fatal(err)
	}
	first.reset()
	waitUntil(t, 10*time.Second, "the first session closed", func() bool { return h.srv.sse.count() == 0 && h.mgr.Count() == 0 })
	time.Sleep(100 * time.Millisecond)
	base := settle()

	const n = 8 // under the default per-user stream limit
	streams := make([]*rawStream, 0, n)
	for range n {
		st, _, err := dialSSE(h, tok)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	for _, st := range streams { // keep-alives flow
		if _, err := st.waitLine(10*time.Second, isPingLine); err != nil {
			t.Fatalf("keep-alive: %v", err)
		}
	}
	if got := h.srv.sse.count(); got != n {
		t.Fatalf("%d sessions in the transport, want %d", got, n)
	}
	if total, _ := h.srv.streams.usage(); total != n {
		t.Fatalf("%d stream slots held, want %d", total, n)
	}
	var open int
	waitUntil(t, 10*time.Second, "idle sessions at one goroutine each", func() bool {
		open = settle()
		return open-base <= n
	})
	t.Logf("%d goroutines for %d idle sessions (baseline %d)", open-base, n, base)

	for _, st := range streams {
		st.reset()
	}
	var now int
	deadline := time.Now().Add(20 * time.Second)
	for {
		total, _ := h.srv.streams.usage()
		now = settle()
		if h.srv.sse.count() == 0 && h.mgr.Count() == 0 && total == 0 && now <= base+1 {
			break
		}
		if time.Now().After(deadline) {
			var dump bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Fatalf("no return to baseline: %d in the transport, %d in the manager, %d slots, %d goroutines (baseline %d)\n%.20000s",
				h.srv.sse.count(), h.mgr.Count(), total, now, base, dump.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Count(h.logs.String(), `"reason":"client"`) < n {
		t.Errorf("the closes were not audited as the client's:\n%s", h.logs)
	}
}

// TestSSEMessageErrors checks the answers of POST /message that the
// transport itself refuses, as mcp-go's SSE server gave them.
func TestSSEMessageErrors(t *testing.T) {
	h := newHarness(t, "")
	tok := h.token("alice")
	st, endpoint, err := dialSSE(h, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer st.reset()
	resp, body, err := rpcPost(http.DefaultClient, h, endpoint, tok, "", `{"jsonrpc":`)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || !strings.Contains(body, `"code":-32700`) || !strings.Contains(body, "Parse error") {
		t.Fatalf("bad JSON: %d %s", resp.StatusCode, body)
	}
	resp, body, err = rpcPost(http.DefaultClient, h, endpoint, tok, "", `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 {
		t.Fatalf("ping: %d %s", resp.StatusCode, body)
	}
	if _, err := st.waitLine(10*time.Second, rpcResponse(3)); err != nil {
		t.Fatalf("the ping's answer on the stream: %v", err)
	}
}

// TestSSEOverHTTP2 checks the transport where the connection cannot be
// hijacked (HTTP/2 over TLS): the handler keeps the stream, answers and the
// session's end work as on HTTP/1.1.
func TestSSEOverHTTP2(t *testing.T) {
	certFile, keyFile, roots := selfSigned(t, t.TempDir())
	tcfg, err := LoadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	h := newSecHarness(t, func(c *Config) { c.Security.TLS = tcfg })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ctx, l) }()
	defer func() {
		stop()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return")
		}
	}()
	base := "https://" + l.Addr().String()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	tok := h.token("alice")

	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, base+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /sse: %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	body := bufio.NewReader(resp.Body)
	var endpoint string
	for endpoint == "" {
		l, err := body.ReadString('\n')
		if err != nil {
			t.Fatalf("endpoint event: %v", err)
		}
		if strings.HasPrefix(l, "data:") {
			endpoint = strings.TrimSpace(strings.TrimPrefix(l, "data:"))
		}
	}
	preq, _ := http.NewRequestWithContext(sctx, http.MethodPost, base+endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"ping"}`))
	preq.Header.Set("Authorization", "Bearer "+tok)
	preq.Header.Set("Content-Type", "application/json")
	presp, err := client.Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s: %d", endpoint, presp.StatusCode)
	}
	for {
		l, err := body.ReadString('\n')
		if err != nil {
			t.Fatalf("the ping's answer: %v", err)
		}
		if rpcResponse(5)(strings.TrimRight(l, "\r\n")) {
			break
		}
	}
	cancel() // the client goes
	waitUntil(t, 10*time.Second, "the session closed", func() bool { return h.srv.sse.count() == 0 && h.mgr.Count() == 0 })
}

// TestSSENotificationsToIdleSession checks the forwarder that runs only
// while notifications are on their way: notifications sent to an idle
// session, to it alone, from a call's context and to every session, reach
// its stream in the order
// sent, bursts larger than the queue included (as many as mcp-go accepted
// arrive), and once they are written the session is idle again: nothing
// announced is pending, so no forwarder is left running.
func TestSSENotificationsToIdleSession(t *testing.T) {
	h := newHarnessWith(t, "", session.Config{IdleTimeout: time.Hour})
	tok := h.token("alice")
	st, endpoint, err := dialSSE(h, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer st.reset()
	id := sseSessionOf(endpoint)
	for _, msg := range []string{initializeMsg, initializedMsg} {
		if resp, body, err := rpcPost(http.DefaultClient, h, endpoint, tok, "", msg); err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: %v %v %s", msg, err, resp, body)
		}
	}
	if _, err := st.waitLine(10*time.Second, rpcResponse(1)); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	c := h.srv.sse.session(id)
	if c == nil {
		t.Fatal("no session in the transport")
	}
	idle := func(what string) {
		t.Helper()
		waitUntil(t, 10*time.Second, what, func() bool { return c.pending.Load() == 0 })
	}
	idle("no notification pending after initialize")
	if c.notify.Load() != nil {
		t.Error("an idle session that was sent no notification has a notification queue")
	}

	note := func(data string) map[string]any { return map[string]any{"level": "info", "data": data} }
	has := func(data string) func(string) bool {
		return func(l string) bool { return strings.HasPrefix(l, "data:") && strings.Contains(l, `"data":"`+data+`"`) }
	}
	if err := h.srv.mcp.SendNotificationToSpecificClient(id, "notifications/message", note("one")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.waitLine(10*time.Second, has("one")); err != nil {
		t.Fatalf("a notification to the idle session: %v", err)
	}
	idle("the forwarder done after one notification")

	// The path of a tool's progress and log notifications.
	if err := h.srv.mcp.SendNotificationToClient(h.srv.mcp.WithContext(context.Background(), c), "notifications/message", note("from-a-tool")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.waitLine(10*time.Second, has("from-a-tool")); err != nil {
		t.Fatalf("a notification sent with the session's context: %v", err)
	}
	idle("the forwarder done after a tool's notification")

	h.srv.mcp.SendNotificationToAllClients("notifications/message", note("all"))
	if _, err := st.waitLine(10*time.Second, has("all")); err != nil {
		t.Fatalf("a notification to every session: %v", err)
	}
	idle("the forwarder done after a broadcast")

	// A burst of twice the queue, sent back to back: those mcp-go took
	// arrive, in the order sent.
	const burst = 2 * sseNotifyQueue
	accepted := make(chan int, burst)
	for i := range burst {
		if h.srv.mcp.SendNotificationToSpecificClient(id, "notifications/message", note(fmt.Sprintf("b%02d", i))) == nil {
			accepted <- i
		}
	}
	close(accepted)
	var want []string
	for i := range accepted {
		want = append(want, fmt.Sprintf("b%02d", i))
	}
	if len(want) < sseNotifyQueue {
		t.Fatalf("only %d of %d notifications accepted", len(want), burst)
	}
	for _, w := range want {
		if _, err := st.waitLine(10*time.Second, func(l string) bool {
			if !strings.HasPrefix(l, "data:") || !strings.Contains(l, `"data":"b`) {
				return false
			}
			if !strings.Contains(l, `"data":"`+w+`"`) {
				t.Fatalf("waiting for %s, got %s", w, l)
			}
			return true
		}); err != nil {
			t.Fatalf("notification %s: %v", w, err)
		}
	}
	if len(want) == burst {
		idle("the forwarder done after the burst")
	}
	// Still a working session.
	if resp, body, err := rpcPost(http.DefaultClient, h, endpoint, tok, "", `{"jsonrpc":"2.0","id":7,"method":"ping"}`); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("ping: %v %v %s", err, resp, body)
	}
	if _, err := st.waitLine(10*time.Second, rpcResponse(7)); err != nil {
		t.Fatalf("the ping's answer: %v", err)
	}
}

// writeCounter is a connection that counts its writes and keeps what they
// wrote.
type writeCounter struct {
	net.Conn
	writes int
	got    bytes.Buffer
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes++
	return w.got.Write(p)
}

func (w *writeCounter) SetWriteDeadline(time.Time) error { return nil }

// TestSSEEventIsOneWrite checks that an event goes out in one write, as one
// chunk: a writev on a TCP connection, the listener's counted one included
// (net.Buffers cannot see through a wrapper and would send each piece as a
// packet of its own, five or six per answer), and a single copied write on
// any other connection (TLS: one record).
func TestSSEEventIsOneWrite(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	counted := &countedConn{Conn: server}
	if got := vectored(counted); got != server {
		t.Errorf("vectored(the counted TCP connection) = %v, want the TCP connection", got)
	}
	if got := vectored(server); got != server {
		t.Errorf("vectored(a TCP connection) = %v, want itself", got)
	}
	if got := vectored(tls.Server(server, &tls.Config{})); got != nil {
		t.Errorf("vectored(a TLS connection) = %v, want nil", got)
	}

	const want = "2f\r\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1}\n\n\r\n"
	wc := &writeCounter{}
	c := &sseSession{t: &sseTransport{writeBound: time.Second}, conn: wc, vec: vectored(wc)}
	if err := c.sendMessage([]byte(`{"jsonrpc":"2.0",`), []byte(`"id":1}`)); err != nil {
		t.Fatal(err)
	}
	if wc.writes != 1 || wc.got.String() != want {
		t.Errorf("the event went out in %d writes as %q, want 1 write of %q", wc.writes, wc.got.String(), want)
	}

	c = &sseSession{t: &sseTransport{writeBound: time.Second}, conn: counted, vec: vectored(counted)}
	if err := c.sendMessage([]byte(`{"jsonrpc":"2.0",`), []byte(`"id":1}`)); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != want {
		t.Errorf("the TCP peer read %q (%v), want %q", buf, err, want)
	}
}
