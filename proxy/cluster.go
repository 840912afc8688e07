package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// Shared mode: several instances on one Redis act as one proxy. Each
// session lives on the instance that created it; each user has a home
// instance that holds the user's browser connection (one CDP connection
// per browser, a tunnel lands there) and creates that user's sessions, so
// that the per-user limits hold cluster-wide. A request that reaches
// another instance is forwarded over HTTP to the owner (tool calls travel,
// not CDP: one MCP request is one forwarded request, where forwarded CDP
// would cost a cross-instance round trip per CDP message, dozens per tool
// call, and would put a second CDP client on the browser).

// CodeInstanceUnavailable: the instance that holds the session or the
// user's browser is alive by its lease but did not answer; retry.
const CodeInstanceUnavailable = "INSTANCE_UNAVAILABLE"

// instanceRetryAfter is the Retry-After, in seconds, of
// INSTANCE_UNAVAILABLE and of a home that moved during a forward.
const instanceRetryAfter = 2

// forwardedKey is the echo context key set on a request another instance
// forwarded (its verified instance ID): it is served here, never forwarded
// again.
const forwardedKey = "forwarded_by"

// forwardedToKey is the echo context key of the instance a request was
// forwarded to, for the request log.
const forwardedToKey = "forwarded_to"

// ClusterConfig turns on shared mode. The zero value is a single instance.
type ClusterConfig struct {
	// Leases are this instance's leases in Redis; nil: single instance.
	Leases *router.Leases
	// Signer signs the requests this instance forwards and checks those
	// it receives.
	Signer *auth.ForwardSigner
	// Heartbeat is how often the instance lease is renewed; default a
	// third of its TTL.
	Heartbeat time.Duration
	// Transport carries forwarded requests; default a transport with a
	// 2 s dial timeout, ForwardTimeout for the answer's headers, and no
	// proxy.
	Transport http.RoundTripper
	// ForwardTimeout bounds the wait for the head of a forwarded answer
	// from an owner whose lease lives (a hung instance); default the
	// longest tool call (Tools.MaxCallTimeout or the tools' default, at least a minute) plus a minute. Streams are not
	// cut: their head comes at once.
	ForwardTimeout time.Duration
}

// cluster is a Server's shared-mode state.
type cluster struct {
	s         *Server
	leases    *router.Leases
	signer    *auth.ForwardSigner
	heartbeat time.Duration
	transport http.RoundTripper

	beating  sync.Mutex // held by a heartbeat and by LeaveCluster: none renews the lease after the leave
	mu       sync.Mutex
	sessions map[string]struct{} // session leases written (or to write) for this instance
	homes    map[string]struct{} // users this instance is home for
	dirty    bool                // a lease write failed: the next heartbeat writes them all
	down     bool                // the last heartbeat failed (logged once per outage)
	left     bool                // LeaveCluster ran: no heartbeat writes the lease again

	// protected are the endpoints no page may reach that this instance's
	// pool does not know: every registered browser (its user's home may
	// be another instance), what the other instances' pools protect
	// (tunnelled browsers' ports) and every instance's listen address.
	// They are read again every heartbeat interval.
	protMu    sync.Mutex
	protected []router.ProtectedEndpoint

	// inflight are the cancels of the requests being forwarded, by owner
	// instance: they end when the owner's lease does (watchForwards).
	fwdMu    sync.Mutex
	inflight map[string]map[*context.CancelFunc]struct{}
}

