package proxy

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// newObservedHarness is newHarnessWith plus proxy settings of the test's
// choosing (pcfg's limits and MetricsPublic), with every package's metrics
// on one fresh registry that GET /metrics serves.
func newObservedHarness(t *testing.T, scfg session.Config, pcfg Config) *harness {
	return buildHarness(t, harnessSetup{session: scfg, metrics: true, edit: func(c *Config) {
		c.MaxStreams, c.MetricsPublic = pcfg.MaxStreams, pcfg.MetricsPublic
	}})
}

// stream is an open GET stream, or the refusal that answered it.
type stream struct {
	status int
	header http.Header
	body   string // of a refusal
	close  func()
}

// openStream sends GET path with token and, on 200, keeps the stream open
// until close; for GET /sse it waits for the endpoint event.
func openStream(t *testing.T, h *harness, path, token string) stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	st := stream{status: resp.StatusCode, header: resp.Header, close: func() { cancel(); resp.Body.Close() }}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		st.body = string(b)
		st.close()
		return st
	}
	t.Cleanup(st.close)
	if path == "/sse" {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() && !strings.Contains(sc.Text(), "sessionId=") {
		}
	}
	return st
}

// metricsText fetches GET /metrics with token ("" for none).
func metricsText(t *testing.T, h *harness, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.URL+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStreamsPerUser(t *testing.T) {
	h := newObservedHarness(t, session.Config{}, Config{MaxStreams: 2})
	alice, bob, admin := h.token("alice"), h.token("bob"), h.token("root", auth.PermAdmin)

	first := openStream(t, h, "/sse", alice)
	second := openStream(t, h, "/mcp", alice) // a streamable GET stream counts too
	if first.status != http.StatusOK || second.status != http.StatusOK {
		t.Fatalf("streams within the limit: %d %d %s %s", first.status, second.status, first.body, second.body)
	}
	for _, path := range []string{"/sse", "/mcp"} {
		over := openStream(t, h, path, alice)
		if over.status != http.StatusTooManyRequests || !strings.Contains(over.body, `"code":"LIMIT_EXCEEDED"`) ||
			!strings.Contains(over.body, "2 open MCP streams") {
			t.Fatalf("GET %s beyond the limit: %d %s", path, over.status, over.body)
		}
		if ra := over.header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("GET %s refusal has Retry-After %q", path, ra)
		}
	}
	if other := openStream(t, h, "/sse", bob); other.status != http.StatusOK {
		t.Fatalf("bob refused because of alice's streams: %d %s", other.status, other.body)
	}

	// Ending a stream frees its slot.
	first.close()
	var again stream
	waitFor(t, "a freed stream slot", func() bool {
		again = openStream(t, h, "/sse", alice)
		return again.status == http.StatusOK
	})

	code, text := metricsText(t, h, admin)
	if code != http.StatusOK || !strings.Contains(text, `mbp_http_denials_total{reason="stream_limit"}`) ||
		strings.Contains(text, `mbp_http_denials_total{reason="stream_limit"} 0`) {
		t.Errorf("stream refusals not counted (%d):\n%s", code, text)
	}
	if !strings.Contains(h.logs.String(), `"reason":"stream limit"`) {
		t.Error("stream refusals are not audited")
	}
}

