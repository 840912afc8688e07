package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// buildMCP creates the MCP server with the tools and both transports.
func (s *Server) buildMCP() {
	list := tools.All(s.cfg.Tools)
	access := tools.NewAccess(list, s.cfg.Tools.Toolsets...)
	hooks := &server.Hooks{}
	mgr := s.cfg.Sessions
	mgr.SetAccess(access) // one rule for tools/list and tools/call
	hooks.AddOnRegisterSession(func(ctx context.Context, cs server.ClientSession) {
		if p, ok := auth.FromContext(ctx); ok && cs.SessionID() != "" {
			transport, end := session.TransportStreamable, func() { s.endStreamable(cs.SessionID()) }
			if sc, sse := cs.(*sseSession); sse {
				transport, end = session.TransportSSE, sc.stop
			}
			mgr.OpenVia(cs.SessionID(), p.UserID, transport, end)
			s.cfg.Metrics.connected()
		}
		if _, sse := cs.(*sseSession); !sse {
			s.post.track(cs)
		}
	})
	hooks.AddOnUnregisterSession(func(_ context.Context, cs server.ClientSession) {
		s.post.forget(cs.SessionID())
		mgr.Close(cs.SessionID())
		s.cl.dropSession(cs.SessionID())
	})
	// Every MCP request of a client keeps its session from idling out; the
	// keep-alive pings the proxy sends, and their answers, do not.
	hooks.AddBeforeAny(func(ctx context.Context, _ any, _ mcp.MCPMethod, _ any) {
		if cs := server.ClientSessionFromContext(ctx); cs != nil && cs.SessionID() != "" {
			mgr.Touch(cs.SessionID())
		}
	})
	// tools/list hides the tools the caller's token lacks the permission
	// for; a call of one is refused by the session middleware, which names
	// the permission.
	hooks.AddAfterListTools(access.HideForbidden())
	s.mcp = server.NewMCPServer("mcp-browser-proxy", s.cfg.Version,
		server.WithToolCapabilities(false),
		server.WithRecovery(),
		server.WithHooks(hooks),
		server.WithToolHandlerMiddleware(mgr.Middleware),
		server.WithToolHandlerMiddleware(s.recoverTools), // innermost: a panicking tool fails only its call (reliability.go)
		server.WithInstructions(tools.Instructions(s.cfg.Tools)),
	)
	tools.Register(s.mcp, list)

	// guard (security.go) checks Host, with --allowed-hosts.
	s.sse = newSSETransport(s.mcp, s.cfg.KeepAlive, func(r *http.Request) (string, error) {
		p, _ := auth.FromContext(r.Context())
		id := mgr.NewID(p.UserID)
		s.cl.holdSession(r.Context(), id)
		return id, nil
	})
	events := newEventStore(eventsPerStream, eventBytes)
	idleTTL := 2 * mgr.IdleTimeout()
	rebind := len(s.cfg.Security.AllowedHosts) == 0
	s.stream = server.NewStreamableHTTPServer(s.mcp,
		server.WithSessionIdManagerResolver(idResolver{mgr: mgr, cl: s.cl}),
		// The manager expires sessions (idle or too old) and then ends their
		// transport state (endStreamable); the transport's own sweep is a
		// backstop for state the manager never saw.
		server.WithSessionIdleTTL(idleTTL),
		server.WithHeartbeatInterval(s.cfg.KeepAlive),
		server.WithEventStore(events),
		server.WithDisableLocalhostProtection(!rebind),
	)
	// POST /mcp: the common request is answered by streampost.go, the rest
	// by s.stream.
	// The check is the one mcp-go makes of a request's session ID.
	ids := idManager{mgr: mgr, cl: s.cl}
	live := func(id string) bool { terminated, err := ids.Validate(id); return err == nil && !terminated }
	s.post = newStreamPost(s.mcp, s.stream, events, live, rebind, idleTTL)
}

// idResolver hands the streamable transport session IDs that the session
// manager reserves for the calling user.
type idResolver struct {
	mgr *session.Manager
	cl  *cluster // shared mode: a handed-out ID gets its lease at once
}

