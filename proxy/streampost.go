package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// The common Streamable HTTP request, POST /mcp with the Mcp-Session-Id of
// a live session and one JSON-RPC request in the body, is answered here
// instead of by mcp-go's StreamableHTTPServer, which decoded each body three
// times before dispatching it and started a goroutine, a channel and a few
// contexts per request (BENCHMARKS.md, issue 12). mcp-go's MCPServer keeps
// the schema and the dispatch: the body is decoded once here, to decide,
// and handed to HandleMessage with mcp-go's own session of that ID in the
// context, as the StreamableHTTPServer does; the answer is encoded once and
// written in one piece. Everything else goes to the StreamableHTTPServer
// unchanged: initialize, notifications, client responses, batches, GET and
// DELETE, the stateless 2026-07-28 requests, a session whose answers mcp-go
// sends as event streams, and anything this file does not recognise.
//
// What a client sees is what mcp-go answers, byte for byte: a tool that
// sends a notification during its call gets its answer upgraded to an event
// stream, the notifications and the answer recorded in the event store with
// their IDs as mcp-go records them; the session's later requests then go to
// mcp-go, whose answers for it are event streams from then on. Two things
// the StreamableHTTPServer does cannot be reached from outside its package,
// and are left out here because the proxy uses neither: request headers in
// the handler's request (req.Header; no tool or hook reads them) and
// server-to-client requests (elicitation) written on the POST's own stream
// rather than the GET stream (no tool elicits). Nor can a client resuming
// with Last-Event-ID attach to a call still running here: it is replayed
// what is stored, as for a finished stream, and resumes again for the rest.

// streamNotifyQueue is the size of a call's notification queue, as mcp-go's
// per-session one; what does not fit is dropped and reported by mcp-go.
const streamNotifyQueue = 100

// streamPost answers the common POST /mcp itself and hands everything else
// to mcp-go's StreamableHTTPServer. It is safe for concurrent use.
type streamPost struct {
	mcp      *server.MCPServer
	next     *server.StreamableHTTPServer
	events   *eventStore                 // the StreamableHTTPServer's, where event-stream answers are recorded
	live     func(sessionID string) bool // the session ID manager's Validate: the ID is of a live session
	versions []string                    // protocol versions the transport serves, as mcp-go puts them in the context
	rebind   bool                        // mcp-go's DNS rebinding protection is on
	// touchEvery is how often a session's request is left to mcp-go, so that
	// its idle sweep (WithSessionIdleTTL) sees the session in use; 0: never.
	touchEvery time.Duration

	taken atomic.Int64 // requests answered here, for tests
	off   atomic.Bool  // tests: every request goes to mcp-go, for its answer

	mu       sync.RWMutex
	sessions map[string]*streamState // mcp-go's sessions of the streamable transport, by ID
}

// fullStreamSession is what mcp-go's streamable session implements; the
// session of a call here must answer mcp-go's interface checks as it does.
type fullStreamSession interface {
	server.ClientSession
	server.SessionWithTools
	server.SessionWithResources
	server.SessionWithResourceTemplates
	server.SessionWithLogging
	server.SessionWithClientInfo
	server.SessionWithStreamableHTTPConfig
	server.SessionWithSubscriptionFilter
	server.SessionWithSampling
	server.SessionWithElicitation
	server.SessionWithRoots
}

// streamState is what streamPost knows of one of mcp-go's sessions.
type streamState struct {
	cs fullStreamSession
	// touched is when a request of the session was last left to mcp-go
	// (unix nanoseconds): its idle sweep counts from there.
	touched atomic.Int64
	// eventStream: a notification was sent to the session, so mcp-go answers
	// its requests as event streams from now on; they all go to mcp-go.
	eventStream atomic.Bool
}

func newStreamPost(m *server.MCPServer, next *server.StreamableHTTPServer, events *eventStore, live func(string) bool, rebind bool, idleTTL time.Duration) *streamPost {
	return &streamPost{mcp: m, next: next, events: events, live: live, rebind: rebind,
		versions: server.FilterSupportedVersions(next), touchEvery: idleTTL / 4, sessions: map[string]*streamState{}}
}

// track learns of a session mcp-go registered (the OnRegisterSession hook).
func (t *streamPost) track(cs server.ClientSession) {
	full, ok := cs.(fullStreamSession)
	if !ok || cs.SessionID() == "" {
		return
	}
	st := &streamState{cs: full}
	st.touched.Store(time.Now().UnixNano())
	t.mu.Lock()
	t.sessions[cs.SessionID()] = st
	t.mu.Unlock()
}

