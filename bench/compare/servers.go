package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// Names of the servers, as printed in the tables.
const (
	nameProxy      = "mcp-browser-proxy"
	nameDevtools   = "chrome-devtools-mcp 1.11.0"
	namePlaywright = "@playwright/mcp 0.0.83"
)

// Versions of the peers, the same as bench/package.json pins.
var peerVersions = map[string]string{
	"chrome-devtools-mcp": "1.11.0",
	"@playwright/mcp":     "0.0.83",
}

// call is one tool call with its arguments.
type call struct {
	tool string
	args map[string]any
}

// server is one MCP server under comparison, connected, with the calls that
// do the four measured things in its own dialect.
type server struct {
	name string
	cl   *client.Client
	// stop disconnects and ends everything the server started.
	stop func()
	// open loads url in a page of the server's own and makes it the one the
	// calls below act on.
	open func(ctx context.Context, url string) error
	// evaluate, snapshot and screenshot are filled in by open when they
	// depend on the page (chrome-devtools-mcp needs its pageId).
	evaluate, snapshot, screenshot call
	// readCounter evaluates the button's text, to check that clicks landed.
	readCounter call
	// click builds the click on the counter button from a snapshot's text.
	click func(snapshot string) (call, error)
	// nextClick, when set, builds the next click from the answer of the
	// last one: Playwright renames the ref of an element whose name
	// changed, and a click's answer links the new snapshot.
	nextClick func(answer string) (call, error)
	// pageID is the page open set up, for servers whose page tools need
	// it (chrome-devtools-mcp); 0 otherwise.
	pageID int
	// dial connects one more client, a session of its own (the proxy).
	dial func(ctx context.Context) (*client.Client, error)
}

// args returns a, with the pageId the server needs added.
func (s *server) args(a map[string]any) map[string]any {
	if s.pageID != 0 {
		a["pageId"] = s.pageID
	}
	return a
}

// initialize sends the MCP handshake.
func initialize(ctx context.Context, cl *client.Client) error {
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "mbp-compare", Version: "0"}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	_, err := cl.Initialize(ctx, init)
	return err
}

