package session

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// text returns the text content of a tool result.
func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestRateLimitPerUser(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// One call per 100 s after a burst of 3: refill cannot happen in the test.
	m := newTestManager(t, Config{RateLimit: 0.01, RateBurst: 3, Metrics: metrics, Audit: zerolog.New(&logs)})
	alice := m.NewID("alice")
	for i := range 3 {
		if ran, _, res := callAs(m, "alice", alice); !ran || res.IsError {
			t.Fatalf("call %d within the burst refused: %s", i+1, text(res))
		}
	}
	for i := range 2 {
		ran, _, res := callAs(m, "alice", alice)
		if ran || !res.IsError {
			t.Fatalf("call %d beyond the burst ran", 4+i)
		}
		msg := text(res)
		for _, want := range []string{"LIMIT_EXCEEDED", "0.01 tool calls per second", "bursts of 3", "retry in "} {
			if !strings.Contains(msg, want) {
				t.Errorf("refusal %q lacks %q", msg, want)
			}
		}
	}
	// Another user has a bucket of their own.
	if ran, _, res := callAs(m, "bob", m.NewID("bob")); !ran || res.IsError {
		t.Fatalf("bob refused because of alice: %s", text(res))
	}
	if got := testutil.ToFloat64(metrics.refusals.WithLabelValues(ReasonRateLimit)); got != 2 {
		t.Errorf("rate_limit refusals = %v, want 2", got)
	}
	if got := testutil.ToFloat64(metrics.calls.WithLabelValues("list_pages", OutcomeLimited)); got != 2 {
		t.Errorf("limited calls = %v, want 2", got)
	}
	if got := testutil.ToFloat64(metrics.calls.WithLabelValues("list_pages", OutcomeOK)); got != 4 {
		t.Errorf("ok calls = %v, want 4", got)
	}
	if n := strings.Count(logs.String(), `"reason":"rate_limit"`); n != 2 {
		t.Errorf("%d rate-limit denials audited, want 2:\n%s", n, logs.String())
	}
}

func TestRateLimitOffByDefault(t *testing.T) {
	m := newTestManager(t, Config{})
	sid := m.NewID("alice")
	for i := range 200 {
		if ran, _, res := callAs(m, "alice", sid); !ran {
			t.Fatalf("call %d refused without a rate limit: %s", i+1, text(res))
		}
	}
}