func newCluster(s *Server, cfg ClusterConfig) *cluster {
	if cfg.Leases == nil {
		return nil
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = max(cfg.Leases.TTL()/3, 50*time.Millisecond)
	}
	if cfg.ForwardTimeout <= 0 {
		longest := s.cfg.Tools.MaxCallTimeout
		if longest <= 0 {
			longest = tools.DefaultMaxCallTimeout // what the tools take when none is set
		}
		cfg.ForwardTimeout = max(longest, s.cfg.Tools.NavigationTimeout, time.Minute) + time.Minute
	}
	if cfg.Transport == nil {
		cfg.Transport = &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: cfg.ForwardTimeout,
		}
	}
	// Before the server serves: the pool has no browser yet.
	s.cfg.Pool.ShareClaims(cfg.Leases)
	cl := &cluster{s: s, leases: cfg.Leases, signer: cfg.Signer, heartbeat: cfg.Heartbeat, transport: cfg.Transport,
		sessions: map[string]struct{}{}, homes: map[string]struct{}{}, inflight: map[string]map[*context.CancelFunc]struct{}{}}
	if page := s.cfg.Tools.Navigation.Page; page != nil {
		// Set before the server serves: no page is guarded yet.
		local := page.Endpoints
		page.Endpoints = func() []router.ProtectedEndpoint {
			var out []router.ProtectedEndpoint
			if local != nil {
				out = local()
			}
			return append(out, cl.protectedEndpoints()...)
		}
	}
	return cl
}

func (cl *cluster) protectedEndpoints() []router.ProtectedEndpoint {
	cl.protMu.Lock()
	defer cl.protMu.Unlock()
	return slices.Clone(cl.protected)
}

// refreshProtected reads the cluster's protected endpoints again (see
// cluster.protected) and, when they changed, re-sends the request policy
// to the guarded pages. A failure keeps the last list.
func (cl *cluster) refreshProtected(ctx context.Context) {
	// What this pool protects (tunnelled browsers' ports among them, known
	// only here) is published for the others.
	if mine, err := json.Marshal(cl.s.cfg.Pool.ProtectedEndpoints()); err == nil {
		_ = cl.leases.PutProtected(ctx, string(mine))
	}
	regs, err := cl.s.cfg.Store.List(ctx)
	if err != nil {
		return
	}
	urls, err := cl.leases.Instances(ctx)
	if err != nil {
		return
	}
	published, err := cl.leases.Protected(ctx)
	if err != nil {
		return
	}
	var out []router.ProtectedEndpoint
	for id, data := range published {
		var eps []router.ProtectedEndpoint
		if id != cl.leases.ID() && json.Unmarshal([]byte(data), &eps) == nil {
			out = append(out, eps...)
		}
	}
	add := func(raw string, addrs []netip.Addr) {
		u, err := url.Parse(raw)
		if err != nil || u.Hostname() == "" {
			return
		}
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = map[string]int{"http": 80, "ws": 80, "https": 443, "wss": 443}[u.Scheme]
		}
		if port == 0 {
			return
		}
		if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
			addrs = append(addrs, a.Unmap().WithZone(""))
		} else if len(addrs) == 0 {
			lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			addrs, _ = net.DefaultResolver.LookupNetIP(lctx, "ip", u.Hostname())
			cancel()
			for i := range addrs {
				addrs[i] = addrs[i].Unmap().WithZone("")
			}
		}
		out = append(out, router.ProtectedEndpoint{Port: port, Addrs: slices.Clone(addrs)})
	}
	for _, r := range regs {
		if _, tunnel := router.TunnelUser(r.BrowserURL); !tunnel {
			add(r.BrowserURL, r.Addrs)
		}
	}
	for _, u := range urls {
		add(u, nil)
	}
	// In one order, so that the same endpoints compare equal.
	for i := range out {
		slices.SortFunc(out[i].Addrs, netip.Addr.Compare)
	}
	slices.SortFunc(out, func(x, y router.ProtectedEndpoint) int {
		if x.Port != y.Port {
			return x.Port - y.Port
		}
		return slices.CompareFunc(x.Addrs, y.Addrs, netip.Addr.Compare)
	})
	cl.protMu.Lock()
	changed := !slices.EqualFunc(out, cl.protected, func(x, y router.ProtectedEndpoint) bool {
		return x.Port == y.Port && slices.Equal(x.Addrs, y.Addrs)
	})
	cl.protected = out
	cl.protMu.Unlock()
	if changed {
		cl.s.cfg.Pool.Refresh()
	}
}

