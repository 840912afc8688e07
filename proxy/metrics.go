package proxy

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// Denial reasons, the values of the reason label of mbp_http_denials_total.
const (
	denyUnauthorized   = "unauthorized"    // missing, invalid or expired credentials
	denyForbidden      = "forbidden"       // acting for another user, or not admin
	denyUserMismatch   = "user_mismatch"   // X-User-Id is not the token's user
	denySessionOwner   = "session_owner"   // another user's MCP session
	denyUnknownSession = "unknown_session" // an MCP session ID that is not open
	denySessionLimit   = "session_limit"   // sessions per user or in total
	denyStreamLimit    = "stream_limit"    // open MCP streams per user
	denyBodyTooLarge   = "body_too_large"  // the request body exceeds --max-body
	denyLimitExceeded  = "limit_exceeded"  // another 429
	denyConnLimit      = "conn_limit"      // a connection (or forwarded request) over --max-conns-per-ip
	denyForward        = "forward_header"  // a forged, replayed or misplaced inter-instance forwarding header
)

// Connection statuses, the values of the status label of
// mcp_connections_total. A connection is an MCP transport session: an SSE
// stream (GET /sse) or a Streamable HTTP session (an initialize, or a GET
// /mcp without Mcp-Session-Id, that gets a session ID). It is accepted when
// the transport registers its session; an attempt refused before that is
// counted under the refusal's status.
const (
	connAccepted     = "accepted"     // the session opened
	connUnauthorized = "unauthorized" // 401: no, invalid or expired credentials
	connForbidden    = "forbidden"    // 403: X-User-Id, Origin or Host refused, or a permission missing
	connLimited      = "limited"      // 429: a session, stream or connection limit
	connError        = "error"        // any other 4xx or 5xx
)

// Authentication failure reasons, the values of the reason label of
// mcp_auth_failures_total: every 401 the proxy answers.
const (
	authMissing       = "missing_token"   // no Authorization: Bearer header, or a malformed one
	authInvalid       = "invalid_token"   // a JWT that does not verify (signature, issuer, audience, format)
	authExpired       = "expired_token"   // a JWT past its exp
	authInvalidKey    = "invalid_api_key" // an unknown, revoked or mistyped API key
	authRevokedKeyJWT = "revoked_api_key" // a token minted with an API key that is revoked since
)

// authFailKey is the echo context key under which authentication names why
// it failed, for mcp_auth_failures_total.
const authFailKey = "auth_failure"

// markAuthFailed names the reason of a 401 for mcp_auth_failures_total.
func markAuthFailed(c echo.Context, reason string) { c.Set(authFailKey, reason) }

// notOpeningKey is the echo context key mcpGuard sets on a POST /mcp
// without a session ID that is not an initialize (a call of the stateless
// protocol), so that its refusal is not counted as a failed connection.
const notOpeningKey = "mcp_not_opening"

// denyReasonKey is the echo context key under which a refusal names its
// reason for the metrics.
const denyReasonKey = "deny_reason"

// markDenied names the reason of a refusal for mbp_http_denials_total.
func markDenied(c echo.Context, reason string) { c.Set(denyReasonKey, reason) }

// Metrics counts HTTP requests and refusals for Prometheus. Create it with
// NewMetrics and pass it in Config.Metrics; a nil *Metrics counts nothing.
// Labels are route templates, methods, status codes and reasons, never user
// IDs, session IDs or URLs.
type Metrics struct {
	requests     *prometheus.CounterVec
	denials      *prometheus.CounterVec
	connections  *prometheus.CounterVec // mcp_connections_total{status}
	authFailures *prometheus.CounterVec // mcp_auth_failures_total{reason}

	// limits counts the refusals of the proxy's own limits in the session
	// package's mcp_limit_rejections_total, one series with the session
	// limits; New binds it.
	limits *session.Metrics

	// counters holds the series of requests met so far, by requestSeries:
	// WithLabelValues hashes the labels and takes the vector's lock on
	// every call. Routes, methods (methodLabel) and codes are bounded sets.
	counters sync.Map
}

type requestSeries struct {
	route, method string
	code          int
}

// request returns the series of mbp_http_requests_total of one answer.
func (m *Metrics) request(route, method string, code int) prometheus.Counter {
	k := requestSeries{route, method, code}
	if c, ok := m.counters.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := m.requests.WithLabelValues(route, method, strconv.Itoa(code))
	m.counters.Store(k, c)
	return c
}

