package session

import (
	"context"
	"fmt"
	"strings"
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
}

func newLimits(cfg Config) limits {
	return limits{calls: newCallLimiter(cfg.RateLimit, cfg.RateBurst)}
}

// SetAccess makes a the permission rule of the calls; the server that
// registers the tools sets the rule of the same list (tools.NewAccess).
// Until it is set, every call is refused.
func (m *Manager) SetAccess(a *tools.Access) { m.access.Store(a) }

// refusePermission refuses a call of a tool, or with an argument, that the
// principal lacks the permission for, naming that permission; tools/list
// hides such tools, so this is a client that called one anyway (or passed
// an argument such as initScript that needs more). It audits and counts the
// refusal.
func (m *Manager) refusePermission(ctx context.Context, p auth.Principal, req mcp.CallToolRequest) *mcp.CallToolResult {
	tool := req.Params.Name
	a := m.access.Load()
	if a == nil {
		m.refuse(p.UserID, "", tool, ReasonPermission, "no permission rule is set")
		m.cfg.Metrics.called(p.UserID, tool, OutcomeDenied, false, 0)
		return mcp.NewToolResultError("this proxy has no tool permissions set up, so it refuses every call; tell its admin (a wiring bug: session.Manager.SetAccess was not called)")
	}
	perm, arg, refusal := a.Check(p, tool, req.GetArguments())
	if perm == "" {
		return nil
	}
	sid := ""
	if cs := server.ClientSessionFromContext(ctx); cs != nil {
		sid = cs.SessionID()
	}
	detail := "the token lacks " + perm
	if g, ok := strings.CutPrefix(perm, "toolset:"); ok {
		detail = "the " + g + " toolset is outside the proxy's or the token's toolsets"
	}
	if arg != "" {
		detail += " for " + arg
	}
	m.refuse(p.UserID, sid, tool, ReasonPermission, detail)
	m.cfg.Metrics.called(p.UserID, tool, OutcomeDenied, false, 0)
	return mcp.NewToolResultError(refusal)
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
// NewMetrics (or NewMetricsWith) and pass it in Config.Metrics; a nil
// *Metrics counts nothing. Labels are tool names, outcomes, transports and
// reasons, never user or session IDs, unless MetricsConfig.PerUser adds a
// user label to mcp_tool_executions_total and mcp_sessions_active.
type Metrics struct {
	perUser  bool
	active   *prometheus.Desc
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	refusals *prometheus.CounterVec

	// The mcp_ names operators alert on (see README "Metrics").
	sessions    *prometheus.Desc // mcp_sessions_active{transport[,user]}
	connections *prometheus.Desc // mcp_connections_active
	limit       *prometheus.Desc // mcp_sessions_limit{scope}
	executions  *prometheus.CounterVec
	toolTime    *prometheus.HistogramVec
	rejections  *prometheus.CounterVec

	mgr atomic.Pointer[Manager] // the manager whose sessions are counted

	// series holds the counters of the tool calls met so far, by callKey,
	// and ran the duration histograms of the tools that ran, by tool:
	// WithLabelValues hashes the labels and takes the vector's lock on
	// every call. Tools (only registered ones reach the middleware) and
	// outcomes are bounded sets; users are not, so a per-user series is
	// looked up each time.
	series, ran sync.Map
}

// callKey names a tool's counters of one outcome.
type callKey struct{ tool, outcome string }

// callSeries are the series one tool's calls of one outcome count in.
type callSeries struct {
	calls, executions prometheus.Counter // executions: nil with perUser
}

// ranSeries are the duration histograms of one tool's calls that ran.
type ranSeries struct {
	duration, toolTime prometheus.Observer
}

func (m *Metrics) seriesOf(tool, outcome string) *callSeries {
	k := callKey{tool, outcome}
	if c, ok := m.series.Load(k); ok {
		return c.(*callSeries)
	}
	c := &callSeries{calls: m.calls.WithLabelValues(tool, outcome)}
	if !m.perUser {
		c.executions = m.executions.WithLabelValues(tool, outcome)
	}
	m.series.Store(k, c)
	return c
}

func (m *Metrics) ranOf(tool string) *ranSeries {
	if r, ok := m.ran.Load(tool); ok {
		return r.(*ranSeries)
	}
	r := &ranSeries{duration: m.duration.WithLabelValues(tool), toolTime: m.toolTime.WithLabelValues(tool)}
	m.ran.Store(tool, r)
	return r
}

// MetricsConfig chooses optional series of NewMetricsWith.
type MetricsConfig struct {
	// PerUser adds a user label to mcp_tool_executions_total and
	// mcp_sessions_active (serve's --metrics-per-user): one series per user,
	// so only for small teams.
	PerUser bool
}

// Limit reasons, the values of the reason label of
// mcp_limit_rejections_total. The proxy counts the HTTP ones through
// LimitRejected.
const (
	LimitSessionsPerUser = "sessions_per_user" // open sessions of one user, every one in use
	LimitSessionsTotal   = "sessions_total"    // open sessions of the proxy
	LimitRate            = "rate_limit"        // tool calls per user per second
	LimitTabsPerSession  = "tabs_per_session"  // pages one session may have open
	LimitStreamsPerUser  = "streams_per_user"  // open MCP streams of one user
	LimitBodyTooLarge    = "body_too_large"    // a request body over --max-body
	LimitConnsPerIP      = "conns_per_ip"      // connections (or forwarded requests) of one client address
)

// toolBuckets are the duration buckets of both tool histograms: CDP calls
// take milliseconds, navigations seconds, and the longest wait a minute.
var toolBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// NewMetrics creates the session collectors and registers them on reg:
// mbp_sessions_active (gauge), mbp_tool_calls_total{tool,outcome},
// mbp_tool_call_duration_seconds{tool} (histogram),
// mbp_session_refusals_total{reason}, and the operator names
// mcp_sessions_active{transport}, mcp_connections_active,
// mcp_sessions_limit{scope}, mcp_tool_executions_total{tool,status},
// mcp_tool_duration_seconds{tool} (histogram) and
// mcp_limit_rejections_total{reason}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	return NewMetricsWith(reg, MetricsConfig{})
}

