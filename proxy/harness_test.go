package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testlog"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// harness is a proxy on a loopback httptest server, with its own store.
type harness struct {
	t     testing.TB
	URL   string
	authn *auth.Authenticator
	store *router.BoltStore
	pool  *browserpool.Pool
	mgr   *session.Manager
	srv   *Server
	logs  *testlog.Buffer
	hs    *httptest.Server
}

func newHarness(t testing.TB, dataDir string) *harness {
	return buildHarness(t, harnessSetup{dataDir: dataDir})
}

// newHarnessWith is newHarness with session limits of the test's choosing.
func newHarnessWith(t testing.TB, dataDir string, scfg session.Config) *harness {
	return buildHarness(t, harnessSetup{dataDir: dataDir, session: scfg})
}

// testSecret signs the harness's tokens and keys its store's encryption.
const testSecret = "test-secret-test-secret-test-secret!"

// harnessSetup is what a test may change in the proxy it gets.
type harnessSetup struct {
	dataDir  string             // default: a temp dir
	pool     browserpool.Config // without HealthInterval and InitialBackoff: fast test settings
	session  session.Config     // BrowserWait defaults to 1 s
	metrics  bool               // register every package's metrics (Config.Gatherer)
	edit     func(*Config)      // last changes to the proxy's Config
	ln       net.Listener       // serve on this listener (shared mode: its address is advertised); default a new one
	capConns bool               // count connections per address as Serve does (Config.Conns)
}

