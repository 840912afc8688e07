// Package browserpool keeps one live CDP connection per registered browser:
// it connects, health-checks, and reconnects with capped exponential backoff.
//
// The pool never starts or closes a user's browser. It only opens and drops
// the DevTools websocket; tabs are the session package's business. The one
// exception is a managed browser (managed.go), which the pool starts for a
// user who has none, and stops.
package browserpool

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// StateConflict: the browser this registration reaches belongs to
	// another user, who registered it first (the same running browser by
	// another URL: an alias, a port forward). The pool never hands out a
	// connection to it; it checks again now and then, and on Retry.
	StateConflict State = "conflict"
)

// Status is a snapshot of a browser's connection.
type Status struct {
	State       State
	Attempts    int    // failed attempts since the last success
	LastError   string // why the last attempt or connection failed; no secrets
	Generation  uint64 // increases on every successful connect
	ConnectedAt time.Time
	LastCheck   time.Time // when a health check last succeeded; zero: none since the connect
	Version     string    // browser product, e.g. "HeadlessChrome/156.0..."
	// NextAttempt is when the next connection attempt is due while the
	// pool backs off after a failed one; zero otherwise (connected,
	// connecting, failed: waiting for a Retry). A tool call that arrives
	// before then does not wait for it (see Conn).
	NextAttempt time.Time
}

// Conn is a live connection handed to callers: a chromedp browser context
// (already bound to its websocket) and the generation it belongs to.
type Conn struct {
	// Ctx is the chromedp browser context. Derive tab contexts from it with
	// chromedp.NewContext; it ends when the connection drops.
	Ctx        context.Context
	Generation uint64
	// Guard enforces the pool's RequestPolicy on the targets sessions
	// protect; nil without one.
	Guard *Guard
	// Sessions sends on a tab's session while chromedp still attaches to
	// it; nil methods are safe.
	Sessions *Sessions
	// Spare is a blank tab guarded ahead for the next session (managed
	// browsers only); nil methods are safe.
	Spare *Spare
}

// UnavailableError is returned when a browser is not connected within the
// caller's bound. Its message starts with BROWSER_UNAVAILABLE, names the
// state and the failed attempts, and says whether to retry; it carries no
// secret (LastError never holds credentials).
type UnavailableError struct {
	UserID    string
	State     State
	Attempts  int    // failed connection attempts since the last success (or the last retry of a failed browser)
	LastError string // why the last attempt or the connection failed
}

// Retryable reports whether retrying the call later may succeed: true in
// every state but disconnected (the browser was unregistered, or the proxy
// is shutting down) and conflict (the browser is another user's).
func (e *UnavailableError) Retryable() bool {
	return e.State != StateDisconnected && e.State != StateConflict
}

func (e *UnavailableError) Error() string {
	if e.State == StateConflict {
		return "BROWSER_UNAVAILABLE: the browser registered for " + e.UserID + " belongs to another user (the same running browser, reached by another URL, is theirs); the proxy will not drive it for you. Not retryable: register your own Chrome, started with its own --remote-debugging-port and --user-data-dir, with POST /api/register"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "BROWSER_UNAVAILABLE: the browser of %s is %s (%d failed connection attempt(s) so far", e.UserID, e.State, e.Attempts)
	if e.LastError != "" {
		b.WriteString("; last error: " + e.LastError)
	}
	b.WriteString(")")
	switch e.State {
	case StateDisconnected:
		b.WriteString("; not retryable: the browser is no longer registered (or the proxy is shutting down); register it again with POST /api/register")
	case StateFailed:
		b.WriteString("; retryable: the proxy had given up and now tries again at once; retry the call in a few seconds, and check that Chrome runs with --remote-debugging-port")
	default:
		b.WriteString("; retryable: the proxy keeps reconnecting; retry the call in a few seconds (if it lasts, check that Chrome runs with --remote-debugging-port)")
	}
	return b.String()
}

