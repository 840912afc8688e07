// Package router records which user owns which browser: registrations that
// bind a user to the Chrome DevTools Protocol (CDP) endpoint of their
// browser, a persistent store for them, and validation of browser URLs.
package router

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxURLLength is the longest browser URL ValidateBrowserURL accepts.
const MaxURLLength = 2048

// Registration binds a user to the CDP endpoint of their browser.
type Registration struct {
	UserID     string            `json:"userId"`
	BrowserURL string            `json:"browserURL"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`

	// BrowserSince is when the user registered this BrowserURL: a browser
	// two registrations reach belongs to the one that pointed at it first,
	// and a user's older registration of another URL gives no seniority.
	// Store.Put sets it; see Since for records written before it existed.
	BrowserSince time.Time `json:"-"`

	// Headers are sent to this browser only, on the CDP handshake and
	// /json/version (e.g. an API key of a hosted browser). Like the URL's
	// userinfo and query, they are credentials: sealed at rest, never
	// encoded to JSON (so never shown by accident).
	Headers map[string]string `json:"-"`

	// Addrs are the addresses the browser's host resolved to when it was
	// registered (see Policy.ResolveURL). Store.Put compares them with the
	// other registrations (see EndpointKeys) and stores them (sealed with
	// the URL): restored, a registration keeps its seniority over a
	// browser only at these addresses, not at whatever its name resolves
	// to after a restart (browserpool.Endpoint.Addrs). Records stored
	// before they were have none.
	Addrs []netip.Addr `json:"-"`
}

// Since returns when the user registered the current browser URL:
// BrowserSince, or CreatedAt for a record stored before BrowserSince was.
func (r Registration) Since() time.Time {
	if r.BrowserSince.IsZero() {
		return r.CreatedAt
	}
	return r.BrowserSince
}

// ErrNotFound is returned when no registration exists for a user.
var ErrNotFound = errors.New("registration not found")

// ErrConflict is returned when a user registers a browser that another user
// already holds: the same endpoint in any spelling (see EndpointKeys).
var ErrConflict = errors.New("the browser is registered by another user")

// URLError reports an invalid browser URL. Validation errors are of this type
// so callers can map them to INVALID_BROWSER_URL.
//
// URL holds the offending URL passed through Redact, so it is safe to log.
type URLError struct {
	URL    string
	Reason string
}

// Error returns "invalid browser URL: <reason>". It never includes the URL.
func (e *URLError) Error() string {
	return "invalid browser URL: " + e.Reason
}

