package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tunnel"
)

type serveFlags struct {
	addr, dataDir, jwtSecret         string
	jwtJWKSURL, jwtPublicKey         string
	jwtIssuer, jwtAudience           string
	logLevel, logFormat, auditLog    string
	maxBody, filesDir                string
	sessionTokenTTL, idleTimeout     time.Duration
	staleSessionTimeout              time.Duration
	sessionLifetime                  time.Duration
	healthInterval, browserWait      time.Duration
	callTimeout, navTimeout          time.Duration
	keepAlive, drainTimeout          time.Duration
	maxSessionsPerUser, maxSessions  int
	maxTabsPerSession, maxReconnects int
	keepTabs                         bool

	rateLimit             float64
	rateBurst, maxStreams int
	metricsPublic         bool
	metricsPerUser        bool

	authMode, authNoneUser, storeKey string
	tlsCert, tlsKey                  string
	browserAllow, browserDeny        []string
	allowedOrigins, allowedHosts     []string
	corsOrigins, denyHosts           []string
	allowFileURLs, allowChromeURLs   bool

	limits limitFlags   // limits.go
	oauth  oauthFlags   // oauth.go
	redis  redisFlags   // store.go
	clust  clusterFlags // cluster.go

	toolsets []string // --toolsets, checked by tools.ParseToolsets

	pprofAddr string // --pprof, pprof.go

	managed managedFlags
}

// managedFlags are the --managed-* flags.
type managedFlags struct {
	on, keepProfile bool
	spareTab        bool
	chromium        string
	idle            time.Duration
	max             int
	allowCIDRs      []string
}

func newServe() *cobra.Command {
	cmd, _ := newServeCmd()
	return cmd
}

