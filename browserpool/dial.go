package browserpool

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// DialPolicy decides which addresses the pool may connect to. It is asked
// about the host name before any lookup, and about the actual IP address of
// every connection right before it is made, so a DNS answer that changed
// since registration (DNS rebinding) cannot steer the proxy to a refused
// address. *router.Policy implements it.
type DialPolicy interface {
	// CheckHost refuses a host name (or IP literal) before it is resolved.
	CheckHost(host string) error
	// CheckAddr refuses an address about to be dialled.
	CheckAddr(ip netip.Addr) error
}

// Endpoint is where a user's browser is and how to authenticate to it.
type Endpoint struct {
	// URL is the registered browser URL (see router.ValidateBrowserURL);
	// its userinfo is sent as HTTP Basic authentication.
	URL string
	// Headers go on /json/version and the CDP websocket handshake, to this
	// browser only.
	Headers map[string]string
	// Registered is when the user registered this browser
	// (router.Registration.CreatedAt): of two registrations that reach the
	// same running browser, the earlier keeps it. Zero means now.
	Registered time.Time
	// Addrs are the addresses the URL's host resolved to when the browser
	// was registered or restored (router.Registration.Addrs). Only a
	// connection dialled to one of them (or to the URL's IP literal) may
	// take a running browser from a later registration that holds it: a
	// name re-pointed since cannot (see Pool.claim).
	Addrs []netip.Addr
}

// equal reports whether two endpoints reach the same browser the same way.
func (e Endpoint) equal(o Endpoint) bool {
	return e.URL == o.URL && maps.Equal(e.Headers, o.Headers)
}

// hostResolver is a DialPolicy that also resolves host names, checking
// every address it returns; *router.Policy is one (with its configured
// resolver). Other policies get the system resolver and CheckAddr.
type hostResolver interface {
	Resolve(ctx context.Context, host string) ([]netip.Addr, error)
}

// maxMessage bounds one CDP message read from a browser, as chromedp does.
const maxMessage = 256 << 20

// writeTimeout bounds one CDP message write to a browser.
const writeTimeout = 30 * time.Second

// guardedDialer returns a dialer whose Control function refuses, before the
// connect system call, any address the policy refuses.
func guardedDialer(p DialPolicy, timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("refusing to dial %s: not an IP address and port", address)
			}
			return p.CheckAddr(ap.Addr())
		},
	}
}

// guardedDial is a DialContext that checks the host name first, then lets
// the guarded dialer check the address it connects to.
func guardedDial(p DialPolicy, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := guardedDialer(p, timeout)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("refusing to dial %s: %w", addr, err)
		}
		if err := p.CheckHost(host); err != nil {
			return nil, err
		}
		return d.DialContext(ctx, network, addr)
	}
}

// NewHTTPClient returns the client used for /json/version: it dials only
// addresses p allows (checked on the very connection), uses no HTTP proxy
// from the environment, keeps no idle connection, and follows no redirects,
// so a browser URL cannot bounce the proxy somewhere else. A nil p is
// router.DefaultPolicy().
func NewHTTPClient(p DialPolicy) *http.Client {
	if p == nil {
		p = router.DefaultPolicy()
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            guardedDial(p, 10*time.Second),
			TLSHandshakeTimeout:    10 * time.Second,
			ResponseHeaderTimeout:  10 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
			DisableKeepAlives:      true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// handshakeHeader builds the headers for a request to the browser: the
// registered headers, plus HTTP Basic authentication from the URL's
// userinfo unless an Authorization header is given. Nothing else is added:
// in particular no Origin, which Chrome would refuse without
// --remote-allow-origins.
func handshakeHeader(ep Endpoint, user *url.Userinfo) http.Header {
	h := http.Header{}
	for k, v := range ep.Headers {
		h.Set(k, v)
	}
	if user != nil && h.Get("Authorization") == "" {
		pw, _ := user.Password()
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user.Username()+":"+pw)))
	}
	return h
}

// allocator is a chromedp.Allocator that attaches to a running browser over
// a connection the pool opens itself (a websocket through the guarded
// dialer, or a tunnel); chromedp's remote allocator offers no way to pass a
// dialer.
type allocator struct {
	// dial opens the connection, bounded by ctx.
	dial    func(ctx context.Context) (chromedp.Transport, error)
	timeout time.Duration
	wg      sync.WaitGroup
	// requests, when set, gets a Guard on the connection (guard.go).
	requests RequestPolicy
	guard    chan *Guard // the guard of the connection, once dialled
	// sessions is the connection's Sessions, once dialled.
	sessions atomic.Pointer[Sessions]
	// remote is the address the websocket was dialled to (whatever name
	// led there), once dialled: Pool.claim decides on it.
	remote atomic.Pointer[netip.Addr]
}

var (
	_ chromedp.Allocator = (*allocator)(nil)
	_ chromedp.Attacher  = (*allocator)(nil)
)

// wsAllocator returns the allocator of the browser at wsURL, like
// remote.NewAllocator with NoModifyURL.
func wsAllocator(wsURL string, header http.Header, p DialPolicy, timeout time.Duration, requests RequestPolicy) *allocator {
	a := &allocator{
		timeout: timeout, requests: requests, guard: make(chan *Guard, 1),
	}
	a.dial = func(ctx context.Context) (chromedp.Transport, error) {
		ws, err := dialCDP(ctx, wsURL, header, p, timeout)
		if err != nil {
			return nil, err
		}
		if ap, err := netip.ParseAddrPort(ws.ws.RemoteAddr().String()); err == nil {
			addr := ap.Addr().Unmap().WithZone("")
			a.remote.Store(&addr)
		}
		return ws, nil
	}
	return a
}

