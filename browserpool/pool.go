package browserpool

import (
	"context"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// Config tunes the pool. Zero fields take the defaults of DefaultConfig.
type Config struct {
	HealthInterval time.Duration // between health checks of a connected browser
	HealthTimeout  time.Duration // bound of one health check
	HealthFailures int           // health checks failed in a row before the connection is dropped
	DialTimeout    time.Duration // bound of one connection attempt
	InitialBackoff time.Duration // first wait after a failed attempt
	MaxBackoff     time.Duration // cap of the exponential backoff while no call waits for the browser
	WaitBackoff    time.Duration // cap while a call waits in Conn: a browser back from any outage is used within about this; at most MaxBackoff
	MaxAttempts    int           // failed attempts before the state is failed; 0 = never
	HTTPClient     *http.Client  // for /json/version; NewHTTPClient(Policy) by default
	Policy         DialPolicy    // addresses the pool may dial; router.DefaultPolicy() by default
	Logger         zerolog.Logger
	Audit          zerolog.Logger // where refusals are audited (a browser that is another user's)
	Metrics        *Metrics       // Prometheus collectors from NewMetrics; nil: none
	Tunnels        TunnelDialer   // reverse tunnels of tunnel:// browsers; nil: none
	// Requests is the page policy each connection's Guard enforces in the
	// browser; nil: no guard.
	Requests RequestPolicy
	// Managed, when set, gives users with no registered browser one the
	// pool starts (managed.go); nil: none.
	Managed *ManagedConfig
	// Shared carries the pool's claims on running browsers to the other
	// instances of a cluster (shared mode); nil: this pool's are all.
	Shared SharedClaims
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		HealthInterval: 30 * time.Second,
		HealthTimeout:  5 * time.Second,
		HealthFailures: 2,
		DialTimeout:    5 * time.Second,
		InitialBackoff: 500 * time.Millisecond,
		MaxBackoff:     30 * time.Second,
		WaitBackoff:    time.Second,
		MaxAttempts:    20,
		Logger:         zerolog.Nop(),
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.HealthInterval <= 0 {
		c.HealthInterval = d.HealthInterval
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = d.HealthTimeout
	}
	if c.HealthFailures <= 0 {
		c.HealthFailures = d.HealthFailures
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = d.InitialBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.WaitBackoff <= 0 {
		c.WaitBackoff = d.WaitBackoff
	}
	c.WaitBackoff = min(c.WaitBackoff, c.MaxBackoff)
	if c.Policy == nil {
		c.Policy = router.DefaultPolicy()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = NewHTTPClient(c.Policy)
	}
	if c.Managed != nil {
		m := *c.Managed
		m.fill()
		c.Managed = &m
	}
}

// Pool holds one Browser per user. It is safe for concurrent use.
type Pool struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	browsers map[string]*Browser

	claims claims // which registration holds which running browser; its own lock, never held with mu's waits

	endpoints endpointCache // resolved hosts of ProtectedEndpoints

	// gens is the last generation of each user's browser that left the
	// pool, and stopping the done channel of one still stopping: a managed
	// browser continues after the first and starts after the second (its
	// profile is the same directory). Guarded by mu.
	gens     map[string]uint64
	stopping map[string]chan struct{}
	reaper   sync.WaitGroup
}

// New returns an empty pool; Close stops every connection.
func New(cfg Config) *Pool {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{cfg: cfg, ctx: ctx, cancel: cancel, browsers: map[string]*Browser{},
		claims: claims{holders: map[string]*Browser{}, members: map[*Browser]bool{}, ids: map[*Browser]string{}, senior: map[*Browser]bool{}, since: map[*Browser]time.Time{}, shared: map[*Browser]router.BrowserClaim{}},
		gens:   map[string]uint64{}, stopping: map[string]chan struct{}{}}
	if cfg.Managed != nil {
		p.reaper.Go(p.reapIdle)
	}
	return p
}

// Ensure is EnsureEndpoint for a browser URL without headers.
func (p *Pool) Ensure(userID, url string) *Browser {
	return p.EnsureEndpoint(userID, Endpoint{URL: url})
}

// EnsureEndpoint makes sure userID's browser at ep is connected or being
// connected, and returns its handle. If the running browser it reaches is
// held by a registration made before ep.Registered, it is never connected
// and goes to StateConflict. Registering the same endpoint again
// retries a failed (or backing off) browser at once; a new URL or new
// headers replace the old connection, and the new one's generations continue
// after the old one's, so sessions notice the change.
func (p *Pool) EnsureEndpoint(userID string, ep Endpoint) *Browser {
	defer p.Refresh() // the other browsers' pages may not reach this one
	p.mu.Lock()
	defer p.mu.Unlock()
	gen := p.gens[userID] // a browser of the user's left the pool: continue after it
	if b, ok := p.browsers[userID]; ok {
		if b.endpoint().equal(ep) {
			// Registered again: the addresses its host has now passed the
			// store's comparison with every other registration.
			b.mu.Lock()
			b.pinned = pinnedAddrs(ep)
			b.mu.Unlock()
			b.Retry()
			return b
		}
		b.stop()
		<-b.done
		gen = b.Status().Generation
	}
	b := p.newBrowserLocked(userID, ep, gen)
	p.browsers[userID] = b
	p.join(b)
	go b.run(b.ctx)
	return b
}

// newBrowserLocked makes the handle of userID's browser at ep, whose
// generations continue after gen; the caller starts its run loop on
// b.ctx.
func (p *Pool) newBrowserLocked(userID string, ep Endpoint, gen uint64) *Browser {
	ctx, stop := context.WithCancel(p.ctx)
	since := ep.Registered
	if since.IsZero() {
		since = time.Now()
	}
	return &Browser{
		userID:  userID,
		url:     ep.URL,
		headers: maps.Clone(ep.Headers),
		genBase: gen,
		since:   since,
		pool:    p,
		pinned:  pinnedAddrs(ep),
		first:   make(chan struct{}),
		evicted: make(chan struct{}, 1),
		cfg:     &p.cfg,
		log:     p.cfg.Logger.With().Str("user", userID).Logger(),
		kick:    make(chan struct{}, 1),
		ctx:     ctx,
		stop:    stop,
		done:    make(chan struct{}),
		status:  Status{State: StateConnecting, Generation: gen},
		changed: make(chan struct{}),
	}
}

// Get returns userID's browser, if registered.
func (p *Pool) Get(userID string) (*Browser, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.browsers[userID]
	return b, ok
}

// Remove drops userID's connection and forgets the browser.
func (p *Pool) Remove(userID string) {
	p.mu.Lock()
	b, ok := p.browsers[userID]
	delete(p.browsers, userID)
	if ok {
		p.stopping[userID] = b.done
		p.gens[userID] = max(p.gens[userID], b.Status().Generation)
	}
	p.mu.Unlock()
	if ok {
		b.stop()
		<-b.done
		p.remember(b)
	}
}

// States counts the browsers by connection state, for /health: every State
// is a key, with 0 for the states no browser is in.
func (p *Pool) States() map[State]int {
	return p.countStates(func(*Browser) bool { return true })
}

// countStates counts the browsers that keep says to by state, every State
// a key.
func (p *Pool) countStates(keep func(*Browser) bool) map[State]int {
	p.mu.Lock()
	list := make([]*Browser, 0, len(p.browsers))
	for _, b := range p.browsers {
		if keep(b) {
			list = append(list, b)
		}
	}
	p.mu.Unlock()
	out := make(map[State]int, len(allStates))
	for _, st := range allStates {
		out[st] = 0
	}
	for _, b := range list {
		out[b.Status().State]++
	}
	return out
}

// Close drops every connection and waits for their goroutines to end.
func (p *Pool) Close() {
	p.cancel()
	p.mu.Lock()
	list := p.browsers
	p.browsers = map[string]*Browser{}
	p.mu.Unlock()
	for _, b := range list {
		<-b.done
	}
	p.reaper.Wait()
}

// Refresh re-sends the request policy to every guarded target of every
// connected browser, after the set of protected endpoints changed.
func (p *Pool) Refresh() {
	p.mu.Lock()
	list := make([]*Browser, 0, len(p.browsers))
	for _, b := range p.browsers {
		list = append(list, b)
	}
	p.mu.Unlock()
	for _, b := range list {
		b.mu.Lock()
		c := b.conn
		b.mu.Unlock()
		if c != nil {
			c.Guard.Refresh()
		}
	}
}