// newServeCmd returns the serve command and the flag values it parses into.
func newServeCmd() (*cobra.Command, *serveFlags) {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy (embedded storage under --data-dir, no setup needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), f, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:3000", "address to listen on")
	fl.StringVar(&f.dataDir, "data-dir", "./data", "directory for the generated JWT secret and, unless --redis-url, the registration store (bbolt)")
	fl.StringVar(&f.jwtSecret, "jwt-secret", "", "HS256 secret for bearer tokens, at least 32 bytes (default: generated and kept in --data-dir)")
	fl.StringVar(&f.jwtJWKSURL, "jwt-jwks-url", "", "also accept RS256/ES256 tokens of an identity provider, checked with the keys at this JWKS URL (https; http only on loopback)")
	fl.StringVar(&f.jwtPublicKey, "jwt-public-key", "", "also accept RS256/ES256 tokens checked with the public key in this PEM file (excludes --jwt-jwks-url)")
	fl.StringVar(&f.jwtIssuer, "jwt-issuer", "", "require this iss claim in every token; tokens the proxy issues carry it")
	fl.StringVar(&f.jwtAudience, "jwt-audience", "", "require this aud claim in every token; tokens the proxy issues carry it")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&f.logFormat, "log-format", "auto", "log format: json, console, or auto (console on a terminal)")
	fl.StringVar(&f.auditLog, "audit-log", "", "write audit events to this file too (default: only the main log)")
	fl.StringVar(&f.maxBody, "max-body", "1M", "largest request body accepted")
	fl.StringVar(&f.filesDir, "files-dir", "", "the only directory tools may write files to (filePath), one subdirectory per user (default: a temp dir per session, removed when it closes)")
	fl.DurationVar(&f.sessionTokenTTL, "session-token-ttl", 24*time.Hour, "longest lifetime of the sessionToken that /api/register returns; it never outlives the caller's own token")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 30*time.Minute, "close MCP sessions unused for this long (no MCP request), even with a stream open")
	fl.DurationVar(&f.staleSessionTimeout, "stale-session-timeout", 5*time.Minute, "close MCP sessions with no open stream and no MCP request for this long (clients that left without DELETE /mcp)")
	fl.DurationVar(&f.sessionLifetime, "session-lifetime", 12*time.Hour, "close every MCP session this long after it opened, however busy")
	fl.DurationVar(&f.healthInterval, "health-interval", 30*time.Second, "how often each browser connection is health-checked")
	fl.DurationVar(&f.browserWait, "browser-wait", 5*time.Second, "how long a tool call waits for a browser that is reconnecting")
	fl.DurationVar(&f.callTimeout, "call-timeout", 10*time.Second, "bound of one CDP exchange of a tool")
	fl.DurationVar(&f.navTimeout, "navigation-timeout", 30*time.Second, "default wait for a page load")
	fl.DurationVar(&f.keepAlive, "keepalive", 20*time.Second, "keep-alive interval of MCP streams")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 10*time.Second, "how long shutdown waits for requests in flight")
	fl.IntVar(&f.maxSessionsPerUser, "max-sessions-per-user", 10, "open MCP sessions per user; at the limit a new session closes the least recently used one not in use (no stream, no call in flight)")
	fl.IntVar(&f.maxSessions, "max-sessions", 1000, "open MCP sessions in total")
	fl.IntVar(&f.maxTabsPerSession, "max-tabs-per-session", 20, "tabs one session may have open")
	fl.IntVar(&f.maxReconnects, "max-reconnects", 20, "failed connection attempts before a browser is marked failed (a tool call retries it)")
	fl.BoolVar(&f.keepTabs, "keep-tabs", false, "leave a closed session's tabs open")
	fl.Float64Var(&f.rateLimit, "rate-limit", 20, "tool calls per second per user (a token bucket); 0 disables the limit")
	fl.IntVar(&f.rateBurst, "rate-burst", 40, "tool calls a user may make in a burst before --rate-limit applies")
	fl.IntVar(&f.maxStreams, "max-streams-per-user", 10, "concurrent MCP streams (GET /sse and GET /mcp) per user")
	fl.BoolVar(&f.metricsPublic, "metrics-public", false, "serve GET /metrics without authentication (default: admin tokens only)")
	fl.BoolVar(&f.metricsPerUser, "metrics-per-user", false, "add a user label to mcp_tool_executions_total and mcp_sessions_active (one series per user: for small teams)")
	fl.StringVar(&f.authMode, "auth", "jwt", "authentication: jwt (bearer tokens), or none (every request is --auth-none-user; loopback --addr only)")
	fl.StringVar(&f.authNoneUser, "auth-none-user", "local", "the user every request acts as with --auth none")
	fl.StringVar(&f.storeKey, "store-key", "", "secret (at least 32 bytes) that encrypts browser URLs and headers in the store (default: derived from the JWT secret; set it to rotate --jwt-secret without losing registrations)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain); needs --tls-key")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringSliceVar(&f.browserAllow, "browser-allow-cidrs", router.DefaultAllowCIDRs(), "address ranges a registered browser may be in (checked at registration and on every dial)")
	fl.StringSliceVar(&f.browserDeny, "browser-deny-cidrs", router.DefaultDenyCIDRs(), "address ranges no browser may be in; wins over --browser-allow-cidrs")
	fl.StringSliceVar(&f.allowedOrigins, "allowed-origins", nil, "web origins (https://app.example.com) whose pages may call the API and MCP routes, besides same-origin pages")
	fl.StringSliceVar(&f.allowedHosts, "allowed-hosts", nil, "Host names accepted on a loopback address besides localhost, 127.0.0.1 and [::1] (DNS rebinding guard)")
	fl.StringSliceVar(&f.corsOrigins, "cors-origins", nil, "web origins that get CORS answers on /api/* (default: no CORS)")
	fl.StringSliceVar(&f.denyHosts, "deny-hosts", nil, "host globs navigate_page and new_page may not load, e.g. example.com,*.internal")
	fl.StringSliceVar(&f.toolsets, "toolsets", []string{"all"}, "tool groups to offer: all, or some of "+strings.Join(tools.Toolsets(), ",")+"; a token's toolsets claim narrows them")
	fl.BoolVar(&f.allowFileURLs, "allow-file-urls", false, "let navigate_page and new_page load file: URLs")
	fl.BoolVar(&f.allowChromeURLs, "allow-chrome-urls", false, "let navigate_page and new_page load chrome:, devtools:, chrome-extension: and view-source: URLs")
	addLimitFlags(fl, &f.limits)
	addOAuthFlags(fl, &f.oauth)
	addRedisFlags(fl, &f.redis)
	addClusterFlags(fl, &f.clust)
	fl.StringVar(&f.pprofAddr, "pprof", "", "serve Go's profiles (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060 (default: off)")
	fl.BoolVar(&f.managed.on, "managed-browsers", false, "give a user with no registered browser a headless Chromium started by the proxy on their first page tool (over --remote-debugging-pipe, profile under --data-dir/managed/<user>)")
	fl.StringVar(&f.managed.chromium, "managed-chromium", "", "Chromium executable of managed browsers (default: chromium, chromium-browser, google-chrome or google-chrome-stable on PATH)")
	fl.DurationVar(&f.managed.idle, "managed-idle", 10*time.Minute, "stop a managed browser that no tool call used for this long")
	fl.IntVar(&f.managed.max, "managed-max", 4, "managed browsers running at once; beyond it a page tool gets LIMIT_EXCEEDED with a retry time")
	fl.BoolVar(&f.managed.keepProfile, "managed-keep-profile", false, "keep a managed browser's profile (cookies, storage) when it stops; otherwise it is wiped")
	fl.BoolVar(&f.managed.spareTab, "managed-spare-tab", true, "keep one blank tab opened and guarded ahead in each managed browser, so that the next session's first page tool does not wait for a new tab's renderer (one renderer process more per managed browser)")
	fl.StringSliceVar(&f.managed.allowCIDRs, "managed-allow-cidrs", nil, "loopback, private or link-local ranges that managed browsers' pages may reach all the same (default: none), e.g. 10.1.2.0/24")
	return withEnv(cmd), &f
}