// ValidateBrowserURL checks a browser URL and returns it normalised.
//
// Accepted forms are http://host:port and https://host:port (path empty or
// "/"), and ws://host[:port]/devtools/... and wss://host[:port]/devtools/...
// The port is required for http and https because CDP has no default port.
// The host must be non-empty and fragments are rejected. Queries are rejected
// for http and https but allowed for ws and wss, because hosted browsers pass
// tokens as ?token=. Userinfo (user:password@) is kept: it is sent as HTTP
// Basic authentication. URLs longer than MaxURLLength are rejected.
//
// The result has a lower-case scheme and host, IPv4 in any form browsers
// accept (127.1, 0x7f.0.0.1) written as dotted decimal; http and https URLs
// lose their trailing "/". Errors are of type *URLError.
func ValidateBrowserURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	fail := func(format string, args ...any) (string, error) {
		return "", &URLError{URL: Redact(raw), Reason: fmt.Sprintf(format, args...)}
	}
	if raw == "" {
		return fail("URL is empty")
	}
	if len(raw) > MaxURLLength {
		return fail("URL is %d characters long; the limit is %d", len(raw), MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The *url.Error would echo the URL, so only say that parsing failed.
		return fail("cannot parse URL")
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "http", "https", "ws", "wss":
	case "":
		return fail("scheme is missing; use e.g. http://127.0.0.1:9222")
	default:
		return fail("scheme %q is not supported; use http, https, ws or wss", scheme)
	}
	if u.Opaque != "" {
		return fail("URL must be absolute, e.g. %s://127.0.0.1:9222", scheme)
	}
	userinfo := ""
	if u.User != nil {
		if u.User.Username() == "" {
			return fail("userinfo has an empty user name; use user:password@host")
		}
		userinfo = u.User.String() + "@"
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fail("fragments are not allowed")
	}
	host := strings.ToLower(u.Hostname())
	if strings.Trim(host, ".") == "" {
		// "." is the empty name with its trailing dot: no host either.
		return fail("host is empty")
	}
	if name := strings.TrimSuffix(host, "."); !strings.Contains(host, ":") &&
		slices.Contains(strings.Split(name, "."), "") {
		// "a0.." or ".a" has an empty label: no DNS name, and no stable
		// canonical form (normalising drops only one trailing dot).
		return fail("host has an empty label (a leading dot or two dots in a row); write the name as DNS has it, e.g. http://browser.internal:9222")
	}
	if strings.ContainsAny(host, "[]") {
		// Hostname drops the brackets of an IPv6 literal; any left are
		// no host's ("0]."), and a stray one is dropped by normalising.
		return fail("host is not valid: a bracket belongs only around an IPv6 address, e.g. http://[::1]:9222")
	}
	if strings.Contains(host, ":") && net.ParseIP(host) == nil {
		// An IPv6 address without brackets ("ws://::/...") does not survive
		// normalising.
		return fail("host is not valid; write an IPv6 address in brackets, e.g. http://[::1]:9222")
	}
	if strings.Contains(host, "%") {
		// Zone IDs only qualify link-local addresses, which the browser
		// policy refuses anyway, and they do not survive normalising.
		return fail("IPv6 zone IDs are not supported")
	}
	if !strings.Contains(host, ":") {
		// 127.1 or 0x7f.0.0.1 is an address to a browser, but a name to
		// Go's resolver: store the address it means.
		if a, ok := parseIPv4Loose(host); ok {
			host = a.String()
		}
	}
	port := u.Port()
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fail("port %q is out of range 1-65535", port)
		}
	}
	hostPort := host
	if strings.Contains(host, ":") {
		hostPort = "[" + host + "]" // IPv6 literal
	}
	if port != "" {
		hostPort = net.JoinHostPort(host, port)
	}

	switch scheme {
	case "http", "https":
		if port == "" {
			return fail("port is missing; add the DevTools port, e.g. %s://127.0.0.1:9222", scheme)
		}
		if p := u.EscapedPath(); p != "" && p != "/" {
			return fail("path must be empty for %s URLs; use %s://host:port", scheme, scheme)
		}
		if u.RawQuery != "" || u.ForceQuery {
			return fail("query is not allowed for %s URLs", scheme)
		}
		return scheme + "://" + userinfo + hostPort, nil
	default: // ws, wss
		p := u.EscapedPath()
		if !strings.HasPrefix(p, "/devtools/") || len(p) == len("/devtools/") {
			return fail("path must start with /devtools/, e.g. %s://127.0.0.1:9222/devtools/browser/<id>", scheme)
		}
		out := scheme + "://" + userinfo + hostPort + p
		if u.RawQuery != "" {
			out += "?" + u.RawQuery
		}
		return out, nil
	}
}

// Redact returns the URL with any userinfo password and every query value
// replaced by "redacted", for logs and API answers; a user name without a
// password may itself be a token and is redacted too. A URL that cannot be
// parsed is replaced entirely by "redacted".
func Redact(raw string) string {
	if _, ok := unredacted.Load(raw); ok {
		return raw
	}
	out := redact(raw)
	if out == raw {
		if unredactedN.Add(1) > maxUnredacted {
			unredacted.Clear() // a bound, not an eviction policy
			unredactedN.Store(1)
		}
		unredacted.Store(raw, struct{}{})
	}
	return out
}

// unredacted holds URLs Redact leaves as they are (nothing to redact):
// GET /api/users/:id/status redacts the same browser URL on every request,
// and parsing it again was most of the route's own cost. Only such URLs are
// kept, so it holds nothing that Redact's answers do not show; at most
// maxUnredacted of them (MaxURLLength each).
var (
	unredacted  sync.Map // string -> struct{}
	unredactedN atomic.Int64
)

const maxUnredacted = 4096

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "redacted"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "redacted")
		} else {
			u.User = url.User("redacted")
		}
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, part := range parts {
			if part == "" {
				continue
			}
			key, _, ok := strings.Cut(part, "=")
			if !ok {
				// A bare "?token" may itself be a secret.
				parts[i] = "redacted"
				continue
			}
			parts[i] = key + "=redacted"
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if u.Opaque != "" {
		// Opaque data (e.g. "javascript:...") is not a URL we understand.
		u.Opaque = "redacted"
	}
	return u.String()
}
