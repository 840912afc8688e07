package browserpool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// egressDenied are the ranges a managed browser's pages may not reach
// unless ManagedConfig.AllowCIDRs lists them: the proxy host's own machine
// (loopback, "this network", which Linux routes to itself), its private
// networks (RFC 1918, carrier-grade NAT as used by Tailscale, unique local
// IPv6) and link-local (cloud metadata services), plus multicast and
// broadcast.
var egressDenied = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking, often lab networks
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// nat64Prefix is the well-known NAT64 prefix: its addresses embed an IPv4
// address, which is checked too.
var nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")

// egressPolicy is the network policy of managed browsers' pages.
type egressPolicy struct {
	allow []netip.Prefix
	// local lists the proxy host's own interface addresses; nil reads
	// them (hostAddrs). A public address of the host reaches its services
	// listening on every interface as surely as loopback does.
	local func() []netip.Addr
}

// hostAddrs returns the addresses of the proxy host's interfaces, read at
// most every few seconds (an interface may come up later, e.g. DHCP).
func hostAddrs() []netip.Addr {
	hostAddrsMu.Lock()
	defer hostAddrsMu.Unlock()
	if time.Since(hostAddrsAt) < 5*time.Second && hostAddrsAt != (time.Time{}) {
		return hostAddrsList
	}
	hostAddrsList, hostAddrsAt = nil, time.Now()
	list, _ := net.InterfaceAddrs()
	for _, a := range list {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			hostAddrsList = append(hostAddrsList, pfx.Addr().Unmap().WithZone(""))
		}
	}
	return hostAddrsList
}

var (
	hostAddrsMu   sync.Mutex
	hostAddrsAt   time.Time
	hostAddrsList []netip.Addr
)

// EgressDeniedError is a connection of a managed browser's page that the
// network policy refused.
type EgressDeniedError struct {
	Addr   netip.Addr
	Reason string
}

func (e *EgressDeniedError) Error() string {
	return "managed browser network policy: " + e.Addr.String() + " is refused: " + e.Reason
}

// check refuses an address in a denied range that no allowed range covers.
func (p egressPolicy) check(ip netip.Addr) error {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return &EgressDeniedError{Addr: ip, Reason: "not an IP address"}
	}
	for _, pfx := range p.allow {
		if pfx.Contains(ip) {
			return nil
		}
	}
	if nat64Prefix.Contains(ip) {
		b := ip.As16()
		if err := p.check(netip.AddrFrom4([4]byte(b[12:]))); err != nil {
			return &EgressDeniedError{Addr: ip, Reason: "it embeds a refused IPv4 address (NAT64)"}
		}
	}
	for _, pfx := range egressDenied {
		if pfx.Contains(ip) {
			return &EgressDeniedError{Addr: ip, Reason: fmt.Sprintf("%s is the proxy host's loopback, a private or link-local network; add it to --managed-allow-cidrs to let managed pages reach it", pfx)}
		}
	}
	local := p.local
	if local == nil {
		local = hostAddrs
	}
	if slices.Contains(local(), ip) {
		return &EgressDeniedError{Addr: ip, Reason: "it is an address of the proxy host itself; add it to --managed-allow-cidrs to let managed pages reach it"}
	}
	return nil
}

// egress is the forward proxy (HTTP and CONNECT, so WebSockets too) that
// one managed Chromium sends all its traffic through (--proxy-server,
// loopback included): its dialer checks the address of every connection
// right before it is made, so no DNS answer, redirect, iframe or
// WebSocket of a page gets around egressPolicy. It listens on 127.0.0.1
// on a port of its own; it grants a local user who finds it nothing they
// cannot do directly (only the allowed egress, never loopback).
type egress struct {
	ln       net.Listener
	srv      *http.Server
	policy   egressPolicy
	resolver router.Resolver
	rp       *httputil.ReverseProxy
	tr       *http.Transport
	user     string
	audit    zerolog.Logger
	auditLim *rate.Limiter // a hostile page could flood the audit log

	mu    sync.Mutex
	conns map[net.Conn]struct{} // tunnels in use, closed on shutdown
	wg    sync.WaitGroup
}

// egressDialTimeout bounds one connection of the forward proxy.
const egressDialTimeout = 15 * time.Second

