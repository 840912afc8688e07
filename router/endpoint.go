package router

import (
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// loopbackKey is the one address every loopback address and name stands
// for in endpoint keys: a browser listening on the local machine is the
// same browser whichever loopback spelling reaches it.
var loopbackKey = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// CanonicalURL gives the key of the endpoint a browser URL names, without
// any lookup: "tcp://host:port". Two URLs with the same key reach the same
// browser, so the store refuses to give one key to two users.
//
//   - The scheme is dropped: http, https, ws and wss of one host and port
//     are one endpoint (ws://h:9222/devtools/browser/x and http://h:9222
//     have the same key). A missing port is the scheme's default (80 for
//     http and ws, 443 for https and wss).
//   - Userinfo, path, query and fragment are dropped.
//   - The host is lower-cased and loses a trailing dot and IPv6 brackets;
//     IPv4 written as browsers read it (127.1, 0x7f.0.0.1, 2130706433,
//     octal parts) is dotted decimal; IPv4-mapped IPv6 is IPv4; a zone is
//     dropped.
//   - Every loopback host is one host, written 127.0.0.1: 127.0.0.0/8, ::1,
//     localhost and *.localhost (and the unspecified addresses 0.0.0.0 and
//     ::, which reach the local machine too).
//
// Names other than localhost are not resolved: use EndpointKeys with the
// host's addresses for that. CanonicalURL(CanonicalURL(u)) == CanonicalURL(u).
// raw should have passed ValidateBrowserURL; if it has no host, CanonicalURL
// returns it trimmed and lower-cased.
func CanonicalURL(raw string) string {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return strings.ToLower(raw)
	}
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		}
	}
	return endpointKey(CanonicalHost(u.Hostname()), port)
}

// EndpointKeys returns every key under which a registration of raw is
// compared with the others (see CanonicalURL): the key of the literal host,
// and one per address in addrs (what the host resolved to at registration,
// in the canonical form of CanonicalHost), sorted and without repeats. Two
// registrations conflict when they share a key: the same host spelling, or
// an address and port in common. With no addrs (the lookup failed or was
// not made) only the literal host is compared.
func EndpointKeys(raw string, addrs []netip.Addr) []string {
	literal := CanonicalURL(raw)
	keys := []string{literal}
	if u, err := url.Parse(literal); err == nil && u.Port() != "" {
		for _, a := range addrs {
			keys = append(keys, endpointKey(canonicalAddr(a).String(), u.Port()))
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// CanonicalHost returns host in the form endpoint keys compare: an IP
// address in any spelling a browser accepts as its canonical text (every
// loopback address as 127.0.0.1), localhost and *.localhost as 127.0.0.1,
// any other name lower-cased without a trailing dot.
func CanonicalHost(host string) string {
	h := normHost(host)
	if a, ok := parseHostAddr(h); ok {
		return canonicalAddr(a).String()
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return loopbackKey.String()
	}
	return h
}

// endpointKey joins a canonical host and a port into a key.
func endpointKey(host, port string) string {
	if port == "" {
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		return "tcp://" + host
	}
	return "tcp://" + net.JoinHostPort(host, port)
}

// canonicalAddr unmaps IPv4-mapped IPv6, drops the zone, and folds every
// address of the local machine into loopbackKey.
func canonicalAddr(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.IsLoopback() || a.IsUnspecified() {
		return loopbackKey
	}
	return a
}

// parseHostAddr parses a URL host (already without brackets, as normHost
// leaves it) as an IP address, accepting the IPv4 forms browsers accept.
func parseHostAddr(h string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), true
	}
	return parseIPv4Loose(h)
}

// parseIPv4Loose parses an IPv4 address the way the WHATWG URL standard
// (and inet_aton) does: one to four dot-separated parts, each decimal,
// octal (leading 0) or hex (0x), the last part filling the remaining
// bytes, and one trailing dot allowed. 127.1, 0x7f.1 and 2130706433 are
// all 127.0.0.1. Anything else is not an IPv4 address.
func parseIPv4Loose(s string) (netip.Addr, bool) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		n, ok := parseIPv4Part(p)
		if !ok {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false
		}
		v |= n << (8 * (3 - i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// parseIPv4Part parses one part of a loose IPv4 address.
func parseIPv4Part(p string) (uint64, bool) {
	base := 10
	switch {
	case p == "":
		return 0, false
	case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
		p, base = p[2:], 16
		if p == "" {
			return 0, true // "0x" is 0, as in browsers
		}
	case len(p) >= 2 && p[0] == '0':
		p, base = p[1:], 8
	}
	// With an explicit base, ParseUint takes no sign, prefix or "_".
	n, err := strconv.ParseUint(p, base, 33)
	if err != nil {
		return 0, false
	}
	return n, true
}