// Allocate implements chromedp.Allocator: it opens the connection and
// returns the browser bound to it, with the page guard on it when the pool
// has a page policy.
func (a *allocator) Allocate(ctx context.Context, opts ...chromedp.BrowserOption) (*chromedp.Browser, error) {
	if chromedp.FromContext(ctx) == nil {
		return nil, chromedp.ErrInvalidContext
	}
	// As remote.Allocator: the connection outlives ctx until chromedp has
	// closed the pages of ctx.
	wctx, cancel := context.WithCancel(context.Background())
	a.wg.Go(func() {
		<-ctx.Done()
		chromedp.Cancel(ctx)
		cancel()
	})
	dctx, dcancel := context.WithTimeout(wctx, a.timeout)
	defer dcancel()
	stop := context.AfterFunc(ctx, dcancel)
	defer stop()
	conn, err := a.dial(dctx)
	if err != nil {
		return nil, err
	}
	t := &tapped{Transport: conn, ahead: newAhead(conn)}
	t.sessions = newSessions(t)
	t.ahead.start(t.sessions.read)
	a.sessions.Store(t.sessions)
	if a.requests != nil {
		g := newGuard(wctx, t, a.requests)
		a.wg.Go(func() { <-wctx.Done(); g.wait() })
		a.guard <- g
	}
	return chromedp.NewBrowserTransport(wctx, t, opts...)
}

// Wait implements chromedp.Allocator.
func (a *allocator) Wait() { a.wg.Wait() }

// Attaches implements chromedp.Attacher: the browser runs already.
func (a *allocator) Attaches() bool { return true }

// dialCDP opens the CDP websocket at wsURL (without userinfo: resolve
// turned it into header) through the guarded dialer, sending header and
// nothing else of its own but the websocket handshake. Errors never contain
// the URL's query, nor header values.
func dialCDP(ctx context.Context, wsURL string, header http.Header, p DialPolicy, timeout time.Duration) (*wsConn, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, errors.New("cannot parse the websocket URL")
	}
	u.User = nil
	d := websocket.Dialer{
		NetDialContext:   guardedDial(p, timeout),
		Proxy:            nil,
		HandshakeTimeout: timeout,
		ReadBufferSize:   64 << 10,
		WriteBufferSize:  64 << 10,
	}
	ws, resp, err := d.DialContext(ctx, u.String(), header)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
			if errors.Is(err, websocket.ErrBadHandshake) {
				return nil, fmt.Errorf("websocket handshake with %s refused: HTTP %d (check the token or headers of the registration)", u.Host, resp.StatusCode)
			}
		}
		return nil, fmt.Errorf("dial %s: %w", u.Host, unwrapURLError(err))
	}
	ws.SetReadLimit(maxMessage)
	return &wsConn{ws: ws}, nil
}

// wsConn is a chromedp.Transport over a gorilla websocket.
type wsConn struct {
	ws  *websocket.Conn
	wmu sync.Mutex // one writer at a time
}

// tapped is a browser connection (a websocket the pool dialled, or a
// tunnel) whose messages the page guard sees first: tap returning true
// keeps a message (the guard's own replies and sessions) from chromedp.
type tapped struct {
	chromedp.Transport
	tap      func(*cdproto.Message) bool // set by newGuard; nil: none
	sessions *Sessions                   // sees messages before tap
	ahead    *ahead                      // reads, and chromedp's attach rows; nil: none
}

// Read reads the next message that is not the guard's.
func (t *tapped) Read(ctx context.Context, msg *cdproto.Message) error {
	for {
		// A transport may decode into msg without clearing it (the tunnel
		// does): a kept message must not leave its fields on the next.
		*msg = cdproto.Message{}
		if t.ahead != nil {
			m, err := t.ahead.read(ctx)
			if err != nil {
				return err
			}
			*msg = *m
		} else if err := t.Transport.Read(ctx, msg); err != nil {
			return err
		}
		if t.sessions != nil && t.sessions.read(msg) {
			continue
		}
		if t.tap == nil || !t.tap(msg) {
			return nil
		}
	}
}

// Write sends msg, unless it is one of chromedp's attach commands that an
// attach row answers (ahead.go).
func (t *tapped) Write(ctx context.Context, msg *cdproto.Message) error {
	if t.ahead != nil && msg.ID < rawIDBase && t.ahead.write(msg) {
		return nil
	}
	return t.Transport.Write(ctx, msg)
}

// Close ends the reads and closes the connection.
func (t *tapped) Close() error {
	if t.ahead != nil {
		t.ahead.close()
	}
	return t.Transport.Close()
}

// Read reads the next CDP message; gorilla answers pings itself.
func (c *wsConn) Read(_ context.Context, msg *cdproto.Message) error {
	typ, data, err := c.ws.ReadMessage()
	if err != nil {
		return err
	}
	if typ != websocket.TextMessage {
		return errors.New("the browser sent a binary websocket message; CDP uses text")
	}
	*msg = cdproto.Message{}
	return jsonv2.Unmarshal(data, msg, chromedp.DefaultUnmarshalOptions)
}

// Write sends one CDP message as one text frame (Chrome does not accept
// fragmented messages), bounded by writeTimeout.
func (c *wsConn) Write(_ context.Context, msg *cdproto.Message) error {
	data, err := jsonv2.Marshal(msg, chromedp.DefaultMarshalOptions)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

// Close drops the websocket; it never closes the browser.
func (c *wsConn) Close() error { return c.ws.Close() }
