package browserpool

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// allStates lists every State, in the order metrics report them.
var allStates = [...]State{StateConnected, StateConnecting, StateReconnecting, StateDisconnected, StateFailed, StateConflict}

// Metrics counts the pool's connection events for Prometheus. Create it with
// NewMetrics and pass it in Config.Metrics; a nil *Metrics counts nothing.
// Labels are states only, never user IDs or URLs.
type Metrics struct {
	browsers    *prometheus.Desc
	connections *prometheus.Desc // mcp_browser_connections, the operators' name of browsers
	connects    prometheus.Counter
	reconnects  prometheus.Counter
	transitions *prometheus.CounterVec

	mu      sync.Mutex
	tracked map[*Browser]struct{} // browsers whose run loop may still be alive
}

// NewMetrics creates the pool's collectors and registers them on reg:
// mbp_browsers{state} and its operator twin mcp_browser_connections{state}
// (gauges), mbp_browser_connects_total,
// mbp_browser_reconnect_attempts_total and
// mbp_browser_state_transitions_total{from,to}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		browsers:    prometheus.NewDesc("mbp_browsers", "Registered browsers by connection state.", []string{"state"}, nil),
		connections: prometheus.NewDesc("mcp_browser_connections", "CDP connections to registered browsers by state (the same counts as mbp_browsers).", []string{"state"}, nil),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mbp_browser_connects_total", Help: "Successful CDP connections to browsers (first connects and reconnects).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mbp_browser_reconnect_attempts_total", Help: "Connection attempts made after a lost connection or a failed attempt.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mbp_browser_state_transitions_total", Help: "Browser connection state changes.",
		}, []string{"from", "to"}),
		tracked: map[*Browser]struct{}{},
	}
	if err := reg.Register(m); err != nil {
		return nil, fmt.Errorf("register browserpool metrics: %w", err)
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.browsers
	ch <- m.connections
	m.connects.Describe(ch)
	m.reconnects.Describe(ch)
	m.transitions.Describe(ch)
}

// Collect implements prometheus.Collector. The browsers gauge is read from
// the live browsers at scrape time, so it never drifts.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	counts := map[State]int{}
	m.mu.Lock()
	for b := range m.tracked {
		if b.stopped() {
			delete(m.tracked, b)
			continue
		}
		counts[b.Status().State]++
	}
	m.mu.Unlock()
	for _, st := range allStates {
		ch <- prometheus.MustNewConstMetric(m.browsers, prometheus.GaugeValue, float64(counts[st]), string(st))
		ch <- prometheus.MustNewConstMetric(m.connections, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
	m.connects.Collect(ch)
	m.reconnects.Collect(ch)
	m.transitions.Collect(ch)
}

// observe records a status change of b (called by Browser.set, outside b's
// lock).
func (m *Metrics) observe(b *Browser, old, now State) {
	if m == nil {
		return
	}
	m.track(b)
	if old == now {
		return
	}
	m.transitions.WithLabelValues(string(old), string(now)).Inc()
	if now == StateConnected {
		m.connects.Inc()
	}
}

// attempt records the start of a connection attempt; reconnect tells whether
// it follows a lost connection or a failed attempt.
func (m *Metrics) attempt(b *Browser, reconnect bool) {
	if m == nil {
		return
	}
	m.track(b)
	if reconnect {
		m.reconnects.Inc()
	}
}

// track remembers b for the browsers gauge. Adding a browser forgets the
// stopped ones, so the set stays as large as the pool.
func (m *Metrics) track(b *Browser) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tracked[b]; ok {
		return
	}
	for o := range m.tracked {
		if o.stopped() {
			delete(m.tracked, o)
		}
	}
	m.tracked[b] = struct{}{}
}

// stopped reports whether b's run loop has ended (it was removed, replaced or
// the pool closed).
func (b *Browser) stopped() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}
