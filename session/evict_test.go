package session

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// TestCallInFlightNeverEvicted checks that at the per-user limit the least
// recently used session is evicted unless a tool call of it is running:
// then the next one goes, and with every session busy or held the new one is
// refused.
func TestCallInFlightNeverEvicted(t *testing.T) {
	var logs bytes.Buffer
	m := newTestManager(t, Config{MaxSessionsPerUser: 2, Audit: zerolog.New(&logs)})
	busy, other := m.NewID("alice"), m.NewID("alice")
	m.Open(busy, "alice")
	m.Open(other, "alice")
	m.sessions[busy].setLastUsed(time.Now().Add(-time.Hour)) // the LRU one

	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan *mcp.CallToolResult)
	go func() {
		srv := server.NewMCPServer("t", "0")
		ctx := srv.WithContext(auth.WithPrincipal(context.Background(), auth.Principal{UserID: "alice", Perms: auth.DefaultPerms()}), fakeSession{busy})
		h := m.Middleware(func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			close(started)
			<-release
			return mcp.NewToolResultText("ok"), nil
		})
		var req mcp.CallToolRequest
		req.Params.Name = "list_pages"
		res, _ := h(ctx, req)
		done <- res
	}()
	<-started
	m.sessions[busy].setLastUsed(time.Now().Add(-time.Hour)) // the call touched it

	if err := m.CheckOpen("alice"); err != nil {
		t.Fatalf("at the limit with one session idle: %v", err)
	}
	if _, ok := m.Owner(busy); !ok {
		t.Fatal("the session with a call in flight was evicted")
	}
	if _, ok := m.Owner(other); ok {
		t.Fatal("the idle session was not evicted")
	}
	if !strings.Contains(logs.String(), `"reason":"evicted"`) {
		t.Errorf("eviction not audited: %s", logs.String())
	}

	third := m.NewID("alice")
	m.Open(third, "alice")
	releaseHold := m.Hold(third) // a stream open
	if err := m.CheckOpen("alice"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("every session in use: %v, want a refusal", err)
	}
	close(release)
	if res := <-done; res == nil || res.IsError {
		t.Errorf("the call in flight was cut: %+v", res)
	}
	releaseHold()
	m.sessions[third].setLastUsed(time.Now().Add(-time.Hour))
	if err := m.CheckOpen("alice"); err != nil {
		t.Fatalf("after the stream ended: %v", err)
	}
	if _, ok := m.Owner(third); ok {
		t.Error("the session whose stream ended was not evicted")
	}
}

// TestStaleSessionsExpire checks the stale sweep: a session neither held
// nor used for StaleTimeout closes; a held one and a default workspace stay.
func TestStaleSessionsExpire(t *testing.T) {
	m := newTestManager(t, Config{StaleTimeout: time.Minute})
	stale, held := m.NewID("alice"), m.NewID("alice")
	m.Open(stale, "alice")
	m.Open(held, "alice")
	defer m.Hold(held)()
	callAs(m, "bob", "")
	m.expire(time.Now().Add(2 * time.Minute))
	if _, ok := m.Owner(stale); ok {
		t.Error("the stale session is open")
	}
	if _, ok := m.Owner(held); !ok {
		t.Error("the held session was closed as stale")
	}
	if n, _ := m.UserStats("bob"); n != 1 {
		t.Error("bob's default workspace was closed as stale")
	}
}
