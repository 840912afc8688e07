package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/idna"
)

// ProtectedEndpoint is a listening socket that no page of a session may
// reach: a registered browser's DevTools endpoint or one of the proxy's own
// listen addresses. Addrs are the addresses it was dialled or bound on
// (empty: loopback only, or every interface for an unspecified bind).
type ProtectedEndpoint struct {
	Port  int
	Addrs []netip.Addr
}

// PagePolicy decides which URLs the pages of a session may request, in the
// tools (navigate_page, new_page) and in the browser (the request guard of
// every target a session owns). A request is refused when its port is the
// port of a protected endpoint and its host is loopback (any spelling), an
// address of that endpoint, or an address of the proxy host; or when its
// host matches a deny glob. Everything else, loopback included, is allowed.
// Its methods are safe for concurrent use.
type PagePolicy struct {
	// DenyHosts are host globs (path.Match syntax) matched against the
	// canonical host: lower case, IDNA ASCII, no trailing dot, IPv4 in
	// dotted decimal.
	DenyHosts []string
	// Endpoints lists the protected endpoints now; nil: none.
	Endpoints func() []ProtectedEndpoint
	// Resolver looks up host names; nil: the system resolver.
	Resolver Resolver
	// LocalAddrs lists the proxy host's interface addresses; nil: read
	// from the system.
	LocalAddrs func() []netip.Addr

	listen listenSet
}

// RefusedError says why the page policy refuses a URL.
type RefusedError struct {
	Host   string
	Reason string
}

func (e *RefusedError) Error() string { return e.Reason }

// lookupTimeout bounds the DNS lookup of one page request's host.
const lookupTimeout = 2 * time.Second

// ParsedURL is a URL as the browser will request it, after WHATWG URL
// parsing of the parts that decide where it goes.
type ParsedURL struct {
	Scheme string // lower case
	Host   string // canonical host; IPv6 without brackets
	Port   int    // explicit or the scheme's default
}

