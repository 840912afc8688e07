package browserpool

import (
	"net"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsOfAFailingBrowser drives one browser through connecting,
// reconnecting and failed on a port where nothing listens, then removes it.
func TestMetricsOfAFailingBrowser(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()

	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("registering twice on one registry is not an error")
	}
	cfg := testConfig()
	cfg.MaxAttempts, cfg.Metrics = 3, m
	p := New(cfg)
	defer p.Close()
	b := p.Ensure("alice", dead)
	waitStatus(t, b, "the failed state", func(s Status) bool { return s.State == StateFailed })
	want := `
# HELP mbp_browser_connects_total Successful CDP connections to browsers (first connects and reconnects).
# TYPE mbp_browser_connects_total counter
mbp_browser_connects_total 0
# HELP mbp_browser_reconnect_attempts_total Connection attempts made after a lost connection or a failed attempt.
# TYPE mbp_browser_reconnect_attempts_total counter
mbp_browser_reconnect_attempts_total 2
# HELP mbp_browser_state_transitions_total Browser connection state changes.
# TYPE mbp_browser_state_transitions_total counter
mbp_browser_state_transitions_total{from="connecting",to="reconnecting"} 1
mbp_browser_state_transitions_total{from="reconnecting",to="failed"} 1
# HELP mbp_browsers Registered browsers by connection state.
# TYPE mbp_browsers gauge
mbp_browsers{state="conflict"} 0
mbp_browsers{state="connected"} 0
mbp_browsers{state="connecting"} 0
mbp_browsers{state="disconnected"} 0
mbp_browsers{state="failed"} 1
mbp_browsers{state="reconnecting"} 0
# HELP mcp_browser_connections CDP connections to registered browsers by state (the same counts as mbp_browsers).
# TYPE mcp_browser_connections gauge
mcp_browser_connections{state="conflict"} 0
mcp_browser_connections{state="connected"} 0
mcp_browser_connections{state="connecting"} 0
mcp_browser_connections{state="disconnected"} 0
mcp_browser_connections{state="failed"} 1
mcp_browser_connections{state="reconnecting"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// A removed browser is no longer counted.
	p.Remove("alice")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP mbp_browsers Registered browsers by connection state.
# TYPE mbp_browsers gauge
mbp_browsers{state="conflict"} 0
mbp_browsers{state="connected"} 0
mbp_browsers{state="connecting"} 0
mbp_browsers{state="disconnected"} 0
mbp_browsers{state="failed"} 0
mbp_browsers{state="reconnecting"} 0
`), "mbp_browsers"); err != nil {
		t.Error(err)
	}
	// A nil *Metrics counts nothing and does not panic.
	var none *Metrics
	none.observe(b, StateConnecting, StateConnected)
	none.attempt(b, true)
}
