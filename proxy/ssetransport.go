package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// The legacy SSE transport (GET /sse, POST /message?sessionId=) over
// mcp-go's MCPServer, which keeps the schema and the dispatch. It replaces
// mcp-go's SSEServer because of what an idle session cost there: a handler
// goroutine with a deep stack, three more goroutines, two 100-slot channels
// and net/http's connection buffers (BENCHMARKS.md, issue 12).
//
// Here a stream on HTTP/1.1 is hijacked once its head and endpoint event
// are out (in one write): net/http lets go of the connection, its buffers
// and its background read. An idle session then holds one small reader
// goroutine (it notices the client closing) and a runtime timer for its
// keep-alive: each parked goroutine is a stack the garbage collector scans
// at every cycle, so with thousands of sessions open they cost every
// request CPU. mcp-go hands notifications over a channel, made on the
// first one, and announces each one just before it sends it
// (UpgradeToSSEWhenReceiveNotification): the forwarder runs only while
// notifications are on their way. Every event is written by its sender
// under the session's lock with a write deadline, so a client that stops
// reading delays no one past sseWriteBound and is then cut. Where the
// connection cannot be hijacked (HTTP/2), the handler keeps the stream,
// written and flushed through the ResponseWriter.

// sseWriteBound bounds one event's write to a client; a client that does not
// take an event within it is cut.
const sseWriteBound = 10 * time.Second

// sseNotifyQueue is how many notifications a session queues for its stream;
// mcp-go drops (and reports through the error hook) what does not fit.
const sseNotifyQueue = 16

// sseTransport serves the legacy SSE transport. It is safe for concurrent
// use.
type sseTransport struct {
	mcp        *server.MCPServer
	keepAlive  time.Duration                         // 0: no keep-alive pings
	newID      func(r *http.Request) (string, error) // a new session's ID
	writeBound time.Duration                         // sseWriteBound; shorter in tests

	drain atomic.Pointer[drainer] // set by Serve: the stream answers it waits for
	lists listAnswers             // tools/list results encoded already (toolsanswer.go)

	mu       sync.Mutex
	sessions map[string]*sseSession
}

func newSSETransport(m *server.MCPServer, keepAlive time.Duration, newID func(*http.Request) (string, error)) *sseTransport {
	return &sseTransport{mcp: m, keepAlive: keepAlive, newID: newID, writeBound: sseWriteBound, sessions: map[string]*sseSession{}}
}

// sseSession is one legacy SSE session: mcp-go's server.ClientSession, and
// the stream its events go to.
type sseSession struct {
	t    *sseTransport
	id   string
	ctx  context.Context // the GET's values, never cancelled: hooks read the principal
	done chan struct{}   // closed by stop
	slot func()          // frees what middlewares hold for the stream (limits.go), or nil

	notify  atomic.Pointer[chan mcp.JSONRPCNotification] // made on the first notification
	pending atomic.Int64                                 // notifications announced, not yet taken by the forwarder

	stopped     atomic.Bool
	connA       atomic.Pointer[net.Conn]   // conn, for stop
	kaA         atomic.Pointer[time.Timer] // keep-alive, or nil
	initialized atomic.Bool
	pingID      atomic.Int64
	logLevel    atomic.Value // mcp.LoggingLevel

	mu       sync.Mutex // serialises writes; guards what follows
	closed   bool       // no more writes
	conn     net.Conn   // the hijacked connection, or nil
	vec      net.Conn   // conn, or what it wraps, when it writes net.Buffers in one writev; else nil
	w        http.ResponseWriter
	rc       *http.ResponseController // w's, when not hijacked
	info     mcp.Implementation
	caps     mcp.ClientCapabilities
	chunkHdr [18]byte // scratch for a chunk's size line
}

var (
	_ server.ClientSession         = (*sseSession)(nil)
	_ server.SessionWithLogging    = (*sseSession)(nil)
	_ server.SessionWithClientInfo = (*sseSession)(nil)
	// Only for its hook: mcp-go calls it before every notification.
	_ server.SessionWithStreamableHTTPConfig = (*sseSession)(nil)
)

// SessionID implements server.ClientSession.
func (c *sseSession) SessionID() string { return c.id }

// NotificationChannel implements server.ClientSession.
func (c *sseSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return c.notifications() }

// notifications returns the session's notification queue, made on first
// use: an idle session holds none.
func (c *sseSession) notifications() chan mcp.JSONRPCNotification {
	if ch := c.notify.Load(); ch != nil {
		return *ch
	}
	ch := make(chan mcp.JSONRPCNotification, sseNotifyQueue)
	if c.notify.CompareAndSwap(nil, &ch) {
		return ch
	}
	return *c.notify.Load()
}

