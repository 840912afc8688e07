// Package proxy is the HTTP surface of mcp-browser-proxy: the Echo app, its
// routes and middleware, and the server's start and drain. It is the only
// package that imports echo.
package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tunnel"
)

// Config wires the server. cmd builds it once.
type Config struct {
	Version         string
	Auth            *auth.Authenticator
	Store           router.Store
	Pool            *browserpool.Pool
	Sessions        *session.Manager
	Tools           tools.Config
	SessionTokenTTL time.Duration // longest lifetime of the sessionToken of /api/register (never past the caller's exp)
	MaxBody         string        // request body limit, e.g. "1M"
	KeepAlive       time.Duration // SSE and streamable keep-alive interval
	RegisterWait    time.Duration // how long /api/register waits for a first connect
	DrainTimeout    time.Duration // how long shutdown waits for requests
	Log             zerolog.Logger
	Audit           zerolog.Logger

	MaxStreams    int                 // concurrent GET /sse and GET /mcp streams per user; default 10
	Metrics       *Metrics            // HTTP collectors from NewMetrics; nil: none
	Gatherer      prometheus.Gatherer // what GET /metrics serves; nil: no /metrics route
	MetricsPublic bool                // serve /metrics without authentication (default: admins only)

	OAuth OAuthConfig // OAuth 2.1 resource server (oauth.go); zero: none, and nothing advertised

	Security SecurityConfig // origin and Host checks, CORS, --auth none, TLS, browser policy (security.go)

	Conns               ConnLimits       // connections per client address, header and idle timeouts (connlimit.go)
	Tunnels             *tunnel.Registry // reverse tunnels of GET /api/tunnel; nil: the route answers 404
	TunnelCheckInterval time.Duration    // how often a tunnel's API key is checked for revocation; default 30 s

	EventsInterval time.Duration // how often the dashboard's GET /api/events looks for changes; default 2 s

	Cluster ClusterConfig // shared mode (cluster.go); zero: a single instance
}

func (c *Config) fill() {
	if c.SessionTokenTTL <= 0 {
		c.SessionTokenTTL = 24 * time.Hour
	}
	if c.MaxBody == "" {
		c.MaxBody = "1M"
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 20 * time.Second
	}
	if c.RegisterWait <= 0 {
		// Longer than the pool's dial timeout, so that the answer can say
		// why a browser that accepts but never answers is not connected.
		c.RegisterWait = 6 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 10
	}
	c.Conns.fill()
	if c.TunnelCheckInterval <= 0 {
		c.TunnelCheckInterval = 30 * time.Second
	}
	if c.EventsInterval <= 0 {
		c.EventsInterval = 2 * time.Second
	}
}

// Server is the proxy's HTTP server.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	e       *echo.Echo
	mcp     *server.MCPServer
	sse     *sseTransport
	stream  *server.StreamableHTTPServer
	post    *streamPost // POST /mcp, in front of stream
	started time.Time

	cl           *cluster        // shared mode (cluster.go); nil: a single instance
	connRefusals *refusalAudit   // refused connections and forwarded requests (connlimit.go)
	streams      *streamLimiter  // open MCP and dashboard streams per user (limits.go)
	eventsEnd    context.Context // done at shutdown: the dashboard's event streams end (dashboard.go)
	endEvents    context.CancelFunc
}