func newLogger(level, format string, w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	switch format {
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	case "auto":
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
		}
	case "json":
	default:
		return zerolog.Logger{}, fmt.Errorf("--log-format %q: use json, console or auto", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// loadSecret returns the HS256 secret: --jwt-secret, or the data dir's.
func loadSecret(flag, dataDir string, create bool) ([]byte, error) {
	if flag != "" {
		return auth.SecretFromString(flag)
	}
	if create {
		return auth.LoadOrCreateSecret(dataDir)
	}
	return auth.LoadSecret(dataDir)
}

func serve(ctx context.Context, f serveFlags, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	log, err := newLogger(f.logLevel, f.logFormat, stderr)
	if err != nil {
		return err
	}
	var toolsets []string // nil: all; so is a serveFlags without any (tests)
	if len(f.toolsets) > 0 {
		if toolsets, err = tools.ParseToolsets(f.toolsets); err != nil {
			return fmt.Errorf("--toolsets: %w", err)
		}
	}
	audit := log
	if f.auditLog != "" {
		af, err := os.OpenFile(f.auditLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--audit-log: %w", err)
		}
		defer af.Close()
		audit = zerolog.New(zerolog.MultiLevelWriter(af, stderr)).With().Timestamp().Logger()
	}
	secret, err := loadSecret(f.jwtSecret, f.dataDir, true)
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return fmt.Errorf("%w; --data-dir must be a writable directory (or pass --jwt-secret)", err)
	}
	if err != nil {
		return err
	}
	sec, err := securityFromFlags(f, secret)
	if err != nil {
		return err
	}
	authOpts := auth.Options{Issuer: f.jwtIssuer, Audience: f.jwtAudience}
	switch {
	case f.jwtJWKSURL != "" && f.jwtPublicKey != "":
		return fmt.Errorf("--jwt-jwks-url and --jwt-public-key exclude each other; give the one your identity provider offers")
	case f.jwtPublicKey != "":
		if authOpts.PublicKey, err = auth.LoadPublicKey(f.jwtPublicKey); err != nil {
			return fmt.Errorf("--jwt-public-key: %w", err)
		}
	case f.jwtJWKSURL != "":
		jwks, err := auth.NewJWKS(ctx, auth.JWKSConfig{URL: f.jwtJWKSURL, Log: log.With().Str("component", "auth").Logger()})
		if err != nil {
			return fmt.Errorf("--jwt-jwks-url: %w", err)
		}
		defer jwks.Close()
		authOpts.JWKS = jwks
	}
	authn, err := auth.NewAuthenticatorWith(secret, authOpts)
	if err != nil {
		return err
	}
	oauth, closeOAuth, err := f.oauth.build(ctx, sec.scheme, f.addr, f.jwtIssuer, log.With().Str("component", "auth").Logger())
	if err != nil {
		return err
	}
	defer closeOAuth()
	if f.redis.shared() {
		// Checked before anything opens: a shared instance the others
		// cannot reach must not start.
		if _, err := f.clust.advertise(f.addr, sec.scheme); err != nil {
			return err
		}
	}
	store, storeDesc, err := openServeStore(ctx, f, sec.sealer, log)
	if err != nil {
		return err
	}
	defer func() {
		// bbolt: every write was committed and synced in its own
		// transaction; closing releases the file lock. Redis: the data
		// stays in Redis.
		if err := store.Close(); err != nil {
			log.Error().Err(err).Msg("registration store not closed cleanly")
			return
		}
		log.Info().Str("store", storeDesc).Msg("registration store closed")
	}()

	switch {
	case f.rateLimit < 0:
		return fmt.Errorf("--rate-limit %g: use 0 (no limit) or a positive number of tool calls per second", f.rateLimit)
	case f.rateBurst < 1:
		return fmt.Errorf("--rate-burst %d: use at least 1", f.rateBurst)
	case f.maxStreams < 1:
		return fmt.Errorf("--max-streams-per-user %d: use at least 1", f.maxStreams)
	}
	conns, err := f.limits.conns()
	if err != nil {
		return err
	}
	logBudget, err := f.limits.logBudget()
	if err != nil {
		return err
	}
	metrics, err := newServeMetrics(f.metricsPerUser)
	if err != nil {
		return err
	}
	managed, err := f.managed.config(f.dataDir)
	if err != nil {
		return err
	}
	tunnels := tunnel.NewRegistry(log.With().Str("component", "tunnel").Logger())
	pool := browserpool.New(browserpool.Config{
		Managed:        managed,
		Tunnels:        tunnels,
		HealthInterval: f.healthInterval,
		MaxAttempts:    f.maxReconnects,
		Logger:         log.With().Str("component", "browserpool").Logger(),
		Audit:          audit,
		Metrics:        metrics.pool,
		Policy:         sec.proxy.BrowserPolicy,
		Requests:       sec.nav.Page,
	})
	defer pool.Close()
	sec.nav.Page.Endpoints = pool.ProtectedEndpoints
	mgr := session.NewManager(session.Config{
		MaxSessionsPerUser: f.maxSessionsPerUser,
		MaxSessions:        f.maxSessions,
		MaxTabsPerSession:  f.maxTabsPerSession,
		IdleTimeout:        f.idleTimeout,
		StaleTimeout:       f.staleSessionTimeout,
		Lifetime:           f.sessionLifetime,
		KeepTabs:           f.keepTabs,
		FilesDir:           f.filesDir,
		BrowserWait:        f.browserWait,
		CallTimeout:        f.callTimeout,
		RateLimit:          f.rateLimit,
		RateBurst:          f.rateBurst,
		Metrics:            metrics.session,
		LogBudget:          logBudget,
		Log:                log.With().Str("component", "session").Logger(),
		Audit:              audit,
	}, pool)
	var clusterCfg proxy.ClusterConfig
	if f.redis.shared() {
		var advertised string
		if clusterCfg, advertised, err = f.clust.config(ctx, store, f.addr, sec.scheme, secret, f.sessionLifetime, log); err != nil {
			return err
		}
		log.Info().Str("instance", clusterCfg.Leases.ID()).Str("advertise_url", advertised).Dur("lease_ttl", f.clust.leaseTTL).
			Msg("shared mode: requests for other instances' sessions and users are forwarded to them")
	}
	srv := proxy.New(proxy.Config{
		Version:  version,
		Auth:     authn,
		Store:    store,
		Pool:     pool,
		Sessions: mgr,
		Tools: tools.Config{CallTimeout: f.callTimeout, NavigationTimeout: f.navTimeout, Navigation: sec.nav, MaxCallTimeout: f.limits.maxCallTimeout,
			Toolsets: toolsets},
		SessionTokenTTL: f.sessionTokenTTL,
		MaxBody:         f.maxBody,
		KeepAlive:       f.keepAlive,
		DrainTimeout:    f.drainTimeout,
		Log:             log,
		Audit:           audit,
		MaxStreams:      f.maxStreams,
		Metrics:         metrics.proxy,
		Gatherer:        metrics.reg,
		MetricsPublic:   f.metricsPublic,
		Security:        sec.proxy,
		OAuth:           oauth,
		Conns:           conns,
		Tunnels:         tunnels,
		Cluster:         clusterCfg,
	})
	stopRestore, err := restore(ctx, srv, log)
	if err != nil {
		return fmt.Errorf("restore registrations: %w", err)
	}
	defer stopRestore()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.addr, err)
	}
	_, stopPprof, err := listenPprof(ctx, f.pprofAddr, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopPprof()
	sec.nav.Page.SetListen(ln.Addr().String()) // no page may call the proxy
	pool.Refresh()
	// The first SIGINT or SIGTERM drains (srv.Serve returns when done, and
	// serve returns nil: exit code 0); a second one during the drain makes
	// serve return an error at once (exit code 1), cutting what is in
	// flight. The process then exits, so srv.Serve is not waited for.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go mgr.Run(ctx)
	stopCluster := srv.StartCluster(ctx)
	defer stopCluster()

	tokenHint := "mcp-browser-proxy token issue --user <you> --data-dir " + f.dataDir
	if f.jwtSecret != "" {
		tokenHint = "mcp-browser-proxy token issue --user <you>   (with the same MBP_JWT_SECRET)"
	}
	log.Info().Str("addr", sec.scheme+"://"+ln.Addr().String()).Str("auth", f.authMode).Str("data_dir", f.dataDir).Str("store", storeDesc).Str("version", version).
		Msg("mcp-browser-proxy listening; issue a token with: " + tokenHint)
	if managed != nil {
		log.Info().Str("chromium", managed.Chromium).Str("profiles", managed.Dir).Int("max", managed.Max).Dur("idle", managed.Idle).
			Bool("keep_profile", managed.KeepProfile).Msg("managed browsers on: a user with no registered browser gets a headless Chromium on their first page tool")
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	draining := false
	for {
		select {
		case err := <-served:
			return err
		case sig := <-sigs:
			if !draining {
				draining = true
				log.Info().Str("signal", sig.String()).Dur("drain_timeout", f.drainTimeout).
					Msg("stopping: draining; send the signal again to exit at once")
				cancel()
				continue
			}
			log.Warn().Str("signal", sig.String()).Msg("second signal: exiting without finishing the drain")
			return fmt.Errorf("second signal (%s) during the drain: stopped at once, cutting the requests in flight", sig)
		}
	}
}

// serveMetrics is the Prometheus registry of one serve run and each
// package's collectors on it.
type serveMetrics struct {
	reg     *prometheus.Registry
	pool    *browserpool.Metrics
	session *session.Metrics
	proxy   *proxy.Metrics
}

// newServeMetrics makes a fresh registry (never the global default) with the
// Go runtime and process collectors and those of browserpool, session and
// proxy; perUser adds the user label of --metrics-per-user.
func newServeMetrics(perUser bool) (serveMetrics, error) {
	m := serveMetrics{reg: prometheus.NewRegistry()}
	err := m.reg.Register(collectors.NewGoCollector())
	if err == nil {
		err = m.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if err == nil {
		m.pool, err = browserpool.NewMetrics(m.reg)
	}
	if err == nil {
		m.session, err = session.NewMetricsWith(m.reg, session.MetricsConfig{PerUser: perUser})
	}
	if err == nil {
		m.proxy, err = proxy.NewMetrics(m.reg)
	}
	if err != nil {
		return m, fmt.Errorf("metrics: %w", err)
	}
	return m, nil
}

// serveSecurity is what the security flags configure.
type serveSecurity struct {
	proxy  proxy.SecurityConfig
	nav    tools.NavPolicy
	sealer *router.Sealer
	scheme string // http or https
}

// securityFromFlags checks the security flags and builds their settings:
// the browser policy, the navigation policy, the store's sealer (from
// --store-key or the JWT secret), TLS, origins and --auth.
func securityFromFlags(f serveFlags, jwtSecret []byte) (serveSecurity, error) {
	var s serveSecurity
	switch f.authMode {
	case "jwt":
	case "none":
		if !proxy.IsLoopbackAddr(f.addr) {
			return s, fmt.Errorf("--auth none serves every request as %q without credentials, so --addr must be loopback (e.g. 127.0.0.1:3000), not %q; use --auth jwt to listen elsewhere", f.authNoneUser, f.addr)
		}
		s.proxy.AuthNone = true
	default:
		return s, fmt.Errorf("--auth %q: use jwt or none", f.authMode)
	}
	policy, err := router.NewPolicy(f.browserAllow, f.browserDeny, router.DefaultDenyHostNames(), nil)
	if err != nil {
		return s, err
	}
	s.proxy.BrowserPolicy = policy
	s.nav = tools.NavPolicy{AllowFileURLs: f.allowFileURLs, AllowChromeURLs: f.allowChromeURLs, DenyHosts: f.denyHosts,
		Page: &router.PagePolicy{DenyHosts: f.denyHosts}}
	if err := s.nav.Validate(); err != nil {
		return s, fmt.Errorf("--deny-hosts: %w", err)
	}
	key := jwtSecret
	if f.storeKey != "" {
		key = []byte(f.storeKey)
	}
	if s.sealer, err = router.NewSealer(key); err != nil {
		return s, fmt.Errorf("--store-key: %w", err)
	}
	if s.proxy.TLS, err = proxy.LoadTLS(f.tlsCert, f.tlsKey); err != nil {
		return s, err
	}
	s.scheme = "http"
	if s.proxy.TLS != nil {
		s.scheme = "https"
	}
	s.proxy.AuthNoneUser = f.authNoneUser
	s.proxy.AllowedOrigins, s.proxy.AllowedHosts, s.proxy.CORSOrigins = f.allowedOrigins, f.allowedHosts, f.corsOrigins
	if err := s.proxy.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// config checks the --managed-* flags and builds the pool's managed
// browser settings; nil without --managed-browsers.
func (m managedFlags) config(dataDir string) (*browserpool.ManagedConfig, error) {
	if !m.on {
		return nil, nil
	}
	switch {
	case m.idle <= 0:
		return nil, fmt.Errorf("--managed-idle %s: use a positive duration such as 10m", m.idle)
	case m.max < 1:
		return nil, fmt.Errorf("--managed-max %d: use at least 1", m.max)
	}
	bin := m.chromium
	if bin == "" {
		var err error
		if bin, err = browserpool.FindChromium(); err != nil {
			return nil, fmt.Errorf("--managed-browsers: %w", err)
		}
	} else if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("--managed-chromium %q: %w", bin, err)
	}
	allow := make([]netip.Prefix, 0, len(m.allowCIDRs))
	for _, s := range m.allowCIDRs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("--managed-allow-cidrs: %q is neither a CIDR (e.g. 10.0.0.0/8) nor an IP address", s)
			}
			allow = append(allow, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--managed-allow-cidrs: %q is not a CIDR like 10.0.0.0/8 or fc00::/7", s)
		}
		if pfx.Addr().Is4In6() {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), max(pfx.Bits()-96, 0))
		}
		allow = append(allow, pfx.Masked())
	}
	dir, err := filepath.Abs(filepath.Join(dataDir, "managed"))
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	return &browserpool.ManagedConfig{Chromium: bin, Dir: dir, Idle: m.idle, Max: m.max, KeepProfile: m.keepProfile, AllowCIDRs: allow, NoSpareTab: !m.spareTab}, nil
}