// UpgradeToSSEWhenReceiveNotification implements
// server.SessionWithStreamableHTTPConfig: mcp-go calls it before it puts a
// notification on the queue (every path of its session.go does), so the
// first of a burst starts the forwarder, which ends once it has written as
// many as were announced. A notification mcp-go then drops (queue full)
// was announced all the same: the forwarder waits for one more, as an
// always-running forwarder would, until the next one or the session's end.
func (c *sseSession) UpgradeToSSEWhenReceiveNotification() {
	if c.pending.Add(1) == 1 {
		go c.forward()
	}
}

// Initialize implements server.ClientSession.
func (c *sseSession) Initialize() {
	c.logLevel.Store(mcp.LoggingLevelError)
	c.initialized.Store(true)
}

// Initialized implements server.ClientSession.
func (c *sseSession) Initialized() bool { return c.initialized.Load() }

// SetLogLevel implements server.SessionWithLogging.
func (c *sseSession) SetLogLevel(level mcp.LoggingLevel) { c.logLevel.Store(level) }

// GetLogLevel implements server.SessionWithLogging.
func (c *sseSession) GetLogLevel() mcp.LoggingLevel {
	if l, ok := c.logLevel.Load().(mcp.LoggingLevel); ok {
		return l
	}
	return mcp.LoggingLevelError
}

// GetClientInfo implements server.SessionWithClientInfo.
func (c *sseSession) GetClientInfo() mcp.Implementation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

// SetClientInfo implements server.SessionWithClientInfo.
func (c *sseSession) SetClientInfo(info mcp.Implementation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.info = info
}

// GetClientCapabilities implements server.SessionWithClientInfo.
func (c *sseSession) GetClientCapabilities() mcp.ClientCapabilities {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.caps
}

// SetClientCapabilities implements server.SessionWithClientInfo.
func (c *sseSession) SetClientCapabilities(caps mcp.ClientCapabilities) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.caps = caps
}

