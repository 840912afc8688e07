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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testlog"
)

// auditedClose reports whether logs has a session_close audit line of
// session id with reason.
func auditedClose(logs, id, reason string) bool {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"event":"session_close"`) && strings.Contains(line, `"audit":true`) &&
			strings.Contains(line, `"session":"`+id+`"`) && strings.Contains(line, `"reason":"`+reason+`"`) {
			return true
		}
	}
	return false
}

// backdate makes s look unused since used and opened at opened (zero: keep).
func backdate(m *Manager, s *Session, used, opened time.Time) {
	s.mu.Lock()
	s.setLastUsed(used)
	s.mu.Unlock()
	if !opened.IsZero() {
		m.mu.Lock()
		m.life[s].opened = opened
		m.mu.Unlock()
	}
}

func TestSessionsExpireIdleOrOld(t *testing.T) {
	logs := &testlog.Buffer{}
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, Config{IdleTimeout: time.Hour, Lifetime: 10 * time.Hour, Metrics: metrics, Audit: zerolog.New(logs)})
	now := time.Now()
	var ends sync.Map // session ID -> *atomic.Int32, calls of its end func
	open := func() *Session {
		id := m.NewID("alice")
		n := &atomic.Int32{}
		ends.Store(id, n)
		return m.OpenWithEnd(id, "alice", func() { n.Add(1) })
	}
	endCalls := func(s *Session) int32 { v, _ := ends.Load(s.ID); return v.(*atomic.Int32).Load() }

	idle := open()
	backdate(m, idle, now.Add(-2*time.Hour), time.Time{})
	old := open() // busy, but open longer than the lifetime
	backdate(m, old, now, now.Add(-11*time.Hour))
	touched := open() // idle, then a request of its client came
	backdate(m, touched, now.Add(-2*time.Hour), time.Time{})
	m.Touch(touched.ID)
	fresh := open()
	_, def, _ := callAs(m, "bob", "") // bob's default workspace, then idle
	backdate(m, def.(*Session), now.Add(-2*time.Hour), time.Time{})
	stale := m.NewID("carol") // handed out, never registered
	m.mu.Lock()
	m.reserved[stale] = reservation{owner: "carol", at: now.Add(-2 * time.Hour)}
	m.mu.Unlock()
	if m.Count() != 5 {
		t.Fatalf("count before expiry: %d, want 5", m.Count())
	}

	m.expire(now)

	if m.Count() != 2 {
		t.Errorf("count after expiry: %d, want 2 (the touched and the fresh session)", m.Count())
	}
	for _, s := range []*Session{touched, fresh} {
		if _, ok := m.Owner(s.ID); !ok || endCalls(s) != 0 {
			t.Errorf("a live session was expired: open=%v end calls=%d", ok, endCalls(s))
		}
	}
	for _, c := range []struct {
		s      *Session
		reason string
	}{{idle, CloseIdle}, {old, CloseLifetime}, {def.(*Session), CloseIdle}} {
		if _, ok := m.Owner(c.s.ID); ok {
			t.Errorf("%s session %s still open", c.reason, c.s.ID)
		}
		if !auditedClose(logs.String(), c.s.ID, c.reason) {
			t.Errorf("no session_close audit with reason %s for %s:\n%s", c.reason, c.s.ID, logs)
		}
		c.s.mu.Lock()
		closed := c.s.closed
		c.s.mu.Unlock()
		if !closed {
			t.Errorf("%s session not closed", c.reason)
		}
	}
	if endCalls(idle) != 1 || endCalls(old) != 1 {
		t.Errorf("transport end calls: idle %d, old %d; want 1 each", endCalls(idle), endCalls(old))
	}
	if _, ok := m.Owner(stale); ok {
		t.Error("a stale reservation survived the sweep")
	}
	if ran, _, res := callAs(m, "alice", idle.ID); ran || !res.IsError {
		t.Error("a call on an expired session ran")
	}
	if got := testutil.ToFloat64(metrics.refusals.WithLabelValues(CloseIdle)); got != 2 {
		t.Errorf("idle expiries counted: %g, want 2", got)
	}
	if got := testutil.ToFloat64(metrics.refusals.WithLabelValues(CloseLifetime)); got != 1 {
		t.Errorf("lifetime expiries counted: %g, want 1", got)
	}

	// A second sweep finds nothing more and ends nothing twice.
	m.expire(now)
	if endCalls(idle) != 1 || m.Count() != 2 {
		t.Errorf("second sweep: end calls %d, count %d", endCalls(idle), m.Count())
	}
}

func TestCloseEndsTransportOnlyWhenTheManagerCloses(t *testing.T) {
	logs := &testlog.Buffer{}
	m := newTestManager(t, Config{Audit: zerolog.New(logs)})
	var clientEnds, userEnds, shutdownEnds atomic.Int32
	byClient := m.OpenWithEnd(m.NewID("alice"), "alice", func() { clientEnds.Add(1) })
	byUser := m.OpenWithEnd(m.NewID("bob"), "bob", func() { userEnds.Add(1) })
	atShutdown := m.OpenWithEnd(m.NewID("carol"), "carol", func() { shutdownEnds.Add(1) })

	m.Close(byClient.ID) // the transport ended it: nothing to end
	if n := m.CloseUser("bob"); n != 1 {
		t.Errorf("CloseUser closed %d, want 1", n)
	}
	m.CloseAll()
	if clientEnds.Load() != 0 || userEnds.Load() != 1 || shutdownEnds.Load() != 1 {
		t.Errorf("end calls: client %d (want 0), unregistered %d (want 1), shutdown %d (want 1)",
			clientEnds.Load(), userEnds.Load(), shutdownEnds.Load())
	}
	for id, reason := range map[string]string{byClient.ID: CloseClient, byUser.ID: CloseUnregistered, atShutdown.ID: CloseShutdown} {
		if !auditedClose(logs.String(), id, reason) {
			t.Errorf("no session_close audit with reason %s:\n%s", reason, logs)
		}
	}
	if m.Count() != 0 {
		t.Errorf("count after CloseAll: %d", m.Count())
	}
	m.mu.Lock()
	left := len(m.life) + len(m.reserved)
	m.mu.Unlock()
	if left != 0 {
		t.Errorf("%d lifetime records or reservations left after CloseAll", left)
	}
}

func TestSweepInterval(t *testing.T) {
	for _, c := range []struct {
		idle, life, want time.Duration
	}{
		{time.Second, time.Hour, 250 * time.Millisecond},
		{30 * time.Minute, 12 * time.Hour, time.Minute},
		{time.Hour, 2 * time.Second, 500 * time.Millisecond},
	} {
		m := newTestManager(t, Config{IdleTimeout: c.idle, Lifetime: c.life})
		if got := m.SweepInterval(); got != c.want {
			t.Errorf("idle %s, lifetime %s: sweep every %s, want %s", c.idle, c.life, got, c.want)
		}
	}
}

func TestRunExpiresIdleSessions(t *testing.T) {
	m := newTestManager(t, Config{IdleTimeout: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var ended atomic.Bool
	s := m.OpenWithEnd(m.NewID("alice"), "alice", func() { ended.Store(true) })
	deadline := time.Now().Add(10 * time.Second)
	for m.Count() != 0 || !ended.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not expire the idle session: count %d, transport ended %v", m.Count(), ended.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := m.Owner(s.ID); ok {
		t.Error("the expired session still has an owner")
	}
}

func TestRunningCallIsNotIdle(t *testing.T) {
	m := newTestManager(t, Config{IdleTimeout: time.Hour})
	sid := m.NewID("alice")
	s := m.Open(sid, "alice")
	srv := server.NewMCPServer("t", "0")
	ctx := srv.WithContext(auth.WithPrincipal(context.Background(), auth.Principal{UserID: "alice", Perms: auth.DefaultPerms()}), fakeSession{sid})
	started, release := make(chan struct{}), make(chan struct{})
	h := m.Middleware(func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		close(started)
		<-release
		return mcp.NewToolResultText("ok"), nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var req mcp.CallToolRequest
		req.Params.Name = "list_pages"
		_, _ = h(ctx, req)
	}()
	<-started
	backdate(m, s, time.Now().Add(-2*time.Hour), time.Time{}) // the call began long ago
	m.expire(time.Now())
	if _, ok := m.Owner(sid); !ok {
		t.Error("a session running a tool call expired as idle")
	}
	close(release)
	<-done
	backdate(m, s, time.Now().Add(-2*time.Hour), time.Time{})
	m.expire(time.Now())
	if _, ok := m.Owner(sid); ok {
		t.Error("the idle session did not expire once its call ended")
	}
}
