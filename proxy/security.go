package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// SecurityConfig holds the HTTP-level protections of the proxy: which web
// origins and Host names may call it, CORS for /api, --auth none, TLS, and
// the browser URL policy checked at registration. The zero value is the
// strict default: same-origin pages only, no CORS, loopback Host names only
// on loopback connections, bearer authentication, plain HTTP, and
// router.DefaultPolicy().
type SecurityConfig struct {
	// AllowedOrigins are web origins (https://app.example.com) whose pages
	// may call /api/*, /sse, /message and /mcp, besides same-origin pages
	// and clients that send no Origin header. Any other Origin gets 403.
	AllowedOrigins []string
	// CORSOrigins get CORS answers (and may call) on /api/* only. Empty:
	// no CORS at all.
	CORSOrigins []string
	// AllowedHosts are Host names accepted on a loopback connection besides
	// localhost, 127.0.0.1 and [::1] (with any port): the guard against DNS
	// rebinding.
	AllowedHosts []string
	// AuthNone serves every request as AuthNoneUser with the read, write and
	// script permissions, without credentials: one developer on loopback.
	// Serve refuses it on an address that is not loopback.
	AuthNone bool
	// AuthNoneUser is the principal of AuthNone; default "local".
	AuthNoneUser string
	// TLS, when set, makes Serve answer HTTPS; see LoadTLS.
	TLS *tls.Config
	// BrowserPolicy decides which hosts may be registered as browsers; nil
	// is router.DefaultPolicy(). The pool must enforce the same policy when
	// it dials.
	BrowserPolicy *router.Policy
}

// Validate checks and normalises the configuration: origins must be
// scheme://host[:port], hosts must be host names or addresses, the
// AuthNone user a valid user ID. Errors name the flag and the entry.
func (c *SecurityConfig) Validate() error {
	var err error
	if c.AllowedOrigins, err = normOrigins("--allowed-origins", c.AllowedOrigins); err != nil {
		return err
	}
	if c.CORSOrigins, err = normOrigins("--cors-origins", c.CORSOrigins); err != nil {
		return err
	}
	hosts := c.AllowedHosts[:0:0]
	for _, h := range c.AllowedHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/ @?#*") {
			return fmt.Errorf("--allowed-hosts: %q is not a host name like proxy.example.com", h)
		}
		hosts = append(hosts, h)
	}
	c.AllowedHosts = hosts
	if c.AuthNoneUser == "" {
		c.AuthNoneUser = "local"
	}
	if err := auth.ValidateUserID(c.AuthNoneUser); err != nil {
		return fmt.Errorf("--auth-none-user: %w", err)
	}
	return nil
}

// normOrigins normalises a list of origins, refusing wildcards and paths.
func normOrigins(flag string, list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, o := range list {
		if strings.TrimSpace(o) == "" {
			continue
		}
		n, ok := normOrigin(o)
		if !ok {
			return nil, fmt.Errorf("%s: %q is not an origin like https://app.example.com (no wildcard, no path)", flag, o)
		}
		out = append(out, n)
	}
	return out, nil
}

// normOrigin lower-cases scheme://host[:port], dropping the scheme's default
// port; ok is false for anything else (including "null" and "*").
func normOrigin(o string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.Contains(u.Host, "*") {
		return "", false
	}
	host := strings.ToLower(u.Host)
	if (u.Scheme == "http" && strings.HasSuffix(host, ":80")) || (u.Scheme == "https" && strings.HasSuffix(host, ":443")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return strings.ToLower(u.Scheme) + "://" + host, true
}

// LoadTLS reads a PEM certificate (chain) and key for Serve. Both or
// neither must be given; neither gives nil. Errors name the file.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together: give both (PEM files) or neither")
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-key %s: %w", keyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s with --tls-key %s: %w (both must be PEM, the key matching the certificate)", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// IsLoopbackAddr reports whether a listen address host:port names only
// loopback: localhost or a loopback IP. An empty host or 0.0.0.0 is not.
func IsLoopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return isLoopbackHost(host)
}

// isLoopbackHost reports whether host (no port; brackets allowed) is
// localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// checkListener refuses --auth none on an address that is not loopback.
func (s *Server) checkListener(addr net.Addr) error {
	if !s.cfg.Security.AuthNone {
		return nil
	}
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--auth none serves every request as %q without credentials, so it only listens on loopback, not %s: use --addr 127.0.0.1:PORT, or --auth jwt", s.cfg.Security.AuthNoneUser, addr)
}

// serveOn serves srv on ln, over TLS when configured. The server's own
// errors (e.g. failed TLS handshakes) go to the proxy log.
func (s *Server) serveOn(srv *http.Server, ln net.Listener) error {
	if srv.ErrorLog == nil {
		srv.ErrorLog = stdlog.New(s.log.With().Str("component", "http").Logger(), "", 0)
	}
	if s.cfg.Security.TLS == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = s.cfg.Security.TLS.Clone()
	return srv.ServeTLS(ln, "", "")
}

// authMiddleware is the authentication of the protected routes: bearer
// credentials, or the fixed principal of --auth none.
func (s *Server) authMiddleware() echo.MiddlewareFunc {
	if s.cfg.Security.AuthNone {
		return s.authNone
	}
	return s.authenticate
}