// New builds the server and its routes.
func New(cfg Config) *Server {
	cfg.fill()
	s := &Server{cfg: cfg, log: cfg.Log, started: time.Now()}
	s.eventsEnd, s.endEvents = context.WithCancel(context.Background())
	if cfg.Metrics != nil {
		cfg.Metrics.limits = cfg.Sessions.Metrics()
	}
	s.connRefusals = newRefusalAudit(cfg.Audit, cfg.Metrics, connRefusalAuditEvery)
	s.cl = newCluster(s, cfg.Cluster)
	s.buildMCP()

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(composeOnce(
		assignRequestID,
		s.observe,
		s.requestLog(),
		middleware.Recover(),
		s.limitForwarded(),
		bodyLimit(cfg.MaxBody),
		s.guard,
		s.checkForwarded,
	))
	authn := s.authMiddleware()
	home := s.forwardHome(true, principalUser)
	streams := s.limitStreams()

	s.routeDashboard(e)
	e.GET("/health", s.health)
	e.GET("/ready", s.ready)
	s.routeMetrics(e, authn)
	s.routeOAuth(e) // before the /api group: /api/ui-config needs no credential

	api := routeGroup{e: e, prefix: "/api", mws: []echo.MiddlewareFunc{authn}}
	api.add(http.MethodPost, "/register", s.register, s.forwardHome(true, registerUser))
	api.add(http.MethodGet, "/users/:userId/status", s.userStatus, s.forwardHome(true, paramUser))
	api.add(http.MethodDelete, "/users/:userId", s.deleteUser, s.forwardHome(false, paramUser))
	api.add(http.MethodGet, "/apikeys", s.listAPIKeys)
	api.add(http.MethodDelete, "/apikeys/:id", s.revokeAPIKey)
	api.add(http.MethodGet, "/tunnel", s.tunnelRoute, home)
	api.add(http.MethodPost, "/apikeys", s.createAPIKey)
	// A user's sessions and browser are at their home; an admin's views
	// gather every instance's (gather).
	api.add(http.MethodGet, "/sessions", s.listSessions, s.forwardHome(false, sessionsViewUser))
	sessionParam := s.forwardSessionOf(func(c echo.Context) string { return c.Param("id") })
	api.add(http.MethodDelete, "/sessions/:id", s.closeSession, sessionParam)
	api.add(http.MethodGet, "/sessions/:id/tabs/:pageId/screenshot", s.tabScreenshot, sessionParam)
	api.add(http.MethodGet, "/overview", s.overview, s.forwardHome(false, selfUnlessAdmin))
	api.add(http.MethodGet, "/events", s.events, s.forwardHome(false, selfUnlessAdmin), streams)
	api.add(http.MethodPost, "/tokens", s.issueToken)
	api.notFound()
	top := routeGroup{e: e}
	top.add(http.MethodGet, "/health/detailed", s.healthDetailed, authn)

	// In shared mode a request for another instance's session goes there
	// once authenticated (forwardSession), and a new session goes to its
	// user's home (home), before the limits are counted.
	top.add(http.MethodGet, "/sse", echo.WrapHandler(http.HandlerFunc(s.sse.ServeSSE)), authn, home, s.mcpGuard, streams)
	top.add(http.MethodPost, "/message", echo.WrapHandler(http.HandlerFunc(s.sse.ServeMessage)), authn, s.forwardSession, s.mcpGuard)
	mcpHandler := echo.WrapHandler(s.stream)
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		h := mcpHandler
		if m == http.MethodPost {
			h = echo.WrapHandler(s.post)
		}
		top.add(m, "/mcp", h, s.forwardUncredentialedDelete, authn, s.forwardSession, home, s.mcpGuard, streams)
	}
	s.e = e
	return s
}

// bodyLimit is echo's BodyLimit for the requests that have a body. One
// without has http.NoBody (net/http's, for no Content-Length or a zero one
// and no chunked encoding), which reads nothing, so the limiting reader
// echo would take from its pool and wrap around it is left out.
func bodyLimit(limit string) echo.MiddlewareFunc {
	return middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{
		Limit:   limit,
		Skipper: func(c echo.Context) bool { return c.Request().Body == http.NoBody },
	})
}

// Echo v4 composes the middlewares of e.Use, of a group and of a route
// around the handler again on every request: a closure per middleware per
// request. composeOnce and routeGroup compose them once, at start-up, into
// the same order (the first middleware outermost); none of the proxy's
// middlewares keeps state per composition.

// composeOnce composes mws, for e.Use, around a handler that runs the
// route's handler: c.Handler(), what echo passes the middlewares of e.Use
// as their next, found by the router before they run.
func composeOnce(mws ...echo.MiddlewareFunc) echo.MiddlewareFunc {
	h := compose(func(c echo.Context) error { return c.Handler()(c) }, mws...)
	return func(echo.HandlerFunc) echo.HandlerFunc { return h }
}