// NewMetrics creates the HTTP collectors and registers them on reg:
// mbp_http_requests_total{route,method,code},
// mbp_http_denials_total{reason}, mcp_connections_total{status} and
// mcp_auth_failures_total{reason}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mbp_http_requests_total", Help: "HTTP requests by route template, method and status code (counted when the answer or stream ends).",
		}, []string{"route", "method", "code"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mbp_http_denials_total", Help: "Refused HTTP requests by reason.",
		}, []string{"reason"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_connections_total", Help: "MCP transport connections (SSE streams and Streamable HTTP sessions) by status: accepted, or why the attempt was refused (unauthorized, forbidden, limited, error).",
		}, []string{"status"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_auth_failures_total", Help: "Requests refused with 401 by reason.",
		}, []string{"reason"}),
	}
	for _, st := range []string{connAccepted, connUnauthorized, connForbidden, connLimited, connError} {
		m.connections.WithLabelValues(st)
	}
	for _, r := range []string{authMissing, authInvalid, authExpired, authInvalidKey, authRevokedKeyJWT} {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range []string{denyUnauthorized, denyForbidden, denyUserMismatch, denySessionOwner, denyUnknownSession,
		denySessionLimit, denyStreamLimit, denyBodyTooLarge, denyLimitExceeded, denyConnLimit, denyForward} {
		m.denials.WithLabelValues(r) // export zeros, so alerts see the series
	}
	for _, c := range []prometheus.Collector{m.requests, m.denials, m.connections, m.authFailures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return m, nil
}

// connected counts an MCP transport connection that opened.
func (m *Metrics) connected() {
	if m != nil {
		m.connections.WithLabelValues(connAccepted).Inc()
	}
}

// limited counts a refusal by one of the proxy's limits (session.Limit*).
func (m *Metrics) limited(reason string) {
	if m != nil {
		m.limits.LimitRejected(reason)
	}
}

// connAttempt reports whether the request of c tried to open an MCP
// transport connection: GET /sse, or GET or POST /mcp without a session ID
// (a POST only when it is an initialize, or when it was refused before
// mcpGuard could look).
func connAttempt(c echo.Context) bool {
	r := c.Request()
	switch c.Path() {
	case "/sse":
		return r.Method == http.MethodGet
	case "/mcp":
		if r.Header.Get("Mcp-Session-Id") != "" {
			return false
		}
		notOpening, _ := c.Get(notOpeningKey).(bool)
		return r.Method == http.MethodGet || (r.Method == http.MethodPost && !notOpening)
	}
	return false
}

// connStatus is the status label of a refused connection attempt.
func connStatus(code int) string {
	switch code {
	case http.StatusUnauthorized:
		return connUnauthorized
	case http.StatusForbidden:
		return connForbidden
	case http.StatusTooManyRequests:
		return connLimited
	}
	return connError
}

// limitReason is the mcp_limit_rejections_total reason of a denial the
// proxy enforces itself; "" for the others (the session package counts the
// session limits).
func limitReason(deny string) string {
	switch deny {
	case denyStreamLimit:
		return session.LimitStreamsPerUser
	case denyBodyTooLarge:
		return session.LimitBodyTooLarge
	case denyConnLimit:
		return session.LimitConnsPerIP
	}
	return ""
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// observe counts every request and refusal, and audits the refusals that
// happen before a handler can: a missing bearer token and a body over the
// limit. It runs outside requestLog, which has already written any error.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := next(c); err != nil {
			c.Error(err)
		}
		status := c.Response().Status
		reason, _ := c.Get(denyReasonKey).(string)
		authReason, _ := c.Get(authFailKey).(string)
		if status == http.StatusUnauthorized && authReason == "" {
			authReason = authInvalid
			if _, err := auth.BearerToken(c.Request().Header.Get("Authorization")); err != nil {
				authReason = authMissing
			}
		}
		if reason == "" {
			switch status {
			case http.StatusUnauthorized:
				reason = denyUnauthorized
				if authReason == authMissing {
					s.deny(c, "", "missing or malformed bearer token")
				}
			case http.StatusForbidden:
				reason = denyForbidden
			case http.StatusRequestEntityTooLarge:
				reason = denyBodyTooLarge
				p, _ := principalOf(c)
				s.deny(c, p.UserID, "request body too large")
			case http.StatusTooManyRequests:
				reason = denyLimitExceeded
			}
		}
		if m := s.cfg.Metrics; m != nil {
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			m.request(route, methodLabel(c.Request().Method), status).Inc()
			if reason != "" {
				m.denials.WithLabelValues(reason).Inc()
			}
			if status == http.StatusUnauthorized {
				m.authFailures.WithLabelValues(authReason).Inc()
			}
			if lr := limitReason(reason); lr != "" {
				m.limited(lr)
			}
			if status >= http.StatusBadRequest && connAttempt(c) {
				m.connections.WithLabelValues(connStatus(status)).Inc()
			}
		}
		return nil
	}
}

// routeMetrics adds GET /metrics, serving cfg.Gatherer: to the admins authn
// lets in, or to everyone with cfg.MetricsPublic. Without a Gatherer there is
// no route.
func (s *Server) routeMetrics(e *echo.Echo, authn echo.MiddlewareFunc) {
	if s.cfg.Gatherer == nil {
		return
	}
	h := echo.WrapHandler(promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	if s.cfg.MetricsPublic {
		e.GET("/metrics", h)
		return
	}
	e.GET("/metrics", h, authn, s.requireAdmin)
}

// requireAdmin refuses principals without the admin permission.
func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, _ := principalOf(c)
		if !p.Has(auth.PermAdmin) {
			markDenied(c, denyForbidden)
			s.deny(c, p.UserID, "admin permission required")
			return apiError(http.StatusForbidden, CodeForbidden, "this route needs a token with the admin permission; ask an admin, or start the proxy with --metrics-public")
		}
		return next(c)
	}
}
