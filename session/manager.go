package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// Config holds the session limits and bounds. Zero fields take defaults.
type Config struct {
	MaxSessionsPerUser int           // default 10
	MaxSessions        int           // default 1000
	MaxTabsPerSession  int           // default 20
	IdleTimeout        time.Duration // default 30m; a session with no MCP request for this long is closed
	StaleTimeout       time.Duration // default 5m; a session with no open stream and no MCP request for this long is closed
	Lifetime           time.Duration // default 12h; no session lives longer, however busy
	KeepTabs           bool          // leave a closed session's tabs open
	FilesDir           string        // where filePath outputs go; default a temp dir per session
	BrowserWait        time.Duration // how long a call waits for a down browser; default 5s
	CallTimeout        time.Duration // bound of session-level CDP calls; default 10s
	RateLimit          float64       // tool calls per second per user; 0: unlimited (serve's --rate-limit is 20)
	RateBurst          int           // bucket size of RateLimit; default 2×RateLimit
	Metrics            *Metrics      // Prometheus collectors from NewMetrics; nil: none
	Log                zerolog.Logger
	Audit              zerolog.Logger

	// LogBudget bounds the console and network bytes of every tab of the
	// manager's sessions, per tab and in total; nil: the defaults.
	LogBudget *tools.LogBudget
}