// InstanceID returns this instance's ID in shared mode, "" otherwise.
func (s *Server) InstanceID() string {
	if s.cl == nil {
		return ""
	}
	return s.cl.leases.ID()
}

// StartCluster writes this instance's lease and renews it until ctx ends
// or stop is called; stop waits for the renewal to end. It does not
// release the leases (LeaveCluster does, on a graceful shutdown). Without
// shared mode it does nothing.
func (s *Server) StartCluster(ctx context.Context) (stop func()) {
	cl := s.cl
	if cl == nil {
		return func() {}
	}
	cl.beat(ctx)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	every := func(f func(context.Context)) {
		wg.Go(func() {
			t := time.NewTicker(cl.heartbeat)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					f(ctx)
				}
			}
		})
	}
	every(cl.beat)
	// Apart from the heartbeat, which a slow look-up must not delay.
	wg.Go(func() { cl.refreshProtected(ctx) })
	every(cl.refreshProtected)
	every(cl.watchForwards)
	return func() { cancel(); wg.Wait() }
}

// LeaveCluster releases this instance's leases (sessions, homes, its own):
// the other instances answer its sessions with 404 at once and its users'
// next sessions land elsewhere. Errors are logged: the leases expire anyway.
func (s *Server) LeaveCluster(ctx context.Context) {
	cl := s.cl
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cl.beating.Lock()
	defer cl.beating.Unlock()
	cl.mu.Lock()
	cl.left = true
	sessions, homes := keysOf(cl.sessions), keysOf(cl.homes)
	clear(cl.sessions)
	clear(cl.homes)
	cl.mu.Unlock()
	err := cl.leases.Leave(ctx)
	if err == nil {
		err = cl.leases.DropSessions(ctx, sessions...)
	}
	if err == nil {
		err = cl.leases.DropHomes(ctx, homes...)
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("leaving the cluster: leases not released; they expire by themselves")
		return
	}
	s.log.Info().Str("instance", cl.leases.ID()).Msg("left the cluster: leases released")
}

