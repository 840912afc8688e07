// Package browserpool keeps one live CDP connection per registered browser:
// it connects, health-checks, and reconnects with capped exponential backoff.
//
// The pool never starts or closes a user's browser. It only opens and drops
// the DevTools websocket; tabs are the session package's business.
package browserpool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"
)

// State is the connection state of one browser.
type State string

// Connection states, as shown in status, health and metrics.
const (
	StateConnecting   State = "connecting"
	StateConnected    State = "connected"
	StateReconnecting State = "reconnecting"
	StateDisconnected State = "disconnected"
	StateFailed       State = "failed"
)

// Status is a snapshot of a browser's connection.
type Status struct {
	State       State
	Attempts    int    // failed attempts since the last success
	LastError   string // why the last attempt or connection failed; no secrets
	Generation  uint64 // increases on every successful connect
	ConnectedAt time.Time
	Version     string // browser product, e.g. "HeadlessChrome/156.0..."
}

// Conn is a live connection handed to callers: a chromedp browser context
// (already bound to its websocket) and the generation it belongs to.
type Conn struct {
	// Ctx is the chromedp browser context. Derive tab contexts from it with
	// chromedp.NewContext; it ends when the connection drops.
	Ctx        context.Context
	Generation uint64
}

// UnavailableError is returned when a browser is not connected within the
// caller's bound. It is retryable.
type UnavailableError struct {
	UserID    string
	State     State
	Attempts  int
	LastError string
}

func (e *UnavailableError) Error() string {
	msg := fmt.Sprintf("browser of %s is %s", e.UserID, e.State)
	if e.Attempts > 0 {
		msg += fmt.Sprintf(" after %d failed attempt(s)", e.Attempts)
	}
	if e.LastError != "" {
		msg += ": " + e.LastError
	}
	return msg + "; check that Chrome runs with --remote-debugging-port and retry in a few seconds"
}

// Browser is the pool's handle on one registered browser.
type Browser struct {
	userID string
	url    string
	cfg    *Config
	log    zerolog.Logger

	headers map[string]string // sent to this browser only; credentials

	kick chan struct{} // skip the backoff wait
	stop context.CancelFunc
	done chan struct{}

	mu      sync.Mutex
	status  Status
	conn    *Conn
	changed chan struct{} // closed on every change, then replaced
}

// UserID returns the owner of the browser.
func (b *Browser) UserID() string { return b.userID }

// URL returns the registered browser URL. It may hold credentials
// (userinfo, ?token=): pass it through router.Redact before showing it.
func (b *Browser) URL() string { return b.url }

// Status returns the current connection status.
func (b *Browser) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status
}

// Retry asks a browser in backoff or failed state to try again at once.
func (b *Browser) Retry() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Conn returns the live connection, waiting up to bound for one. A failed
// browser is retried at once. The error is an *UnavailableError when the
// browser stays down, or ctx's error.
func (b *Browser) Conn(ctx context.Context, bound time.Duration) (Conn, error) {
	timer := time.NewTimer(bound)
	defer timer.Stop()
	retried := false
	for {
		b.mu.Lock()
		conn, st, changed := b.conn, b.status, b.changed
		b.mu.Unlock()
		if conn != nil {
			return *conn, nil
		}
		if st.State == StateFailed && !retried {
			retried = true
			b.Retry()
		}
		select {
		case <-changed:
		case <-timer.C:
			return Conn{}, b.unavailable()
		case <-ctx.Done():
			return Conn{}, ctx.Err()
		}
	}
}

// WaitSettled waits up to bound until the first connection attempt has an
// outcome (connected, or at least one failure), and returns the status.
func (b *Browser) WaitSettled(ctx context.Context, bound time.Duration) Status {
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		b.mu.Lock()
		st, changed := b.status, b.changed
		b.mu.Unlock()
		if st.State == StateConnected || st.Attempts > 0 || st.State == StateDisconnected {
			return st
		}
		select {
		case <-changed:
		case <-timer.C:
			return st
		case <-ctx.Done():
			return st
		}
	}
}

func (b *Browser) unavailable() *UnavailableError {
	st := b.Status()
	return &UnavailableError{UserID: b.userID, State: st.State, Attempts: st.Attempts, LastError: st.LastError}
}

// set applies f to the status under the lock and wakes waiters.
func (b *Browser) set(f func(s *Status)) {
	b.mu.Lock()
	old := b.status.State
	f(&b.status)
	st := b.status
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	b.cfg.Metrics.observe(b, old, st.State)
	if st.State != old {
		ev := b.log.Info()
		if st.State == StateReconnecting || st.State == StateFailed {
			ev = b.log.Warn()
		}
		ev.Str("from", string(old)).Str("to", string(st.State)).Int("attempts", st.Attempts).
			Str("error", st.LastError).Msg("browser state")
	}
}

