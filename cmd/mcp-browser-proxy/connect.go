package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/tunnel"
)

// agentConfig is what connect remembers between runs.
type agentConfig struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

// defaultConfigPath is os.UserConfigDir()/mcp-browser-proxy/config.json.
func defaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "mcp-browser-proxy", "config.json")
}

func loadAgentConfig(path string) (agentConfig, error) {
	var c agentConfig
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s is not valid JSON: %w (delete it, or fix it)", path, err)
	}
	return c, nil
}

// saveAgentConfig writes c to path, readable by its owner only: it holds
// a credential.
func saveAgentConfig(path string, c agentConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // WriteFile keeps an existing file's mode
		return err
	}
	return os.Rename(tmp, path)
}

// clientConfig returns ready-to-paste MCP client configuration for the
// proxy at server with token.
func clientConfig(server, token string) string {
	mcpURL := strings.TrimRight(server, "/") + "/mcp"
	hdr := "Bearer " + token
	cursor, _ := json.MarshalIndent(map[string]any{"mcpServers": map[string]any{"browser": map[string]any{
		"url": mcpURL, "headers": map[string]string{"Authorization": hdr}}}}, "", "  ")
	vscode, _ := json.MarshalIndent(map[string]any{"servers": map[string]any{"browser": map[string]any{
		"type": "http", "url": mcpURL, "headers": map[string]string{"Authorization": hdr}}}}, "", "  ")
	return "Claude Code:\n  claude mcp add --transport http browser " + mcpURL + " --header \"Authorization: " + hdr + "\"\n\n" +
		"Cursor (.cursor/mcp.json):\n" + string(cursor) + "\n\n" +
		"VS Code (.vscode/mcp.json):\n" + string(vscode) + "\n"
}

type connectFlags struct {
	server, token, browserURL, wsURL, userDataDir, chrome, config string
	launch, headless, readOnly                                    bool
	allowOrigins                                                  []string
}