// ServeSSE answers GET /sse: it opens a session, sends its endpoint event
// and keeps the stream until the client goes or the session is ended.
func (t *sseTransport) ServeSSE(w http.ResponseWriter, r *http.Request) {
	id, err := t.newID(r)
	if err != nil || id == "" {
		http.Error(w, "Failed to create session ID", http.StatusInternalServerError)
		return
	}
	c := &sseSession{t: t, id: id, ctx: context.WithoutCancel(r.Context()),
		done: make(chan struct{}), w: w}
	// Held until the stream is set up: an answer or a notification written
	// before waits for it.
	c.mu.Lock()
	t.mu.Lock()
	t.sessions[id] = c
	t.mu.Unlock()
	if err := t.mcp.RegisterSession(c.ctx, c); err != nil {
		c.closed = true
		c.mu.Unlock()
		t.forget(c)
		http.Error(w, fmt.Sprintf("Session registration failed: %v", err), http.StatusInternalServerError)
		return
	}
	if d := t.drain.Load(); d != nil {
		d.streamOpened(id)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("Access-Control-Allow-Origin", "*") // as mcp-go; guard (security.go) narrows it
	endpoint := []byte("event: endpoint\ndata: /message?sessionId=" + id + "\r\n\r\n")

	conn, werr := t.hijack(w, r, endpoint)
	if conn != nil {
		// The handler returns; what the stream holds from here on is in c.
		c.slot = takeStreamHolds(r.Context())
		c.conn, c.vec, c.w = conn, vectored(conn), nil
		c.connA.Store(&conn)
		c.mu.Unlock()
		if c.stopped.Load() {
			unblock(conn) // stop ran before it could see the connection
		}
		c.startTimers()
		go c.readUntilClosed()
		return
	}

	// Not hijackable: the handler goroutine keeps the stream.
	c.rc = http.NewResponseController(w)
	c.mu.Unlock()
	if werr == nil {
		c.startTimers()
		select {
		case <-r.Context().Done():
		case <-c.done:
		}
	}
	c.stop()
	c.mu.Lock() // waits out a write in progress: none may follow the handler
	c.closed = true
	c.mu.Unlock()
	c.finish()
}

// hijack sends the response head and the endpoint event as net/http
// writes them (the middlewares' hooks run, the body is chunked), in one
// write, then takes the connection of an HTTP/1.1 GET. It returns a nil
// connection when it cannot take it, and the error of the write.
func (t *sseTransport) hijack(w http.ResponseWriter, r *http.Request, endpoint []byte) (net.Conn, error) {
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(t.writeBound))
	if _, err := w.Write(endpoint); err != nil {
		return nil, err
	}
	if err := rc.Flush(); err != nil {
		return nil, err
	}
	if r.ProtoMajor != 1 || !r.ProtoAtLeast(1, 1) {
		return nil, nil
	}
	// Nothing is left to flush: Hijack writes nothing more.
	conn, _, err := rc.Hijack()
	if err != nil {
		return nil, nil
	}
	// net/http's header deadline, and the write deadline above, cleared.
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// startTimers arms the keep-alive: a runtime timer, no goroutine while idle.
func (c *sseSession) startTimers() {
	if c.t.keepAlive <= 0 {
		return
	}
	ka := time.AfterFunc(c.t.keepAlive, c.ping)
	c.kaA.Store(ka)
	if c.stopped.Load() {
		ka.Stop()
	}
}

// ping sends a keep-alive: a JSON-RPC ping request, in the format mcp-go's
// SSE server used (no space after "data:").
func (c *sseSession) ping() {
	msg, _ := json.Marshal(mcp.JSONRPCRequest{
		JSONRPC: mcp.JSONRPC_VERSION,
		ID:      mcp.NewRequestId(c.pingID.Add(1)),
		Request: mcp.Request{Method: string(mcp.MethodPing)},
	})
	if c.send(pingPrefix, msg, eventEnd) != nil {
		return
	}
	if ka := c.kaA.Load(); ka != nil {
		ka.Reset(c.t.keepAlive)
		if c.stopped.Load() {
			ka.Stop() // let the session go now, not at the next tick
		}
	}
}

// forward writes the notifications mcp-go queues for the session, until
// it has taken as many as were announced or the session ends. One runs at a
// time: the next starts only once this one has taken its last, so the
// order is the queue's. Before the stream is set up, the first write waits
// for it (c.mu).
func (c *sseSession) forward() {
	ch := c.notifications()
	for {
		select {
		case n := <-ch:
			if data, err := json.Marshal(n); err == nil {
				_ = c.sendMessage(data)
			}
			if c.pending.Add(-1) == 0 {
				return
			}
		case <-c.done:
			return
		}
	}
}

// readUntilClosed reads the hijacked connection until the client closes it
// or stop unblocks the read, then ends the body as net/http would (the last
// chunk), closes the connection and unregisters the session. A client sends
// nothing on a stream; whatever it sends is dropped.
func (c *sseSession) readUntilClosed() {
	var b [16]byte
	for {
		if _, err := c.conn.Read(b[:]); err != nil {
			break
		}
	}
	c.stop()
	c.mu.Lock()
	c.closed = true
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.t.writeBound))
	_, _ = c.conn.Write([]byte("0\r\n\r\n"))
	_ = c.conn.Close()
	c.mu.Unlock()
	c.finish()
}

// vectored returns the connection under conn that writes a net.Buffers
// in one system call (writev): conn itself, or the TCP connection the
// listener's countedConn wraps (net.Buffers cannot see through a wrapper,
// and would write each piece as a packet of its own). It returns nil for
// other connections (TLS).
func vectored(conn net.Conn) net.Conn {
	if cc, ok := conn.(*countedConn); ok {
		conn = cc.Conn
	}
	switch conn.(type) {
	case *net.TCPConn, *net.UnixConn:
		return conn
	}
	return nil
}

// unblock fails the read and any write in progress on conn at once.
func unblock(conn net.Conn) {
	now := time.Now()
	_ = conn.SetWriteDeadline(now)
	_ = conn.SetReadDeadline(now)
}

// sendMessage writes one JSON-RPC message, the concatenation of data, as a
// message event. The pieces are written as they are, not copied into one
// (a tools/list answer is 14 KB, most of it remembered: toolsanswer.go).
func (c *sseSession) sendMessage(data ...[]byte) error {
	ev := make([][]byte, 0, len(data)+2)
	ev = append(append(append(ev, messagePrefix), data...), eventEnd)
	return c.send(ev...)
}

var (
	messagePrefix = []byte("event: message\ndata: ")
	pingPrefix    = []byte("event: message\ndata:") // no space, as mcp-go's pings
	eventEnd      = []byte("\n\n")
	chunkEnd      = []byte("\r\n")
)

// errStreamClosed is what a write to an ended stream returns.
var errStreamClosed = errors.New("the session's SSE stream is closed")

