package session

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// TestArgumentPermissionRefused: an argument that needs more than its tool
// (navigate_page's initScript needs browser:script) is refused, audited and
// counted like a tool the token lacks the permission for.
func TestArgumentPermissionRefused(t *testing.T) {
	var logs bytes.Buffer
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, Config{Metrics: metrics, Audit: zerolog.New(&logs)})
	sid := m.NewID("rita")
	m.Open(sid, "rita")
	srv := server.NewMCPServer("t", "0")
	writer := auth.Principal{UserID: "rita", Perms: []string{auth.PermRead, auth.PermWrite}}
	ctx := srv.WithContext(auth.WithPrincipal(context.Background(), writer), fakeSession{sid})
	ran := 0
	h := m.Middleware(func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ran++
		return mcp.NewToolResultText("ok"), nil
	})
	call := func(args map[string]any) *mcp.CallToolResult {
		var r mcp.CallToolRequest
		r.Params.Name = "navigate_page"
		r.Params.Arguments = args
		res, _ := h(ctx, r)
		return res
	}
	res := call(map[string]any{"url": "http://127.0.0.1:1/", "initScript": "alert(1)"})
	if ran != 0 || !res.IsError || !strings.Contains(text(res), "initScript") || !strings.Contains(text(res), auth.PermScript) {
		t.Fatalf("initScript with a read,write token: ran=%d %q", ran, text(res))
	}
	call(map[string]any{"url": "http://127.0.0.1:1/"})
	call(map[string]any{"url": "http://127.0.0.1:1/", "initScript": ""})
	if ran != 2 {
		t.Errorf("calls without initScript ran %d times, want 2", ran)
	}
	if got := testutil.ToFloat64(metrics.refusals.WithLabelValues(ReasonPermission)); got != 1 {
		t.Errorf("permission refusals = %v, want 1", got)
	}
	out := logs.String()
	for _, want := range []string{`"event":"denied"`, `"user":"rita"`, `"tool":"navigate_page"`, `"reason":"permission"`, "initScript", auth.PermScript} {
		if !strings.Contains(out, want) {
			t.Errorf("initScript denial lacks %s:\n%s", want, out)
		}
	}
}
