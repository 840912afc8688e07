package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

// maxFrame bounds one frame read from a tunnel, as the pool bounds one CDP
// message from a browser.
const maxFrame = 256 << 20

// maxHello bounds the agent's hello. It is read before the tunnel counts
// as its user's one tunnel, so many may be pending at once: each must cost
// little, not a CDP frame's worth.
const maxHello = 16 << 10

// agentLogBurst is how many lines about an agent's frames a tunnel logs
// per minute.
const agentLogBurst = 10

// writeTimeout bounds one frame write to a tunnel.
const writeTimeout = 30 * time.Second

// helloTimeout bounds the wait for the agent's hello.
const helloTimeout = 10 * time.Second

// ErrNoTunnel is returned by Dial when the user has no live tunnel.
var ErrNoTunnel = errors.New("no tunnel from the user's agent is connected; run `mcp-browser-proxy connect --server <this proxy>` on the machine with the browser")

// Info describes a live tunnel, for status pages.
type Info struct {
	AgentVersion string
	Browser      string // the browser's product, once known
	Since        time.Time
}

// Registry holds the live tunnel of each user, at most one: a new tunnel of
// a user replaces (closes) the old one. It is safe for concurrent use.
type Registry struct {
	log zerolog.Logger

	mu      sync.Mutex
	tunnels map[string]*Tunnel
	closed  bool
}

// NewRegistry returns an empty registry.
func NewRegistry(log zerolog.Logger) *Registry {
	return &Registry{log: log, tunnels: map[string]*Tunnel{}}
}

// Tunnel is the proxy's end of one agent's tunnel.
type Tunnel struct {
	user  string
	ws    *websocket.Conn
	reg   *Registry
	since time.Time
	hello Hello
	log   zerolog.Logger
	// agentLog logs what the agent says of itself (refused frames,
	// unreadable control frames), sampled: a hostile agent must not flood
	// the proxy's log.
	agentLog zerolog.Logger

	wmu sync.Mutex // one writer at a time

	mu      sync.Mutex
	browser string
	next    uint64
	pending map[uint64]*Conn // opened by the proxy, not yet answered
	conn    *Conn            // the connection CDP frames belong to

	done      chan struct{}
	closeOnce sync.Once
	reason    string
}

// Accept reads the agent's hello from ws (bounded), makes the tunnel
// userID's live tunnel, closing the one it replaces, and returns it. The
// caller then runs Serve. ws must come from an authenticated request of
// userID.
func (r *Registry) Accept(userID string, ws *websocket.Conn) (*Tunnel, error) {
	ws.SetReadLimit(maxHello)
	_ = ws.SetReadDeadline(time.Now().Add(helloTimeout))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		_ = ws.Close()
		return nil, fmt.Errorf("read the agent's hello: %w", err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	ws.SetReadLimit(maxFrame)
	var c control
	if typ != websocket.TextMessage || !isControl(data) || json.Unmarshal(data, &c) != nil || c.Tunnel != typeHello {
		closeWith(ws, CloseProtocol, "the first frame must be the agent's hello")
		return nil, errors.New("the agent's first frame is not a hello")
	}
	t := &Tunnel{
		user: userID, ws: ws, reg: r, since: time.Now(), log: r.log.With().Str("user", userID).Logger(),
		hello:   Hello{AgentVersion: truncate(c.AgentVersion, 64), Browser: truncate(c.Browser, 128)},
		pending: map[uint64]*Conn{}, done: make(chan struct{}),
	}
	t.browser = t.hello.Browser
	t.agentLog = t.log.Sample(&zerolog.BurstSampler{Burst: agentLogBurst, Period: time.Minute})
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		closeWith(ws, CloseShutdown, "the proxy is shutting down")
		return nil, errors.New("the registry is closed")
	}
	old := r.tunnels[userID]
	r.tunnels[userID] = t
	r.mu.Unlock()
	if old != nil {
		old.Close(CloseReplaced, "replaced by a newer tunnel of the same user")
	}
	return t, nil
}

// Get returns userID's live tunnel.
func (r *Registry) Get(userID string) (*Tunnel, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tunnels[userID]
	return t, ok
}