func (c *Config) fill() {
	if c.MaxSessionsPerUser <= 0 {
		c.MaxSessionsPerUser = 10
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 1000
	}
	if c.MaxTabsPerSession <= 0 {
		c.MaxTabsPerSession = 20
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Minute
	}
	if c.StaleTimeout <= 0 {
		c.StaleTimeout = 5 * time.Minute
	}
	if c.Lifetime <= 0 {
		c.Lifetime = 12 * time.Hour
	}
	if c.BrowserWait <= 0 {
		c.BrowserWait = 5 * time.Second
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.RateBurst <= 0 {
		c.RateBurst = max(int(2*c.RateLimit), 1)
	}
	if c.LogBudget == nil {
		c.LogBudget = tools.NewLogBudget(0, 0)
	}
}

// LimitError says that a new session would exceed a limit.
type LimitError struct{ Msg string }

func (e *LimitError) Error() string { return e.Msg }

// errSessionClosed is the answer of a call that its session's close cut short.
var errSessionClosed = errors.New("session closed: this MCP session was closed (it expired, its user was unregistered, or its client or the proxy ended it) and its call in flight was cancelled; reconnect your MCP client")

// ErrNotFound is returned for an unknown session ID.
var ErrNotFound = errors.New("session not found")

// Manager owns every session: who owns it, its tabs, its lifetime.
type Manager struct {
	cfg  Config
	pool *browserpool.Pool
	lim  limits
	// rates counts each user's calls per minute, for the dashboard.
	rates callRates
	// access is the permission rule of the calls (SetAccess).
	access atomic.Pointer[tools.Access]

	mu       sync.Mutex
	sessions map[string]*Session            // by MCP session ID
	byUser   map[string]map[string]*Session // m.sessions by owner, then ID (addLocked, dropLocked)
	lastOf   map[string]*latest             // by owner, as byUser: the latest lastUsed of its sessions
	reserved map[string]reservation         // handed out but not registered yet
	defaults map[string]*Session            // per-user default workspace (stateless protocol)
	handles  handles                        // page ids of the default workspaces (handles.go)
	life     map[*Session]*lifeRecord       // when each open session began, how to end its transport
}

// NewManager returns a manager whose sessions drive browsers of pool.
func NewManager(cfg Config, pool *browserpool.Pool) *Manager {
	cfg.fill()
	m := &Manager{
		cfg: cfg, pool: pool, lim: newLimits(cfg),
		sessions: map[string]*Session{},
		byUser:   map[string]map[string]*Session{},
		lastOf:   map[string]*latest{},
		reserved: map[string]reservation{},
		defaults: map[string]*Session{},
		life:     map[*Session]*lifeRecord{},
	}
	cfg.Metrics.bind(m)
	return m
}

// NewID returns a fresh 128-bit random session ID reserved for owner, so that
// requests that race its registration are already checked against it.
func (m *Manager) NewID(owner string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	m.mu.Lock()
	m.reserved[id] = reservation{owner: owner, at: time.Now()}
	m.mu.Unlock()
	return id
}

// CheckOpen reports whether owner may open one more session. At the
// per-user limit it first closes owner's least recently used session that
// is not in use (no open stream, no request or tool call in flight), so that
// clients that never end their sessions (no DELETE) do not lock their user
// out; that session's next request gets 404 and its client re-initialises.
// Only when every session of owner is in use is the new one refused.
func (m *Manager) CheckOpen(owner string) error {
	m.mu.Lock()
	total, mine := len(m.sessions)+len(m.defaults), len(m.byUser[owner])
	var evicted []ending
	if mine >= m.cfg.MaxSessionsPerUser {
		if s := m.evictableLocked(owner); s != nil {
			m.dropLocked(s.ID)
			evicted = append(evicted, m.takeLocked(s, CloseEvicted))
			mine--
			total--
		}
	}
	m.mu.Unlock()
	m.end(evicted)
	if mine >= m.cfg.MaxSessionsPerUser {
		m.cfg.Metrics.refused(ReasonSessionsPerUser)
		m.cfg.Metrics.LimitRejected(LimitSessionsPerUser)
		return &LimitError{fmt.Sprintf("%s already has %d open sessions, the limit, and every one is in use (a stream open or a call in flight); close an IDE session (`GET /api/sessions` lists them, `DELETE /api/sessions/{id}` closes one) and retry", owner, mine)}
	}
	if total >= m.cfg.MaxSessions {
		m.cfg.Metrics.refused(ReasonSessionsTotal)
		m.cfg.Metrics.LimitRejected(LimitSessionsTotal)
		return &LimitError{fmt.Sprintf("the proxy has %d open sessions, its limit; retry later", total)}
	}
	return nil
}

// Open registers session id for owner. Opening an ID that is open already
// returns the existing session. OpenWithEnd (lifetime.go) also tells the
// manager how to end the session's transport when it expires.
func (m *Manager) Open(id, owner string) *Session {
	return m.OpenWithEnd(id, owner, nil)
}

// newSession makes a session and starts its lifetime; callers hold m.mu and
// put it in m.sessions or m.defaults.
func (m *Manager) newSession(id, owner string) *Session {
	now := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{
		ID: id, UserID: owner, mgr: m, ctx: ctx, cancel: cancel,
		tabs: map[int]*tab{},
	}
	s.setLastUsed(now)
	m.life[s] = &lifeRecord{opened: now}
	return s
}

// Close ends session id and closes the tabs it opened; the transport calls it
// when the session ends on its side (DELETE, closed stream). Unknown IDs are
// ignored.
func (m *Manager) Close(id string) {
	m.mu.Lock()
	s, ok := m.sessions[id]
	m.dropLocked(id)
	delete(m.reserved, id)
	if ok {
		delete(m.life, s) // the transport is ending already
	}
	m.mu.Unlock()
	if ok {
		m.finish(s, CloseClient)
	}
}

// Owner returns the user who owns session id (open or just handed out).
func (m *Manager) Owner(id string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sessions[id]; ok {
		return s.UserID, true
	}
	r, ok := m.reserved[id]
	return r.owner, ok
}

// CloseUser ends every session of owner, its default workspace included,
// ends their transports (streams), and returns how many it closed.
func (m *Manager) CloseUser(owner string) int {
	m.mu.Lock()
	var ended []ending
	for id, s := range m.byUser[owner] {
		m.dropLocked(id)
		ended = append(ended, m.takeLocked(s, CloseUnregistered))
	}
	if def := m.defaults[owner]; def != nil {
		delete(m.defaults, owner)
		ended = append(ended, m.takeLocked(def, CloseUnregistered))
	}
	m.mu.Unlock()
	m.end(ended)
	return len(ended)
}

// addLocked puts s among the open sessions; callers hold m.mu.
func (m *Manager) addLocked(s *Session) {
	m.sessions[s.ID] = s
	mine := m.byUser[s.UserID]
	if mine == nil {
		mine = map[string]*Session{}
		m.byUser[s.UserID] = mine
		m.lastOf[s.UserID] = newLatest()
	}
	mine[s.ID] = s
	l := m.lastOf[s.UserID]
	s.userLast.Store(l)
	l.raise(s.lastUsed.Load())
}

// dropLocked takes session id out of the open sessions; callers hold m.mu.
func (m *Manager) dropLocked(id string) {
	s, ok := m.sessions[id]
	if !ok {
		return
	}
	delete(m.sessions, id)
	s.userLast.Store(nil)
	if mine := m.byUser[s.UserID]; mine != nil {
		delete(mine, id)
		if len(mine) == 0 {
			delete(m.byUser, s.UserID)
			delete(m.lastOf, s.UserID)
		} else {
			m.lastOf[s.UserID].recompute(mine)
		}
	}
}

// latest is the latest lastUsed of one user's open sessions, raised by
// every touch (Session.setLastUsed) and recomputed when a session goes, so
// that UserStats reads one value rather than every session of the user.
type latest struct{ v atomic.Int64 }

func newLatest() *latest {
	l := &latest{}
	l.v.Store(math.MinInt64)
	return l
}

func (l *latest) raise(v int64) {
	for {
		old := l.v.Load()
		if v <= old || l.v.CompareAndSwap(old, v) {
			return
		}
	}
}

// recompute sets l to the latest lastUsed of mine; callers hold m.mu, so
// that recomputes do not race each other. A touch that raises l during the
// scan fails the swap and the scan runs again: every touch either stored
// its time before the scan read it or raises l after the swap.
func (l *latest) recompute(mine map[string]*Session) {
	for {
		old := l.v.Load()
		v := int64(math.MinInt64)
		for _, s := range mine {
			v = max(v, s.lastUsed.Load())
		}
		if l.v.CompareAndSwap(old, v) {
			return
		}
	}
}

// Count returns the number of open sessions, default workspaces included.
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions) + len(m.defaults)
}