// forget drops a session mcp-go unregistered.
func (t *streamPost) forget(id string) {
	t.mu.Lock()
	delete(t.sessions, id)
	t.mu.Unlock()
}

func (t *streamPost) state(id string) *streamState {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.sessions[id]
}

// ServeHTTP answers POST /mcp.
func (t *streamPost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sid := r.Header.Get(server.HeaderKeySessionID)
	st := t.eligible(w, r, sid)
	if st == nil {
		t.fallBack(w, r, sid, nil)
		return
	}
	body, err := readBody(r)
	if err != nil {
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
		t.fallBack(w, r, sid, st)
		return
	}
	if !plainRequest(body) {
		r.Body = io.NopCloser(bytes.NewReader(body))
		t.fallBack(w, r, sid, st)
		return
	}
	t.taken.Add(1)
	t.answer(w, r, st, sid, body)
}

// eligible returns the session of a request that may be answered here, or
// nil when mcp-go must answer it: the checks mcp-go makes before it reads
// the body (DNS rebinding, content type, protocol version header, session
// ID) all pass, the answer may be JSON, and the session answers in JSON.
func (t *streamPost) eligible(w http.ResponseWriter, r *http.Request, sid string) *streamState {
	if r.Method != http.MethodPost || sid == "" || t.off.Load() {
		return nil
	}
	if _, ok := w.(http.Flusher); !ok {
		return nil // mcp-go drops notifications where it cannot stream
	}
	if t.rebind && wouldRebind(r) {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil
	}
	if v := r.Header.Get(mcp.HeaderProtocolVersion); v != "" && (!mcp.IsValidProtocolVersion(v) || mcp.IsModernProtocol(v)) {
		return nil
	}
	if !acceptsJSON(r.Header.Values("Accept")) {
		return nil
	}
	st := t.state(sid)
	if st == nil || st.eventStream.Load() || !t.live(sid) {
		return nil
	}
	if t.touchEvery > 0 && time.Now().UnixNano()-st.touched.Load() >= int64(t.touchEvery) {
		return nil
	}
	return st
}

// fallBack hands the request to mcp-go's StreamableHTTPServer.
func (t *streamPost) fallBack(w http.ResponseWriter, r *http.Request, sid string, st *streamState) {
	if st == nil && sid != "" {
		st = t.state(sid)
	}
	if st != nil {
		st.touched.Store(time.Now().UnixNano())
	}
	t.next.ServeHTTP(w, r)
}

// readBody reads the whole body, as mcp-go does. A body of announced size
// is read into a buffer of that size (bytes.Buffer and io.ReadAll would
// reserve 512 bytes more): net/http ends such a body there, and the body
// limit middleware refused a larger one already.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if n := r.ContentLength; n > 0 && n <= 1<<20 {
		buf := make([]byte, n)
		k, err := io.ReadFull(r.Body, buf)
		return buf[:k], err
	}
	return io.ReadAll(r.Body)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// plainRequest reports whether body is one JSON-RPC request of the session