func keysOf(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// beat renews the instance lease. When the lease had been lost (Redis
// restarted, or was out of reach longer than the TTL), or a lease write
// failed meanwhile, it writes every session lease again and claims the
// homes back. It drops the leases of sessions that ended here.
func (cl *cluster) beat(ctx context.Context) {
	log := cl.s.log
	cl.beating.Lock()
	defer cl.beating.Unlock()
	cl.mu.Lock()
	left := cl.left
	cl.mu.Unlock()
	if left {
		return
	}
	lost, err := cl.leases.Heartbeat(ctx)
	cl.mu.Lock()
	wasDown := cl.down
	cl.down = err != nil
	var ended, live []string
	for id := range cl.sessions {
		if _, ok := cl.s.cfg.Sessions.Owner(id); ok {
			live = append(live, id)
		} else {
			ended = append(ended, id)
			delete(cl.sessions, id)
		}
	}
	rewrite := lost || cl.dirty
	cl.dirty = false
	homes := keysOf(cl.homes)
	cl.mu.Unlock()
	// retry keeps the ended sessions for the next heartbeat to release.
	retry := func() {
		cl.mu.Lock()
		cl.dirty = true
		for _, id := range ended {
			cl.sessions[id] = struct{}{}
		}
		cl.mu.Unlock()
	}
	if err != nil {
		if !wasDown {
			log.Warn().Err(err).Msg("shared mode: the instance lease cannot be renewed; sessions on this instance keep working, new sessions are refused until Redis answers")
		}
		retry()
		return
	}
	if wasDown {
		log.Info().Bool("lease_lost", lost).Msg("shared mode: Redis answers again")
	}
	if rewrite {
		if err := cl.leases.PutSessions(ctx, live...); err != nil {
			log.Warn().Err(err).Msg("shared mode: session leases not written again; retrying at the next heartbeat")
			retry()
			return
		}
		for _, u := range homes {
			o, err := cl.leases.ClaimHome(ctx, u)
			if err != nil {
				retry()
				return
			}
			if o.ID != cl.leases.ID() {
				cl.mu.Lock()
				delete(cl.homes, u)
				cl.mu.Unlock()
				cl.s.leaveHome(u, o.ID)
			}
		}
		if lost {
			log.Info().Int("sessions", len(live)).Int("homes", len(homes)).Msg("shared mode: instance lease written; session and home leases written again")
		}
	}
	if err := cl.leases.DropSessions(ctx, ended...); err != nil {
		retry()
	}
	// A registration homed elsewhere may have taken a browser this
	// instance holds (or Redis lost the claims): renew, write again, evict.
	if err := cl.s.cfg.Pool.VerifyShared(ctx); err != nil {
		log.Debug().Err(err).Msg("shared mode: browser claims not verified; retrying at the next heartbeat")
	}
}

// track registers the cancel of a request forwarded to instance owner
// until the returned func is called.
func (cl *cluster) track(owner string, cancel context.CancelFunc) (untrack func()) {
	key := &cancel
	cl.fwdMu.Lock()
	if cl.inflight[owner] == nil {
		cl.inflight[owner] = map[*context.CancelFunc]struct{}{}
	}
	cl.inflight[owner][key] = struct{}{}
	cl.fwdMu.Unlock()
	return func() {
		cl.fwdMu.Lock()
		delete(cl.inflight[owner], key)
		if len(cl.inflight[owner]) == 0 {
			delete(cl.inflight, owner)
		}
		cl.fwdMu.Unlock()
	}
}

// watchForwards ends the forwarded requests (streams, tunnels, calls)
// whose owner's lease is gone: an owner that died silently, or whose host
// vanished without a reset, would hold them for as long as their clients
// wait. With Redis out of reach nothing is ended (nothing is known).
func (cl *cluster) watchForwards(ctx context.Context) {
	cl.fwdMu.Lock()
	owners := make([]string, 0, len(cl.inflight))
	for id := range cl.inflight {
		owners = append(owners, id)
	}
	cl.fwdMu.Unlock()
	if len(owners) == 0 {
		return
	}
	alive, err := cl.leases.Alive(ctx, owners...)
	if err != nil {
		return
	}
	for _, id := range owners {
		if alive[id] {
			continue
		}
		cl.fwdMu.Lock()
		for c := range cl.inflight[id] {
			(*c)()
		}
		n := len(cl.inflight[id])
		cl.fwdMu.Unlock()
		if n > 0 {
			cl.s.log.Warn().Str("instance", id).Int("requests", n).Msg("shared mode: the lease of an instance ended while requests were forwarded to it; they are ended")
		}
	}
}

func (cl *cluster) markDirty() {
	cl.mu.Lock()
	cl.dirty = true
	cl.mu.Unlock()
}

// holdSession records the lease of a session ID this instance just handed
// out, before its client learns it. A failed write is logged and retried
// by the heartbeat: the session works here meanwhile.
func (cl *cluster) holdSession(ctx context.Context, id string) {
	if cl == nil {
		return
	}
	cl.mu.Lock()
	cl.sessions[id] = struct{}{}
	cl.mu.Unlock()
	if err := cl.leases.PutSessions(context.WithoutCancel(ctx), id); err != nil {
		cl.s.log.Warn().Err(err).Msg("shared mode: session lease not written; retrying at the next heartbeat")
		cl.markDirty()
	}
}

// dropSession releases the lease of a session that ended here.
func (cl *cluster) dropSession(id string) {
	if cl == nil {
		return
	}
	cl.mu.Lock()
	_, held := cl.sessions[id]
	delete(cl.sessions, id)
	cl.mu.Unlock()
	if !held {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := cl.leases.DropSessions(ctx, id); err != nil {
			cl.mu.Lock()
			cl.sessions[id] = struct{}{} // the heartbeat drops it later
			cl.mu.Unlock()
		}
	}()
}

// checkForwarded verifies the forwarding header of a request another
// instance sent: a request that carries one must be signed by an instance
// of this deployment for this very request, within the skew window; it is
// then served here and never forwarded again. The header only says where
// to serve: the client's credential is checked here as for any request.
func (s *Server) checkForwarded(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		h := r.Header.Get(auth.ForwardHeader)
		if h == "" {
			return next(c)
		}
		r.Header.Del(auth.ForwardHeader)
		if s.cl == nil || s.cl.signer == nil {
			markDenied(c, denyForward)
			s.deny(c, "", "inter-instance forwarding header on an instance not in shared mode")
			return apiError(http.StatusForbidden, CodeForbidden, "this request carries the proxy's inter-instance forwarding header, which only instances of a shared deployment send; send the request without it")
		}
		from, err := s.cl.signer.Verify(h, r.Method, r.URL.RequestURI())
		if err != nil {
			markDenied(c, denyForward)
			s.deny(c, "", "forged or stale inter-instance forwarding header: "+err.Error())
			return apiError(http.StatusForbidden, CodeForbidden, "the inter-instance forwarding header is not valid (forged, replayed, or the instances' clocks or --cluster-secret differ); send the request without it; operators: give every instance the same secret and synchronised clocks")
		}
		c.Set(forwardedKey, from)
		uncount(r)
		return next(c)
	}
}