// NewMetricsWith is NewMetrics with optional series.
func NewMetricsWith(reg prometheus.Registerer, cfg MetricsConfig) (*Metrics, error) {
	sessionLabels, execLabels := []string{"transport"}, []string{"tool", "status"}
	if cfg.PerUser {
		sessionLabels, execLabels = append(sessionLabels, "user"), append(execLabels, "user")
	}
	m := &Metrics{
		perUser: cfg.PerUser,
		active:  prometheus.NewDesc("mbp_sessions_active", "Open MCP sessions, users' default workspaces included.", nil, nil),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mbp_tool_calls_total", Help: "Tool calls by tool and outcome (ok, error, denied, limited).",
		}, []string{"tool", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mbp_tool_call_duration_seconds", Help: "Duration of the tool calls that ran, by tool.",
			Buckets: toolBuckets,
		}, []string{"tool"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mbp_session_refusals_total", Help: "Refused tool calls and sessions by reason.",
		}, []string{"reason"}),
		sessions: prometheus.NewDesc("mcp_sessions_active",
			"Open MCP sessions by transport: sse (GET /sse), streamable (Mcp-Session-Id), default (a user's workspace of the stateless protocol).", sessionLabels, nil),
		connections: prometheus.NewDesc("mcp_connections_active",
			"Open MCP transport connections: sessions on the sse and streamable transports, from the session's start to its close.", nil, nil),
		limit: prometheus.NewDesc("mcp_sessions_limit",
			"Session limits: scope total (--max-sessions) and per_user (--max-sessions-per-user).", []string{"scope"}, nil),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_tool_executions_total", Help: "Tool calls by tool and status (ok, error, denied, limited).",
		}, execLabels),
		toolTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mcp_tool_duration_seconds", Help: "Duration of the tool calls that ran, by tool.",
			Buckets: toolBuckets,
		}, []string{"tool"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcp_limit_rejections_total", Help: "Requests, sessions and tool calls refused by a limit, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonRateLimit, ReasonSessionsPerUser, ReasonSessionsTotal, ReasonSessionOwner, ReasonPermission, ReasonManagedLimit} {
		m.refusals.WithLabelValues(r) // export zeros, so alerts see the series
	}
	for _, r := range []string{LimitSessionsPerUser, LimitSessionsTotal, LimitRate, LimitTabsPerSession, LimitStreamsPerUser, LimitBodyTooLarge, LimitConnsPerIP} {
		m.rejections.WithLabelValues(r)
	}
	if err := reg.Register(m); err != nil {
		return nil, fmt.Errorf("register session metrics: %w", err)
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.active
	ch <- m.sessions
	ch <- m.connections
	ch <- m.limit
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.refusals, m.executions, m.toolTime, m.rejections} {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector. The session gauges are read from
// the manager at scrape time, so they never drift.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	var c sessionCounts
	mgr := m.mgr.Load()
	if mgr != nil {
		c = mgr.counts()
	}
	ch <- prometheus.MustNewConstMetric(m.active, prometheus.GaugeValue, float64(c.total))
	ch <- prometheus.MustNewConstMetric(m.connections, prometheus.GaugeValue, float64(c.byTransport[TransportSSE]+c.byTransport[TransportStreamable]))
	if m.perUser {
		for k, n := range c.byUser {
			ch <- prometheus.MustNewConstMetric(m.sessions, prometheus.GaugeValue, float64(n), k.transport, k.user)
		}
	} else {
		for _, t := range []string{TransportSSE, TransportStreamable, TransportDefault} {
			ch <- prometheus.MustNewConstMetric(m.sessions, prometheus.GaugeValue, float64(c.byTransport[t]), t)
		}
	}
	if mgr != nil {
		ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, float64(mgr.cfg.MaxSessions), "total")
		ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, float64(mgr.cfg.MaxSessionsPerUser), "per_user")
	}
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.refusals, m.executions, m.toolTime, m.rejections} {
		c.Collect(ch)
	}
}