// run owns the connection: connect, watch, reconnect with backoff, until ctx ends.
func (b *Browser) run(ctx context.Context) {
	defer close(b.done)
	defer b.set(func(s *Status) { s.State = StateDisconnected })

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = b.cfg.InitialBackoff
	bo.MaxInterval = b.cfg.MaxBackoff
	bo.RandomizationFactor = 0.5
	for {
		conn, cancel, version, err := b.connect(ctx)
		if ctx.Err() != nil {
			if cancel != nil {
				cancel()
			}
			return
		}
		if err != nil {
			failed := false
			b.set(func(s *Status) {
				s.Attempts++
				s.LastError = err.Error()
				if b.cfg.MaxAttempts > 0 && s.Attempts >= b.cfg.MaxAttempts {
					s.State = StateFailed
					failed = true
				} else if s.Generation > 0 {
					s.State = StateReconnecting
				}
			})
			wait := bo.NextBackOff()
			if failed {
				wait = 24 * time.Hour // until kicked
			}
			select {
			case <-ctx.Done():
				return
			case <-b.kick:
				b.set(func(s *Status) {
					if s.State == StateFailed {
						s.State = StateReconnecting
						s.Attempts = 0
					}
				})
			case <-time.After(wait):
			}
			continue
		}
		bo.Reset()
		b.mu.Lock()
		b.conn = &conn
		b.mu.Unlock()
		b.set(func(s *Status) {
			s.State = StateConnected
			s.Attempts = 0
			s.LastError = ""
			s.Generation = conn.Generation
			s.ConnectedAt = time.Now()
			s.Version = version
		})
		reason := b.watch(ctx, conn)
		b.mu.Lock()
		b.conn = nil
		b.mu.Unlock()
		cancel()
		if ctx.Err() != nil {
			return
		}
		b.set(func(s *Status) {
			s.State = StateReconnecting
			s.LastError = reason
		})
	}
}

// watch blocks until the connection is lost, a health check fails, or ctx
// ends, and returns why.
func (b *Browser) watch(ctx context.Context, conn Conn) string {
	tick := time.NewTicker(b.cfg.HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return "stopped"
		case <-conn.Ctx.Done():
			return "connection to the browser was lost"
		case <-tick.C:
			hctx, cancel := context.WithTimeout(conn.Ctx, b.cfg.HealthTimeout)
			_, err := chromedp.CallBrowser(hctx, browser.GetVersion, cdp.Empty{})
			cancel()
			if err != nil && conn.Ctx.Err() == nil {
				return "health check failed: " + err.Error()
			}
		}
	}
}

// connect dials the browser once. On success the returned cancel drops the
// websocket (it never closes the browser or any tab).
func (b *Browser) connect(ctx context.Context) (Conn, context.CancelFunc, string, error) {
	b.set(func(s *Status) {
		if s.Generation > 0 || s.Attempts > 0 {
			s.State = StateReconnecting
		} else {
			s.State = StateConnecting
		}
	})
	b.cfg.Metrics.attempt(b, b.Status().State == StateReconnecting)
	rctx, rcancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	t, err := resolveWebSocket(rctx, b.cfg.HTTPClient, b.cfg.Policy, Endpoint{URL: b.url, Headers: b.headers})
	rcancel()
	if err != nil {
		return Conn{}, nil, "", err
	}
	allocCtx, allocCancel := newAllocator(ctx, t.wsURL, t.header, b.cfg.Policy, b.cfg.DialTimeout)
	bctx, bcancel := chromedp.NewContext(allocCtx)
	cancel := func() { bcancel(); allocCancel() }

	// The first call binds the websocket to bctx, so it must use bctx itself;
	// bound it from outside instead.
	type result struct {
		version string
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := chromedp.CallBrowser(bctx, browser.GetVersion, cdp.Empty{})
		ch <- result{v.Product, err}
	}()
	timer := time.NewTimer(b.cfg.DialTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			cancel()
			return Conn{}, nil, "", fmt.Errorf("connect: %s", redactErr(r.err, t.wsURL))
		}
		gen := b.Status().Generation + 1
		return Conn{Ctx: bctx, Generation: gen}, cancel, r.version, nil
	case <-timer.C:
		cancel()
		return Conn{}, nil, "", errors.New("connect: the browser accepted the connection but did not answer within " + b.cfg.DialTimeout.String())
	case <-ctx.Done():
		cancel()
		return Conn{}, nil, "", ctx.Err()
	}
}
