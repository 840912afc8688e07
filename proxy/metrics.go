package proxy

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
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
)

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
	requests *prometheus.CounterVec
	denials  *prometheus.CounterVec
}

// NewMetrics creates the HTTP collectors and registers them on reg:
// mbp_http_requests_total{route,method,code} and
// mbp_http_denials_total{reason}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mbp_http_requests_total", Help: "HTTP requests by route template, method and status code (counted when the answer or stream ends).",
		}, []string{"route", "method", "code"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mbp_http_denials_total", Help: "Refused HTTP requests by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{denyUnauthorized, denyForbidden, denyUserMismatch, denySessionOwner, denyUnknownSession,
		denySessionLimit, denyStreamLimit, denyBodyTooLarge, denyLimitExceeded, denyConnLimit} {
		m.denials.WithLabelValues(r) // export zeros, so alerts see the series
	}
	for _, c := range []prometheus.Collector{m.requests, m.denials} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return m, nil
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
		if reason == "" {
			switch status {
			case http.StatusUnauthorized:
				reason = denyUnauthorized
				if _, err := auth.BearerToken(c.Request().Header.Get("Authorization")); err != nil {
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
			m.requests.WithLabelValues(route, methodLabel(c.Request().Method), strconv.Itoa(status)).Inc()
			if reason != "" {
				m.denials.WithLabelValues(reason).Inc()
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