// LimitRejected counts a refusal by a limit under reason (Limit*) in
// mcp_limit_rejections_total. The proxy calls it for the limits it enforces
// on HTTP requests and connections.
func (m *Metrics) LimitRejected(reason string) {
	if m != nil {
		m.rejections.WithLabelValues(reason).Inc()
	}
}

// Metrics returns the collectors the manager counts on (Config.Metrics),
// for the limits the proxy enforces itself; nil counts nothing.
func (m *Manager) Metrics() *Metrics {
	if m == nil {
		return nil
	}
	return m.cfg.Metrics
}

// sessionCounts is what the session gauges report at a scrape.
type sessionCounts struct {
	total       int
	byTransport map[string]int
	byUser      map[userTransport]int // only with MetricsConfig.PerUser
}

type userTransport struct{ user, transport string }

// counts counts the open sessions by transport (and by user for per-user
// metrics) without any browser call. A session whose transport has not said
// yet was opened by a streamable client's first tool call (see List).
func (m *Manager) counts() sessionCounts {
	perUser := m.cfg.Metrics != nil && m.cfg.Metrics.perUser
	c := sessionCounts{byTransport: map[string]int{}}
	if perUser {
		c.byUser = map[userTransport]int{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	add := func(s *Session, transport string) {
		c.total++
		c.byTransport[transport]++
		if perUser {
			c.byUser[userTransport{s.UserID, transport}]++
		}
	}
	for _, s := range m.sessions {
		t := TransportStreamable
		if rec := m.life[s]; rec != nil && rec.transport != "" {
			t = rec.transport
		}
		add(s, t)
	}
	for _, s := range m.defaults {
		add(s, TransportDefault)
	}
	return c
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

// called records a tool call of user; ran says whether the tool itself ran
// (its duration is then observed).
func (m *Metrics) called(user, tool, outcome string, ran bool, d time.Duration) {
	if m == nil {
		return
	}
	c := m.seriesOf(tool, outcome)
	c.calls.Inc()
	if m.perUser {
		m.executions.WithLabelValues(tool, outcome, user).Inc()
	} else {
		c.executions.Inc()
	}
	if ran {
		r := m.ranOf(tool)
		r.duration.Observe(d.Seconds())
		r.toolTime.Observe(d.Seconds())
	}
}