// Info returns what is known about userID's live tunnel.
func (r *Registry) Info(userID string) (Info, bool) {
	t, ok := r.Get(userID)
	if !ok {
		return Info{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return Info{AgentVersion: t.hello.AgentVersion, Browser: t.browser, Since: t.since}, true
}

// Count returns how many tunnels are live.
func (r *Registry) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tunnels)
}

// CloseUser closes userID's live tunnel, if any, with code and reason, and
// reports whether there was one.
func (r *Registry) CloseUser(userID string, code int, reason string) bool {
	t, ok := r.Get(userID)
	if ok {
		t.Close(code, reason)
	}
	return ok
}

// Close closes every tunnel (the agents reconnect later) and refuses new ones.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	ts := make([]*Tunnel, 0, len(r.tunnels))
	for _, t := range r.tunnels {
		ts = append(ts, t)
	}
	r.mu.Unlock()
	for _, t := range ts {
		t.Close(CloseShutdown, "the proxy is shutting down; reconnect later")
	}
}

// Dial opens a new CDP connection to userID's browser through its tunnel,
// dropping the tunnel's older one. It implements the pool's tunnel dialer.
func (r *Registry) Dial(ctx context.Context, userID string) (chromedp.Transport, error) {
	t, ok := r.Get(userID)
	if !ok {
		return nil, ErrNoTunnel
	}
	return t.Open(ctx)
}

func (r *Registry) remove(t *Tunnel) {
	r.mu.Lock()
	if r.tunnels[t.user] == t {
		delete(r.tunnels, t.user)
	}
	r.mu.Unlock()
}

// User returns the tunnel's user.
func (t *Tunnel) User() string { return t.user }

// Done is closed when the tunnel has ended.
func (t *Tunnel) Done() <-chan struct{} { return t.done }

// Reason says why the tunnel ended, once Done is closed.
func (t *Tunnel) Reason() string {
	<-t.done
	return t.reason
}

// Close ends the tunnel with a WebSocket close code and reason the agent
// shows; the CDP connection through it is lost.
func (t *Tunnel) Close(code int, reason string) {
	t.closeOnce.Do(func() {
		t.reason = reason
		t.reg.remove(t)
		// WriteControl may run concurrently with a blocked write.
		_ = t.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		_ = t.ws.Close()
		close(t.done)
		t.mu.Lock()
		conn, pending := t.conn, t.pending
		t.conn, t.pending = nil, map[uint64]*Conn{}
		t.mu.Unlock()
		err := fmt.Errorf("the tunnel closed: %s", reason)
		if conn != nil {
			conn.end(err)
		}
		for _, c := range pending {
			c.end(err)
		}
		t.log.Info().Str("reason", reason).Msg("tunnel closed")
	})
}

// Serve reads the tunnel until it ends, delivering CDP frames to the open
// connection. It returns why the tunnel ended.
func (t *Tunnel) Serve() string {
	for {
		typ, data, err := t.ws.ReadMessage()
		if err != nil {
			reason := "the agent disconnected"
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Text != "" {
				reason += ": " + truncate(ce.Text, 120)
			}
			t.Close(websocket.CloseNormalClosure, reason)
			return t.Reason()
		}
		if typ != websocket.TextMessage {
			t.Close(CloseProtocol, "the agent sent a binary frame; the tunnel carries CDP text frames")
			return t.Reason()
		}
		if isControl(data) {
			t.control(data)
			continue
		}
		t.mu.Lock()
		c := t.conn
		t.mu.Unlock()
		if c == nil {
			continue // a straggler of a connection the proxy dropped
		}
		select {
		case c.in <- data:
		case <-c.done:
		case <-t.done:
		}
	}
}

