package tunnel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

// AgentConfig configures the developer-machine end of the tunnel.
type AgentConfig struct {
	// Server is the proxy's base URL (http or https); the agent dials
	// ws(s)://<host>/api/tunnel.
	Server string
	// Token is the bearer credential (a JWT or an API key); the user is
	// the token's.
	Token string
	// Locate returns the browser's DevTools websocket URL. It is asked on
	// every connection the proxy opens, so a restarted browser (new port,
	// new browser ID) is found again.
	Locate func(ctx context.Context) (string, error)
	// Browser is the browser's product for the hello, "" when unknown.
	Browser string
	// Policy is what the agent relays.
	Policy Policy
	// Version is the agent's version, sent in the hello.
	Version string
	// Proxy picks the HTTP proxy for the tunnel; nil: none.
	// http.ProxyFromEnvironment honours HTTPS_PROXY and NO_PROXY.
	Proxy func(*http.Request) (*url.URL, error)
	// OnConnected runs after each successful tunnel handshake.
	OnConnected func()
	// MinBackoff and MaxBackoff bound the wait between reconnects
	// (defaults 500 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
	Log                    zerolog.Logger
}

// PermanentError is an outcome retrying cannot change (a refused
// credential, a replaced or expired tunnel): the agent stops.
type PermanentError struct{ Msg string }

func (e *PermanentError) Error() string { return e.Msg }

// Agent relays CDP between the proxy and the local browser.
type Agent struct {
	cfg AgentConfig
}

// NewAgent returns an agent; Run starts it.
func NewAgent(cfg AgentConfig) *Agent {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	return &Agent{cfg: cfg}
}

// TunnelURL returns the WebSocket URL of the tunnel route of the proxy at
// server: ws for http, wss for https.
func TunnelURL(server string) (string, error) {
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(server), "/"))
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--server %q is not a URL like https://proxy.example.com", server)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("--server %q must start with http:// or https://", server)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/api/tunnel"
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// Run keeps the tunnel up until ctx ends, reconnecting with capped
// exponential backoff and jitter when the network or the proxy drops it.
// It returns nil when ctx ends, or a *PermanentError.
func (a *Agent) Run(ctx context.Context) error {
	bo := &backoff.ExponentialBackOff{
		InitialInterval: a.cfg.MinBackoff, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: a.cfg.MaxBackoff,
	}
	bo.Reset()
	for {
		start := time.Now()
		err := a.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var perm *PermanentError
		if errors.As(err, &perm) {
			return err
		}
		if time.Since(start) > time.Minute {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		a.cfg.Log.Warn().Err(err).Dur("retry_in", wait).Msg("tunnel down; reconnecting")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// RunOnce dials the proxy once and relays until the tunnel or ctx ends.
func (a *Agent) RunOnce(ctx context.Context) error {
	wsURL, err := TunnelURL(a.cfg.Server)
	if err != nil {
		return &PermanentError{err.Error()}
	}
	d := websocket.Dialer{Proxy: a.cfg.Proxy, HandshakeTimeout: 15 * time.Second, ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	h := http.Header{"Authorization": {"Bearer " + a.cfg.Token}}
	ws, resp, err := d.DialContext(ctx, wsURL, h)
	if err != nil {
		if resp != nil {
			body := make([]byte, 512)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			msg := fmt.Sprintf("the proxy refused the tunnel: HTTP %d %s", resp.StatusCode, apiMessage(body[:n]))
			if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
				return &PermanentError{msg + " (check --token: it needs browser:write)"}
			}
			return errors.New(msg)
		}
		return fmt.Errorf("reach the proxy at %s: %w", a.cfg.Server, err)
	}
	ws.SetReadLimit(maxFrame)
	r := &relay{cfg: &a.cfg, proxy: ws}
	defer r.stopBrowser()
	stop := context.AfterFunc(ctx, func() {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "the agent stopped"), time.Now().Add(time.Second))
		_ = ws.Close()
	})
	defer stop()
	defer ws.Close()
	if err := r.writeProxy(control{Tunnel: typeHello, AgentVersion: a.cfg.Version, Browser: a.cfg.Browser}.marshal()); err != nil {
		return err
	}
	a.cfg.Log.Info().Str("server", a.cfg.Server).Msg("tunnel up: relaying CDP for the local browser")
	if a.cfg.OnConnected != nil {
		a.cfg.OnConnected()
	}
	return r.run(ctx)
}

// apiMessage extracts the message of a proxy's JSON error body.
func apiMessage(body []byte) string {
	var e struct {
		Code, Message string
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return e.Code + ": " + e.Message
	}
	return ""
}

// relay is one tunnel's relay: proxy frames in, browser frames out.
type relay struct {
	cfg   *AgentConfig
	proxy *websocket.Conn
	wmu   sync.Mutex // writes to proxy

	browser *browserConn // the open connection, or nil; owned by run
}

type browserConn struct {
	id        uint64
	ws        *websocket.Conn
	browserID string // the <id> of its /devtools/browser/<id> URL; "" for another path
	port      int    // of its DevTools websocket
	wmu       sync.Mutex
	done      chan struct{} // its reader ended
	stop      chan struct{} // closed when the agent drops it on purpose
}

// urlPort returns the port of a websocket URL, 0 when it has none.
func urlPort(wsURL string) int {
	u, err := url.Parse(wsURL)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(u.Port())
	return n
}

// browserID returns the <id> of a /devtools/browser/<id> websocket URL, or
// "" when the URL names no browser.
func browserID(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return ""
	}
	id, _ := strings.CutPrefix(u.Path, "/devtools/browser/")
	if id == u.Path {
		return ""
	}
	return id
}