// startProxy runs our proxy in-process on a loopback port, the way `serve`
// builds it, registers the Chromium for a user and connects a Streamable
// HTTP client with that user's token.
func startProxy(ctx context.Context, chromeURL, tmp string) (*server, error) {
	ctx, cancel := context.WithCancel(ctx)
	var cleanups []func()
	// In reverse order: the client says goodbye before the server stops.
	stop := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		cancel()
	}
	fail := func(err error) (*server, error) {
		stop()
		return nil, err
	}

	// A log file, not io.Discard: the real server writes every audit line.
	logf, err := os.Create(filepath.Join(tmp, "proxy.log"))
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { _ = logf.Close() })
	log := zerolog.New(logf).With().Timestamp().Logger()

	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	authn, err := auth.NewAuthenticator(secret)
	if err != nil {
		return fail(err)
	}
	store, err := router.OpenBolt(filepath.Join(tmp, "registrations.db"))
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { _ = store.Close() })
	// The page policy as serve builds it: the guard is on every tab, and
	// no page may reach the proxy or a browser's DevTools port.
	nav := tools.NavPolicy{Page: &router.PagePolicy{}}
	pool := browserpool.New(browserpool.Config{
		HealthInterval: 30 * time.Second,
		MaxAttempts:    20,
		Logger:         log.With().Str("component", "browserpool").Logger(),
		Requests:       nav.Page,
	})
	cleanups = append(cleanups, pool.Close)
	nav.Page.Endpoints = pool.ProtectedEndpoints
	callTimeout := 10 * time.Second
	mgr := session.NewManager(session.Config{
		MaxSessionsPerUser: 10,
		MaxSessions:        1000,
		MaxTabsPerSession:  20,
		IdleTimeout:        30 * time.Minute,
		BrowserWait:        5 * time.Second,
		CallTimeout:        callTimeout,
		Log:                log.With().Str("component", "session").Logger(),
		Audit:              log,
	}, pool)
	srv := proxy.New(proxy.Config{
		Version:  "compare",
		Auth:     authn,
		Store:    store,
		Pool:     pool,
		Sessions: mgr,
		Tools:    tools.Config{CallTimeout: callTimeout, NavigationTimeout: 30 * time.Second, Navigation: nav},
		Log:      log,
		Audit:    log,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	nav.Page.SetListen(ln.Addr().String())
	pool.Refresh()
	go mgr.Run(ctx)
	served := make(chan struct{})
	go func() { _ = srv.Serve(ctx, ln); close(served) }()
	cleanups = append(cleanups, func() { cancel(); <-served })
	base := "http://" + ln.Addr().String()

	const user = "bench"
	tok, err := authn.Issue(user, nil, time.Hour)
	if err != nil {
		return fail(err)
	}
	if err := register(ctx, base, tok, user, chromeURL); err != nil {
		return fail(err)
	}
	dial := func(ctx context.Context) (*client.Client, error) {
		tr, err := transport.NewStreamableHTTP(base+"/mcp",
			transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + tok}))
		if err != nil {
			return nil, err
		}
		// 2025-11-25: a real MCP session, what IDEs speak today.
		cl := client.NewClient(tr, client.WithProtocolVersion(mcp.ProtocolVersion20251125))
		if err := cl.Start(ctx); err != nil {
			return nil, fmt.Errorf("start client: %w", err)
		}
		if err := initialize(ctx, cl); err != nil {
			_ = cl.Close()
			return nil, fmt.Errorf("initialize: %w", err)
		}
		return cl, nil
	}
	cl, err := dial(ctx)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { _ = cl.Close() })

	s := &server{
		name:        nameProxy,
		cl:          cl,
		stop:        stop,
		dial:        dial,
		evaluate:    call{"evaluate_script", map[string]any{"function": "() => 1+1"}},
		snapshot:    call{"take_snapshot", map[string]any{}},
		screenshot:  call{"take_screenshot", map[string]any{}},
		readCounter: call{"evaluate_script", map[string]any{"function": counterJS}},
		click: func(snap string) (call, error) {
			uid, err := findUID(snap)
			return call{"click", map[string]any{"uid": uid}}, err
		},
	}
	s.open = func(ctx context.Context, url string) error {
		_, err := callText(ctx, cl, call{"new_page", map[string]any{"url": url}})
		return err
	}
	return s, nil
}