// authNone makes every request the --auth-none-user principal with the
// read, write and script permissions.
func (s *Server) authNone(next echo.HandlerFunc) echo.HandlerFunc {
	user := s.cfg.Security.AuthNoneUser
	if user == "" {
		user = "local"
	}
	return func(c echo.Context) error {
		setPrincipal(c, auth.Principal{UserID: user, Perms: auth.DefaultPerms()})
		return next(c)
	}
}

// browserPolicy is the policy registrations are checked against.
func (s *Server) browserPolicy() *router.Policy {
	if p := s.cfg.Security.BrowserPolicy; p != nil {
		return p
	}
	return router.DefaultPolicy()
}

// CORS answers on /api/*.
const (
	corsMethods = "GET, POST, DELETE"
	corsHeaders = "Authorization, Content-Type, X-User-Id"
	corsMaxAge  = "600"
)

// guard runs before routing on every request: the Host check against DNS
// rebinding (on loopback connections), the Origin check of /api/* and the
// MCP routes, and CORS for /api/*. Refusals are 403 FORBIDDEN, audited.
func (s *Server) guard(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !s.hostAllowed(r) {
			s.deny(c, "", "Host header "+quoteHeader(r.Host)+" on a loopback connection (DNS rebinding?)")
			return apiError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("Host %s is not allowed on this loopback address; use localhost or 127.0.0.1, or start the proxy with --allowed-hosts", quoteHeader(r.Host)))
		}
		path := r.URL.Path
		api := strings.HasPrefix(path, "/api/")
		mcp := path == "/sse" || path == "/message" || path == "/mcp"
		origin := r.Header.Get("Origin")
		h := c.Response().Header()
		if mcp {
			// mcp-go answers SSE with Access-Control-Allow-Origin: *; only an
			// origin the check below allowed may read the answer.
			c.Response().Before(func() {
				if h.Get("Access-Control-Allow-Origin") == "" {
					return
				}
				if origin == "" {
					h.Del("Access-Control-Allow-Origin")
					return
				}
				h.Set("Access-Control-Allow-Origin", origin)
				// A forwarded answer has the owner's already.
				if !slices.Contains(h.Values("Vary"), "Origin") {
					h.Add("Vary", "Origin")
				}
			})
		}
		if origin == "" || (!api && !mcp) {
			return next(c)
		}
		norm, _ := normOrigin(origin)
		cors := api && norm != "" && slices.Contains(s.cfg.Security.CORSOrigins, norm)
		allowed := norm != "" && (sameOrigin(r, norm) || slices.Contains(s.cfg.Security.AllowedOrigins, norm))
		if !allowed && !cors {
			s.deny(c, "", "cross-origin request from "+quoteHeader(origin))
			return apiError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("requests from the web origin %s are not allowed; the operator can allow it with --allowed-origins", quoteHeader(origin)))
		}
		if cors {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", corsMethods)
				h.Set("Access-Control-Allow-Headers", corsHeaders)
				h.Set("Access-Control-Max-Age", corsMaxAge)
				return c.NoContent(http.StatusNoContent)
			}
		}
		return next(c)
	}
}

// hostAllowed is the DNS rebinding guard, consistent with mcp-go's: on a
// connection to a loopback address, the Host header must be localhost, a
// loopback IP or one of AllowedHosts.
func (s *Server) hostAllowed(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || !isLoopbackLocal(local) {
		return true
	}
	host := strings.ToLower(r.Host)
	name, _, err := net.SplitHostPort(host)
	if err != nil {
		name = host
	}
	if isLoopbackHost(name) {
		return true
	}
	return slices.Contains(s.cfg.Security.AllowedHosts, host) || slices.Contains(s.cfg.Security.AllowedHosts, strings.Trim(name, "[]"))
}

// isLoopbackLocal is IsLoopbackAddr(local.String()) without formatting and
// parsing the address of a TCP connection on every request.
func isLoopbackLocal(local net.Addr) bool {
	if ta, ok := local.(*net.TCPAddr); ok {
		a, ok := netip.AddrFromSlice(ta.IP)
		return ok && a.Unmap().IsLoopback()
	}
	return IsLoopbackAddr(local.String())
}

// sameOrigin reports whether the normalised origin is the proxy itself as
// the request addressed it (the Host header, default port dropped).
func sameOrigin(r *http.Request, origin string) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	self, ok := normOrigin(scheme + "://" + r.Host)
	if ok && self == origin {
		return true
	}
	// Behind a TLS-terminating reverse proxy the request arrives over HTTP
	// while the page is https on the same host.
	_, rest, _ := strings.Cut(origin, "://")
	return ok && r.TLS == nil && strings.HasPrefix(origin, "https://") && strings.EqualFold(rest, strings.TrimSuffix(strings.ToLower(r.Host), ":443"))
}

// quoteHeader quotes an untrusted header value for a message or log,
// bounded in length.
func quoteHeader(v string) string {
	if len(v) > 100 {
		v = v[:100] + "..."
	}
	return fmt.Sprintf("%q", v)
}