func (r idResolver) ResolveSessionIdManager(req *http.Request) server.SessionIdManager {
	owner := ""
	if req != nil {
		if p, ok := auth.FromContext(req.Context()); ok {
			owner = p.UserID
		}
	}
	return idManager{mgr: r.mgr, cl: r.cl, owner: owner}
}

type idManager struct {
	mgr   *session.Manager
	cl    *cluster
	owner string
}

func (m idManager) Generate() string {
	id := m.mgr.NewID(m.owner)
	m.cl.holdSession(context.Background(), id)
	return id
}

func (m idManager) Validate(id string) (bool, error) {
	if _, ok := m.mgr.Owner(id); !ok {
		return false, session.ErrNotFound
	}
	return false, nil
}

func (m idManager) Terminate(id string) (bool, error) {
	m.mgr.Close(id)
	m.cl.dropSession(id)
	return false, nil
}

// endStreamable terminates streamable session id as a DELETE from its
// client would: it ends the session's open streams, stops their goroutines
// and purges the session's stored events. The proxy's own request goes to
// the transport directly, past authentication and the HTTP log.
func (s *Server) endStreamable(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{}
	h.Set(server.HeaderKeySessionID, id)
	s.stream.Handle(&discardResponse{header: http.Header{}}, &server.HTTPRequest{Method: http.MethodDelete, Header: h, Context: ctx})
}

// discardResponse is the response writer of endStreamable: the answer goes
// nowhere.
type discardResponse struct{ header http.Header }

func (d *discardResponse) Header() http.Header         { return d.header }
func (d *discardResponse) WriteHeader(int)             {}
func (d *discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardResponse) Flush()                      {}
func (d *discardResponse) CanStream() bool             { return false }

// Bounds of the streamable transport's event store: the events a client that
// reconnects with Last-Event-ID can get back.
const (
	eventsPerStream = 256     // last events kept per stream
	eventBytes      = 8 << 20 // message bytes kept across all streams
)

// eventStore is a bounded in-memory server.EventStore, so that a client that
// reconnects with Last-Event-ID gets the messages it missed on that stream.
// Each stream keeps its last perStream events, and all streams together at
// most maxBytes of messages; the oldest events go first. A Last-Event-ID
// that is no longer stored is unknown (the client gets 400 and opens a new
// stream), so a replay never has a silent gap. It is safe for concurrent use.
type eventStore struct {
	perStream int
	maxBytes  int

	mu       sync.Mutex
	seq      uint64
	bytes    int // message bytes stored
	count    int // events stored
	sessions map[string]*eventSession
	fifo     []eventRef // stored events, oldest first, with evicted ones not yet dropped
}

// eventSession is the stored events of one MCP session.
type eventSession struct {
	streams map[string][]storedEvent // by stream ID, oldest first
	index   map[uint64]string        // event sequence -> stream ID
}

type storedEvent struct {
	seq uint64
	msg json.RawMessage
}

type eventRef struct {
	session, stream string
	seq             uint64
}

var _ server.EventStore = (*eventStore)(nil)

// newEventStore returns an empty store with the given bounds.
func newEventStore(perStream, maxBytes int) *eventStore {
	return &eventStore{perStream: max(perStream, 1), maxBytes: max(maxBytes, 1), sessions: map[string]*eventSession{}}
}