func isForwarded(c echo.Context) bool {
	_, ok := c.Get(forwardedKey).(string)
	return ok
}

// sessionIDOf returns the MCP session ID a request names, if any.
func sessionIDOf(r *http.Request) string {
	switch r.URL.Path {
	case "/message":
		return sessionIDParam(r)
	case "/mcp":
		return r.Header.Get("Mcp-Session-Id")
	}
	return ""
}

// forwardSession sends a request for a session another live instance
// holds to that instance. It runs after authentication, so that requests
// without a valid credential cost no Redis round trip (the owner checks
// the credential again, and the session's owner). The local lookup comes
// first, so that sessions of this instance need no Redis. A session of a dead instance, or of none,
// is left to the local checks, which answer 404 (the client re-initialises).
func (s *Server) forwardSession(next echo.HandlerFunc) echo.HandlerFunc {
	return s.forwardSessionOf(func(c echo.Context) string { return sessionIDOf(c.Request()) })(next)
}

// forwardUncredentialedDelete is forwardSession for a DELETE /mcp without
// credentials (see deleteByKnowledge: the session ID is the secret), which
// authentication would refuse before forwardSession runs.
func (s *Server) forwardUncredentialedDelete(next echo.HandlerFunc) echo.HandlerFunc {
	fwd := s.forwardSession(next)
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodDelete && r.Header.Get("Authorization") == "" {
			return fwd(c)
		}
		return next(c)
	}
}

// newIDShape reports whether id looks like an ID of session.Manager.NewID
// (32 lower-case hex digits): only those are looked up in Redis, so that
// junk costs no round trip.
func newIDShape(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// forwardSessionOf is forwardSession for the session that sid names (the
// dashboard's /api/sessions/:id routes).
func (s *Server) forwardSessionOf(sid func(echo.Context) string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if s.cl == nil {
			return next
		}
		return s.sessionForwarder(sid, next)
	}
}

func (s *Server) sessionForwarder(sidOf func(echo.Context) string, next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		sid := sidOf(c)
		if !newIDShape(sid) || isForwarded(c) {
			return next(c)
		}
		if _, ok := s.cfg.Sessions.Owner(sid); ok {
			return next(c)
		}
		o, err := s.cl.leases.Session(r.Context(), sid)
		if errors.Is(err, router.ErrUnavailable) {
			return &APIError{Status: http.StatusServiceUnavailable, Code: CodeStoreUnavailable, RetryAfter: storeRetryAfter,
				Message: "this MCP session is not on this instance, and the shared store (Redis) that says which instance holds it is unreachable; retry in a few seconds"}
		}
		if err != nil {
			return fmt.Errorf("look up session: %w", err)
		}
		if !o.Live() || o.ID == s.cl.leases.ID() {
			return next(c)
		}
		return s.cl.forward(c, o)
	}
}