// startEgress listens on 127.0.0.1 and serves the forward proxy of user's
// managed browser until close.
func startEgress(user string, policy egressPolicy, resolver router.Resolver, audit zerolog.Logger) (*egress, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("managed browser network proxy: %w", err)
	}
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	e := &egress{ln: ln, policy: policy, resolver: resolver, user: user, audit: audit,
		auditLim: rate.NewLimiter(10, 20), conns: map[net.Conn]struct{}{}}
	e.tr = &http.Transport{
		Proxy:                 nil,
		DialContext:           e.dial,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
	}
	e.rp = &httputil.ReverseProxy{
		// The request is in absolute form already; Rewrite sets no
		// X-Forwarded-* headers.
		Rewrite:      func(pr *httputil.ProxyRequest) { pr.Out.Host = pr.In.Host },
		Transport:    e.tr,
		ErrorHandler: e.fail,
	}
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	e.wg.Go(func() { _ = e.srv.Serve(ln) })
	return e, nil
}

// URL is the --proxy-server value of the browser.
func (e *egress) URL() string { return "http://" + e.ln.Addr().String() }

// close stops the proxy and every connection through it.
func (e *egress) close() {
	_ = e.srv.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.conns = nil
	e.mu.Unlock()
	e.tr.CloseIdleConnections()
	e.wg.Wait()
}

// ownPort reports whether ap is this proxy's own listener: never dialled,
// whatever --managed-allow-cidrs says, or a page could loop through it.
func (e *egress) ownPort(ap netip.AddrPort) bool {
	own, err := netip.ParseAddrPort(e.ln.Addr().String())
	return err == nil && ap.Port() == own.Port() && ap.Addr().Unmap().IsLoopback()
}

// dial resolves addr itself and connects to the first address that
// answers; the dialer's Control refuses, before the connect system call,
// every address the policy refuses, so what is checked is what is dialled.
func (e *egress) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q", addr)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err = e.resolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	d := &net.Dialer{
		Timeout: egressDialTimeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &EgressDeniedError{Reason: "not an IP address and port: " + address}
			}
			if e.ownPort(ap) {
				return &EgressDeniedError{Addr: ap.Addr(), Reason: "it is the managed browser's own network proxy"}
			}
			return e.policy.check(ap.Addr())
		},
	}
	var first error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = fmt.Errorf("%s has no address", host)
	}
	return nil, first
}

// refused audits a connection the policy refused, like the page guard's
// page_policy refusals, at most 10 a second.
func (e *egress) refused(target string, err error) bool {
	var de *EgressDeniedError
	if !errors.As(err, &de) {
		return false
	}
	if e.auditLim.Allow() {
		e.audit.Warn().Bool("audit", true).Str("event", "denied").Str("user", e.user).
			Str("url", router.Redact(target)).Str("reason", "page_policy").Str("detail", de.Error()).Send()
	}
	return true
}

// ServeHTTP proxies CONNECT tunnels and absolute-form HTTP requests, and
// nothing else.
func (e *egress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		e.connect(w, r)
		return
	}
	if !r.URL.IsAbs() || r.URL.Scheme != "http" || r.URL.Host == "" {
		http.Error(w, "this is the network proxy of a managed browser; it forwards nothing but the browser's requests", http.StatusBadRequest)
		return
	}
	e.rp.ServeHTTP(w, r)
}

// fail answers a request the proxy could not forward by closing the
// connection without an answer: the page sees a failed request (a proxy's
// error page would be a response, and a fetch would succeed).
func (e *egress) fail(w http.ResponseWriter, r *http.Request, err error) {
	e.refused(r.URL.String(), err)
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, herr := hj.Hijack(); herr == nil {
			c.Close()
			return
		}
	}
	w.WriteHeader(http.StatusBadGateway)
}

// connect opens a tunnel to r's authority through the checked dialer.
func (e *egress) connect(w http.ResponseWriter, r *http.Request) {
	up, err := e.dial(r.Context(), "tcp", r.Host)
	if err != nil {
		if e.refused("https://"+r.Host, err) {
			http.Error(w, "refused by the managed browser network policy", http.StatusForbidden)
			return
		}
		http.Error(w, "cannot connect", http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "cannot tunnel", http.StatusInternalServerError)
		return
	}
	down, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !e.track(up, down) {
		return
	}
	if _, err := down.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n")); err != nil {
		e.untrack(up, down)
		return
	}
	e.wg.Go(func() {
		defer e.untrack(up, down)
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, buf); closeWrite(up); done <- struct{}{} }()
		go func() { _, _ = io.Copy(down, up); closeWrite(down); done <- struct{}{} }()
		<-done
		<-done
	})
}

// track records a tunnel's two connections; false (both closed) when the
// proxy is shutting down.
func (e *egress) track(cs ...net.Conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		e.conns[c] = struct{}{}
	}
	return true
}

func (e *egress) untrack(cs ...net.Conn) {
	e.mu.Lock()
	for _, c := range cs {
		c.Close()
		delete(e.conns, c)
	}
	e.mu.Unlock()
}

// closeWrite half-closes a TCP connection so the other side sees the end
// of the stream; other connections are closed.
func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	c.Close()
}