// Browser is the pool's handle on one registered browser.
type Browser struct {
	// tunnelPort is a tunnelled browser's DevTools port on the agent's
	// loopback, as the agent reported it (ProtectedEndpoints).
	tunnelPort atomic.Int32

	userID string
	url    string
	cfg    *Config
	log    zerolog.Logger

	headers map[string]string // sent to this browser only; credentials
	genBase uint64            // Generation of the browser this one replaced: generations never repeat for a user
	since   time.Time         // when it was registered: the earlier of two registrations of one browser keeps it
	pool    *Pool

	// pinned are the addresses its host had when it was registered or
	// restored, and its IP literal: only a connection to one of them may
	// evict a later registration (see Pool.claim). Guarded by mu.
	pinned []netip.Addr

	first     chan struct{} // closed once the first connection attempt has an outcome
	firstOnce sync.Once
	evicted   chan struct{} // an earlier registration took the running browser (see Pool.claim)

	kick chan struct{}   // skip the backoff wait
	ctx  context.Context // of the run loop; stop ends it
	stop context.CancelFunc

	managed *managedState // set for a managed browser (managed.go); nil otherwise
	done    chan struct{}

	mu      sync.Mutex
	status  Status
	conn    *Conn
	changed chan struct{} // closed on every change, then replaced
	pending bool          // Retry asked for an attempt whose outcome is not known yet
	waiters int           // Conn calls waiting for a connection: the backoff is capped at WaitBackoff meanwhile
}

// UserID returns the owner of the browser.
func (b *Browser) UserID() string { return b.userID }

// URL returns the registered browser URL. It may hold credentials
// (userinfo, ?token=): pass it through router.Redact before showing it.
func (b *Browser) URL() string { return b.url }

// endpoint returns the registered endpoint of b.
func (b *Browser) endpoint() Endpoint { return Endpoint{URL: b.url, Headers: b.headers} }

// Status returns the current connection status.
func (b *Browser) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status
}