func (r *relay) writeProxy(data []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if err := r.proxy.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return r.proxy.WriteMessage(websocket.TextMessage, data)
}

func (r *relay) run(ctx context.Context) error {
	for {
		typ, data, err := r.proxy.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				switch ce.Code {
				case CloseReplaced, CloseExpired, CloseRevoked, CloseUnregistered:
					return &PermanentError{"the proxy closed the tunnel: " + ce.Text}
				}
				return fmt.Errorf("the proxy closed the tunnel: %s", ce.Text)
			}
			return fmt.Errorf("tunnel lost: %w", err)
		}
		if typ != websocket.TextMessage {
			r.refuse("a binary frame is not CDP; dropped")
			continue
		}
		if isControl(data) {
			r.control(ctx, data)
			continue
		}
		r.request(data)
	}
}

func (r *relay) refuse(msg string) {
	r.cfg.Log.Warn().Str("reason", msg).Msg("refused a frame from the proxy")
	_ = r.writeProxy(control{Tunnel: typeRefused, Message: msg}.marshal())
}

func (r *relay) control(ctx context.Context, data []byte) {
	var c control
	if err := json.Unmarshal(data, &c); err != nil {
		r.refuse("an unreadable control frame; dropped")
		return
	}
	switch c.Tunnel {
	case typeOpen:
		r.stopBrowser()
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		bc, err := r.dialBrowser(dctx, c.Conn)
		cancel()
		if err != nil {
			r.cfg.Log.Warn().Err(err).Msg("cannot reach the browser")
			_ = r.writeProxy(control{Tunnel: typeError, Conn: c.Conn, Message: err.Error()}.marshal())
			return
		}
		r.browser = bc
		go r.fromBrowser(bc)
		_ = r.writeProxy(control{Tunnel: typeOpened, Conn: c.Conn, BrowserID: bc.browserID, BrowserPort: bc.port}.marshal())
	case typeClose:
		if r.browser != nil && r.browser.id == c.Conn {
			r.stopBrowser()
		}
	default:
		r.refuse("unknown control frame " + truncate(c.Tunnel, 32) + "; dropped")
	}
}

func (r *relay) dialBrowser(ctx context.Context, id uint64) (*browserConn, error) {
	wsURL, err := r.cfg.Locate(ctx)
	if err != nil {
		return nil, err
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	ws, resp, err := d.DialContext(ctx, wsURL, nil)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("the browser refused the DevTools connection: HTTP %d", resp.StatusCode)
		}
		return nil, fmt.Errorf("connect to the browser's DevTools: %w", err)
	}
	ws.SetReadLimit(maxFrame)
	r.cfg.Log.Info().Uint64("conn", id).Msg("browser connection open")
	return &browserConn{id: id, ws: ws, browserID: browserID(wsURL), port: urlPort(wsURL), done: make(chan struct{}), stop: make(chan struct{})}, nil
}

// fromBrowser relays the browser's frames to the proxy unchanged.
func (r *relay) fromBrowser(bc *browserConn) {
	defer close(bc.done)
	for {
		typ, data, err := bc.ws.ReadMessage()
		if err != nil {
			select {
			case <-bc.stop:
			default:
				_ = r.writeProxy(control{Tunnel: typeClosed, Conn: bc.id, Message: "the browser closed the DevTools connection"}.marshal())
			}
			return
		}
		if typ != websocket.TextMessage || isControl(data) {
			continue // not CDP: never passed on
		}
		if r.writeProxy(data) != nil {
			return
		}
	}
}

// stopBrowser drops the open browser connection and waits until its
// frames are relayed, so none follows a later "opened".
func (r *relay) stopBrowser() {
	bc := r.browser
	if bc == nil {
		return
	}
	r.browser = nil
	close(bc.stop)
	_ = bc.ws.Close()
	<-bc.done
}

// cdpError is the CDP error response the agent answers a refused request with.
type cdpError struct {
	ID        int64  `json:"id"`
	SessionID string `json:"sessionId,omitempty"`
	Error     struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// request checks one CDP request from the proxy and relays it, or answers
// it with a CDP error.
func (r *relay) request(data []byte) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		r.refuse("a frame that is not a CDP request (JSON object with id, method, params, sessionId); dropped")
		return
	}
	if req.ID == nil {
		r.refuse("a CDP message without id; dropped")
		return
	}
	if req.Method == "" {
		r.answer(req, "a CDP request without method is refused by the agent")
		return
	}
	if why := r.cfg.Policy.check(&req); why != "" {
		r.cfg.Log.Warn().Str("method", req.Method).Str("reason", why).Msg("refused a CDP request")
		r.answer(req, "refused by the developer's mcp-browser-proxy agent: "+why)
		return
	}
	bc := r.browser
	if bc == nil {
		r.answer(req, "the agent has no open browser connection")
		return
	}
	out, err := json.Marshal(req)
	if err != nil {
		r.answer(req, "the agent cannot re-encode the request")
		return
	}
	bc.wmu.Lock()
	_ = bc.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	err = bc.ws.WriteMessage(websocket.TextMessage, out)
	bc.wmu.Unlock()
	if err != nil {
		r.answer(req, "the agent could not write to the browser: "+err.Error())
	}
}

func (r *relay) answer(req request, msg string) {
	var e cdpError
	if req.ID != nil {
		e.ID = *req.ID
	}
	e.SessionID = req.SessionID
	e.Error.Code = -32000
	e.Error.Message = msg
	b, _ := json.Marshal(e)
	_ = r.writeProxy(b)
}
