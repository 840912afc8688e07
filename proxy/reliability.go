package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// shutdownRetry is the reconnection delay that an MCP stream ended by
// shutdown asks its client for (the SSE retry field): long enough for a
// restart or for a load balancer to route the client elsewhere.
const shutdownRetry = 5 * time.Second

// streamEndBound bounds how long shutdown waits, after the drain, for the
// MCP streams it ended to finish writing.
const streamEndBound = 5 * time.Second

// drainer tracks what a graceful shutdown waits for: the requests in
// flight (every request but the long-lived MCP streams), and the JSON-RPC
// messages accepted on the legacy SSE transport's POST /message, handled
// (and answered on the session's stream) after the POST has returned 202.
// Once closing, it ends each MCP stream with a retry hint. Serve owns one;
// it wraps the whole handler, outside echo.
type drainer struct {
	mu       sync.Mutex
	inflight int                 // requests being served, MCP streams excluded
	streams  map[string]struct{} // live legacy SSE sessions, by session ID
	pending  map[string]int      // SSE session ID -> messages accepted minus messages handled
	changed  chan struct{}       // made by wait, closed and dropped whenever a count drops
	closing  bool                // the streams that end now are ended by shutdown
}

func newDrainer() *drainer {
	return &drainer{streams: map[string]struct{}{}, pending: map[string]int{}}
}

// wrap returns next with the tracking around it.
func (d *drainer) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/sse" || r.URL.Path == "/mcp") {
			d.serveStream(next, w, r)
			return
		}
		if r.URL.Path == "/api/tunnel" {
			next.ServeHTTP(w, r) // lives as long as the tunnel: Serve closes tunnels itself
			return
		}
		// A POST /message's handler counts the message it accepts for its
		// stream itself (expect), before this count drops.
		d.addInflight(1)
		defer d.addInflight(-1)
		next.ServeHTTP(w, r)
	})
}

// serveStream serves an MCP stream (GET /sse or GET /mcp): when shutdown
// ended the stream while its handler held it, it ends it with a retry field.
// The SSE transport reports its sessions and their answers itself
// (streamOpened, expect, streamClosed), and writes the retry field of a
// stream it took from net/http.
func (d *drainer) serveStream(next http.Handler, w http.ResponseWriter, r *http.Request) {
	sw := &streamWriter{ResponseWriter: w}
	next.ServeHTTP(sw, r)
	d.mu.Lock()
	closing := d.closing
	d.mu.Unlock()
	if closing && sw.eventStream && !sw.hijacked {
		// After the last event: the client reconnects after this delay
		// instead of at once, to a restarted or another instance.
		_, _ = fmt.Fprintf(w, "retry: %d\n\n", shutdownRetry.Milliseconds())
		_ = http.NewResponseController(w).Flush()
	}
}

// streamOpened counts the SSE session id as live: the answers of the
// requests accepted for it are waited for.
func (d *drainer) streamOpened(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.streams[id] = struct{}{}
}

// streamClosed forgets the SSE session id: its answers can be written no
// more.
func (d *drainer) streamClosed(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.streams, id)
	delete(d.pending, id)
	d.signalLocked()
}

func (d *drainer) addInflight(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight += n
	if n < 0 {
		d.signalLocked()
	}
}

// expect adds n to the messages of session being handled: +1 when its
// POST /message accepts one, -1 once it is handled (answered, if it is a
// request).
func (d *drainer) expect(session string, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, live := d.streams[session]; !live {
		return
	}
	d.pending[session] += n
	if n < 0 {
		d.signalLocked()
	}
}

// signalLocked wakes wait. The channel exists only while wait watches, so
// that a request's end costs no allocation outside a shutdown.
func (d *drainer) signalLocked() {
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

// wait blocks until no request is in flight and every request accepted on
// /message has its answer written on its stream, or until ctx ends. It
// returns how many requests and stream answers were still open.
func (d *drainer) wait(ctx context.Context) (requests, answers int) {
	for {
		d.mu.Lock()
		requests, answers = d.inflight, 0
		if requests == 0 {
			// With no POST /message in flight, every accepted request is
			// counted, so a positive count is an answer still owed.
			for _, n := range d.pending {
				answers += max(n, 0)
			}
		}
		if d.changed == nil {
			d.changed = make(chan struct{})
		}
		ch := d.changed
		d.mu.Unlock()
		if requests == 0 && answers == 0 {
			return 0, 0
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return requests, answers
		}
	}
}

// close marks the shutdown: the streams that end from now on get the retry
// hint.
func (d *drainer) close() {
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
}

// streamWriter notes whether an MCP stream's answer started as an event
// stream.
type streamWriter struct {
	http.ResponseWriter
	status      int  // status written, 0 before
	eventStream bool // the answer is a text/event-stream that started
	hijacked    bool // the handler took the connection (the SSE transport)
}

// Hijack lets the handler take the connection, and notes it: what follows
// on it is the handler's.
func (w *streamWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return conn, brw, err
}

func (w *streamWriter) WriteHeader(code int) {
	w.start(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *streamWriter) start(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	w.eventStream = code == http.StatusOK && strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream")
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.start(http.StatusOK)
	return w.ResponseWriter.Write(p)
}

func (w *streamWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recoverTools is the innermost tool middleware: a panic in a tool handler
// is logged with its stack and becomes an error result of that call only;
// the session, its tabs and the other calls go on.
func (s *Server) recoverTools(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			ev := s.log.Error().Str("tool", req.Params.Name).Str("panic", clip(fmt.Sprint(v), 500)).
				Str("stack", string(debug.Stack()))
			if p, ok := auth.FromContext(ctx); ok {
				ev = ev.Str("user", p.UserID)
			}
			if cs := server.ClientSessionFromContext(ctx); cs != nil {
				ev = ev.Str("session", cs.SessionID())
			}
			ev.Msg("tool handler panicked; the call failed, the session goes on")
			res, err = mcp.NewToolResultError(fmt.Sprintf("INTERNAL: %s failed with an internal error (a bug in the proxy, logged with its details); retry, or take a new snapshot if the page may have changed", req.Params.Name)), nil
		}()
		return next(ctx, req)
	}
}

// clip shortens s to at most n bytes for a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