// send writes one event, the concatenation of ev, within the write bound;
// a failed write ends the session.
func (c *sseSession) send(ev ...[]byte) error {
	c.mu.Lock()
	err := c.writeLocked(ev...)
	c.mu.Unlock()
	if err != nil {
		c.stop()
	}
	return err
}

// writeLocked writes the concatenation of ev to the stream, as one chunk.
// Callers hold c.mu.
func (c *sseSession) writeLocked(ev ...[]byte) error {
	if c.closed || c.stopped.Load() {
		return errStreamClosed
	}
	deadline := time.Now().Add(c.t.writeBound)
	if c.conn != nil {
		_ = c.conn.SetWriteDeadline(deadline)
		size := 0
		for _, p := range ev {
			size += len(p)
		}
		hdr := append(strconv.AppendInt(c.chunkHdr[:0], int64(size), 16), "\r\n"...)
		if c.vec != nil {
			bufs := make(net.Buffers, 0, len(ev)+2)
			bufs = append(append(append(bufs, hdr), ev...), chunkEnd)
			_, err := bufs.WriteTo(c.vec) // one writev; consumes bufs, not the bytes of ev
			return err
		}
		// One write, so one TLS record: net.Buffers would write (and
		// send) each piece on its own.
		buf := make([]byte, 0, len(hdr)+size+len(chunkEnd))
		buf = append(buf, hdr...)
		for _, p := range ev {
			buf = append(buf, p...)
		}
		_, err := c.conn.Write(append(buf, chunkEnd...))
		return err
	}
	_ = c.rc.SetWriteDeadline(deadline)
	for _, p := range ev {
		if _, err := c.w.Write(p); err != nil {
			return err
		}
	}
	return c.rc.Flush()
}

// stop ends the stream. It never blocks, not even behind a stalled write, so
// the session manager may call it under its own lock. The goroutine that owns
// the stream (the reader, or the handler) then unregisters the session.
func (c *sseSession) stop() {
	if !c.stopped.CompareAndSwap(false, true) {
		return
	}
	close(c.done)
	if ka := c.kaA.Load(); ka != nil {
		ka.Stop()
	}
	// The reader then ends the body and closes the connection.
	if conn := c.connA.Load(); conn != nil {
		unblock(*conn)
	}
}

// stopWithRetry ends the stream after a retry field, so that its client
// reconnects after shutdownRetry (to a restarted or another instance).
func (c *sseSession) stopWithRetry() {
	c.mu.Lock()
	if c.conn != nil {
		_ = c.writeLocked(fmt.Appendf(nil, "retry: %d\n\n", shutdownRetry.Milliseconds()))
	}
	c.mu.Unlock()
	c.stop()
}

// finish unregisters the stopped session: the hooks close it in the
// manager, and the drain stops waiting for its answers.
func (c *sseSession) finish() {
	c.t.forget(c)
	c.t.mcp.UnregisterSession(c.ctx, c.id)
	if d := c.t.drain.Load(); d != nil {
		d.streamClosed(c.id)
	}
	if c.slot != nil {
		c.slot()
	}
}

func (t *sseTransport) forget(c *sseSession) {
	t.mu.Lock()
	if t.sessions[c.id] == c {
		delete(t.sessions, c.id)
	}
	t.mu.Unlock()
}

func (t *sseTransport) session(id string) *sseSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessions[id]
}

// count returns the number of open sessions, for tests.
func (t *sseTransport) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// CloseSessions ends every stream, each with a retry field, writing them
// side by side; it returns once each was written or its bound passed.
func (t *sseTransport) CloseSessions() {
	t.mu.Lock()
	all := make([]*sseSession, 0, len(t.sessions))
	for _, c := range t.sessions {
		all = append(all, c)
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(c.stopWithRetry)
	}
	wg.Wait()
}

// ServeMessage answers POST /message?sessionId=: it accepts one JSON-RPC
// message (202) and writes the answer, if any, on the session's stream.
func (t *sseTransport) ServeMessage(w http.ResponseWriter, r *http.Request) {
	id := sessionIDParam(r)
	if id == "" {
		writeRPCError(w, mcp.INVALID_PARAMS, "Missing sessionId")
		return
	}
	c := t.session(id)
	if c == nil {
		writeRPCError(w, mcp.INVALID_PARAMS, "Invalid session ID")
		return
	}
	var raw json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
		writeRPCError(w, mcp.PARSE_ERROR, "Parse error")
		return
	}
	// The message is answered on the stream after the POST's 202; a
	// shutdown waits for that answer (counted before the POST ends).
	ctx := t.mcp.WithContext(context.WithoutCancel(r.Context()), c)
	if d := t.drain.Load(); d != nil {
		d.expect(id, 1)
	}
	if !isQuick(raw) {
		// A tool call may take long: it outlives the POST.
		w.WriteHeader(http.StatusAccepted)
		go c.handle(ctx, raw)
		return
	}
	// The 202 goes out whole first (its length said, so nothing follows
	// it), then this goroutine, whose stack has grown already, answers: no
	// goroutine to start, grow and hand to another thread.
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	_ = http.NewResponseController(w).Flush()
	c.handle(ctx, raw)
}

