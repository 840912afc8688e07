package main

import (
	"fmt"
	"time"

	"github.com/labstack/gommon/bytes"
	"github.com/spf13/pflag"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// limitFlags are the serve flags that keep one user or client from stalling
// or starving the others: the ceiling of caller-given timeouts and the
// connection limits.
type limitFlags struct {
	maxCallTimeout    time.Duration
	maxConnsPerIP     int
	trustedProxies    []string
	readHeaderTimeout time.Duration
	connIdleTimeout   time.Duration
	maxLogBytesPerTab string
	maxLogBytes       string
}

func addLimitFlags(fl *pflag.FlagSet, f *limitFlags) {
	fl.DurationVar(&f.maxCallTimeout, "max-call-timeout", tools.DefaultMaxCallTimeout, "ceiling of the timeout a tool call may ask for (navigate_page, new_page, wait_for); a larger one is refused")
	fl.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", proxy.DefaultMaxConnsPerIP, "concurrent connections one client address may hold (behind --trusted-proxies: concurrent requests per forwarded address); more are closed at once")
	fl.StringSliceVar(&f.trustedProxies, "trusted-proxies", nil, "reverse proxies (CIDRs or addresses) whose X-Forwarded-For names the client; its last untrusted hop is counted for --max-conns-per-ip")
	fl.DurationVar(&f.readHeaderTimeout, "read-header-timeout", proxy.DefaultReadHeaderTimeout, "a connection whose request headers (or TLS handshake) take longer is closed")
	fl.DurationVar(&f.connIdleTimeout, "conn-idle-timeout", proxy.DefaultIdleConnTimeout, "an idle keep-alive connection is closed after this")
	fl.StringVar(&f.maxLogBytesPerTab, "max-log-bytes-per-tab", "4MiB", "console messages and network entries one tab keeps, half each; the oldest go first")
	fl.StringVar(&f.maxLogBytes, "max-log-bytes", "256MiB", "console messages and network entries all tabs keep together; beyond it the biggest tabs lose their oldest entries first")
}

// logBudget checks the log flags and returns the budget they set.
func (f limitFlags) logBudget() (*tools.LogBudget, error) {
	perTab, err := bytes.Parse(f.maxLogBytesPerTab)
	if err != nil || perTab < tools.MinLogBytesPerTab {
		return nil, fmt.Errorf("--max-log-bytes-per-tab %q: use a size of at least %s, e.g. 4MiB", f.maxLogBytesPerTab, bytes.Format(tools.MinLogBytesPerTab))
	}
	total, err := bytes.Parse(f.maxLogBytes)
	if err != nil || total < perTab {
		return nil, fmt.Errorf("--max-log-bytes %q: use a size of at least --max-log-bytes-per-tab (%s), e.g. 256MiB", f.maxLogBytes, f.maxLogBytesPerTab)
	}
	return tools.NewLogBudget(perTab, total), nil
}

// conns checks the connection flags and returns the limits they set.
func (f limitFlags) conns() (proxy.ConnLimits, error) {
	switch {
	case f.maxCallTimeout < time.Second:
		return proxy.ConnLimits{}, fmt.Errorf("--max-call-timeout %s: use at least 1s", f.maxCallTimeout)
	case f.maxConnsPerIP < 1:
		return proxy.ConnLimits{}, fmt.Errorf("--max-conns-per-ip %d: use at least 1", f.maxConnsPerIP)
	case f.readHeaderTimeout <= 0 || f.connIdleTimeout <= 0:
		return proxy.ConnLimits{}, fmt.Errorf("--read-header-timeout and --conn-idle-timeout must be positive durations, e.g. 10s and 2m")
	}
	trusted, err := proxy.ParseTrustedProxies(f.trustedProxies)
	if err != nil {
		return proxy.ConnLimits{}, err
	}
	return proxy.ConnLimits{MaxPerIP: f.maxConnsPerIP, TrustedProxies: trusted,
		ReadHeaderTimeout: f.readHeaderTimeout, IdleTimeout: f.connIdleTimeout}, nil
}