// protocol that mcp-go would dispatch straight away: an object with a
// method other than initialize and an ID, no result or error, and no _meta
// naming a stateless protocol version. It reads the body's tokens once,
// without decoding it into values: only _meta, when there is one, is
// decoded. Whatever it cannot tell the way mcp-go's encoding/json would
// (a key that only matches a member's name in another case, a duplicate
// key, invalid UTF-8, anything after the object) goes to mcp-go: false is
// always safe.
func plainRequest(body []byte) bool {
	h := headDecoderOf(body)
	defer h.put()
	d := h.d
	if tok, err := d.ReadToken(); err != nil || tok.Kind() != '{' {
		return false // a batch, or not JSON-RPC
	}
	var method string
	var hasID bool
	var meta jsontext.Value
	for d.PeekKind() != '}' {
		tok, err := d.ReadToken()
		if err != nil {
			return false
		}
		switch name := tok.String(); name {
		case "method":
			if d.PeekKind() != '"' {
				return false
			}
			v, err := d.ReadToken()
			if err != nil {
				return false
			}
			method = v.String()
		case "id":
			if d.PeekKind() == 'n' {
				return false
			}
			if err := d.SkipValue(); err != nil {
				return false
			}
			hasID = true
		case "params":
			var ok bool
			if meta, ok = paramsMeta(d); !ok {
				return false
			}
		default:
			if foldsTo(name, "method", "id", "params", "result", "error") {
				return false // a response, or a member mcp-go reads in any case
			}
			if err := d.SkipValue(); err != nil {
				return false
			}
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return false
	}
	if _, err := d.ReadToken(); err != io.EOF {
		return false // more after the object
	}
	if method == "" || method == string(mcp.MethodInitialize) || !hasID {
		return false
	}
	if len(meta) > 0 && string(meta) != "null" {
		// mcp-go reads the version from _meta with exact keys; so does this.
		var m map[string]json.RawMessage
		if json.Unmarshal(meta, &m) != nil {
			return false
		}
		if v, ok := m[mcp.MetaKeyProtocolVersion]; ok {
			var version string
			if json.Unmarshal(v, &version) != nil || mcp.IsModernProtocol(version) {
				return false
			}
		}
	}
	return true
}

// headDecoder is plainRequest's decoder, with its own copy of the body:
// the decoder parses a bytes.Buffer in place.
type headDecoder struct {
	buf bytes.Buffer
	d   *jsontext.Decoder
}

// headDecoders keeps plainRequest's decoders between requests.
var headDecoders = sync.Pool{New: func() any {
	h := &headDecoder{}
	h.d = jsontext.NewDecoder(&h.buf)
	return h
}}

// headDecoderOf takes a decoder from the pool, set to read b; put it back
// when done.
func headDecoderOf(b []byte) *headDecoder {
	h := headDecoders.Get().(*headDecoder)
	h.buf.Write(b)
	h.d.Reset(&h.buf)
	return h
}

// put returns h to the pool, unless a large body grew its buffer.
func (h *headDecoder) put() {
	h.buf.Reset()
	if h.buf.Cap() <= 64<<10 {
		headDecoders.Put(h)
	}
}

// paramsMeta reads the params member's value from d: null, or an object
// whose _meta it returns (nil when it has none). ok is false when params
// is neither, or when a key only matches _meta in another case.
func paramsMeta(d *jsontext.Decoder) (meta jsontext.Value, ok bool) {
	switch d.PeekKind() {
	case 'n':
		return nil, d.SkipValue() == nil
	case '{':
	default:
		return nil, false
	}
	if _, err := d.ReadToken(); err != nil {
		return nil, false
	}
	for d.PeekKind() != '}' {
		tok, err := d.ReadToken()
		if err != nil {
			return nil, false
		}
		switch name := tok.String(); {
		case name == "_meta":
			v, err := d.ReadValue()
			if err != nil {
				return nil, false
			}
			meta = bytes.Clone(v)
		case foldsTo(name, "_meta"):
			return nil, false
		default:
			if err := d.SkipValue(); err != nil {
				return nil, false
			}
		}
	}
	_, err := d.ReadToken()
	return meta, err == nil
}

// foldsTo reports whether name matches one of names as encoding/json
// matches a key to a struct member's name (case folded).
func foldsTo(name string, names ...string) bool {
	for _, n := range names {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// acceptsJSON reports whether the Accept header values allow an
// application/json answer; no Accept header allows anything.
func acceptsJSON(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "application/json", "application/*", "*/*":
			default:
				continue
			}
			if !zeroQ(params) {
				return true
			}
		}
	}
	return false
}

// zeroQ reports whether media-range parameters give q=0 (not acceptable).
func zeroQ(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q == 0
		}
	}
	return false
}

// wouldRebind reports whether mcp-go's DNS rebinding protection refuses r:
// it came over a loopback connection with a Host that is not loopback.
func wouldRebind(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || local == nil {
		return false
	}
	return mcpLoopbackHost(local.String()) && !mcpLoopbackHost(r.Host)
}