// isQuick reports whether raw is one of quickMethods as mcp-go will read
// it: rpcMethod reads the first "method" only, while encoding/json (mcp-go's
// HandleMessage) takes the last one and matches the name without regard to
// case, so {"method":"ping","Method":"tools/call"} would otherwise run a
// tool call on the POST's goroutine, holding the connection for the call.
func isQuick(raw []byte) bool {
	m := rpcMethod(raw)
	if !quickMethods[m] {
		return false
	}
	var base struct {
		Method string `json:"method"`
	}
	return json.Unmarshal(raw, &base) == nil && base.Method == m
}

// quickMethods are the messages whose POST /message handles them itself,
// once its 202 is sent: the setup of a session and the methods mcp-go
// answers from memory. Anything else (tools/call, a method named after its
// params, a batch) is handled on a goroutine of its own.
var quickMethods = map[string]bool{
	string(mcp.MethodInitialize):             true,
	"notifications/initialized":              true,
	string(mcp.MethodPing):                   true,
	string(mcp.MethodToolsList):              true,
	string(mcp.MethodSetLogLevel):            true,
	"notifications/cancelled":                true,
	"notifications/roots/list_changed":       true,
	string(mcp.MethodResourcesList):          true,
	string(mcp.MethodResourcesTemplatesList): true,
	string(mcp.MethodPromptsList):            true,
}

// handle dispatches one message and writes its answer, then tells the
// drain it is done.
func (c *sseSession) handle(ctx context.Context, raw json.RawMessage) {
	if d := c.t.drain.Load(); d != nil {
		defer d.expect(c.id, -1)
	}
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		log.Printf("panic recovered in SSE message handler for session %s: %v", c.id, v)
		var req struct {
			ID any `json:"id"`
		}
		if json.Unmarshal(raw, &req) != nil || req.ID == nil {
			return
		}
		c.answer(mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(req.ID),
			Error: mcp.NewJSONRPCErrorDetails(mcp.INTERNAL_ERROR, fmt.Sprintf("internal panic: %v", v), nil)})
	}()
	if resp := c.t.mcp.HandleMessage(ctx, raw); resp != nil {
		c.answer(resp)
	}
}

// answer writes the answer to a request.
func (c *sseSession) answer(resp any) {
	data, err := c.t.lists.encodeParts(resp)
	if err != nil {
		log.Printf("failed to marshal response: %v", err)
		data = [][]byte{[]byte(`{"error": "internal error","jsonrpc": "2.0", "id": null}`)}
	}
	_ = c.sendMessage(data...)
}

// writeRPCError answers a POST /message that carries no message the
// transport can take, as mcp-go's SSE server did.
func writeRPCError(w http.ResponseWriter, code int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(nil),
		Error: mcp.NewJSONRPCErrorDetails(code, message, nil)})
}

// sessionIDParam returns r's sessionId query parameter, as
// r.URL.Query().Get("sessionId") does (its first value), without building
// the map of every parameter: POST /message reads it three times.
func sessionIDParam(r *http.Request) string {
	return queryGet(r.URL.RawQuery, "sessionId")
}

// queryGet returns the first value of key in the raw query q, as
// url.ParseQuery then Values.Get would: pairs are split on '&', a pair
// with a ';' or a key or value that does not unescape is skipped, and a
// query of more than maxQueryParams pairs has none.
func queryGet(q, key string) string {
	if strings.Count(q, "&") >= maxQueryParams {
		return ""
	}
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k != key {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			if u, err := url.QueryUnescape(k); err != nil || u != key {
				continue
			}
		}
		if !strings.ContainsAny(v, "%+") {
			return v
		}
		if u, err := url.QueryUnescape(v); err == nil {
			return u
		}
	}
	return ""
}

// maxQueryParams is net/url's default bound on a query's parameters
// (GODEBUG urlmaxqueryparams).
const maxQueryParams = 10000