func TestToolRateLimit(t *testing.T) {
	// No refill within the test: one call per 1000 s after a burst of 3.
	h := newObservedHarness(t, session.Config{RateLimit: 0.001, RateBurst: 3}, Config{})
	alice := h.connect(viaSSE, h.token("alice"), "")
	bob := h.connect(viaStreamable, h.token("bob"), "")
	for i := range 3 {
		// No browser is registered: the call fails, but it is not refused.
		if text, _ := call(t, alice, "list_pages", nil); strings.Contains(text, "LIMIT_EXCEEDED") {
			t.Fatalf("call %d within the burst refused: %s", i+1, text)
		}
	}
	for i := range 3 {
		text, res := call(t, alice, "list_pages", nil)
		if !res.IsError || !strings.Contains(text, "LIMIT_EXCEEDED") || !strings.Contains(text, "tool calls per second") ||
			!strings.Contains(text, "retry in ") {
			t.Fatalf("call %d beyond the burst: %v %q", 4+i, res.IsError, text)
		}
	}
	if text, _ := call(t, bob, "list_pages", nil); strings.Contains(text, "LIMIT_EXCEEDED") {
		t.Fatalf("bob limited by alice's calls: %s", text)
	}
	_, text := metricsText(t, h, h.token("root", auth.PermAdmin))
	for _, want := range []string{
		`mbp_session_refusals_total{reason="rate_limit"} 3`,
		`mbp_tool_calls_total{outcome="limited",tool="list_pages"} 3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	chrome := testchrome.Start(t)
	h := newObservedHarness(t, session.Config{}, Config{})
	alice, admin := h.token("alice"), h.token("root", auth.PermAdmin)
	if r := h.register(alice, "alice", chrome.URL); r.BrowserStatus != "connected" {
		t.Fatalf("register: %+v", r)
	}
	c := h.connect(viaSSE, alice, "")
	mustCall(t, c, "list_pages", nil)
	// A counted refusal: alice may not act for bob.
	if resp := h.do(http.MethodGet, "/api/users/bob/status", alice, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("alice reading bob's status: %d", resp.StatusCode)
	}
	if resp := h.do(http.MethodGet, "/api/users/alice/status", "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status without a token: %d", resp.StatusCode)
	}

	if code, body := metricsText(t, h, alice); code != http.StatusForbidden || !strings.Contains(body, `"code":"FORBIDDEN"`) {
		t.Fatalf("non-admin GET /metrics: %d %s", code, body)
	}
	if code, _ := metricsText(t, h, ""); code != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /metrics: %d", code)
	}
	code, text := metricsText(t, h, admin)
	if code != http.StatusOK {
		t.Fatalf("admin GET /metrics: %d %s", code, text)
	}
	for _, want := range []string{
		`mbp_browsers{state="connected"} 1`,
		`mbp_browsers{state="failed"} 0`,
		`mbp_browser_connects_total 1`,
		`mbp_browser_reconnect_attempts_total 0`,
		`mbp_browser_state_transitions_total{from="connecting",to="connected"} 1`,
		`mbp_sessions_active 1`,
		`mbp_tool_calls_total{outcome="ok",tool="list_pages"} 1`,
		`mbp_tool_call_duration_seconds_count{tool="list_pages"} 1`,
		`mbp_session_refusals_total{reason="sessions_per_user"} 0`,
		`mbp_http_requests_total{code="201",method="POST",route="/api/register"} 1`,
		`mbp_http_requests_total{code="403",method="GET",route="/api/users/:userId/status"} 1`,
		`mbp_http_denials_total{reason="forbidden"} 2`, // bob's status and the non-admin /metrics
		`mbp_http_denials_total{reason="unauthorized"} 2`,
		`mbp_http_denials_total{reason="stream_limit"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Bounded labels: never a user ID or a URL.
	for _, leak := range []string{"alice", "bob", chrome.URL, strings.TrimPrefix(chrome.URL, "http://")} {
		if strings.Contains(text, leak) {
			t.Errorf("metrics carry %q", leak)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
	// Missing-token and non-admin refusals are audited.
	logs := h.logs.String()
	for _, want := range []string{`"reason":"missing or malformed bearer token"`, `"reason":"admin permission required"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("audit lacks %s", want)
		}
	}
}

func TestMetricsPublic(t *testing.T) {
	h := newObservedHarness(t, session.Config{}, Config{MetricsPublic: true})
	code, text := metricsText(t, h, "")
	if code != http.StatusOK || !strings.Contains(text, "mbp_http_denials_total") {
		t.Fatalf("public GET /metrics: %d %s", code, text)
	}
	// Without a Gatherer there is no route at all.
	plain := newHarness(t, "")
	if code, _ := metricsText(t, plain, plain.token("root", auth.PermAdmin)); code != http.StatusNotFound {
		t.Fatalf("GET /metrics without metrics configured: %d", code)
	}
}

func TestPermissionRefusalAudited(t *testing.T) {
	h := newObservedHarness(t, session.Config{}, Config{})
	c := h.connect(viaStreamable, h.token("rita", auth.PermRead), "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var req mcp.CallToolRequest
	req.Params.Name = "evaluate_script"
	req.Params.Arguments = map[string]any{"function": "() => 1"}
	if res, err := c.CallTool(ctx, req); err == nil && !res.IsError {
		t.Fatal("a read-only token ran evaluate_script")
	}
	if !strings.Contains(h.logs.String(), `"reason":"permission"`) || !strings.Contains(h.logs.String(), `"detail":"the token lacks browser:script"`) {
		t.Errorf("the refusal is not audited:\n%s", h.logs.String())
	}
	_, text := metricsText(t, h, h.token("root", auth.PermAdmin))
	for _, want := range []string{
		`mbp_session_refusals_total{reason="permission"} 1`,
		`mbp_tool_calls_total{outcome="denied",tool="evaluate_script"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestBodyLimitSkipsOnlyRequestsWithoutBody: with the limiting reader left
// out for requests without a body, a body over --max-body is still
// refused, whether it states its length (413) or is chunked (and so must
// be counted as it is read), and a GET without one is answered.
func TestBodyLimitSkipsOnlyRequestsWithoutBody(t *testing.T) {
	h := buildHarness(t, harnessSetup{edit: func(c *Config) { c.MaxBody = "1K" }})
	alice := h.token("alice")
	// Valid but for its size: without the limit it would be registered.
	big := `{"userId":"alice",` + strings.Repeat(" ", 4096) + `"browserURL":"http://127.0.0.1:9222"}`
	// Every route that reads a JSON body: a chunked body over the limit
	// fails the decoder's read, which must stay a 413.
	for _, route := range []string{"/api/register", "/api/tokens", "/api/apikeys"} {
		for _, chunked := range []bool{false, true} {
			var body io.Reader = strings.NewReader(big)
			if chunked {
				body = io.MultiReader(body) // no length known: sent chunked
			}
			req, _ := http.NewRequest(http.MethodPost, h.URL+route, body)
			req.Header.Set("Authorization", "Bearer "+alice)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := http.StatusRequestEntityTooLarge; resp.StatusCode != want {
				t.Errorf("POST %s, a %d-byte body (chunked %v) over a 1K limit: %d, want %d", route, len(big), chunked, resp.StatusCode, want)
			}
		}
	}
	if resp := h.do(http.MethodGet, "/api/users/alice/status", alice, nil, nil); resp.StatusCode == http.StatusRequestEntityTooLarge || resp.StatusCode == http.StatusUnauthorized {
		t.Errorf("GET status without a body: %d", resp.StatusCode)
	}
}
