package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// DefaultAllowCIDRs are the ranges a browser may live in unless configured
// otherwise: loopback, the private ranges and carrier-grade NAT (used by
// Tailscale and similar overlays).
func DefaultAllowCIDRs() []string {
	return []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "100.64.0.0/10"}
}

// DefaultDenyCIDRs are the ranges no browser may live in unless configured
// otherwise: link-local (where cloud metadata services answer) and the
// metadata addresses that sit inside otherwise allowed ranges (AWS and GCE
// IPv6, Alibaba Cloud).
func DefaultDenyCIDRs() []string {
	return []string{"169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "fd20:ce::254/128", "100.100.100.200/32"}
}

// DefaultDenyHostNames are host names refused before any DNS lookup: the
// names of cloud metadata services.
func DefaultDenyHostNames() []string {
	return []string{"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
}

// resolveTimeout bounds the DNS lookup of a browser host.
const resolveTimeout = 5 * time.Second

// nat64 is the well-known NAT64 prefix: its addresses embed an IPv4 address
// that must pass the policy too.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy decides which network addresses may host a registered browser. An
// address is allowed when it is in an allowed range and in no denied range;
// denied ranges win. Unspecified (0.0.0.0, ::) and multicast addresses are
// always refused: connecting to 0.0.0.0 reaches the local machine whatever
// the lists say. A Policy is immutable and safe for concurrent use.
type Policy struct {
	allow, deny []netip.Prefix
	denyNames   []string
	resolver    Resolver
}

// NewPolicy builds a policy from CIDR lists (a bare IP counts as a single
// address) and host names refused before lookup. Lists are used as given: an
// empty allow list allows nothing. resolver may be nil (the system resolver).
// Errors name the entry that does not parse.
func NewPolicy(allow, deny, denyNames []string, resolver Resolver) (*Policy, error) {
	p := &Policy{resolver: resolver}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	var err error
	if p.allow, err = parsePrefixes(allow); err != nil {
		return nil, fmt.Errorf("browser allow list: %w", err)
	}
	if p.deny, err = parsePrefixes(deny); err != nil {
		return nil, fmt.Errorf("browser deny list: %w", err)
	}
	for _, n := range denyNames {
		if n = normHost(n); n != "" {
			p.denyNames = append(p.denyNames, n)
		}
	}
	return p, nil
}

// DefaultPolicy returns the policy of DefaultAllowCIDRs, DefaultDenyCIDRs and
// DefaultDenyHostNames with the system resolver.
func DefaultPolicy() *Policy {
	p, err := NewPolicy(DefaultAllowCIDRs(), DefaultDenyCIDRs(), DefaultDenyHostNames(), nil)
	if err != nil {
		panic("router: default browser policy does not parse: " + err.Error())
	}
	return p
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR (e.g. 10.0.0.0/8) nor an IP address", s)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR like 10.0.0.0/8 or fc00::/7", s)
		}
		if pfx.Addr().Is4In6() {
			a := pfx.Addr().Unmap()
			pfx = netip.PrefixFrom(a, pfx.Bits()-96)
		}
		out = append(out, pfx.Masked())
	}
	return out, nil
}

// DeniedError reports a browser host or address the policy refuses. Its
// message names the host or address and why; it never holds credentials.
type DeniedError struct {
	Host   string // the host name, when the refusal is by name or after a lookup
	Addr   string // the refused address, when there is one
	Reason string
}

// Error returns "browser address X is refused: <reason>".
func (e *DeniedError) Error() string {
	what := e.Addr
	if what == "" {
		what = e.Host
	} else if e.Host != "" && e.Host != e.Addr {
		what = e.Host + " (" + e.Addr + ")"
	}
	return "browser address " + what + " is refused: " + e.Reason
}

// CheckAddr reports whether the policy allows connecting to ip. The error is
// a *DeniedError naming the rule that refuses it.
func (p *Policy) CheckAddr(ip netip.Addr) error {
	ip = ip.Unmap().WithZone("")
	deny := func(reason string) error { return &DeniedError{Addr: ip.String(), Reason: reason} }
	switch {
	case !ip.IsValid():
		return &DeniedError{Addr: "(none)", Reason: "not an IP address"}
	case ip.IsUnspecified():
		return deny("the unspecified address reaches the proxy's own machine; use 127.0.0.1")
	case ip.IsMulticast():
		return deny("multicast addresses cannot host a browser")
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		if err := p.CheckAddr(netip.AddrFrom4([4]byte(b[12:]))); err != nil {
			return deny("it embeds a refused IPv4 address (NAT64): " + err.Error())
		}
	}
	for _, pfx := range p.deny {
		if pfx.Contains(ip) {
			return deny(fmt.Sprintf("%s is in the deny list (--browser-deny-cidrs); link-local and cloud metadata addresses are never browsers", pfx))
		}
	}
	for _, pfx := range p.allow {
		if pfx.Contains(ip) {
			return nil
		}
	}
	return deny("it is in no allowed range; add it to --browser-allow-cidrs (default: loopback and private ranges)")
}

// CheckHost refuses a host name on the deny list (e.g.
// metadata.google.internal) before any lookup. IP literals are checked with
// CheckAddr.
func (p *Policy) CheckHost(host string) error {
	h := normHost(host)
	if a, ok := parseHostAddr(h); ok {
		return p.CheckAddr(a)
	}
	for _, n := range p.denyNames {
		if h == n {
			return &DeniedError{Host: h, Reason: "this host name belongs to a cloud metadata service"}
		}
	}
	return nil
}

// Resolve checks host by name, looks it up (bounded by ctx and 5 seconds),
// and checks every address: one refused address refuses the host, so a name
// cannot smuggle a metadata address in among allowed ones. It returns the
// addresses, IP literals as themselves.
func (p *Policy) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	h := normHost(host)
	if h == "" {
		return nil, errors.New("browser host is empty")
	}
	if err := p.CheckHost(h); err != nil {
		return nil, err
	}
	if a, ok := parseHostAddr(h); ok {
		return []netip.Addr{a.Unmap().WithZone("")}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(lctx, "ip", h)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, fmt.Errorf("browser host %s does not resolve; check the name", h)
		}
		return nil, fmt.Errorf("resolve browser host %s: %w", h, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("browser host %s has no addresses", h)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if err := p.CheckAddr(a); err != nil {
			var de *DeniedError
			if errors.As(err, &de) {
				de.Host = h
			}
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// CheckURL checks the host of a browser URL (which should have passed
// ValidateBrowserURL) against the policy, resolving it. Errors hold no
// credentials of the URL.
func (p *Policy) CheckURL(ctx context.Context, raw string) error {
	_, err := p.ResolveURL(ctx, raw)
	return err
}

// ResolveURL is CheckURL that also returns the addresses the host resolved
// to (see Resolve), for Registration.Addrs: registrations are compared on
// them.
func (p *Policy) ResolveURL(ctx context.Context, raw string) ([]netip.Addr, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("cannot parse browser URL")
	}
	return p.Resolve(ctx, u.Hostname())
}

// normHost lower-cases a host name, drops IPv6 brackets and a trailing dot.
func normHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = strings.TrimPrefix(strings.TrimSuffix(h, "]"), "[")
	return strings.TrimSuffix(h, ".")
}