// UserStats returns how many sessions owner has and when one last ran a tool.
func (m *Manager) UserStats(owner string) (n int, last time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n = len(m.byUser[owner]); n > 0 {
		last = clockBase.Add(time.Duration(m.lastOf[owner].v.Load()))
	}
	if d := m.defaults[owner]; d != nil {
		n++
		if t := d.LastUsed(); t.After(last) {
			last = t
		}
	}
	return n, last
}

// resolve finds the session of a tool call: the MCP session's own, or the
// owner's default workspace when the protocol has no sessions.
func (m *Manager) resolve(ctx context.Context, p auth.Principal) (*Session, error) {
	var id string
	if cs := server.ClientSessionFromContext(ctx); cs != nil {
		id = cs.SessionID()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if id == "" {
		s, ok := m.defaults[p.UserID]
		if !ok {
			s = m.newSession("default:"+p.UserID, p.UserID)
			s.handled = true
			m.defaults[p.UserID] = s
		}
		return s, nil
	}
	s, ok := m.sessions[id]
	if !ok {
		r, reserved := m.reserved[id]
		if !reserved || r.owner != p.UserID {
			return nil, fmt.Errorf("this MCP session is closed or unknown; reconnect your MCP client")
		}
		delete(m.reserved, id)
		s = m.newSession(id, r.owner)
		m.addLocked(s)
	}
	if s.UserID != p.UserID {
		return nil, fmt.Errorf("this MCP session belongs to another user")
	}
	return s, nil
}

// Middleware binds each tool call to its session: it checks ownership, runs
// the calls of one session in order, adds one-time notices, and audits.
func (m *Manager) Middleware(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		p, ok := auth.FromContext(ctx)
		if !ok {
			return mcp.NewToolResultError("unauthenticated call; connect with a bearer token"), nil
		}
		tool := req.Params.Name
		note := requestNote(ctx)
		if note != nil {
			note.called.Store(true) // from here the call writes its own line
		}
		if res := m.refusePermission(ctx, p, req); res != nil {
			m.rates.record(p.UserID, true, time.Now())
			return res, nil
		}
		if ok, wait := m.lim.calls.allow(p.UserID, time.Now()); !ok {
			m.refuse(p.UserID, "", tool, ReasonRateLimit, "tool call rate limit")
			m.cfg.Metrics.LimitRejected(LimitRate)
			m.cfg.Metrics.called(p.UserID, tool, OutcomeLimited, false, 0)
			m.rates.record(p.UserID, true, time.Now())
			return mcp.NewToolResultError(fmt.Sprintf("LIMIT_EXCEEDED: %s exceeded the limit of %s; retry in %s",
				p.UserID, m.lim.calls.describe(), retryIn(wait))), nil
		}
		s, err := m.resolve(ctx, p)
		if err != nil {
			m.refuse(p.UserID, "", tool, ReasonSessionOwner, err.Error())
			m.cfg.Metrics.called(p.UserID, tool, OutcomeDenied, false, 0)
			return mcp.NewToolResultError(err.Error()), nil
		}
		s.calls.Lock()
		defer s.calls.Unlock()
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return mcp.NewToolResultError("this session was closed (its user was unregistered or it expired); reconnect your MCP client"), nil
		}
		s.touch()
		m.mu.Lock()
		if rec := m.life[s]; rec != nil {
			rec.calls++
		}
		m.mu.Unlock()
		start := time.Now()
		// The call ends when the session does, whatever its transport does
		// with ctx (SSE runs calls on a context that is never cancelled).
		cctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(s.ctx, cancel)
		res, err := next(tools.WithWorkspace(cctx, s), req)
		s.waitPopups(cctx) // so that the call that opened a popup can say so
		stop()
		cancel()
		if s.ctx.Err() != nil {
			res, err = mcp.NewToolResultError(errSessionClosed.Error()), nil
		}
		s.touch() // idle counts from the end of the last call
		if n := s.takeNotice(); n != "" && res != nil {
			res.Content = append([]mcp.Content{mcp.NewTextContent(n)}, res.Content...)
		}
		dur := time.Since(start)
		outcome := OutcomeOK
		if err != nil || (res != nil && res.IsError) {
			outcome = OutcomeError
		}
		m.cfg.Metrics.called(p.UserID, tool, outcome, true, dur)
		m.rates.record(p.UserID, outcome != OutcomeOK, time.Now())
		ev := m.cfg.Audit.Info().Bool("audit", true).Str("event", "tool_call")
		if note != nil {
			ev = ev.Str("request_id", note.RequestID)
		}
		ev.Str("user", p.UserID).Str("session", s.ID).Str("tool", tool).Dur("duration", dur).Str("outcome", outcome).Send()
		return res, err
	}
}

// Run expires sessions until ctx ends: those idle for IdleTimeout and those
// older than Lifetime, default workspaces included, whether or not a stream is
// still open. It checks every SweepInterval.
func (m *Manager) Run(ctx context.Context) {
	tick := time.NewTicker(m.SweepInterval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			m.expire(time.Now())
		}
	}
}

// CloseAll ends every session and its transport, for shutdown.
func (m *Manager) CloseAll() {
	m.mu.Lock()
	var ended []ending
	for id, s := range m.sessions {
		m.dropLocked(id)
		ended = append(ended, m.takeLocked(s, CloseShutdown))
	}
	for user, s := range m.defaults {
		delete(m.defaults, user)
		ended = append(ended, m.takeLocked(s, CloseShutdown))
	}
	clear(m.reserved)
	m.mu.Unlock()
	m.end(ended)
}

// IdleTimeout returns how long a session may stay unused.
func (m *Manager) IdleTimeout() time.Duration { return m.cfg.IdleTimeout }