var defaultPorts = map[string]int{"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}

// ParseURL parses raw as a browser does for the special schemes (http,
// https, ws, wss, ftp): surrounding spaces and tabs/newlines inside are
// dropped, backslashes are slashes, any number of slashes may follow the
// scheme, userinfo is dropped, the host is percent-decoded, IDNA-mapped
// (full-width and ideographic dots are dots) and, when it ends in a number,
// parsed as an IPv4 address in decimal, hex or octal, with short forms.
// ok is false for other schemes.
func ParseURL(raw string) (ParsedURL, bool, error) {
	s := strings.Trim(raw, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ")
	s = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return ParsedURL{}, false, errors.New("not an absolute URL")
	}
	scheme := strings.ToLower(s[:colon])
	def, special := defaultPorts[scheme]
	if !special {
		return ParsedURL{Scheme: scheme}, false, nil
	}
	rest := strings.TrimLeft(strings.ReplaceAll(s[colon+1:], `\`, "/"), "/")
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	hostport := rest
	portStr := ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return ParsedURL{}, true, errors.New("unclosed IPv6 address")
		}
		portStr = strings.TrimPrefix(hostport[end+1:], ":")
		hostport = hostport[:end+1]
	} else if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		hostport, portStr = hostport[:i], hostport[i+1:]
	}
	port := def
	if portStr != "" {
		n, err := strconv.Atoi(portStr)
		if err != nil || n < 0 || n > 65535 {
			return ParsedURL{}, true, fmt.Errorf("invalid port %q", portStr)
		}
		port = n
	}
	host, err := BrowserHost(hostport)
	if err != nil {
		return ParsedURL{}, true, err
	}
	return ParsedURL{Scheme: scheme, Host: host, Port: port}, true, nil
}

// BrowserHost returns the host of a special URL as a browser reads it:
// IPv6 literals without brackets and IPv4-mapped ones as IPv4, names in
// lower-case IDNA ASCII without a trailing dot, IPv4 in any number form as
// dotted decimal.
func BrowserHost(h string) (string, error) {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil {
			return "", fmt.Errorf("invalid IPv6 address %q", h)
		}
		return a.Unmap().WithZone("").String(), nil
	}
	if d, err := percentDecode(h); err == nil {
		h = d
	} else {
		return "", err
	}
	a, err := idna.Lookup.ToASCII(h)
	if err != nil {
		// Browsers are laxer than UTS 46 strict mode (underscores, say):
		// fall back to the mapping alone.
		if a, err = idna.Punycode.ToASCII(strings.ToLower(idnaDots.Replace(h))); err != nil {
			return "", fmt.Errorf("invalid host %q", h)
		}
	}
	a = strings.TrimRight(strings.ToLower(a), ".")
	// The WHATWG forbidden domain code points: no browser requests such a host.
	if strings.ContainsAny(a, "\x00\t\n\r #/:<>?@[\\]^|%") {
		return "", fmt.Errorf("invalid host %q", h)
	}
	if ip, ok := parseIPv4(a); ok {
		return ip.String(), nil
	}
	if a == "" {
		return "", errors.New("empty host")
	}
	return a, nil
}

var idnaDots = strings.NewReplacer("\u3002", ".", "\uff0e", ".", "\uff61", ".")

func percentDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s)+0 && i+2 <= len(s)-1 {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

// parseIPv4 is the WHATWG IPv4 parser: a host whose last label is a number
// is an IPv4 address of 1 to 4 parts (see parseIPv4Loose). ok is false for
// a name.
func parseIPv4(h string) (netip.Addr, bool) {
	parts := strings.Split(strings.TrimSuffix(h, "."), ".")
	if last := parts[len(parts)-1]; last == "" || !isNumberish(last) {
		return netip.Addr{}, false
	}
	return parseIPv4Loose(h)
}

func isNumberish(s string) bool {
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		for _, c := range s[2:] {
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
		return true
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Validate checks the deny globs; errors name the bad one.
func (p *PagePolicy) Validate() error {
	for _, g := range p.DenyHosts {
		if _, err := path.Match(strings.ToLower(g), ""); err != nil || strings.TrimSpace(g) == "" {
			return fmt.Errorf("deny host %q is not a host glob like example.com or *.internal", g)
		}
	}
	return nil
}

// Check refuses raw when the policy says so; URLs of non-network schemes
// pass (the tools' scheme rules apply to them).
func (p *PagePolicy) Check(ctx context.Context, raw string) error {
	if p == nil {
		return nil
	}
	u, special, err := ParseURL(raw)
	if !special {
		return nil
	}
	if err != nil {
		return &RefusedError{Reason: fmt.Sprintf("the URL does not parse (%v)", err)}
	}
	host := u.Host
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	for _, g := range p.DenyHosts {
		if ok, _ := path.Match(strings.ToLower(strings.TrimSuffix(g, ".")), host); ok {
			return &RefusedError{Host: host, Reason: fmt.Sprintf("host %s is blocked on this proxy (deny list %s)", host, g)}
		}
	}
	var eps []ProtectedEndpoint
	for _, e := range p.endpoints() {
		if e.Port == u.Port {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil
	}
	refuse := &RefusedError{Host: host, Reason: fmt.Sprintf("%s:%d is a browser's DevTools endpoint or the proxy's own address, which pages may never reach", host, u.Port)}
	addrs, err := p.addrs(ctx, host)
	if err != nil {
		return nil // a name that does not resolve reaches nothing
	}
	local := p.localAddrs()
	for _, a := range addrs {
		if a.IsLoopback() || a.IsUnspecified() || slices.Contains(local, a) {
			return refuse
		}
		for _, e := range eps {
			if slices.Contains(e.Addrs, a) || slices.ContainsFunc(e.Addrs, netip.Addr.IsUnspecified) {
				return refuse
			}
		}
	}
	return nil
}

func (p *PagePolicy) endpoints() []ProtectedEndpoint {
	p.listen.mu.Lock()
	out := slices.Clone(p.listen.addrs)
	p.listen.mu.Unlock()
	if p.Endpoints != nil {
		out = append(out, p.Endpoints()...)
	}
	return out
}

func (p *PagePolicy) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap().WithZone("")}, nil
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}, nil
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	out, err := r.LookupNetIP(lctx, "ip", host)
	for i := range out {
		out[i] = out[i].Unmap().WithZone("")
	}
	return out, err
}

var (
	ifaceMu    sync.Mutex
	ifaceAddrs []netip.Addr
	ifaceAt    time.Time
)

func (p *PagePolicy) localAddrs() []netip.Addr {
	if p.LocalAddrs != nil {
		return p.LocalAddrs()
	}
	ifaceMu.Lock()
	defer ifaceMu.Unlock()
	if time.Since(ifaceAt) < 30*time.Second {
		return ifaceAddrs
	}
	ifaceAddrs, ifaceAt = nil, time.Now()
	list, _ := net.InterfaceAddrs()
	for _, a := range list {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			ifaceAddrs = append(ifaceAddrs, pfx.Addr().Unmap().WithZone(""))
		}
	}
	return ifaceAddrs
}

// FetchPatterns returns the CDP Fetch URL patterns that cover every URL
// Check may refuse, so that the browser pauses only those requests: one
// per protected port, or every http(s) URL when a deny glob is more than
// * and ? wildcards. Empty: nothing to guard.
func (p *PagePolicy) FetchPatterns() []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, port := range p.Ports() {
		out = append(out, fmt.Sprintf("*://*:%d/*", port))
		for scheme, def := range defaultPorts {
			if def == port && (scheme == "http" || scheme == "https") {
				out = append(out, scheme+"://*/*")
			}
		}
	}
	for _, g := range p.DenyHosts {
		g = strings.ToLower(strings.TrimSuffix(g, "."))
		if strings.ContainsAny(g, `[]\`) {
			return []string{"http*://*"}
		}
		// The host may be followed by a port, or by the path.
		out = append(out, "*://"+g+"/*", "*://"+g+":*", "*://*@"+g+"/*")
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Ports returns the protected ports, sorted.
func (p *PagePolicy) Ports() []int {
	if p == nil {
		return nil
	}
	var ports []int
	for _, e := range p.endpoints() {
		ports = append(ports, e.Port)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// NormHost lower-cases a host name and drops IPv6 brackets and a trailing dot.
func NormHost(h string) string { return normHost(h) }

// listenSet holds the proxy's own listen addresses, set once it listens.
type listenSet struct {
	mu    sync.Mutex
	addrs []ProtectedEndpoint
}

// SetListen records the proxy's own listen addresses (net.Listener.Addr
// values, or host:port strings); they are protected from then on, beside
// Endpoints. An unspecified bind address (0.0.0.0, ::) protects the port on
// every address of the host.
func (p *PagePolicy) SetListen(addrs ...string) {
	var list []ProtectedEndpoint
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			continue
		}
		list = append(list, ProtectedEndpoint{Port: int(ap.Port()), Addrs: []netip.Addr{ap.Addr().Unmap().WithZone("")}})
	}
	p.listen.mu.Lock()
	p.listen.addrs = list
	p.listen.mu.Unlock()
}
