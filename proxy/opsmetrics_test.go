package proxy

import (
	"bufio"
	"context"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// scrape is one GET /metrics, parsed.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics fetches h's /metrics over HTTP (with an admin token) and
// parses the Prometheus text.
func scrapeMetrics(t *testing.T, h *harness) scrape {
	t.Helper()
	code, text := metricsText(t, h, h.token("metrics-admin", auth.PermAdmin))
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, text)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, text)
	}
	return fams
}

// value is the sum of the samples of name whose labels include want (a
// histogram counts its observations); ok is false when name is absent.
func (s scrape) value(name string, want map[string]string) (v float64, ok bool) {
	fam := s[name]
	if fam == nil {
		return 0, false
	}
outer:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, w := range want {
			if have[k] != w {
				continue outer
			}
		}
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		}
	}
	return v, true
}

// delta is what an event must do to one series.
type delta struct {
	name   string
	labels map[string]string
	by     float64
}

// expectDeltas runs event and checks that each series moved by exactly its
// delta between a scrape before and a scrape after.
func expectDeltas(t *testing.T, h *harness, what string, event func(), want ...delta) {
	t.Helper()
	before := scrapeMetrics(t, h)
	event()
	after := scrapeMetrics(t, h)
	for _, d := range want {
		// A vector without children yet is absent: 0.
		b, _ := before.value(d.name, d.labels)
		a, ok := after.value(d.name, d.labels)
		if !ok && d.by != 0 {
			t.Errorf("%s: %s is not exported", what, d.name)
			continue
		}
		if a-b != d.by {
			t.Errorf("%s: %s%v moved by %g, want %g", what, d.name, d.labels, a-b, d.by)
		}
	}
}

