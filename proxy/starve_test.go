package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// TestLongCallDoesNotStallExpiry checks that one session's endless tool
// call over SSE (wait_for with a huge timeout) neither keeps that session
// alive past its lifetime nor stops the expiry of everyone else's: bob's
// session, opened after alice's call began, expires on time, and alice's
// call ends once her session does.
func TestLongCallDoesNotStallExpiry(t *testing.T) {
	ch := testchrome.Start(t)
	h := newLifeHarness(t, session.Config{Lifetime: 3 * time.Second, IdleTimeout: time.Hour}, func(c *Config) {
		// The ceiling is what refuses such a timeout in production; here
		// it is lifted, so that the call really waits.
		c.Tools.MaxCallTimeout = 1000 * time.Hour
	})
	alice := h.token("alice")
	h.register(alice, "alice", ch.URL)
	ac := h.connect(viaSSE, alice, "")
	mustCall(t, ac, "new_page", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	callDone := make(chan struct{})
	defer func() { cancel(); <-callDone }()
	go func() {
		defer close(callDone)
		var req mcp.CallToolRequest
		req.Params.Name = "wait_for"
		req.Params.Arguments = map[string]any{"text": "never on this page", "timeout": 2000000000}
		_, _ = ac.CallTool(ctx, req) // the stream ends with the session: no answer reaches the client
	}()
	waitUntil(t, 10*time.Second, "alice's wait_for running", func() bool {
		return strings.Contains(h.logs.String(), `"tool":"new_page"`)
	})
	time.Sleep(200 * time.Millisecond) // let the wait_for reach the proxy

	bob := h.connect(viaSSE, h.token("bob"), "")
	_ = bob
	waitUntil(t, 30*time.Second, "every session closed at its lifetime", func() bool { return h.mgr.Count() == 0 })
	waitUntil(t, 10*time.Second, "both lifetime closes audited", func() bool {
		return strings.Count(h.logs.String(), `"event":"session_close"`) == 2 && strings.Count(h.logs.String(), `"reason":"lifetime"`) >= 2
	})
	// Alice's call ended with her session, with the reason, not at its timeout.
	waitUntil(t, 10*time.Second, "alice's wait_for ended", func() bool {
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, `"event":"tool_call"`) && strings.Contains(l, `"tool":"wait_for"`) {
				return strings.Contains(l, `"outcome":"error"`)
			}
		}
		return false
	})
}

// TestTimeoutCeiling checks that a timeout above --max-call-timeout is
// refused up front, with the ceiling named, by every tool that takes one,
// and that the refusal opens no page.
func TestTimeoutCeiling(t *testing.T) {
	ch := testchrome.Start(t)
	h := newHarness(t, "")
	c := h.driving("alice", ch.URL)
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"wait_for", map[string]any{"text": "x", "timeout": 2000000000}},
		{"navigate_page", map[string]any{"url": "about:blank", "timeout": 1e13}}, // would overflow a Duration
		{"new_page", map[string]any{"url": "about:blank", "timeout": 300001}},
	} {
		text, res := call(t, c, tc.tool, tc.args)
		if !res.IsError || !strings.Contains(text, "ceiling of 300000 ms") || !strings.Contains(text, "--max-call-timeout") {
			t.Errorf("%s %v: got %q (error %v), want a refusal naming the 300000 ms ceiling", tc.tool, tc.args, text, res.IsError)
		}
	}
	if list := mustCall(t, c, "list_pages", nil); strings.Contains(list, "about:blank") {
		t.Errorf("a refused call opened a page:\n%s", list)
	}
	// At the ceiling, a timeout is taken.
	if text := mustCall(t, c, "navigate_page", map[string]any{"url": "about:blank", "timeout": 300000}); !strings.Contains(text, "about:blank") {
		t.Errorf("navigate_page at the ceiling: %q", text)
	}
}
