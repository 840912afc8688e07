package session

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// TestClosingCancelsTheCallInFlight checks that every way a session ends
// (its client, its user's unregistration, expiry, shutdown) returns without
// waiting for the session's tool call, and that the call, which would
// otherwise wait forever (its context is never cancelled, as over SSE),
// ends with a "session closed" error.
func TestClosingCancelsTheCallInFlight(t *testing.T) {
	for name, end := range map[string]func(m *Manager, s *Session){
		"client":       func(m *Manager, s *Session) { m.Close(s.ID) },
		"unregistered": func(m *Manager, s *Session) { m.CloseUser(s.UserID) },
		"lifetime": func(m *Manager, s *Session) {
			backdate(m, s, time.Now(), time.Now().Add(-2*time.Hour))
			m.expire(time.Now())
		},
		"shutdown": func(m *Manager, _ *Session) { m.CloseAll() },
	} {
		t.Run(name, func(t *testing.T) {
			m := newTestManager(t, Config{Lifetime: time.Hour})
			sid := m.NewID("alice")
			s := m.Open(sid, "alice")
			srv := server.NewMCPServer("t", "0")
			ctx := srv.WithContext(auth.WithPrincipal(context.Background(), auth.Principal{UserID: "alice", Perms: auth.DefaultPerms()}), fakeSession{sid})
			started := make(chan struct{})
			h := m.Middleware(func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				close(started)
				<-ctx.Done() // an endless wait, that only the session's close ends
				return mcp.NewToolResultText("waited"), nil
			})
			answer := make(chan *mcp.CallToolResult, 1)
			go func() {
				var req mcp.CallToolRequest
				req.Params.Name = "wait_for"
				res, _ := h(ctx, req)
				answer <- res
			}()
			<-started

			ended := make(chan struct{})
			go func() { defer close(ended); end(m, s) }()
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
				t.Fatal("closing the session waited for its tool call")
			}
			select {
			case res := <-answer:
				text := ""
				if len(res.Content) > 0 {
					text = res.Content[0].(mcp.TextContent).Text
				}
				if !res.IsError || !strings.HasPrefix(text, "session closed") {
					t.Errorf("the cut call answered %q (error %v), want a session closed error", text, res.IsError)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the session's call went on after the session closed")
			}
		})
	}
}