// Retry asks a browser in backoff or failed state to try again at once: a
// failed browser starts a new round of MaxAttempts attempts. WaitSettled
// then waits for the outcome of that attempt. A connected browser is left
// alone.
func (b *Browser) Retry() {
	b.mu.Lock()
	if b.conn != nil || b.status.State == StateConnected || b.status.State == StateDisconnected {
		b.mu.Unlock()
		return
	}
	b.pending = true
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Conn returns the live connection, waiting up to bound for one. While
// it waits (bound > 0), the browser does not sit out its backoff: a
// browser between attempts tries again at once, and the next waits are
// capped at WaitBackoff, so a browser that comes back during the call is
// used within about WaitBackoff. A failed browser is retried at once, and
// Conn returns as soon as that retry fails for good; a browser in
// StateConflict (another user's) fails at once. The error is an
// *UnavailableError when the browser stays down, or ctx's error. Conn never
// waits longer than bound.
func (b *Browser) Conn(ctx context.Context, bound time.Duration) (Conn, error) {
	if b.managed != nil {
		b.managed.touch()
		defer b.managed.touch() // the wait is use too: Idle counts from its end
		if bound > 0 {
			// A managed browser down is one being started again.
			bound = max(bound, b.cfg.Managed.StartTimeout)
		}
	}
	timer := time.NewTimer(bound)
	defer timer.Stop()
	kicked, left := false, false // we retried a failed browser; it left failed since
	waiting := false             // counted in b.waiters
	defer func() {
		if waiting {
			b.mu.Lock()
			b.waiters--
			b.mu.Unlock()
		}
	}()
	for {
		b.mu.Lock()
		conn, st, changed := b.conn, b.status, b.changed
		b.mu.Unlock()
		// A connection whose context ended is lost; the run loop is about
		// to say so (and close changed).
		if conn != nil && conn.Ctx.Err() == nil {
			return *conn, nil
		}
		if !waiting && bound > 0 && st.State != StateConflict {
			waiting = true
			b.await()
		}
		switch {
		case st.State == StateConflict:
			return Conn{}, b.unavailable()
		case st.State == StateFailed && left:
			return Conn{}, b.unavailable() // the retry failed for good already
		case st.State == StateFailed && !kicked && bound > 0:
			kicked = true
			b.Retry()
		case st.State != StateFailed && kicked:
			left = true
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

// await counts a Conn call that waits for a connection. The first waiter
// cuts short the backoff wait in progress: that wait was drawn for nobody
// waiting, and may be MaxBackoff long. A failed browser is left to Conn's
// Retry, which also starts a new round of attempts.
func (b *Browser) await() {
	b.mu.Lock()
	b.waiters++
	hurry := b.waiters == 1 && b.conn == nil && b.status.State != StateFailed
	b.mu.Unlock()
	if hurry {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// waitedFor reports whether a Conn call waits for a connection.
func (b *Browser) waitedFor() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiters > 0
}

// WaitSettled waits up to bound until the first connection attempt, or the
// attempt a Retry asked for, has an outcome (connected, a failure, or
// conflict: the browser is another user's), and returns the status.
func (b *Browser) WaitSettled(ctx context.Context, bound time.Duration) Status {
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		b.mu.Lock()
		st, changed, pending := b.status, b.changed, b.pending
		b.mu.Unlock()
		if st.State == StateConnected || st.State == StateDisconnected || (!pending && (st.Attempts > 0 || st.State == StateConflict)) {
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
func (b *Browser) set(f func(s *Status)) { b.update(false, f) }

// settle is set for the outcome of a connection attempt: it also ends the
// wait of WaitSettled for an attempt that Retry asked for.
func (b *Browser) settle(f func(s *Status)) { b.update(true, f) }

func (b *Browser) update(outcome bool, f func(s *Status)) {
	b.mu.Lock()
	old := b.status.State
	f(&b.status)
	if outcome {
		b.pending = false
	}
	st := b.status
	changed := b.changed
	b.changed = make(chan struct{})
	b.mu.Unlock()
	b.cfg.Metrics.observe(b, old, st.State)
	if st.State != old {
		ev := b.log.Info()
		if st.State == StateReconnecting || st.State == StateFailed || st.State == StateConflict {
			ev = b.log.Warn()
		}
		ev.Str("from", string(old)).Str("to", string(st.State)).Int("attempts", st.Attempts).
			Str("error", st.LastError).Msg("browser state")
	}
	// Waiters wake once the change is logged and counted: what they see
	// next (a log, a scrape) already has it.
	close(changed)
}

// run owns the connection: connect, watch, reconnect with backoff, until ctx ends.
func (b *Browser) run(ctx context.Context) {
	defer close(b.done)
	defer b.pool.release(b)
	defer b.firstDone()
	defer b.set(func(s *Status) { s.State = StateDisconnected })
	defer b.stopManaged() // before it says disconnected: no process left then

	// Two backoffs: the long one grows over the whole outage, for when
	// nobody waits; the short one is used while a tool call waits (see
	// Conn), when a quick retry is worth more than sparing the browser.
	var bo backoff.BackOff = newFullJitter(b.cfg.InitialBackoff, b.cfg.MaxBackoff)
	var quick backoff.BackOff = newFullJitter(min(b.cfg.InitialBackoff, b.cfg.WaitBackoff), b.cfg.WaitBackoff)
	for {
		// A Retry that came while connected or during the last attempt has
		// been answered by this attempt: do not let it skip the next wait.
		select {
		case <-b.kick:
		default:
		}
		conn, cancel, version, id, addr, err := b.connect(ctx)
		if err == nil && ctx.Err() == nil {
			// Before anyone gets the connection: is the browser another
			// user's? An eviction meant for an older connection is void.
			select {
			case <-b.evicted:
			default:
			}
			if how := b.pool.claim(ctx, b, id, addr); how == outcomeUnavailable {
				cancel()
				cancel, err = nil, errSharedClaims
			} else if how != "" {
				cancel()
				if ctx.Err() != nil {
					return
				}
				b.conflict(how)
				if !b.waitConflict(ctx) {
					return
				}
				continue
			}
		}
		if ctx.Err() != nil {
			if cancel != nil {
				cancel()
			}
			return
		}
		if err != nil {
			failed := false
			b.settle(func(s *Status) {
				s.Attempts++
				s.LastError = err.Error()
				if b.cfg.MaxAttempts > 0 && s.Attempts >= b.cfg.MaxAttempts {
					s.State = StateFailed
					failed = true
				} else if s.Generation > b.genBase {
					s.State = StateReconnecting
				}
			})
			b.firstDone()
			var timeout <-chan time.Time // nil when failed: wait for a Retry
			wait := bo.NextBackOff()
			if b.waitedFor() {
				wait = quick.NextBackOff()
			}
			timer := time.NewTimer(wait)
			if !failed {
				timeout = timer.C
				b.set(func(s *Status) { s.NextAttempt = time.Now().Add(wait) })
			}
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-b.kick:
				timer.Stop()
				b.set(func(s *Status) {
					s.NextAttempt = time.Time{}
					if s.State == StateFailed {
						s.State = StateReconnecting
						s.Attempts = 0
					}
				})
			case <-timeout:
				b.set(func(s *Status) { s.NextAttempt = time.Time{} })
			}
			continue
		}
		bo.Reset()
		quick.Reset()
		b.settle(func(s *Status) {
			b.conn = &conn
			s.State = StateConnected
			s.Attempts = 0
			s.LastError = ""
			s.Generation = conn.Generation
			s.ConnectedAt = time.Now()
			s.Version = version
		})
		b.firstDone()
		reason := b.watch(ctx, conn)
		b.mu.Lock()
		b.conn = nil
		b.mu.Unlock()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if reason == reasonEvicted {
			b.conflict("evicted")
			if !b.waitConflict(ctx) {
				return
			}
			continue
		}
		b.set(func(s *Status) {
			s.State = StateReconnecting
			s.LastError = reason
		})
	}
}

// reasonEvicted is what watch returns when an earlier registration took
// the browser.
const reasonEvicted = "evicted: the browser belongs to an earlier registration"

// firstDone records that the first connection attempt has an outcome.
func (b *Browser) firstDone() { b.firstOnce.Do(func() { close(b.first) }) }

// conflict moves b to StateConflict and audits it: how is "refused" (b
// reached a browser an earlier registration holds), "refused_readdressed"
// (b reached a browser another user holds through an address its host did
// not have when b was registered) or "evicted" (an earlier registration
// reached the browser b held).
func (b *Browser) conflict(how string) {
	msg, reason := conflictError, "the browser is registered by another user, who registered it first; connection dropped"
	if how == outcomeReaddressed {
		msg, reason = readdressedError, "the browser is held by another user and this registration reached it at an address its host did not resolve to when it was registered (the name was re-pointed); connection dropped"
	}
	b.settle(func(s *Status) {
		s.State = StateConflict
		s.LastError = msg
	})
	b.firstDone()
	b.cfg.Audit.Warn().Bool("audit", true).Str("event", "browser_conflict").Str("user", b.userID).
		Str("outcome", how).Str("reason", reason).Send()
}

// pinnedAddrs returns the addresses a registration of ep may evict a later
// holder through: ep.Addrs and the URL's IP literal, unmapped.
func pinnedAddrs(ep Endpoint) []netip.Addr {
	out := make([]netip.Addr, 0, len(ep.Addrs)+1)
	for _, a := range ep.Addrs {
		out = append(out, a.Unmap().WithZone(""))
	}
	if u, err := url.Parse(ep.URL); err == nil {
		if a, err := netip.ParseAddr(u.Hostname()); err == nil {
			out = append(out, a.Unmap().WithZone(""))
		}
	}
	return out
}

// pinnedTo reports whether a is one of the addresses b was registered or
// restored with.
func (b *Browser) pinnedTo(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Contains(b.pinned, a.Unmap().WithZone(""))
}

// waitConflict waits before b checks again whether the browser is still
// another user's (it may have been unregistered): MaxBackoff, or a Retry.
// It reports false when ctx ended.
func (b *Browser) waitConflict(ctx context.Context) bool {
	timer := time.NewTimer(b.cfg.MaxBackoff)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-b.kick:
	case <-timer.C:
	}
	return true
}

// watch blocks until the connection is lost, HealthFailures health checks
// in a row fail, an earlier registration takes the browser, or ctx ends,
// and returns why. After a failed check the next
// one runs at once: a browser that is only slow for a moment (a loaded
// machine) keeps its connection, and its sessions their tabs.
func (b *Browser) watch(ctx context.Context, conn Conn) string {
	tick := time.NewTicker(b.cfg.HealthInterval)
	defer tick.Stop()
	failures := 0
	for {
		if failures == 0 {
			select {
			case <-ctx.Done():
				return "stopped"
			case <-conn.Ctx.Done():
				return "connection to the browser was lost"
			case <-b.evicted:
				return reasonEvicted
			case <-tick.C:
			}
		} else if ctx.Err() != nil {
			return "stopped"
		}
		hctx, cancel := context.WithTimeout(conn.Ctx, b.cfg.HealthTimeout)
		_, err := chromedp.CallBrowser(hctx, browser.GetVersion, cdp.Empty{})
		cancel()
		switch {
		case err == nil:
			failures = 0
			b.mu.Lock()
			b.status.LastCheck = time.Now()
			b.mu.Unlock()
		case conn.Ctx.Err() != nil || errors.Is(err, context.Canceled):
			// chromedp wraps context.Canceled in a lost connection's error.
			return "connection to the browser was lost"
		default:
			failures++
			if failures >= b.cfg.HealthFailures {
				return fmt.Sprintf("health check failed %d time(s) in a row: %v", failures, err)
			}
			b.log.Warn().Int("failures", failures).Str("error", err.Error()).Msg("browser health check failed; checking again")
		}
	}
}

// connect dials the browser once. On success the returned cancel drops the
// websocket (it never closes the browser or any tab), id is the identity
// of the browser reached (see claims) and addr the address its websocket
// was dialled to (invalid through a tunnel).
func (b *Browser) connect(ctx context.Context) (conn Conn, cancel context.CancelFunc, version, id string, addr netip.Addr, err error) {
	reconnect := false
	b.set(func(s *Status) {
		reconnect = s.Generation > b.genBase || s.Attempts > 0
		if reconnect {
			s.State = StateReconnecting
		} else {
			s.State = StateConnecting
		}
	})
	b.cfg.Metrics.attempt(b, reconnect)
	if b.managed != nil {
		// Nobody else can reach a browser on pipes: no address, and an
		// identity of its own.
		conn, cancel, version, id, err = b.connectManaged(ctx)
		return conn, cancel, version, id, netip.Addr{}, err
	}
	if user, ok := b.tunnelUser(); ok {
		// A tunnel's agent picks the browser it reaches, every time: like
		// a re-pointed name, it has no address to be pinned to.
		conn, cancel, version, id, err = b.connectTunnel(ctx, user)
		return conn, cancel, version, id, netip.Addr{}, err
	}
	rctx, rcancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	t, err := resolveWebSocket(rctx, b.cfg.HTTPClient, b.cfg.Policy, b.endpoint())
	rcancel()
	if err != nil {
		return Conn{}, nil, "", "", netip.Addr{}, err
	}
	conn, cancel, version, addr, err = b.dial(ctx, t)
	if err != nil && ctx.Err() == nil {
		// A browser registered by its ws URL gets a new URL when it
		// restarts: look the current one up on the same host and port.
		if alt, ok := b.rediscover(ctx); ok && alt.wsURL != t.wsURL {
			if c2, cancel2, v2, a2, err2 := b.dial(ctx, alt); err2 == nil {
				return c2, cancel2, v2, browserIdentity(alt.wsURL), a2, nil
			}
		}
	}
	id = browserIdentity(t.wsURL)
	if err == nil && strings.HasPrefix(id, "cdp:/") {
		// A page's websocket does not name its browser: ask the browser
		// behind it, so that a page of another user's browser is theirs.
		if alt, ok := b.versionTarget(ctx); ok {
			id = browserIdentity(alt.wsURL)
		}
	}
	return conn, cancel, version, id, addr, err
}

// rediscover finds the current websocket URL of a browser registered as
// ws(s)://host:port/devtools/browser/<id> (see versionTarget).
func (b *Browser) rediscover(ctx context.Context) (target, bool) {
	if u, err := url.Parse(b.url); err != nil || !strings.HasPrefix(u.Path, "/devtools/browser/") {
		return target{}, false
	}
	return b.versionTarget(ctx)
}

// versionTarget finds the browser websocket of a browser registered by a
// ws(s) URL through /json/version on the same host and port, keeping the
// registered query (a token) and headers.
func (b *Browser) versionTarget(ctx context.Context) (target, bool) {
	u, err := url.Parse(b.url)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return target{}, false
	}
	query := u.RawQuery
	u.Scheme = map[string]string{"ws": "http", "wss": "https"}[u.Scheme]
	u.Path, u.RawQuery = "", ""
	rctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	defer cancel()
	t, err := resolveWebSocket(rctx, b.cfg.HTTPClient, b.cfg.Policy, Endpoint{URL: u.String(), Headers: b.headers})
	if err != nil {
		return target{}, false
	}
	if query != "" {
		if wu, err := url.Parse(t.wsURL); err == nil {
			wu.RawQuery = query
			t.wsURL = wu.String()
		}
	}
	return t, true
}

// dial opens the CDP websocket of t and makes the first call, bounded by
// the dial timeout. It returns the address the websocket reached.
func (b *Browser) dial(ctx context.Context, t target) (Conn, context.CancelFunc, string, netip.Addr, error) {
	alloc := wsAllocator(t.wsURL, t.header, b.cfg.Policy, b.cfg.DialTimeout, b.cfg.Requests)
	c, cancel, version, err := b.open(ctx, alloc, func(err error) error { return fmt.Errorf("connect: %s", redactErr(err, t.wsURL)) })
	var addr netip.Addr
	if a := alloc.remote.Load(); a != nil && err == nil {
		addr = *a
	}
	return c, cancel, version, addr, err
}

// open connects through alloc and makes the first call, bounded by the dial
// timeout; fail words the error of that call. The connection's guard is
// on when open returns.
func (b *Browser) open(ctx context.Context, alloc *allocator, fail func(error) error) (Conn, context.CancelFunc, string, error) {
	allocCtx, allocCancel := chromedp.NewAllocatorContext(ctx, alloc)
	bctx, bcancel := chromedp.NewContext(allocCtx)
	cancel := func() { bcancel(); allocCancel() }

	// The first call binds the connection to bctx, so it must use bctx
	// itself; bound it from outside instead.
	type result struct {
		version string
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := chromedp.CallBrowser(bctx, browser.GetVersion, cdp.Empty{})
		ch <- result{v.Product, err}
	}()
	timer := time.NewTimer(alloc.timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			cancel()
			return Conn{}, nil, "", fail(r.err)
		}
		c := Conn{Ctx: bctx, Generation: b.Status().Generation + 1, Sessions: alloc.sessions.Load()}
		if b.cfg.Requests != nil {
			c.Guard = startGuard(bctx, alloc.guard, alloc.timeout)
		}
		return c, cancel, r.version, nil
	case <-timer.C:
		cancel()
		return Conn{}, nil, "", errors.New("connect: the browser accepted the connection but did not answer within " + alloc.timeout.String())
	case <-ctx.Done():
		cancel()
		return Conn{}, nil, "", ctx.Err()
	}
}