func newConnect() *cobra.Command {
	var f connectFlags
	cmd := &cobra.Command{
		Use:   "connect",
		Short: "Tunnel your local browser to a proxy (the developer-machine agent); its DevTools port never leaves this machine",
		Long: `connect finds the browser on this machine, dials the proxy's GET /api/tunnel
(wss under https, through HTTPS_PROXY when set) and relays CDP for that one
browser. The user is the token's. Server and token are remembered in the
config file (mode 0600), so the next run is just "mcp-browser-proxy connect".

The browser: --ws-url or --browser-url; else --launch (a dedicated profile);
else the DevToolsActivePort of --user-data-dir, or of the running Chrome,
Chromium, Edge or Brave profiles (chrome://inspect/#remote-debugging on
Chrome 144+).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runConnect(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "", "base URL of the proxy, e.g. https://browser-proxy.example.com (default: the saved one)")
	fl.StringVar(&f.token, "token", "", "your bearer token or API key, with browser:write (default: the saved one)")
	fl.StringVar(&f.browserURL, "browser-url", "", "DevTools HTTP URL of the browser, e.g. http://127.0.0.1:9222")
	fl.StringVar(&f.wsURL, "ws-url", "", "DevTools websocket URL of the browser, ws://127.0.0.1:PORT/devtools/browser/ID")
	fl.StringVar(&f.userDataDir, "user-data-dir", "", "the browser profile dir whose DevToolsActivePort to use")
	fl.BoolVar(&f.launch, "launch", false, "start Chrome/Chromium with a dedicated profile under the config dir")
	fl.BoolVar(&f.headless, "headless", false, "with --launch: no window")
	fl.StringVar(&f.chrome, "chrome", "", "with --launch: the browser executable (default: the first Chrome, Chromium, Edge or Brave found)")
	fl.StringSliceVar(&f.allowOrigins, "allow-origin", nil, "only navigations to these origins are relayed, e.g. https://app.example.com or https://*.example.com (repeatable)")
	fl.BoolVar(&f.readOnly, "read-only", false, "refuse input, page script, navigation and page changes")
	fl.StringVar(&f.config, "config", defaultConfigPath(), "where server and token are remembered")
	return withEnv(cmd)
}

func runConnect(ctx context.Context, stdout, stderr io.Writer, f connectFlags) error {
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
	saved, err := loadAgentConfig(f.config)
	if err != nil {
		return err
	}
	given := f.server != "" || f.token != ""
	if f.server == "" {
		f.server = saved.Server
	}
	if f.token == "" {
		f.token = saved.Token
	}
	if f.server == "" || f.token == "" {
		return errors.New("--server and --token are needed on the first run (they are remembered in " + f.config + "); get a token from your proxy admin or `mcp-browser-proxy token issue --user <you>`")
	}
	if _, err := tunnel.TunnelURL(f.server); err != nil {
		return err
	}
	origins, err := tunnel.NormalizeOrigins(f.allowOrigins)
	if err != nil {
		return err
	}

	locate, product, cleanup, err := findBrowser(ctx, f, log)
	if err != nil {
		return err
	}
	defer cleanup()

	var once sync.Once
	agent := tunnel.NewAgent(tunnel.AgentConfig{
		Server: f.server, Token: f.token, Locate: locate, Browser: product,
		Policy:  tunnel.Policy{AllowOrigins: origins, ReadOnly: f.readOnly},
		Version: version, Proxy: http.ProxyFromEnvironment, Log: log,
		OnConnected: func() {
			once.Do(func() {
				if given && f.config != "" {
					if err := saveAgentConfig(f.config, agentConfig{Server: f.server, Token: f.token}); err != nil {
						log.Warn().Err(err).Msg("could not remember server and token")
					} else {
						log.Info().Str("config", f.config).Msg("server and token saved; next time run just `mcp-browser-proxy connect`")
					}
				}
				fmt.Fprint(stdout, "Your browser is tunnelled. Point your IDE at the proxy:\n\n"+clientConfig(f.server, f.token))
			})
		},
	})
	return agent.Run(ctx)
}

// findBrowser decides which browser to relay, following the flags, and
// returns how to locate it on each connection.
func findBrowser(ctx context.Context, f connectFlags, log zerolog.Logger) (locate func(context.Context) (string, error), product string, cleanup func(), err error) {
	cleanup = func() {}
	switch {
	case f.wsURL != "":
		ws := f.wsURL
		return func(context.Context) (string, error) { return ws, nil }, tunnel.Product(ctx, ws), cleanup, nil
	case f.browserURL != "":
		_, prod, err := tunnel.FromBrowserURL(ctx, f.browserURL)
		if err != nil {
			return nil, "", nil, fmt.Errorf("--browser-url: %w; start the browser with --remote-debugging-port", err)
		}
		raw := f.browserURL
		return func(ctx context.Context) (string, error) {
			ws, _, err := tunnel.FromBrowserURL(ctx, raw)
			return ws, err
		}, prod, cleanup, nil
	case f.launch:
		bin := f.chrome
		if bin == "" {
			if bin, err = tunnel.FindChrome(tunnel.ChromeCandidates(runtime.GOOS)); err != nil {
				return nil, "", nil, err
			}
		}
		dir := f.userDataDir
		if dir == "" {
			cfg, err := os.UserConfigDir()
			if err != nil {
				return nil, "", nil, fmt.Errorf("no config dir for the profile: %w; pass --user-data-dir", err)
			}
			dir = filepath.Join(cfg, "mcp-browser-proxy", "profile")
		}
		var extra []string
		if runtime.GOOS == "linux" && os.Geteuid() == 0 {
			extra = append(extra, "--no-sandbox") // Chromium refuses to run as root otherwise
		}
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		l, err := tunnel.Launch(lctx, bin, dir, f.headless, extra...)
		cancel()
		if err != nil {
			return nil, "", nil, err
		}
		log.Info().Str("browser", bin).Str("profile", dir).Msg("browser started")
		return profileLocator(dir), tunnel.Product(ctx, l.WSURL), l.Stop, nil
	case f.userDataDir != "":
		ws, err := tunnel.FromProfile(ctx, f.userDataDir)
		if err != nil {
			return nil, "", nil, fmt.Errorf("%w\n%s", err, tunnel.NoBrowserHelp(nil, f.userDataDir))
		}
		return profileLocator(f.userDataDir), tunnel.Product(ctx, ws), cleanup, nil
	default:
		cfg, _ := os.UserConfigDir()
		cache, _ := os.UserCacheDir()
		home, _ := os.UserHomeDir()
		profiles := tunnel.DefaultProfiles(runtime.GOOS, cfg, cache, home)
		ws, p, err := tunnel.Discover(ctx, profiles)
		if ws == "" {
			help := tunnel.NoBrowserHelp(profiles, filepath.Join(cfg, "mcp-browser-proxy", "profile"))
			if err != nil {
				help = err.Error() + "\n" + help
			}
			return nil, "", nil, errors.New(help)
		}
		log.Info().Str("browser", p.Name).Str("profile", p.Dir).Msg("browser found")
		return profileLocator(p.Dir), tunnel.Product(ctx, ws), cleanup, nil
	}
}

// profileLocator reads dir's DevToolsActivePort on each connection: a
// restarted browser has a new port and browser ID.
func profileLocator(dir string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) { return tunnel.FromProfile(ctx, dir) }
}