// buildHarness starts a proxy on a loopback httptest server, with its own
// bbolt store (encrypted with testSecret), pool and session manager, and
// stops it all when the test ends.
func buildHarness(t testing.TB, su harnessSetup) *harness {
	t.Helper()
	if su.dataDir == "" {
		su.dataDir = t.TempDir()
	}
	logs := &testlog.Buffer{}
	log := zerolog.New(logs)
	authn, err := auth.NewAuthenticator([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := router.NewSealer([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	store, err := router.OpenBolt(filepath.Join(su.dataDir, "registrations.db"), router.WithSealer(sealer))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Version: "test", Auth: authn, Store: store,
		Tools: tools.Config{CallTimeout: 10 * time.Second, NavigationTimeout: 10 * time.Second},
		Log:   log, Audit: log, RegisterWait: 5 * time.Second,
	}
	if su.pool.HealthInterval == 0 && su.pool.InitialBackoff == 0 {
		su.pool = browserpool.Config{HealthInterval: time.Second, DialTimeout: 5 * time.Second,
			InitialBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
	}
	su.pool.Logger, su.pool.Audit = log, log
	if su.metrics {
		reg := prometheus.NewRegistry()
		if su.pool.Metrics, err = browserpool.NewMetrics(reg); err != nil {
			t.Fatal(err)
		}
		if su.session.Metrics, err = session.NewMetrics(reg); err != nil {
			t.Fatal(err)
		}
		if cfg.Metrics, err = NewMetrics(reg); err != nil {
			t.Fatal(err)
		}
		cfg.Gatherer = reg
	}
	if su.edit != nil {
		su.edit(&cfg)
	}
	if cfg.Security.BrowserPolicy != nil {
		su.pool.Policy = cfg.Security.BrowserPolicy
	}
	page := &router.PagePolicy{DenyHosts: cfg.Tools.Navigation.DenyHosts}
	su.pool.Requests = page
	cfg.Tools.Navigation.Page = page
	pool := browserpool.New(su.pool)
	page.Endpoints = pool.ProtectedEndpoints
	if su.session.BrowserWait == 0 {
		su.session.BrowserWait = time.Second
	}
	su.session.Log, su.session.Audit = log, log
	mgr := session.NewManager(su.session, pool)
	cfg.Pool, cfg.Sessions = pool, mgr
	srv := New(cfg)
	if err := srv.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	if su.ln != nil {
		hs.Listener.Close()
		hs.Listener = su.ln
	}
	if su.capConns {
		hs.Listener = srv.limitConns(hs.Listener)
		hs.Config.ConnContext = connContext
	}
	hs.Start()
	page.SetListen(hs.Listener.Addr().String())
	h := &harness{t: t, URL: hs.URL, authn: authn, store: store, pool: pool, mgr: mgr, srv: srv, logs: logs, hs: hs}
	t.Cleanup(func() {
		mgr.CloseAll()
		hs.CloseClientConnections()
		hs.Close()
		pool.Close()
		store.Close()
	})
	return h
}

func (h *harness) token(user string, perms ...string) string {
	h.t.Helper()
	tok, err := h.authn.Issue(user, perms, time.Hour)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// do sends a JSON request and decodes the answer into out (when non-nil).
func (h *harness) do(method, path, token string, body any, out any) *http.Response {
	h.t.Helper()
	var r io.Reader
	if s, ok := body.(string); ok {
		r = strings.NewReader(s)
	} else if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, h.URL+path, r)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			h.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp
}

func (h *harness) register(token, user, browserURL string) RegisterResponse {
	h.t.Helper()
	var out RegisterResponse
	resp := h.do(http.MethodPost, "/api/register", token, map[string]string{"userId": user, "browserURL": browserURL}, &out)
	if resp.StatusCode != http.StatusCreated {
		h.t.Fatalf("register %s: status %d", user, resp.StatusCode)
	}
	return out
}

type transportKind string

const (
	viaSSE        transportKind = "sse"
	viaStreamable transportKind = "streamable" // pinned to 2025-11-25: a real session
	viaStateless  transportKind = "stateless"  // 2026-07-28: the user's default workspace
)

// connect starts an initialized mcp-go client for token over kind.
// driving registers browserURL for user and connects an MCP client for them
// over Streamable HTTP: the start of most tool tests.
func (h *harness) driving(user, browserURL string) *client.Client {
	h.t.Helper()
	tok := h.token(user)
	h.register(tok, user, browserURL)
	return h.connect(viaStreamable, tok, "")
}

func (h *harness) connect(kind transportKind, token, userHeader string) *client.Client {
	h.t.Helper()
	headers := map[string]string{"Authorization": "Bearer " + token}
	if userHeader != "" {
		headers["X-User-Id"] = userHeader
	}
	c, err := dialMCP(h.URL, kind, headers)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// dialMCP starts an MCP client of kind on the proxy at baseURL, sending
// headers, and initializes it; the caller closes it. It reports errors
// instead of failing a test, so that goroutines (the soak) can use it.
func dialMCP(baseURL string, kind transportKind, headers map[string]string) (*client.Client, error) {
	var c *client.Client
	switch kind {
	case viaSSE:
		tr, err := transport.NewSSE(baseURL+"/sse", transport.WithHeaders(headers))
		if err != nil {
			return nil, err
		}
		c = client.NewClient(tr)
	default: // viaStreamable, viaStateless
		tr, err := transport.NewStreamableHTTP(baseURL+"/mcp", transport.WithHTTPHeaders(headers))
		if err != nil {
			return nil, err
		}
		var opts []client.ClientOption
		if kind == viaStreamable {
			opts = append(opts, client.WithProtocolVersion(mcp.ProtocolVersion20251125))
		}
		c = client.NewClient(tr, opts...)
	}
	// The SSE stream lives as long as Start's context: it must outlive this
	// function. The transport bounds the wait for the endpoint event.
	if err := c.Start(context.Background()); err != nil {
		return nil, fmt.Errorf("start %s client: %w", kind, err)
	}
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "0"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Initialize(ctx, init); err != nil {
		c.Close()
		return nil, fmt.Errorf("initialize %s client: %w", kind, err)
	}
	return c, nil
}

// call runs a tool and returns its text content and whether it is an error.
func call(t testing.TB, c *client.Client, name string, args map[string]any) (string, *mcp.CallToolResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var req mcp.CallToolRequest
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var parts []string
	for _, ct := range res.Content {
		if tc, ok := ct.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n"), res
}

// mustCall is call that fails the test on a tool error.
func mustCall(t testing.TB, c *client.Client, name string, args map[string]any) string {
	t.Helper()
	text, res := call(t, c, name, args)
	if res.IsError {
		t.Fatalf("%s(%v) failed: %s", name, args, text)
	}
	return text
}

// toolNames lists the tools c sees (tools/list), as a set.
func toolNames(t testing.TB, c *client.Client) map[string]bool {
	t.Helper()
	list, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	names := map[string]bool{}
	for _, tl := range list.Tools {
		names[tl.Name] = true
	}
	return names
}

// testPages serves the pages the tests drive, on 127.0.0.1.
func testPages(t testing.TB) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><html><head><title>Test page</title></head><body>
<h1>Hello</h1>
<button onclick="document.getElementById('out').textContent='Clicked!'">Press me</button>
<p id="out">Not yet</p>
<label>Name <input id="name"></label>
<select id="color" aria-label="Color"><option>Red</option><option>Blue</option></select>
<a href="/two">Go to two</a>
</body></html>`)
	})
	mux.HandleFunc("/two", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><html><head><title>Two</title></head><body><p>Second page</p></body></html>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// totalBrowsers is how many browsers h's pool knows, in any state.
func totalBrowsers(h *harness) (n int) {
	for _, c := range h.pool.States() {
		n += c
	}
	return n
}