// forwardHome sends a request that needs user's browser or opens a session
// for user (userOf says who; "" for none) to the user's home instance,
// making this instance the home when no live instance is. With claim
// false it only looks the home up (deleting a user must not connect its
// browser first).
func (s *Server) forwardHome(claim bool, userOf func(echo.Context) string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if s.cl == nil {
			return next
		}
		return func(c echo.Context) error {
			user := userOf(c)
			if user == "" || auth.ValidateUserID(user) != nil {
				return next(c) // the handler refuses it
			}
			if p, _ := principalOf(c); !p.CanActAs(user) {
				return next(c) // the handler refuses it, here
			}
			ctx := c.Request().Context()
			var o router.Owner
			var err error
			if claim {
				o, err = s.cl.leases.ClaimHome(ctx, user)
			} else {
				o, err = s.cl.leases.Home(ctx, user)
			}
			if errors.Is(err, router.ErrUnavailable) {
				return &APIError{Status: http.StatusServiceUnavailable, Code: CodeStoreUnavailable, RetryAfter: storeRetryAfter,
					Message: "the shared store (Redis) is unreachable, so no new session can be opened and no browser registered (sessions already open keep working); retry in a few seconds; if this persists, the operator should check the Redis of --redis-url (GET /ready says 503 meanwhile)"}
			}
			if err != nil {
				return fmt.Errorf("home of %s: %w", user, err)
			}
			switch {
			case o.ID == s.cl.leases.ID():
				s.cl.becameHome(ctx, user)
				return next(c)
			case !o.Live():
				return next(c) // no home (lookup only): served here
			case isForwarded(c):
				// The home moved while the request travelled: never a
				// second hop.
				return &APIError{Status: http.StatusServiceUnavailable, Code: CodeInstanceUnavailable, RetryAfter: instanceRetryAfter,
					Message: "the instance that holds " + user + "'s browser changed while this request was forwarded; retry"}
			}
			return s.cl.forward(c, o)
		}
	}
}

// becameHome records that this instance is user's home and connects the
// user's registered browser here if it is not yet: in shared mode browsers
// connect on first need at their home, not at start-up on every instance.
func (cl *cluster) becameHome(ctx context.Context, user string) {
	cl.mu.Lock()
	cl.homes[user] = struct{}{}
	cl.mu.Unlock()
	s := cl.s
	if _, ok := s.cfg.Pool.Get(user); ok {
		return
	}
	r, err := s.cfg.Store.Get(ctx, user)
	if err != nil {
		return // not registered (or the store failed): the handler says so
	}
	s.ensureRegistered(ctx, r)
}

// leaveHome lets go of user, whose home another instance became while this
// one was cut off from Redis (and so looked dead): the other instances
// already answer this one's sessions with 404, and one browser has one CDP
// connection cluster-wide. The user's sessions here end (their clients
// re-initialise, at the new home), the browser connection closes, and a
// tunnel is told to reconnect, which lands it at the new home.
func (s *Server) leaveHome(user, home string) {
	closed := s.cfg.Sessions.CloseUser(user)
	s.cfg.Pool.Remove(user)
	tunnelClosed := false
	if s.cfg.Tunnels != nil {
		tunnelClosed = s.cfg.Tunnels.CloseUser(user, websocket.CloseTryAgainLater, "this user's browser moved to another proxy instance; connect reconnects by itself")
	}
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "home_lost").Str("user", user).Str("home", home).
		Int("sessions_closed", closed).Bool("tunnel_closed", tunnelClosed).Send()
}

