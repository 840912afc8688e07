package session

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// Refusal reasons, the values of the reason label of
// mbp_session_refusals_total.
const (
	ReasonRateLimit       = "rate_limit"        // tool calls per user per second
	ReasonSessionsPerUser = "sessions_per_user" // open sessions of one user
	ReasonSessionsTotal   = "sessions_total"    // open sessions of the proxy
	ReasonSessionOwner    = "session_owner"     // another user's or an unknown session
	ReasonPermission      = "permission"        // the token lacks the tool's permission
	ReasonManagedLimit    = "managed_limit"     // every managed browser of the proxy is in use
)

// Tool call outcomes, the values of the outcome label of mbp_tool_calls_total
// and of the audit lines' "outcome".
const (
	OutcomeOK      = "ok"
	OutcomeError   = "error"   // the tool ran and reported an error
	OutcomeDenied  = "denied"  // ownership or permission refused the call
	OutcomeLimited = "limited" // the rate limit refused the call
)

// limitedUsers is how many per-user buckets are kept before idle (full) ones
// are dropped.
const limitedUsers = 1024

// callLimiter is a token bucket of tool calls per user. A nil *callLimiter
// allows everything.
type callLimiter struct {
	limit rate.Limit
	burst int

	mu    sync.Mutex
	users map[string]*rate.Limiter
}

// newCallLimiter returns a limiter of perSecond calls per user with the given
// burst, or nil (no limit) when perSecond is not positive.
func newCallLimiter(perSecond float64, burst int) *callLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &callLimiter{limit: rate.Limit(perSecond), burst: max(burst, 1), users: map[string]*rate.Limiter{}}
}

// allow takes one call from user's bucket at now. When the bucket is empty it
// takes nothing and returns how long until a call would be allowed.
func (l *callLimiter) allow(user string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	lim, ok := l.users[user]
	if !ok {
		if len(l.users) >= limitedUsers {
			for u, ul := range l.users {
				if ul.TokensAt(now) >= float64(l.burst) {
					delete(l.users, u) // full bucket: same as a new one
				}
			}
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.users[user] = lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// describe says what the limit is, for refusal messages.
func (l *callLimiter) describe() string {
	return fmt.Sprintf("%g tool calls per second per user (bursts of %d)", float64(l.limit), l.burst)
}

// limits holds the per-call checks of a Manager.
type limits struct {
	calls *callLimiter
	tools map[string]tools.Tool // by name, for the permissions each needs
}

func newLimits(cfg Config) limits {
	byName := map[string]tools.Tool{}
	for _, tl := range tools.All(tools.Config{}) {
		byName[tl.Tool.Name] = tl
	}
	return limits{calls: newCallLimiter(cfg.RateLimit, cfg.RateBurst), tools: byName}
}

// refusePermission refuses a call of a tool, or with an argument, that the
// principal lacks the permission for, naming that permission; tools/list
// hides such tools, so this is a client that called one anyway (or passed
// an argument such as initScript that needs more). It audits and counts the
// refusal.
func (m *Manager) refusePermission(ctx context.Context, p auth.Principal, req mcp.CallToolRequest) *mcp.CallToolResult {
	tool := req.Params.Name
	tl, ok := m.lim.tools[tool]
	if !ok {
		return nil
	}
	perm, arg := tl.MissingPerm(p, req.GetArguments())
	if perm == "" {
		return nil
	}
	sid := ""
	if cs := server.ClientSessionFromContext(ctx); cs != nil {
		sid = cs.SessionID()
	}
	detail := "the token lacks " + perm
	if arg != "" {
		detail += " for " + arg
	}
	m.refuse(p.UserID, sid, tool, ReasonPermission, detail)
	m.cfg.Metrics.called(tool, OutcomeDenied, false, 0)
	return mcp.NewToolResultError(tl.Refusal(perm, arg))
}

// retryIn formats a wait for a refusal message, rounded up to milliseconds.
func retryIn(d time.Duration) string {
	return max(d.Round(time.Millisecond), time.Millisecond).String()
}

// refuse audits and counts a refused tool call or session.
func (m *Manager) refuse(user, sessionID, tool, reason, detail string) {
	m.cfg.Metrics.refused(reason)
	ev := m.cfg.Audit.Warn().Bool("audit", true).Str("event", "denied").Str("user", user)
	if sessionID != "" {
		ev = ev.Str("session", sessionID)
	}
	if tool != "" {
		ev = ev.Str("tool", tool)
	}
	ev.Str("reason", reason).Str("detail", detail).Send()
}

// Metrics counts sessions and tool calls for Prometheus. Create it with
// NewMetrics and pass it in Config.Metrics; a nil *Metrics counts nothing.
// Labels are tool names, outcomes and reasons, never user or session IDs.
type Metrics struct {
	active   *prometheus.Desc
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	refusals *prometheus.CounterVec

	mgr atomic.Pointer[Manager] // the manager whose sessions are counted
}

// NewMetrics creates the session collectors and registers them on reg:
// mbp_sessions_active (gauge), mbp_tool_calls_total{tool,outcome},
// mbp_tool_call_duration_seconds{tool} (histogram) and
// mbp_session_refusals_total{reason}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		active: prometheus.NewDesc("mbp_sessions_active", "Open MCP sessions, users' default workspaces included.", nil, nil),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mbp_tool_calls_total", Help: "Tool calls by tool and outcome (ok, error, denied, limited).",
		}, []string{"tool", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mbp_tool_call_duration_seconds", Help: "Duration of the tool calls that ran, by tool.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"tool"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mbp_session_refusals_total", Help: "Refused tool calls and sessions by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonRateLimit, ReasonSessionsPerUser, ReasonSessionsTotal, ReasonSessionOwner, ReasonPermission, ReasonManagedLimit} {
		m.refusals.WithLabelValues(r) // export zeros, so alerts see the series
	}
	if err := reg.Register(m); err != nil {
		return nil, fmt.Errorf("register session metrics: %w", err)
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.active
	m.calls.Describe(ch)
	m.duration.Describe(ch)
	m.refusals.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	n := 0
	if mgr := m.mgr.Load(); mgr != nil {
		n = mgr.Count()
	}
	ch <- prometheus.MustNewConstMetric(m.active, prometheus.GaugeValue, float64(n))
	m.calls.Collect(ch)
	m.duration.Collect(ch)
	m.refusals.Collect(ch)
}

// bind makes m count the sessions of mgr.
func (m *Metrics) bind(mgr *Manager) {
	if m != nil {
		m.mgr.Store(mgr)
	}
}

func (m *Metrics) refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

// called records a tool call; ran says whether the tool itself ran (its
// duration is then observed).
func (m *Metrics) called(tool, outcome string, ran bool, d time.Duration) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(tool, outcome).Inc()
	if ran {
		m.duration.WithLabelValues(tool).Observe(d.Seconds())
	}
}
