package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
)

// Connection limits: an unauthenticated client costs the proxy a file
// descriptor per connection, so each client address may hold at most
// MaxConnsPerIP at once. The cap is counted at the listener, where a refused
// connection costs nothing but its accept; behind a trusted reverse proxy,
// which carries many clients on its connections, it is counted per
// forwarded address on concurrent requests instead.

// ConnLimits bounds what one client address may hold. Zero fields take
// the defaults.
type ConnLimits struct {
	// MaxPerIP is how many connections one client address may hold at
	// once; for a client behind a trusted proxy, how many requests.
	MaxPerIP int
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (its last untrusted hop).
	TrustedProxies []netip.Prefix
	// ReadHeaderTimeout bounds the arrival of a request's headers (and of
	// a TLS handshake); IdleTimeout closes an idle keep-alive connection.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
}

func (c *ConnLimits) fill() {
	if c.MaxPerIP <= 0 {
		c.MaxPerIP = DefaultMaxConnsPerIP
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleConnTimeout
	}
}

// Defaults of the connection limits.
const (
	DefaultMaxConnsPerIP     = 256
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleConnTimeout   = 2 * time.Minute
)

// connRefusalAuditEvery bounds the audit of refused connections to one line
// per client address per interval, so that a flood writes no log flood.
const connRefusalAuditEvery = time.Minute

// forwardedRetryAfter is the Retry-After, in seconds, of a forwarded request
// over the cap: a slot frees as soon as one of the address's requests ends.
const forwardedRetryAfter = 1

// addrCounter counts what each client address holds: connections at the
// listener, requests in the forwarded middleware. Its zero value is not
// ready; use newAddrCounter.
type addrCounter struct {
	max int

	mu   sync.Mutex
	held map[netip.Addr]int
}

func newAddrCounter(max int) *addrCounter {
	return &addrCounter{max: max, held: map[netip.Addr]int{}}
}

// acquire takes one of a's slots and reports whether one was free.
func (c *addrCounter) acquire(a netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[a] >= c.max {
		return false
	}
	c.held[a]++
	return true
}

// release gives back a slot taken by acquire.
func (c *addrCounter) release(a netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[a]--; c.held[a] <= 0 {
		delete(c.held, a)
	}
}

// refusalAudit audits refusals of a client address at most once per
// interval.
type refusalAudit struct {
	audit   zerolog.Logger
	metrics *Metrics
	every   time.Duration

	mu   sync.Mutex
	last map[netip.Addr]time.Time
}

func newRefusalAudit(audit zerolog.Logger, m *Metrics, every time.Duration) *refusalAudit {
	return &refusalAudit{audit: audit, metrics: m, every: every, last: map[netip.Addr]time.Time{}}
}

// refused notes one refusal of addr; how says what was refused.
func (r *refusalAudit) refused(addr netip.Addr, how string, max int) {
	now := time.Now()
	r.mu.Lock()
	if t, ok := r.last[addr]; ok && now.Sub(t) < r.every {
		r.mu.Unlock()
		return
	}
	if len(r.last) >= 4096 {
		// Forget addresses not refused lately, so that a spray of
		// addresses cannot grow the map without bound.
		for a, t := range r.last {
			if now.Sub(t) >= r.every {
				delete(r.last, a)
			}
		}
		if len(r.last) >= 4096 {
			clear(r.last)
		}
	}
	r.last[addr] = now
	r.mu.Unlock()
	r.audit.Warn().Bool("audit", true).Str("event", "denied").Str("reason", "connection limit").
		Str("client", addr.String()).Str("refused", how).Int("max", max).
		Dur("next_audit_after", r.every).Send()
}

// limitListener is a net.Listener that closes, as soon as it is accepted,
// each connection from a client address that already holds the maximum.
// Connections from trusted reverse proxies are not counted here (the
// forwarded middleware counts their clients' requests).
type limitListener struct {
	net.Listener
	conns   *addrCounter
	trusted []netip.Prefix
	refuse  *refusalAudit
}