func (t *Tunnel) control(data []byte) {
	var c control
	if err := json.Unmarshal(data, &c); err != nil {
		t.agentLog.Warn().Msg("tunnel: unreadable control frame dropped")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch c.Tunnel {
	case typeOpened, typeError:
		conn, ok := t.pending[c.Conn]
		if !ok {
			return
		}
		delete(t.pending, c.Conn)
		if c.Tunnel == typeError {
			conn.end(fmt.Errorf("the agent could not reach the browser: %s", truncate(c.Message, 300)))
			return
		}
		if c.Browser != "" {
			t.browser = truncate(c.Browser, 128)
		}
		conn.browserID = truncate(c.BrowserID, 128)
		if c.BrowserPort > 0 && c.BrowserPort < 65536 {
			conn.browserPort = c.BrowserPort
		}
		t.conn = conn
		close(conn.ready)
	case typeClosed:
		if t.conn != nil && t.conn.id == c.Conn {
			t.conn.end(fmt.Errorf("the agent lost the browser connection: %s", truncate(c.Message, 300)))
			t.conn = nil
		}
	case typeRefused:
		t.agentLog.Warn().Str("message", truncate(c.Message, 300)).Msg("tunnel: the agent refused a frame")
	}
}

// write sends one text frame.
func (t *Tunnel) write(data []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	select {
	case <-t.done:
		return fmt.Errorf("the tunnel closed: %s", t.reason)
	default:
	}
	if err := t.ws.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return t.ws.WriteMessage(websocket.TextMessage, data)
}

// Open asks the agent for a new CDP connection to its browser, dropping the
// older one, and waits for it until ctx ends.
func (t *Tunnel) Open(ctx context.Context) (*Conn, error) {
	t.mu.Lock()
	t.next++
	c := &Conn{t: t, id: t.next, in: make(chan []byte, 64), ready: make(chan struct{}), done: make(chan struct{})}
	old := t.conn
	t.conn = nil
	t.pending[c.id] = c
	t.mu.Unlock()
	if old != nil {
		old.end(errors.New("replaced by a new connection"))
		_ = t.write(control{Tunnel: typeClose, Conn: old.id}.marshal())
	}
	if err := t.write(control{Tunnel: typeOpen, Conn: c.id}.marshal()); err != nil {
		c.Close()
		return nil, err
	}
	select {
	case <-c.ready:
		return c, nil
	case <-c.done:
		return nil, c.err
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("the agent did not open the browser connection in time: %w", ctx.Err())
	}
}

// Conn is one CDP connection through a tunnel; it implements
// chromedp.Transport.
type Conn struct {
	t           *Tunnel
	id          uint64
	in          chan []byte
	ready       chan struct{}
	browserID   string // as the agent reported it in "opened"
	browserPort int    // the browser's DevTools port on the agent's loopback; 0: unknown

	once sync.Once
	done chan struct{}
	err  error
}

var _ chromedp.Transport = (*Conn)(nil)

// BrowserID returns the browser's identity as the agent reported it: the
// <id> of the /devtools/browser/<id> websocket it reached, "" when unknown.
func (c *Conn) BrowserID() string { return c.browserID }

// BrowserPort returns the browser's DevTools port on the agent's machine,
// as the agent reported it; 0 when unknown.
func (c *Conn) BrowserPort() int { return c.browserPort }

func (c *Conn) end(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.done)
	})
}

// Read returns the next CDP message from the browser.
func (c *Conn) Read(_ context.Context, msg *cdproto.Message) error {
	select {
	case data := <-c.in:
		return jsonv2.Unmarshal(data, msg, chromedp.DefaultUnmarshalOptions)
	case <-c.done:
		return c.err
	}
}

// Write sends one CDP message to the browser.
func (c *Conn) Write(_ context.Context, msg *cdproto.Message) error {
	select {
	case <-c.done:
		return c.err
	default:
	}
	data, err := jsonv2.Marshal(msg, chromedp.DefaultMarshalOptions)
	if err != nil {
		return err
	}
	return c.t.write(data)
}

// Close drops the connection (the browser keeps running).
func (c *Conn) Close() error {
	c.end(errors.New("closed by the proxy"))
	t := c.t
	t.mu.Lock()
	_, pending := t.pending[c.id]
	delete(t.pending, c.id)
	current := t.conn == c
	if current {
		t.conn = nil
	}
	t.mu.Unlock()
	if pending || current {
		_ = t.write(control{Tunnel: typeClose, Conn: c.id}.marshal())
	}
	return nil
}

func closeWith(ws *websocket.Conn, code int, reason string) {
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = ws.Close()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