// ensureRegistered connects the pool to registration r.
func (s *Server) ensureRegistered(ctx context.Context, r router.Registration) {
	addrs := r.Addrs
	if _, tunnel := router.TunnelUser(r.BrowserURL); !tunnel && len(addrs) == 0 {
		addrs, _ = s.browserPolicy().ResolveURL(ctx, r.BrowserURL)
	}
	s.cfg.Pool.EnsureEndpoint(r.UserID, browserpool.Endpoint{URL: r.BrowserURL, Headers: r.Headers, Registered: r.Since(), Addrs: addrs})
}

// principalUser is the caller's own user: the home of its new sessions
// and tunnels. A request naming a session is not one.
func principalUser(c echo.Context) string {
	if sessionIDOf(c.Request()) != "" {
		return ""
	}
	p, _ := principalOf(c)
	return p.UserID
}

// paramUser is the route's :userId.
func paramUser(c echo.Context) string { return c.Param("userId") }

// registerUser is the userId of a POST /api/register body, which it reads
// and puts back for the handler. It decodes the body as the handler does
// (the first JSON value, whatever follows): a body the handler accepts but
// this read would not must not be served away from the user's home.
func registerUser(c echo.Context) string {
	r := c.Request()
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return ""
	}
	var req struct {
		UserID string `json:"userId"`
	}
	_ = json.NewDecoder(bytes.NewReader(body)).Decode(&req)
	return req.UserID
}

// discardLog swallows httputil.ReverseProxy's own log lines: failures are
// answered (503) and logged by the proxy's request log.
var discardLog = log.New(io.Discard, "", 0)

// forward sends the request to instance o and copies its answer, streams
// and upgrades (SSE, WebSocket tunnels) included, to the client unchanged.
// The request keeps its Host, so the owner checks it, its origin and its
// credential exactly as if the client had sent it there.
func (cl *cluster) forward(c echo.Context, o router.Owner) error {
	target, err := url.Parse(o.URL)
	if err != nil || target.Scheme == "" || target.Host == "" {
		return fmt.Errorf("forward: instance %s advertises a malformed URL", o.ID)
	}
	me := cl.leases.ID()
	c.Set(forwardedToKey, o.ID)
	// A failure to read the client's body (over --max-body, a broken
	// chunk) is the client's, not the owner's: it is told so, and the
	// owner is not logged as unreachable.
	var body *bodyReadErr
	if r := c.Request(); r.Body != nil && r.Body != http.NoBody {
		body = &bodyReadErr{ReadCloser: r.Body}
		r.Body = body
	}
	var failed error
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			// The client's address, for --max-conns-per-ip at the owner
			// when the instances are among its --trusted-proxies.
			if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
				xff := strings.Join(pr.In.Header.Values("X-Forwarded-For"), ", ")
				if xff != "" {
					xff += ", "
				}
				pr.Out.Header.Set("X-Forwarded-For", xff+ip)
			}
			pr.Out.Header.Set(auth.ForwardHeader, cl.signer.Sign(pr.Out.Method, pr.Out.URL.RequestURI(), me))
			// One request ID in both instances' logs.
			if id := c.Response().Header().Get(echo.HeaderXRequestID); id != "" {
				pr.Out.Header.Set(echo.HeaderXRequestID, id)
			}
		},
		// The owner's answer reaches the client as it is, but for the
		// headers this instance's middlewares set already (its request ID,
		// CORS's Access-Control-Allow-Origin and Vary: Origin), which the
		// owner's set alike: written twice, they would be listed twice, and
		// a browser fails a CORS answer that lists its origin twice.
		ModifyResponse: func(res *http.Response) error {
			for k := range c.Response().Header() {
				res.Header.Del(k)
			}
			return nil
		},
		Transport:     cl.transport,
		FlushInterval: -1,
		ErrorLog:      discardLog,
		ErrorHandler: func(http.ResponseWriter, *http.Request, error) {
			failed = errors.New("unreachable")
		},
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	defer cl.track(o.ID, cancel)()
	rp.ServeHTTP(c.Response(), c.Request().WithContext(ctx))
	if berr := body.failure(); failed != nil && !c.Response().Committed && berr != nil {
		if errors.Is(berr, echo.ErrStatusRequestEntityTooLarge) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return apiError(http.StatusBadRequest, CodeInvalidRequest, "the request body could not be read ("+berr.Error()+"); send it again, complete")
	}
	if failed != nil && !c.Response().Committed && c.Request().Context().Err() == nil {
		cl.s.log.Warn().Str("instance", o.ID).Str("path", c.Request().URL.Path).Msg("shared mode: the instance holding the session or browser did not answer")
		return &APIError{Status: http.StatusServiceUnavailable, Code: CodeInstanceUnavailable, RetryAfter: instanceRetryAfter,
			Message: "the proxy instance that holds this MCP session or your browser connection did not answer; retry in a few seconds (if it died, its sessions end within seconds and you reconnect)"}
	}
	return nil
}

