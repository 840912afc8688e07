package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

type serveFlags struct {
	addr, dataDir, jwtSecret         string
	logLevel, logFormat, auditLog    string
	maxBody, filesDir                string
	sessionTokenTTL, idleTimeout     time.Duration
	healthInterval, browserWait      time.Duration
	callTimeout, navTimeout          time.Duration
	keepAlive, drainTimeout          time.Duration
	maxSessionsPerUser, maxSessions  int
	maxTabsPerSession, maxReconnects int
	keepTabs                         bool
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
	fl.StringVar(&f.dataDir, "data-dir", "./data", "directory for the registration store and the generated JWT secret")
	fl.StringVar(&f.jwtSecret, "jwt-secret", "", "HS256 secret for bearer tokens, at least 32 bytes (default: generated and kept in --data-dir)")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&f.logFormat, "log-format", "auto", "log format: json, console, or auto (console on a terminal)")
	fl.StringVar(&f.auditLog, "audit-log", "", "write audit events to this file too (default: only the main log)")
	fl.StringVar(&f.maxBody, "max-body", "1M", "largest request body accepted")
	fl.StringVar(&f.filesDir, "files-dir", "", "the only directory tools may write files to (filePath), one subdirectory per user (default: a temp dir per session, removed when it closes)")
	fl.DurationVar(&f.sessionTokenTTL, "session-token-ttl", 24*time.Hour, "lifetime of the sessionToken that /api/register returns")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 30*time.Minute, "close MCP sessions unused for this long")
	fl.DurationVar(&f.healthInterval, "health-interval", 30*time.Second, "how often each browser connection is health-checked")
	fl.DurationVar(&f.browserWait, "browser-wait", 5*time.Second, "how long a tool call waits for a browser that is reconnecting")
	fl.DurationVar(&f.callTimeout, "call-timeout", 10*time.Second, "bound of one CDP exchange of a tool")
	fl.DurationVar(&f.navTimeout, "navigation-timeout", 30*time.Second, "default wait for a page load")
	fl.DurationVar(&f.keepAlive, "keepalive", 20*time.Second, "keep-alive interval of MCP streams")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 10*time.Second, "how long shutdown waits for requests in flight")
	fl.IntVar(&f.maxSessionsPerUser, "max-sessions-per-user", 10, "open MCP sessions per user")
	fl.IntVar(&f.maxSessions, "max-sessions", 1000, "open MCP sessions in total")
	fl.IntVar(&f.maxTabsPerSession, "max-tabs-per-session", 20, "tabs one session may have open")
	fl.IntVar(&f.maxReconnects, "max-reconnects", 20, "failed connection attempts before a browser is marked failed (a tool call retries it)")
	fl.BoolVar(&f.keepTabs, "keep-tabs", false, "leave a closed session's tabs open")
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
	if err != nil {
		return err
	}
	authn, err := auth.NewAuthenticator(secret)
	if err != nil {
		return err
	}
	store, err := router.OpenBolt(filepath.Join(f.dataDir, "registrations.db"))
	if err != nil {
		return err
	}
	defer store.Close()

	pool := browserpool.New(browserpool.Config{
		HealthInterval: f.healthInterval,
		MaxAttempts:    f.maxReconnects,
		Logger:         log.With().Str("component", "browserpool").Logger(),
	})
	defer pool.Close()
	mgr := session.NewManager(session.Config{
		MaxSessionsPerUser: f.maxSessionsPerUser,
		MaxSessions:        f.maxSessions,
		MaxTabsPerSession:  f.maxTabsPerSession,
		IdleTimeout:        f.idleTimeout,
		KeepTabs:           f.keepTabs,
		FilesDir:           f.filesDir,
		BrowserWait:        f.browserWait,
		CallTimeout:        f.callTimeout,
		Log:                log.With().Str("component", "session").Logger(),
		Audit:              audit,
	}, pool)
	srv := proxy.New(proxy.Config{
		Version:         version,
		Auth:            authn,
		Store:           store,
		Pool:            pool,
		Sessions:        mgr,
		Tools:           tools.Config{CallTimeout: f.callTimeout, NavigationTimeout: f.navTimeout},
		SessionTokenTTL: f.sessionTokenTTL,
		MaxBody:         f.maxBody,
		KeepAlive:       f.keepAlive,
		DrainTimeout:    f.drainTimeout,
		Log:             log,
		Audit:           audit,
	})
	if err := srv.Restore(ctx); err != nil {
		return fmt.Errorf("restore registrations: %w", err)
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.addr, err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process at once
	}()
	go mgr.Run(ctx)

	tokenHint := "mcp-browser-proxy token issue --user <you> --data-dir " + f.dataDir
	if f.jwtSecret != "" {
		tokenHint = "mcp-browser-proxy token issue --user <you>   (with the same MBP_JWT_SECRET)"
	}
	log.Info().Str("addr", "http://"+ln.Addr().String()).Str("data_dir", f.dataDir).Str("version", version).
		Msg("mcp-browser-proxy listening; issue a token with: " + tokenHint)
	return srv.Serve(ctx, ln)
}