// Accept implements net.Listener; it returns only connections within the cap.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a, ok := addrOf(c.RemoteAddr())
		if !ok || inPrefixes(a, l.trusted) {
			return c, nil
		}
		if !l.conns.acquire(a) {
			c.Close()
			if m := l.refuse.metrics; m != nil {
				// No request, so observe never sees it: counted here.
				m.denials.WithLabelValues(denyConnLimit).Inc()
				m.limited(limitReason(denyConnLimit))
			}
			l.refuse.refused(a, "connection", l.conns.max)
			continue
		}
		return &countedConn{Conn: c, conns: l.conns, addr: a}, nil
	}
}

// countedConn gives its slot back when it closes, or when it turns out to
// be another instance's (uncount).
type countedConn struct {
	net.Conn
	conns    *addrCounter // nil: counted nowhere (tests)
	addr     netip.Addr
	released atomic.Bool
}

// release gives the connection's slot back, once.
func (c *countedConn) release() {
	if c.released.CompareAndSwap(false, true) && c.conns != nil {
		c.conns.release(c.addr)
	}
}

// connKey is the context key of a request's countedConn (connContext).
type connKey struct{}

// connContext is the http.Server's ConnContext: it keeps the counted
// connection under a request's context, so that checkForwarded can free
// the slot of a connection that carries another instance's requests.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok { // TLS
		c = tc.NetConn()
	}
	if cc, ok := c.(*countedConn); ok {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

// uncount frees the slot of the connection r came on: the connection
// carries requests an instance of this deployment signed (shared mode),
// for many clients, each of whom that instance counted at its listener.
// Only the cluster's secret makes such a request, so no client frees its
// own connections this way.
func uncount(r *http.Request) {
	if cc, ok := r.Context().Value(connKey{}).(*countedConn); ok {
		cc.release()
	}
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// addrOf is the client IP of a connection, IPv4-mapped IPv6 as IPv4.
func addrOf(a net.Addr) (netip.Addr, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(ta.IP)
		return ip.Unmap(), ok
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap(), err == nil
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies parses --trusted-proxies: CIDRs, or single addresses
// (a /32 or /128).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies %q: not a CIDR (10.0.0.0/8) or an address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// forwardedClient is the client a request from a trusted reverse proxy is
// for: the last address of X-Forwarded-For that is not a trusted proxy
// itself (the hops before it are the client's word and may be forged). ok
// is false when the peer is no trusted proxy or names no client.
func forwardedClient(r *http.Request, trusted []netip.Prefix) (netip.Addr, bool) {
	if len(trusted) == 0 {
		return netip.Addr{}, false
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !inPrefixes(peer.Addr().Unmap(), trusted) {
		return netip.Addr{}, false
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// A hop that is no address is not a client the proxy can
			// count on: the whole header from it on is untrusted.
			return peer.Addr().Unmap(), true
		}
		if a = a.Unmap(); !inPrefixes(a, trusted) {
			return a, true
		}
	}
	return peer.Addr().Unmap(), true
}

// limitForwarded holds each forwarded client address (requests through a
// trusted reverse proxy) to MaxConnsPerIP concurrent requests. Other
// requests pass: the listener has counted their connections. Without
// trusted proxies every request is another, and the middleware is none.
func (s *Server) limitForwarded() echo.MiddlewareFunc {
	reqs := newAddrCounter(s.cfg.Conns.MaxPerIP)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if len(s.cfg.Conns.TrustedProxies) == 0 {
			return next
		}
		return func(c echo.Context) error {
			a, ok := forwardedClient(c.Request(), s.cfg.Conns.TrustedProxies)
			if !ok {
				return next(c)
			}
			if !reqs.acquire(a) {
				markDenied(c, denyConnLimit)
				s.connRefusals.refused(a, "forwarded request", reqs.max)
				return &APIError{
					Status: http.StatusTooManyRequests, Code: CodeLimitExceeded, RetryAfter: forwardedRetryAfter,
					Message: fmt.Sprintf("your address already has %d requests open at this proxy, the limit; close some (idle MCP streams, stalled uploads) and retry", reqs.max),
				}
			}
			defer holdForStream(c, func() { reqs.release(a) })()
			return next(c)
		}
	}
}

// limitConns wraps ln with the per-address connection cap.
func (s *Server) limitConns(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, conns: newAddrCounter(s.cfg.Conns.MaxPerIP), trusted: s.cfg.Conns.TrustedProxies, refuse: s.connRefusals}
}