// compose returns h with mws around it, mws[0] outermost, as echo does.
func compose(h echo.HandlerFunc, mws ...echo.MiddlewareFunc) echo.HandlerFunc {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// routeGroup is echo's Group with its middlewares composed into each
// route's handler once.
type routeGroup struct {
	e      *echo.Echo
	prefix string
	mws    []echo.MiddlewareFunc // around every route of the group, outermost first
}

// add routes method prefix+path to h with the group's middlewares, then
// mws, around it.
func (g routeGroup) add(method, path string, h echo.HandlerFunc, mws ...echo.MiddlewareFunc) {
	g.e.Add(method, g.prefix+path, compose(h, slices.Concat(g.mws, mws)...))
}

// notFound answers the group's unknown paths 404 after the group's
// middlewares, as echo's Group.Use arranges: an unknown /api path without
// credentials is a 401, as any /api path is.
func (g routeGroup) notFound() {
	h := compose(echo.NotFoundHandler, g.mws...)
	g.e.RouteNotFound(g.prefix, h)
	g.e.RouteNotFound(g.prefix+"/*", h)
}

// Handler returns the HTTP handler, for tests and custom servers.
func (s *Server) Handler() http.Handler { return s.e }

// Restore connects the pool to every stored registration, at start-up.
//
// In shared mode it connects none: a browser connects at its user's home
// instance when that instance becomes the home (cluster.go), so that each
// browser has one CDP connection cluster-wide.
func (s *Server) Restore(ctx context.Context) error {
	if s.cl != nil {
		if err := s.cfg.Store.Ping(ctx); err != nil {
			return err // the caller retries while Redis is unreachable
		}
		s.log.Info().Str("instance", s.cl.leases.ID()).Str("advertise_url", s.cl.leases.URL()).
			Msg("shared mode: browsers connect on first need at their user's home instance")
		return nil
	}
	regs, err := s.cfg.Store.List(ctx)
	if err != nil {
		return err
	}
	// A registration may take a browser back only through the addresses
	// its host had when it was registered, stored with it (see
	// browserpool.Endpoint.Addrs): not through what a name re-pointed
	// since resolves to now. Only records stored before addresses were
	// are looked up again, side by side: one slow name must not hold up
	// start-up.
	addrs := make([][]netip.Addr, len(regs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, r := range regs {
		if _, ok := router.TunnelUser(r.BrowserURL); ok {
			continue
		}
		if len(r.Addrs) > 0 {
			addrs[i] = r.Addrs
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			addrs[i], _ = s.browserPolicy().ResolveURL(ctx, r.BrowserURL)
		})
	}
	wg.Wait()
	for i, r := range regs {
		s.cfg.Pool.EnsureEndpoint(r.UserID, browserpool.Endpoint{URL: r.BrowserURL, Headers: r.Headers, Registered: r.Since(), Addrs: addrs[i]})
	}
	s.log.Info().Int("registrations", len(regs)).Msg("registrations restored")
	return nil
}

// Serve answers on ln until ctx ends, then drains: it stops accepting
// connections at once, waits up to DrainTimeout for the requests in flight
// and for the tool calls of legacy SSE sessions to be answered on their
// streams, then ends the MCP streams (each with an SSE retry hint) and
// closes every session. A drain that times out cuts what is left and is
// not an error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	d := newDrainer()
	s.sse.drain.Store(d)
	srv := &http.Server{
		Handler:           d.wrap(s.e),
		ReadHeaderTimeout: s.cfg.Conns.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.Conns.IdleTimeout,
		ConnContext:       connContext,
		// No WriteTimeout: it would cut SSE streams.
	}
	errc := make(chan error, 1)
	if err := s.checkListener(ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	ln = s.limitConns(ln)
	go func() { errc <- s.serveOn(srv, ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info().Dur("drain_timeout", s.cfg.DrainTimeout).Msg("shutting down: no new connections; finishing the requests and tool calls in flight")
	s.endEvents() // dashboards reconnect; the drain must not wait for them
	sctx, scancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout+streamEndBound)
	defer scancel()
	// Shutdown closes the listener at once, then waits for every
	// connection to go idle: the streams end below, after the drain.
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(sctx) }()
	dctx, dcancel := context.WithTimeout(sctx, s.cfg.DrainTimeout)
	requests, answers := d.wait(dctx)
	dcancel()
	if requests+answers > 0 {
		s.log.Warn().Int("requests", requests).Int("sse_answers", answers).Msg("drain timeout: cutting what is still in flight")
	}
	d.close()
	if s.cfg.Tunnels != nil {
		s.cfg.Tunnels.Close() // the agents reconnect to the next instance
	}
	s.sse.CloseSessions()
	s.stream.CloseSessions(sctx)
	err := <-shut
	if errors.Is(err, context.DeadlineExceeded) {
		_ = srv.Close()
		err = nil
	}
	s.cfg.Sessions.CloseAll()
	s.LeaveCluster(context.Background())
	s.log.Info().Msg("drained: every MCP session is closed")
	return err
}