// bodyReadErr remembers the first error of reading a request body other
// than its end (or a read after the transport closed it). The transport
// may still read it while the proxy looks: hence the lock.
type bodyReadErr struct {
	io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *bodyReadErr) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, http.ErrBodyReadAfterClose) {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *bodyReadErr) failure() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// peerViewTimeout bounds how long an admin's dashboard view waits for the
// other instances; an instance that does not answer in time is left out
// of that view (and logged).
const peerViewTimeout = 3 * time.Second

// maxPeerView bounds one instance's answer to a gathered view.
const maxPeerView = 16 << 20

// gather asks every other live instance for path (GET, with the caller's
// credential, signed as forwarded so that it is answered from that
// instance alone) and returns the bodies of the 200 answers. An admin's
// views of sessions and browsers are the deployment's: each instance
// holds only its own.
func (cl *cluster) gather(ctx context.Context, r *http.Request, path string) [][]byte {
	urls, err := cl.leases.Instances(ctx)
	if err != nil {
		cl.s.log.Warn().Err(err).Msg("shared mode: the other instances are unknown; this view is this instance's alone")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, peerViewTimeout)
	defer cancel()
	hc := &http.Client{Transport: cl.transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var (
		mu  sync.Mutex
		out [][]byte
		wg  sync.WaitGroup
	)
	for _, base := range urls {
		if base == cl.leases.URL() {
			continue
		}
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+path, nil)
			if err != nil {
				return
			}
			req.Header.Set("Authorization", r.Header.Get("Authorization"))
			req.Header.Set(auth.ForwardHeader, cl.signer.Sign(http.MethodGet, req.URL.RequestURI(), cl.leases.ID()))
			resp, err := hc.Do(req)
			if err != nil {
				cl.s.log.Warn().Str("instance_url", base).Str("path", path).Msg("shared mode: an instance did not answer; this view lacks its sessions")
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerView))
			if err != nil || resp.StatusCode != http.StatusOK {
				cl.s.log.Warn().Str("instance_url", base).Str("path", path).Int("status", resp.StatusCode).Msg("shared mode: an instance refused a view; this view lacks its sessions")
				return
			}
			mu.Lock()
			out = append(out, body)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// selfUnlessAdmin is the user whose home serves a dashboard view: the
// caller's own, except for an admin, whose view gathers every instance's.
func selfUnlessAdmin(c echo.Context) string {
	p, ok := principalOf(c)
	if !ok || p.Has(auth.PermAdmin) {
		return ""
	}
	return p.UserID
}

// sessionsViewUser is the user whose home serves GET /api/sessions: the
// one ?user= names, else the caller unless an admin.
func sessionsViewUser(c echo.Context) string {
	if u := c.QueryParam("user"); u != "" {
		return u
	}
	return selfUnlessAdmin(c)
}