func TestCallLimiterRefill(t *testing.T) {
	l := newCallLimiter(10, 2) // one call per 100ms
	now := time.Now()
	for i := range 2 {
		if ok, _ := l.allow("alice", now); !ok {
			t.Fatalf("call %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("alice", now)
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("third call: ok=%v wait=%v, want a refusal with a wait of at most 100ms", ok, wait)
	}
	// A refusal takes nothing: the wait it named is enough.
	if ok, _ := l.allow("alice", now.Add(wait)); !ok {
		t.Fatal("refused after the wait the refusal named")
	}
}

func TestCallLimiterForgetsIdleUsers(t *testing.T) {
	l := newCallLimiter(1, 1)
	now := time.Now()
	for i := range limitedUsers {
		l.allow(fmt.Sprintf("u%d", i), now)
	}
	if ok, _ := l.allow("u0", now); ok {
		t.Fatal("u0's empty bucket allowed a call")
	}
	// An hour later every bucket is full again, i.e. idle: a new user drops them.
	l.allow("late", now.Add(time.Hour))
	l.mu.Lock()
	n := len(l.users)
	l.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d buckets kept, want only the new user's", n)
	}
}

func TestSessionMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("registering twice on one registry is not an error")
	}
	m := newTestManager(t, Config{MaxSessionsPerUser: 1, Metrics: metrics})
	id := m.NewID("alice")
	m.Open(id, "alice")
	defer m.Hold(id)() // in use: not evicted
	if err := m.CheckOpen("alice"); err == nil {
		t.Fatal("second session of alice allowed")
	}
	if ran, _, _ := callAs(m, "bob", ""); !ran { // bob's default workspace
		t.Fatal("bob's call did not run")
	}
	want := `
# HELP mbp_sessions_active Open MCP sessions, users' default workspaces included.
# TYPE mbp_sessions_active gauge
mbp_sessions_active 2
# HELP mbp_session_refusals_total Refused tool calls and sessions by reason.
# TYPE mbp_session_refusals_total counter
mbp_session_refusals_total{reason="managed_limit"} 0
mbp_session_refusals_total{reason="permission"} 0
mbp_session_refusals_total{reason="rate_limit"} 0
mbp_session_refusals_total{reason="session_owner"} 0
mbp_session_refusals_total{reason="sessions_per_user"} 1
mbp_session_refusals_total{reason="sessions_total"} 0
# HELP mbp_tool_calls_total Tool calls by tool and outcome (ok, error, denied, limited).
# TYPE mbp_tool_calls_total counter
mbp_tool_calls_total{outcome="ok",tool="list_pages"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"mbp_sessions_active", "mbp_session_refusals_total", "mbp_tool_calls_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(metrics.duration); n != 1 {
		t.Errorf("%d duration series, want 1 (list_pages)", n)
	}
}

func TestOwnershipRefusalCounted(t *testing.T) {
	var logs bytes.Buffer
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, Config{Metrics: metrics, Audit: zerolog.New(&logs)})
	sid := m.NewID("alice")
	m.Open(sid, "alice")
	if ran, _, _ := callAs(m, "mallory", sid); ran {
		t.Fatal("mallory's call on alice's session ran")
	}
	if got := testutil.ToFloat64(metrics.refusals.WithLabelValues(ReasonSessionOwner)); got != 1 {
		t.Errorf("session_owner refusals = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), `"user":"mallory"`) || !strings.Contains(logs.String(), `"reason":"session_owner"`) {
		t.Errorf("ownership refusal not audited:\n%s", logs.String())
	}
}

func TestPermissionRefusalsNameThePermission(t *testing.T) {
	var logs bytes.Buffer
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, Config{Metrics: metrics, Audit: zerolog.New(&logs)})
	sid := m.NewID("rita")
	m.Open(sid, "rita")
	srv := server.NewMCPServer("t", "0")
	reader := auth.Principal{UserID: "rita", Perms: []string{auth.PermRead}}
	ctx := srv.WithContext(auth.WithPrincipal(context.Background(), reader), fakeSession{sid})
	ran := 0
	h := m.Middleware(func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ran++
		return mcp.NewToolResultText("ok"), nil
	})
	call := func(name string) *mcp.CallToolResult {
		var r mcp.CallToolRequest
		r.Params.Name = name
		res, _ := h(ctx, r)
		return res
	}

	res := call("evaluate_script")
	if ran != 0 || !res.IsError || !strings.Contains(res.Content[0].(mcp.TextContent).Text, auth.PermScript) {
		t.Fatalf("evaluate_script with a read-only token: ran=%d %+v", ran, res)
	}
	// Not refusals: a tool rita may call, and an unknown tool (the server
	// answers that one itself).
	call("list_pages")
	call("no_such_tool")
	if ran != 2 {
		t.Errorf("allowed calls ran %d times, want 2", ran)
	}
	if got := testutil.ToFloat64(metrics.refusals.WithLabelValues(ReasonPermission)); got != 1 {
		t.Errorf("permission refusals = %v, want 1", got)
	}
	out := logs.String()
	if n := strings.Count(out, `"event":"denied"`); n != 1 {
		t.Errorf("%d denials audited, want 1:\n%s", n, out)
	}
	for _, want := range []string{`"user":"rita"`, `"tool":"evaluate_script"`, `"session":"` + sid + `"`, `"reason":"permission"`, auth.PermScript} {
		if !strings.Contains(out, want) {
			t.Errorf("permission denial lacks %s:\n%s", want, out)
		}
	}
}

// TestToolSeriesAsBefore: the cached series count as WithLabelValues did;
// a tool whose calls never ran has no duration series, and one that ran has
// them with its calls observed.
func TestToolSeriesAsBefore(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.called("alice", "refused_tool", OutcomeDenied, false, 0)
	m.called("alice", "refused_tool", OutcomeDenied, false, 0)
	m.called("alice", "ran_tool", OutcomeOK, true, 3*time.Millisecond)
	m.called("bob", "ran_tool", OutcomeError, true, time.Millisecond)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case mt.GetCounter() != nil:
				got[key] = mt.GetCounter().GetValue()
			case mt.GetHistogram() != nil:
				got[key] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"mbp_tool_calls_total,outcome=denied,tool=refused_tool":     2,
		"mcp_tool_executions_total,status=denied,tool=refused_tool": 2,
		"mbp_tool_calls_total,outcome=ok,tool=ran_tool":             1,
		"mbp_tool_calls_total,outcome=error,tool=ran_tool":          1,
		"mbp_tool_call_duration_seconds,tool=ran_tool":              2,
		"mcp_tool_duration_seconds,tool=ran_tool":                   2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, k := range []string{"mbp_tool_call_duration_seconds,tool=refused_tool", "mcp_tool_duration_seconds,tool=refused_tool"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s exists, but the tool never ran", k)
		}
	}
}