// heldStream sends GET path with headers and keeps a 200 stream open until
// the test ends (reading the SSE endpoint event first); it returns the status.
func heldStream(t *testing.T, h *harness, path string, headers map[string]string) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return resp.StatusCode
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if path == "/sse" {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() && !strings.Contains(sc.Text(), "sessionId=") {
		}
	}
	return resp.StatusCode
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// TestOperatorMetricsConnectionsAndAuth scrapes /metrics over HTTP around
// each connection event: an accepted SSE and streamable session, refusals
// for each status, and each authentication failure reason.
func TestOperatorMetricsConnectionsAndAuth(t *testing.T) {
	h := buildHarness(t, harnessSetup{metrics: true, session: session.Config{MaxSessionsPerUser: 1}, edit: func(c *Config) { c.MaxBody = "1K" }})
	alice, bob := h.token("alice"), h.token("bob")

	expectDeltas(t, h, "SSE session opens", func() {
		if code := heldStream(t, h, "/sse", bearer(alice)); code != http.StatusOK {
			t.Fatalf("GET /sse: %d", code)
		}
	},
		delta{"mcp_connections_total", map[string]string{"status": "accepted"}, 1},
		delta{"mcp_connections_active", nil, 1},
		delta{"mcp_sessions_active", map[string]string{"transport": "sse"}, 1},
		delta{"mbp_sessions_active", nil, 1},
	)
	var bobClient interface{ Close() error }
	expectDeltas(t, h, "streamable session opens", func() {
		bobClient = h.connect(viaStreamable, bob, "")
	},
		delta{"mcp_connections_total", map[string]string{"status": "accepted"}, 1},
		delta{"mcp_connections_active", nil, 1},
		delta{"mcp_sessions_active", map[string]string{"transport": "streamable"}, 1},
	)
	expectDeltas(t, h, "streamable session closes (DELETE /mcp)", func() {
		bobClient.Close()
		waitFor(t, "bob's session to close", func() bool { n, _ := h.mgr.UserStats("bob"); return n == 0 })
	},
		delta{"mcp_connections_active", nil, -1},
		delta{"mcp_sessions_active", map[string]string{"transport": "streamable"}, -1},
		delta{"mcp_connections_total", map[string]string{"status": "accepted"}, 0},
	)
	expectDeltas(t, h, "stateless calls are no connection", func() {
		c := h.connect(viaStateless, h.token("carol"), "")
		call(t, c, "list_pages", nil)
	},
		delta{"mcp_connections_total", nil, 0},
		delta{"mcp_connections_active", nil, 0},
		delta{"mcp_sessions_active", map[string]string{"transport": "default"}, 1},
	)

	expectDeltas(t, h, "no token", func() {
		if code := heldStream(t, h, "/sse", nil); code != http.StatusUnauthorized {
			t.Fatalf("GET /sse without a token: %d", code)
		}
	},
		delta{"mcp_connections_total", map[string]string{"status": "unauthorized"}, 1},
		delta{"mcp_auth_failures_total", map[string]string{"reason": "missing_token"}, 1},
	)
	expectDeltas(t, h, "bad token", func() {
		if code := heldStream(t, h, "/mcp", bearer(alice+"x")); code != http.StatusUnauthorized {
			t.Fatalf("GET /mcp with a bad token: %d", code)
		}
	},
		delta{"mcp_connections_total", map[string]string{"status": "unauthorized"}, 1},
		delta{"mcp_auth_failures_total", map[string]string{"reason": "invalid_token"}, 1},
	)
	expired, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix(),
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	expectDeltas(t, h, "expired token", func() {
		if code := heldStream(t, h, "/sse", bearer(expired)); code != http.StatusUnauthorized {
			t.Fatalf("GET /sse with an expired token: %d", code)
		}
	},
		delta{"mcp_auth_failures_total", map[string]string{"reason": "expired_token"}, 1},
	)
	key, rec := h.apiKey("dave")
	expectDeltas(t, h, "revoked API key", func() {
		if err := h.store.RevokeAPIKey(context.Background(), rec.ID); err != nil {
			t.Fatal(err)
		}
		if resp := h.do(http.MethodGet, "/api/users/dave/status", key, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("revoked key: %d", resp.StatusCode)
		}
	},
		delta{"mcp_auth_failures_total", map[string]string{"reason": "invalid_api_key"}, 1},
		delta{"mcp_connections_total", nil, 0}, // not an MCP route
	)

	expectDeltas(t, h, "X-User-Id of another user", func() {
		if code := heldStream(t, h, "/sse", map[string]string{"Authorization": "Bearer " + bob, "X-User-Id": "alice"}); code != http.StatusForbidden {
			t.Fatalf("GET /sse as another user: %d", code)
		}
	},
		delta{"mcp_connections_total", map[string]string{"status": "forbidden"}, 1},
		delta{"mcp_auth_failures_total", nil, 0},
	)
	expectDeltas(t, h, "sessions per user, every one in use", func() {
		if code := heldStream(t, h, "/sse", bearer(alice)); code != http.StatusTooManyRequests {
			t.Fatalf("second SSE stream of alice: %d", code)
		}
	},
		delta{"mcp_connections_total", map[string]string{"status": "limited"}, 1},
		delta{"mcp_limit_rejections_total", map[string]string{"reason": "sessions_per_user"}, 1},
		delta{"mcp_connections_active", nil, 0},
	)
	expectDeltas(t, h, "request body too large", func() {
		if resp := h.do(http.MethodPost, "/api/register", alice, strings.Repeat("x", 4096), nil); resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("large body: %d", resp.StatusCode)
		}
	},
		delta{"mcp_limit_rejections_total", map[string]string{"reason": "body_too_large"}, 1},
	)
	// No user ID in any label without --metrics-per-user.
	for name, fam := range scrapeMetrics(t, h) {
		for _, m := range fam.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "user" || strings.Contains(lp.GetValue(), "alice") || strings.Contains(lp.GetValue(), "bob") {
					t.Errorf("%s carries a user: %s=%s", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

// TestOperatorMetricsForwardedLimit: requests through a trusted reverse
// proxy are limited per forwarded client address, and counted.
func TestOperatorMetricsForwardedLimit(t *testing.T) {
	h := buildHarness(t, harnessSetup{metrics: true, edit: func(c *Config) {
		c.Conns.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
		c.Conns.MaxPerIP = 1
	}})
	expectDeltas(t, h, "forwarded requests per client address", func() {
		fwd := map[string]string{"Authorization": "Bearer " + h.token("erin"), "X-Forwarded-For": "203.0.113.7"}
		if code := heldStream(t, h, "/sse", fwd); code != http.StatusOK {
			t.Fatalf("first forwarded stream: %d", code)
		}
		if code := heldStream(t, h, "/sse", fwd); code != http.StatusTooManyRequests {
			t.Fatalf("second forwarded request of one address: %d", code)
		}
	},
		delta{"mcp_limit_rejections_total", map[string]string{"reason": "conns_per_ip"}, 1},
		delta{"mcp_connections_total", map[string]string{"status": "limited"}, 1},
		delta{"mcp_connections_total", map[string]string{"status": "accepted"}, 1},
	)

}

// TestOperatorMetricsToolsAndBrowsers drives a real Chromium: the browser
// gauge by state, tool executions by status with their durations, and the
// tool-call limits.
func TestOperatorMetricsToolsAndBrowsers(t *testing.T) {
	ch := testchrome.Start(t)
	h := buildHarness(t, harnessSetup{metrics: true, session: session.Config{MaxTabsPerSession: 1, RateLimit: 0.001, RateBurst: 5}})
	tok := h.token("alice")

	var c interface{ Close() error }
	expectDeltas(t, h, "a browser registers and connects", func() {
		h.register(tok, "alice", ch.URL)
		waitFor(t, "alice's browser to connect", func() bool { return h.pool.States()["connected"] == 1 })
	},
		delta{"mcp_browser_connections", map[string]string{"state": "connected"}, 1},
		delta{"mbp_browsers", map[string]string{"state": "connected"}, 1},
	)
	mc := h.connect(viaStreamable, tok, "")
	c = mc
	defer c.Close()
	expectDeltas(t, h, "a tool call that works", func() { mustCall(t, mc, "list_pages", nil) },
		delta{"mcp_tool_executions_total", map[string]string{"tool": "list_pages", "status": "ok"}, 1},
		delta{"mcp_tool_duration_seconds", map[string]string{"tool": "list_pages"}, 1},
		delta{"mbp_tool_calls_total", map[string]string{"tool": "list_pages", "outcome": "ok"}, 1},
	)
	expectDeltas(t, h, "a tool call that fails", func() {
		if _, res := call(t, mc, "select_page", map[string]any{"pageId": 99}); !res.IsError {
			t.Fatal("select_page of an unknown page succeeded")
		}
	},
		delta{"mcp_tool_executions_total", map[string]string{"tool": "select_page", "status": "error"}, 1},
		delta{"mcp_tool_duration_seconds", map[string]string{"tool": "select_page"}, 1},
	)
	expectDeltas(t, h, "tabs per session", func() {
		mustCall(t, mc, "new_page", map[string]any{"url": "about:blank"})
		if text, res := call(t, mc, "new_page", map[string]any{"url": "about:blank"}); !res.IsError || !strings.Contains(text, "the limit") {
			t.Fatalf("second tab: %v %s", res.IsError, text)
		}
	},
		delta{"mcp_limit_rejections_total", map[string]string{"reason": "tabs_per_session"}, 1},
		delta{"mcp_tool_executions_total", map[string]string{"tool": "new_page", "status": "error"}, 1},
	)
	expectDeltas(t, h, "rate limit", func() {
		for {
			text, _ := call(t, mc, "list_pages", nil)
			if strings.Contains(text, "LIMIT_EXCEEDED") {
				return
			}
		}
	},
		delta{"mcp_limit_rejections_total", map[string]string{"reason": "rate_limit"}, 1},
		delta{"mcp_tool_executions_total", map[string]string{"tool": "list_pages", "status": "limited"}, 1},
	)
	expectDeltas(t, h, "the browser goes away", func() {
		ch.Kill()
		waitFor(t, "alice's browser to drop", func() bool { return h.pool.States()["connected"] == 0 })
	},
		delta{"mcp_browser_connections", map[string]string{"state": "connected"}, -1},
	)
}

// TestOperatorMetricsPerUser: with MetricsConfig.PerUser (serve's
// --metrics-per-user) the tool executions and sessions carry the user.
func TestOperatorMetricsPerUser(t *testing.T) {
	reg := prometheus.NewRegistry()
	sm, err := session.NewMetricsWith(reg, session.MetricsConfig{PerUser: true})
	if err != nil {
		t.Fatal(err)
	}
	h := buildHarness(t, harnessSetup{session: session.Config{Metrics: sm}, edit: func(c *Config) {
		if c.Metrics, err = NewMetrics(reg); err != nil {
			t.Fatal(err)
		}
		c.Gatherer = reg
	}})
	c := h.connect(viaSSE, h.token("alice"), "")
	call(t, c, "list_pages", nil) // no browser: an error, counted
	s := scrapeMetrics(t, h)
	if v, _ := s.value("mcp_sessions_active", map[string]string{"transport": "sse", "user": "alice"}); v != 1 {
		t.Errorf("mcp_sessions_active{transport=sse,user=alice} = %g, want 1", v)
	}
	if v, _ := s.value("mcp_tool_executions_total", map[string]string{"tool": "list_pages", "status": "error", "user": "alice"}); v != 1 {
		t.Errorf("mcp_tool_executions_total{user=alice} = %g, want 1", v)
	}
	// The histogram stays per tool only.
	var labels []string
	for _, m := range s["mcp_tool_duration_seconds"].GetMetric() {
		for _, lp := range m.GetLabel() {
			labels = append(labels, lp.GetName())
		}
	}
	sort.Strings(labels)
	for _, l := range labels {
		if l == "user" {
			t.Errorf("mcp_tool_duration_seconds has a user label")
		}
	}
}