// StoreEvent implements server.EventStore. Event IDs are decimal sequence
// numbers, unique across the store. A message larger than the whole store is
// refused (the transport then sends it without an ID).
func (e *eventStore) StoreEvent(_ context.Context, sessionID, streamID string, message json.RawMessage) (string, error) {
	if len(message) > e.maxBytes {
		return "", fmt.Errorf("event of %d bytes exceeds the event store's %d bytes", len(message), e.maxBytes)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	sess := e.sessions[sessionID]
	if sess == nil {
		sess = &eventSession{streams: map[string][]storedEvent{}, index: map[uint64]string{}}
		e.sessions[sessionID] = sess
	}
	e.seq++
	ev := storedEvent{seq: e.seq, msg: append(json.RawMessage(nil), message...)}
	sess.streams[streamID] = append(sess.streams[streamID], ev)
	sess.index[ev.seq] = streamID
	e.fifo = append(e.fifo, eventRef{session: sessionID, stream: streamID, seq: ev.seq})
	e.bytes += len(ev.msg)
	e.count++
	if len(sess.streams[streamID]) > e.perStream {
		e.evictOldest(sessionID, streamID)
	}
	for e.bytes > e.maxBytes {
		e.evictGlobalOldest()
	}
	if len(e.fifo) > 2*e.count+1024 {
		e.compact()
	}
	return strconv.FormatUint(ev.seq, 10), nil
}

// evictOldest drops the oldest event of a stream. Callers hold e.mu.
func (e *eventStore) evictOldest(sessionID, streamID string) {
	sess := e.sessions[sessionID]
	evs := sess.streams[streamID]
	e.bytes -= len(evs[0].msg)
	e.count--
	delete(sess.index, evs[0].seq)
	evs[0] = storedEvent{} // let the message go
	if evs = evs[1:]; len(evs) == 0 {
		delete(sess.streams, streamID)
		if len(sess.streams) == 0 {
			delete(e.sessions, sessionID)
		}
	} else {
		sess.streams[streamID] = evs
	}
}

// evictGlobalOldest drops the oldest event still stored. Callers hold e.mu
// and know one is stored.
func (e *eventStore) evictGlobalOldest() {
	for len(e.fifo) > 0 {
		ref := e.fifo[0]
		e.fifo[0] = eventRef{}
		e.fifo = e.fifo[1:]
		if e.stored(ref) {
			// Streams are in insertion order, so the store's oldest event is
			// the oldest of its stream.
			e.evictOldest(ref.session, ref.stream)
			return
		}
	}
}

// stored reports whether ref is still in the store. Callers hold e.mu.
func (e *eventStore) stored(ref eventRef) bool {
	sess := e.sessions[ref.session]
	return sess != nil && sess.index[ref.seq] == ref.stream
}

// compact drops the references of evicted and purged events. Callers hold e.mu.
func (e *eventStore) compact() {
	live := make([]eventRef, 0, e.count)
	for _, ref := range e.fifo {
		if e.stored(ref) {
			live = append(live, ref)
		}
	}
	e.fifo = live
}

// ReplayEventsAfter implements server.EventStore: it sends the events stored
// after lastEventID on its stream, in order, and returns the stream's ID.
func (e *eventStore) ReplayEventsAfter(_ context.Context, sessionID, lastEventID string, send func(eventID string, message json.RawMessage) error) (string, error) {
	seq, err := strconv.ParseUint(lastEventID, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: %q is not an event ID of this proxy", server.ErrUnknownEventID, lastEventID)
	}
	e.mu.Lock()
	sess := e.sessions[sessionID]
	var streamID string
	var tail []storedEvent
	if sess != nil {
		streamID = sess.index[seq]
	}
	if streamID == "" {
		e.mu.Unlock()
		return "", fmt.Errorf("%w: event %d is not stored (any more) for this session", server.ErrUnknownEventID, seq)
	}
	evs := sess.streams[streamID]
	i := sort.Search(len(evs), func(i int) bool { return evs[i].seq > seq })
	tail = append(tail, evs[i:]...)
	e.mu.Unlock()
	for _, ev := range tail {
		if err := send(strconv.FormatUint(ev.seq, 10), ev.msg); err != nil {
			return "", err
		}
	}
	return streamID, nil
}

// PurgeSession implements server.EventStore: it forgets every event of
// sessionID.
func (e *eventStore) PurgeSession(_ context.Context, sessionID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	sess := e.sessions[sessionID]
	if sess == nil {
		return nil
	}
	for _, evs := range sess.streams {
		for _, ev := range evs {
			e.bytes -= len(ev.msg)
			e.count--
		}
	}
	delete(e.sessions, sessionID)
	return nil
}

// usage returns the number of events and message bytes stored, for tests.
func (e *eventStore) usage() (events, bytes int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.count, e.bytes
}