// register is POST /api/register: the user's browser joins the proxy.
func register(ctx context.Context, base, tok, user, browserURL string) error {
	body, _ := json.Marshal(map[string]string{"userId": user, "browserURL": browserURL})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/register", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("register: status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// counterJS reads the button's text.
const counterJS = "() => document.getElementById('counter').textContent"

// uidLine finds the counter button in a chrome-devtools-mcp style snapshot
// (ours uses the same "uid=X role \"name\"" lines).
var uidLine = regexp.MustCompile(`uid=(\S+) button "Clicked \d+ times"`)

func findUID(snap string) (string, error) {
	m := uidLine.FindStringSubmatch(snap)
	if m == nil {
		return "", fmt.Errorf("no `uid=... button \"Clicked N times\"` line in the snapshot")
	}
	return m[1], nil
}

// refLine finds the counter button in a Playwright aria snapshot.
var refLine = regexp.MustCompile(`button "Clicked \d+ times"[^\n]*\[ref=([^\]]+)\]`)

// node returns the node binary, and refuses one older than both peers need.
func node() (string, error) {
	bin, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("node is not on PATH (apt-get install nodejs npm)")
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("node --version: %w", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if major < 20 {
		return "", fmt.Errorf("node %s is too old: chrome-devtools-mcp 1.11.0 needs ^20.19 || ^22.12 || >=23", v)
	}
	return bin, nil
}

// ensurePeers installs bench/package.json's pinned peers when they are
// missing or at another version.
func ensurePeers(benchDir string) error {
	ok := true
	for pkg, want := range peerVersions {
		b, err := os.ReadFile(filepath.Join(benchDir, "node_modules", pkg, "package.json"))
		var p struct{ Version string }
		if err != nil || json.Unmarshal(b, &p) != nil || p.Version != want {
			ok = false
		}
	}
	if ok {
		return nil
	}
	fmt.Fprintf(os.Stderr, "installing the peers into %s/node_modules (npm install)...\n", benchDir)
	cmd := exec.Command("npm", "install", "--prefix", benchDir, "--no-audit", "--no-fund", "--no-package-lock")
	// Neither peer may fetch a browser: both attach to ours.
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm install --prefix %s: %w", benchDir, err)
	}
	return nil
}

// peerEnv keeps the peers from phoning home or downloading anything.
var peerEnv = []string{
	"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1",
	"CHROME_DEVTOOLS_MCP_NO_USAGE_STATISTICS=1",
	"CHROME_DEVTOOLS_MCP_NO_UPDATE_CHECKS=1",
}

// startStdio starts a peer as a stdio MCP server in its own process group
// (so stop takes its children too), with tmp as working directory and its
// stderr in tmp/<logName>.
func startStdio(ctx context.Context, tmp, logName, bin string, args ...string) (*client.Client, func(), error) {
	logf, err := os.Create(filepath.Join(tmp, logName))
	if err != nil {
		return nil, nil, err
	}
	var cmd *exec.Cmd
	cl, err := client.NewStdioMCPClientWithOptions(bin, peerEnv, args,
		transport.WithCommandStderrWriter(logf),
		transport.WithCommandFunc(func(ctx context.Context, command string, env, args []string) (*exec.Cmd, error) {
			cmd = exec.CommandContext(ctx, command, args...)
			cmd.Env = append(os.Environ(), env...)
			cmd.Dir = tmp
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			return cmd, nil
		}))
	if err != nil {
		_ = logf.Close()
		return nil, nil, err
	}
	stop := func() {
		_ = cl.Close()
		if cmd != nil && cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		_ = logf.Close()
	}
	if err := initialize(ctx, cl); err != nil {
		stop()
		tail, _ := os.ReadFile(logf.Name())
		return nil, nil, fmt.Errorf("initialize: %w\nstderr:\n%s", err, lastLines(string(tail), 20))
	}
	return cl, stop, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startDevtools runs chrome-devtools-mcp attached to chromeURL.
func startDevtools(ctx context.Context, benchDir, chromeURL, tmp string) (*server, error) {
	bin, err := node()
	if err != nil {
		return nil, err
	}
	entry := filepath.Join(benchDir, "node_modules", "chrome-devtools-mcp", "build", "src", "bin", "chrome-devtools-mcp.js")
	cl, stop, err := startStdio(ctx, tmp, "chrome-devtools-mcp.log", bin, entry,
		"--browserUrl", chromeURL,
		"--no-usage-statistics", "--no-performance-crux",
		"--workspace", tmp)
	if err != nil {
		return nil, fmt.Errorf("chrome-devtools-mcp: %w", err)
	}
	s := &server{name: nameDevtools, cl: cl, stop: stop}
	s.open = func(ctx context.Context, url string) error {
		text, err := callText(ctx, cl, call{"new_page", map[string]any{"url": url}})
		if err != nil {
			return err
		}
		// With --pageIdRouting (the default) every page tool needs the id.
		id, err := selectedPageID(text)
		if err != nil {
			return err
		}
		s.pageID = id
		s.evaluate = call{"evaluate_script", map[string]any{"pageId": id, "function": "() => 1+1"}}
		s.snapshot = call{"take_snapshot", map[string]any{"pageId": id}}
		s.screenshot = call{"take_screenshot", map[string]any{"pageId": id}}
		s.readCounter = call{"evaluate_script", map[string]any{"pageId": id, "function": counterJS}}
		s.click = func(snap string) (call, error) {
			uid, err := findUID(snap)
			return call{"click", map[string]any{"pageId": id, "uid": uid}}, err
		}
		return nil
	}
	return s, nil
}

// selectedLine is the page list line of the selected page: "3: http://... [selected]".
var selectedLine = regexp.MustCompile(`(?m)^(\d+): .*\[selected\]$`)

func selectedPageID(text string) (int, error) {
	m := selectedLine.FindStringSubmatch(text)
	if m == nil {
		return 0, fmt.Errorf("no selected page in new_page's answer:\n%s", text)
	}
	return strconv.Atoi(m[1])
}

// snapshotLink is where a Playwright action's answer says it wrote the
// page's new snapshot, relative to its working directory.
var snapshotLink = regexp.MustCompile(`\[Snapshot\]\(([^)]+\.yml)\)`)

// startPlaywright runs @playwright/mcp attached to chromeURL over CDP.
func startPlaywright(ctx context.Context, benchDir, chromeURL, tmp string) (*server, error) {
	bin, err := node()
	if err != nil {
		return nil, err
	}
	entry := filepath.Join(benchDir, "node_modules", "@playwright", "mcp", "cli.js")
	out := filepath.Join(tmp, "playwright-output")
	cl, stop, err := startStdio(ctx, tmp, "playwright-mcp.log", bin, entry,
		"--cdp-endpoint", chromeURL, "--output-dir", out)
	if err != nil {
		return nil, fmt.Errorf("@playwright/mcp: %w", err)
	}
	// The click tool names the element "target" in 0.0.83 and "ref" in
	// older releases: follow the schema the server announces.
	refArg := "target"
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if list, err := cl.ListTools(lctx, mcp.ListToolsRequest{}); err == nil {
		for _, t := range list.Tools {
			if t.Name == "browser_click" {
				if _, ok := t.InputSchema.Properties["ref"]; ok {
					refArg = "ref"
				}
			}
		}
	}
	s := &server{
		name:        namePlaywright,
		cl:          cl,
		stop:        stop,
		evaluate:    call{"browser_evaluate", map[string]any{"function": "() => 1+1"}},
		snapshot:    call{"browser_snapshot", map[string]any{}},
		screenshot:  call{"browser_take_screenshot", map[string]any{}},
		readCounter: call{"browser_evaluate", map[string]any{"function": counterJS}},
		click: func(snap string) (call, error) {
			m := refLine.FindStringSubmatch(snap)
			if m == nil {
				return call{}, fmt.Errorf("no `button \"Clicked N times\" [ref=...]` line in the snapshot")
			}
			return call{"browser_click", map[string]any{"element": "Clicked counter button", refArg: m[1]}}, nil
		},
	}
	s.nextClick = func(answer string) (call, error) {
		m := snapshotLink.FindStringSubmatch(answer)
		if m == nil {
			return call{}, fmt.Errorf("no snapshot link in the click's answer:\n%s", answer)
		}
		snap, err := os.ReadFile(filepath.Join(tmp, m[1]))
		if err != nil {
			return call{}, err
		}
		return s.click(string(snap))
	}
	s.open = func(ctx context.Context, url string) error {
		// A tab of its own: the context it attaches to already holds the
		// other servers' pages.
		if _, err := callText(ctx, cl, call{"browser_tabs", map[string]any{"action": "new"}}); err != nil {
			return err
		}
		_, err := callText(ctx, cl, call{"browser_navigate", map[string]any{"url": url}})
		return err
	}
	return s, nil
}

// callText makes one call and returns its text, or an error for a failed
// call or a tool error.
func callText(ctx context.Context, cl *client.Client, c call) (string, error) {
	res, err := do(ctx, cl, c)
	if err != nil {
		return "", err
	}
	text, _ := content(res)
	if res.IsError {
		return "", fmt.Errorf("%s: tool error: %s", c.tool, text)
	}
	return text, nil
}

// do makes one bounded call.
func do(ctx context.Context, cl *client.Client, c call) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var req mcp.CallToolRequest
	req.Params.Name = c.tool
	req.Params.Arguments = c.args
	res, err := cl.CallTool(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.tool, err)
	}
	return res, nil
}

// content returns the result's text parts joined, and the bytes of its
// images as sent (base64).
func content(res *mcp.CallToolResult) (string, int) {
	var b strings.Builder
	images := 0
	for _, c := range res.Content {
		switch c := c.(type) {
		case mcp.TextContent:
			b.WriteString(c.Text)
		case *mcp.TextContent:
			b.WriteString(c.Text)
		case mcp.ImageContent:
			images += len(c.Data)
		case *mcp.ImageContent:
			images += len(c.Data)
		}
	}
	return b.String(), images
}

// firstImage decodes the result's first image, for -dump.
func firstImage(res *mcp.CallToolResult) []byte {
	for _, c := range res.Content {
		var data string
		switch c := c.(type) {
		case mcp.ImageContent:
			data = c.Data
		case *mcp.ImageContent:
			data = c.Data
		default:
			continue
		}
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil
		}
		return b
	}
	return nil
}
