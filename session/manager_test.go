package session

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

type fakeSession struct{ id string }

func (fakeSession) Initialize()                                         {}
func (fakeSession) Initialized() bool                                   { return true }
func (fakeSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return nil }
func (f fakeSession) SessionID() string                                 { return f.id }

func newTestManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	pool := browserpool.New(browserpool.Config{})
	t.Cleanup(pool.Close)
	m := NewManager(cfg, pool)
	m.SetAccess(tools.NewAccess(tools.All(tools.Config{})))
	return m
}

// callAs runs one tool call through the middleware as user on session sid and
// reports whether the tool handler ran, with which workspace.
func callAs(m *Manager, user, sid string) (ran bool, ws tools.Workspace, res *mcp.CallToolResult) {
	srv := server.NewMCPServer("t", "0")
	ctx := auth.WithPrincipal(context.Background(), auth.Principal{UserID: user, Perms: auth.DefaultPerms()})
	ctx = srv.WithContext(ctx, fakeSession{sid})
	h := m.Middleware(func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ran = true
		ws = workspaceOf(ctx)
		return mcp.NewToolResultText("ok"), nil
	})
	var req mcp.CallToolRequest
	req.Params.Name = "list_pages"
	res, _ = h(ctx, req)
	return ran, ws, res
}

// workspaceOf reads the workspace the middleware bound, as a tool would.
func workspaceOf(ctx context.Context) tools.Workspace {
	ws, _ := tools.WorkspaceFrom(ctx)
	return ws
}

func TestOwnership(t *testing.T) {
	m := newTestManager(t, Config{})
	sid := m.NewID("alice")
	if owner, ok := m.Owner(sid); !ok || owner != "alice" {
		t.Fatalf("reserved owner: %q %v", owner, ok)
	}
	m.Open(sid, "alice")

	ran, _, res := callAs(m, "bob", sid)
	if ran || !res.IsError || !strings.Contains(res.Content[0].(mcp.TextContent).Text, "another user") {
		t.Fatalf("bob ran on alice's session: ran=%v %+v", ran, res)
	}
	ran, ws, _ := callAs(m, "alice", sid)
	if !ran || ws.(*Session).ID != sid {
		t.Fatalf("alice's call: ran=%v ws=%v", ran, ws)
	}
	if ran, _, _ := callAs(m, "alice", "no-such-session"); ran {
		t.Error("a call on an unknown session ran")
	}
	// Without a session ID (stateless protocol) each user gets a default
	// workspace of their own.
	_, wa, _ := callAs(m, "alice", "")
	_, wb, _ := callAs(m, "bob", "")
	if wa.(*Session).UserID != "alice" || wb.(*Session).UserID != "bob" || wa == wb {
		t.Errorf("default workspaces: %v %v", wa, wb)
	}
	if n, _ := m.UserStats("alice"); n != 2 {
		t.Errorf("alice has %d sessions, want 2", n)
	}
	m.Close(sid)
	if _, ok := m.Owner(sid); ok {
		t.Error("closed session still has an owner")
	}
	if ran, _, _ := callAs(m, "alice", sid); ran {
		t.Error("a call on a closed session ran")
	}
	if got := m.CloseUser("bob"); got != 1 {
		t.Errorf("CloseUser(bob) closed %d, want 1", got)
	}
}

func TestLimits(t *testing.T) {
	m := newTestManager(t, Config{MaxSessionsPerUser: 2, MaxSessions: 3})
	for range 2 {
		id := m.NewID("alice")
		m.Open(id, "alice")
		defer m.Hold(id)() // in use: never evicted
	}
	if err := m.CheckOpen("alice"); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("third session of alice: %v", err)
	}
	if err := m.CheckOpen("bob"); err != nil {
		t.Errorf("bob's first: %v", err)
	}
	m.Open(m.NewID("bob"), "bob")
	if err := m.CheckOpen("carol"); err == nil {
		t.Error("total limit not enforced")
	}
}

func TestCallsOfOneSessionRunInOrder(t *testing.T) {
	m := newTestManager(t, Config{})
	sid := m.NewID("alice")
	m.Open(sid, "alice")
	srv := server.NewMCPServer("t", "0")
	ctx := srv.WithContext(auth.WithPrincipal(context.Background(), auth.Principal{UserID: "alice"}), fakeSession{sid})
	var running, maxRunning atomic.Int32
	h := m.Middleware(func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		n := running.Add(1)
		if n > maxRunning.Load() {
			maxRunning.Store(n)
		}
		time.Sleep(5 * time.Millisecond)
		running.Add(-1)
		return mcp.NewToolResultText("ok"), nil
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { _, _ = h(ctx, mcp.CallToolRequest{}) })
	}
	wg.Wait()
	if maxRunning.Load() != 1 {
		t.Errorf("%d calls of one session ran at once", maxRunning.Load())
	}
}

func TestIdleDefaultWorkspacesExpire(t *testing.T) {
	m := newTestManager(t, Config{})
	callAs(m, "alice", "")
	if m.Count() != 1 {
		t.Fatalf("count %d", m.Count())
	}
	m.expire(time.Now().Add(time.Minute + m.cfg.IdleTimeout)) // idle since a minute from now
	if m.Count() != 0 {
		t.Errorf("idle default workspace not expired: %d", m.Count())
	}
}