// mcpLoopbackHost is mcp-go's test of a host or host:port (rejectDNSRebinding).
func mcpLoopbackHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// answer dispatches the request to mcp-go's MCPServer with the session in
// the context, and writes the answer: JSON, or an event stream once the
// call sent a notification.
func (t *streamPost) answer(w http.ResponseWriter, r *http.Request, st *streamState, sid string, body []byte) {
	call := &streamCall{t: t, st: st, w: w, sid: sid}
	cs := &callSession{fullStreamSession: st.cs, call: call}
	ctx := t.mcp.WithContext(r.Context(), cs)
	ctx = server.WithSupportedProtocolVersions(ctx, t.versions)
	call.ctx = ctx
	resp := t.mcp.HandleMessage(ctx, body)
	call.finish()
	if resp == nil {
		call.wmu.Lock()
		if !call.started {
			w.WriteHeader(http.StatusAccepted)
		}
		call.wmu.Unlock()
		return
	}
	call.wmu.Lock()
	stream := call.upgrade.Load() || call.streamID != ""
	call.wmu.Unlock()
	if ctx.Err() != nil {
		// The client is gone; an event stream's answer is recorded all the
		// same, for a client that resumes.
		if stream {
			call.deliver(resp)
		}
		return
	}
	if stream {
		call.deliver(resp)
		return
	}
	data, err := json.Marshal(resp)
	if err != nil {
		log.Printf("mcp: failed to encode the answer: %v", err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(data, '\n')) // as json.Encoder writes it
}

// streamCall is one request answered by streamPost: the notifications its
// handler sends, and the event stream they turn its answer into.
type streamCall struct {
	t   *streamPost
	st  *streamState
	w   http.ResponseWriter
	sid string
	ctx context.Context

	upgrade atomic.Bool // a notification was sent: the answer is an event stream

	mu       sync.Mutex
	notify   chan mcp.JSONRPCNotification // made by the first notification
	done     chan struct{}                // closed by finish: the forwarder stops
	exited   chan struct{}                // closed by the forwarder
	finished bool

	wmu      sync.Mutex // serialises the answer's writes; guards what follows
	started  bool       // the event stream's head is written
	streamID string     // the event stream's ID in the event store, "" before the first event
	postW    bool       // events are still written to the POST's answer
}

// channel returns where the call's notifications go: its own queue while
// the handler runs (the first one starts the forwarder), and mcp-go's
// session queue after it returned, as with mcp-go's transport.
func (c *streamCall) channel() chan<- mcp.JSONRPCNotification {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished {
		return c.st.cs.NotificationChannel()
	}
	if c.notify == nil {
		c.notify = make(chan mcp.JSONRPCNotification, streamNotifyQueue)
		c.done, c.exited = make(chan struct{}), make(chan struct{})
		go c.forward()
	}
	return c.notify
}

// forward writes the notifications as they come, until the call ends or
// its client goes.
func (c *streamCall) forward() {
	defer close(c.exited)
	for {
		select {
		case n := <-c.notify:
			c.deliver(n)
		case <-c.done:
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// finish stops the forwarder and writes what is still queued, so that every
// notification is ahead of the answer.
func (c *streamCall) finish() {
	c.mu.Lock()
	c.finished = true
	q := c.notify
	c.mu.Unlock()
	if q == nil {
		return
	}
	close(c.done)
	<-c.exited
	for {
		select {
		case n := <-q:
			c.deliver(n)
		default:
			return
		}
	}
}

// deliver records msg in the event store on the call's stream and writes it
// there while the client is connected, as mcp-go's resumable streams do:
// the first event turns the answer into an event stream.
func (c *streamCall) deliver(msg any) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.streamID == "" {
		c.streamID = rand.Text()
		c.postW = true
	}
	if c.ctx.Err() != nil {
		c.postW = false
	} else if !c.started {
		h := c.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Connection", "keep-alive")
		h.Set("Cache-Control", "no-cache")
		c.w.WriteHeader(http.StatusOK)
		c.started = true
	}
	data, err := json.Marshal(msg)
	if err != nil {
		log.Printf("mcp: failed to encode an event: %v", err)
		return
	}
	id, err := c.t.events.StoreEvent(context.WithoutCancel(c.ctx), c.sid, c.streamID, data)
	if err != nil {
		log.Printf("mcp: event not stored, sent without an ID: %v", err)
		id = ""
	}
	if !c.postW {
		return
	}
	ev := make([]byte, 0, len(data)+len(id)+32)
	if id != "" {
		ev = append(append(append(ev, "id: "...), id...), '\n')
	}
	ev = append(append(append(ev, "event: message\ndata: "...), data...), "\n\n"...)
	if _, err := c.w.Write(ev); err != nil {
		c.postW = false
		return
	}
	c.w.(http.Flusher).Flush()
}

// callSession is mcp-go's session of the call, whose notifications go to
// the call's answer.
type callSession struct {
	fullStreamSession
	call *streamCall
}

// NotificationChannel implements server.ClientSession.
func (s *callSession) NotificationChannel() chan<- mcp.JSONRPCNotification {
	return s.call.channel()
}

// UpgradeToSSEWhenReceiveNotification implements
// server.SessionWithStreamableHTTPConfig: the call's answer becomes an event
// stream, and so do the session's later answers, which mcp-go gives.
func (s *callSession) UpgradeToSSEWhenReceiveNotification() {
	s.fullStreamSession.UpgradeToSSEWhenReceiveNotification()
	s.call.st.eventStream.Store(true)
	s.call.upgrade.Store(true)
}
