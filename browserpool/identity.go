package browserpool

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// conflictError is the LastError of a browser in StateConflict. It never
// names the other user.
const conflictError = "this browser belongs to another user, who registered it first (it is the same running browser, reached by another URL); the proxy does not connect to it for you. Register your own Chrome, started with its own --remote-debugging-port and --user-data-dir"

// readdressedError is the LastError of a browser refused because its host
// now resolves to a browser another user holds. It never names the other
// user.
const readdressedError = "this browser belongs to another user: your registration reached it at an address its host name did not have when you registered (the name now points elsewhere), so the proxy does not connect to it. Point the name back at your own Chrome, or register your Chrome's current address with POST /api/register"

// Outcomes of claim that refuse the browser, as audited.
const (
	outcomeRefused     = router.ClaimRefused
	outcomeReaddressed = router.ClaimReaddressed
	// outcomeUnavailable: the cluster's claims could not be read; the
	// attempt fails and is retried like a connection that failed.
	outcomeUnavailable = "unavailable"
)

// SharedClaims are the claims of every instance of a cluster on running
// browsers (router.Leases in shared mode): a pool consults them before it
// hands a connection out, and lets go of what another instance's
// registration took.
type SharedClaims interface {
	// ClaimBrowser records c's hold on the running browser id unless
	// another user's claim in force keeps it; it returns "" or the
	// refusing outcome.
	ClaimBrowser(ctx context.Context, id string, c router.BrowserClaim) (string, error)
	// VerifyBrowsers renews the holds of this pool and returns the
	// identities another instance's registration took since.
	VerifyBrowsers(ctx context.Context, held map[string]router.BrowserClaim) (lost []string, err error)
}

// errSharedClaims is the LastError of an attempt whose browser could not be
// checked against the cluster's claims.
var errSharedClaims = errors.New("the shared store (Redis) did not answer whether another user holds this browser; retrying")

// claims records which registered browser holds which running browser, so
// that two users whose URLs reach one browser (an alias, a port forward, a
// DNS name) never share it: the one registered first keeps it.
//
// A running browser is known by the <id> of its /devtools/browser/<id>
// websocket: Chrome accepts a websocket on that path only with its own id
// (any other id gets 404), and keeps the id while it runs. (Target.
// getTargetInfo without a targetId is no identity: Chromium 156 answers
// with a new id on every connection.)
type claims struct {
	mu      sync.Mutex
	holders map[string]*Browser // browser identity -> the registration holding it
	members map[*Browser]bool   // every browser of the pool, for the first-attempt wait
	ids     map[*Browser]string // the identity each browser holds
	// senior marks holders that reached their browser at an address they
	// were pinned to: only those keep it from a later registration.
	senior map[*Browser]bool
	// since is when each holder took its browser: a registration made
	// after a junior holder took it does not evict it either.
	since map[*Browser]time.Time
	// shared are the holders' claims as the cluster knows them (shared
	// mode), renewed by VerifyShared.
	shared map[*Browser]router.BrowserClaim
}

// browserIdentity returns the identity of the browser behind a websocket
// URL that Chrome accepted: the id of a /devtools/browser/<id> path, or the
// whole path for other DevTools targets (a page: its id is unique too),
// in the cdp: name space (chromeIdentity).
func browserIdentity(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return ""
	}
	if id, ok := strings.CutPrefix(u.Path, "/devtools/browser/"); ok && id != "" {
		return chromeIdentity(id)
	}
	return chromeIdentity(u.Path)
}

// chromeIdentity puts an id that a URL or a tunnel's agent gave into the
// cdp: name space, apart from the identities the pool makes itself
// ("managed:<user>", "tunnel:<user>"): a registration whose path says
// /devtools/browser/managed:alice must not pass for alice's managed
// browser and evict it.
func chromeIdentity(id string) string {
	if id == "" {
		return ""
	}
	return "cdp:" + id
}

// before reports whether b was registered before o: the earlier
// registration keeps a browser both reach. User IDs break ties.
func (b *Browser) before(o *Browser) bool {
	if !b.since.Equal(o.since) {
		return b.since.Before(o.since)
	}
	return b.userID < o.userID
}

// join makes b known to the claims of its pool.
func (p *Pool) join(b *Browser) {
	p.claims.mu.Lock()
	p.claims.members[b] = true
	p.claims.mu.Unlock()
}

// release forgets b and frees the browser it held.
func (p *Pool) release(b *Browser) {
	c := &p.claims
	c.mu.Lock()
	if id, ok := c.ids[b]; ok && c.holders[id] == b {
		delete(c.holders, id)
	}
	delete(c.ids, b)
	delete(c.members, b)
	delete(c.senior, b)
	delete(c.since, b)
	delete(c.shared, b)
	c.mu.Unlock()
}

// claim decides, before b's connection is handed to anyone, whether b may
// use the running browser id, which it reached at addr; it returns "" when
// b may, else the outcome to audit. It refuses when a registration made
// before b's holds it. When b was registered before the holder, b takes
// the browser and the holder is evicted (its connection is dropped and it
// goes to StateConflict), but only when addr is an address b's host had
// when b was registered (Endpoint.Addrs, kept across restarts): seniority
// is for the browser a registration pointed at then, and a name (or a
// tunnel's agent) pointed at another user's browser since gets only a
// browser nobody holds, and loses it to the first registration that
// reaches it at a pinned address.
//
// A browser of the pool registered before b that has not finished its
// first connection attempt yet (after a proxy restart every browser starts
// at once) may be the same browser: claim waits for that attempt, up to a
// bound, so that whoever dials first does not win. A b reaching its
// browser at an address it is not pinned to has no seniority to wait with:
// it stops others waiting for it and waits for every other browser's
// first attempt instead.
//
// A tunnel is never pinned (its agent picks the browser) but it is proof
// of possession: holding a browser, it keeps it like a pinned registration.
// So is a managed browser, which the pool started itself.
func (p *Pool) claim(ctx context.Context, b *Browser, id string, addr netip.Addr) string {
	pinned := b.pinnedTo(addr)
	_, tunnelled := b.tunnelUser()
	senior := pinned || tunnelled || strings.HasPrefix(b.url, managedScheme)
	if !senior {
		b.firstDone()
	}
	c := &p.claims
	c.mu.Lock()
	var others []chan struct{}
	for e := range c.members {
		if e != b && (!senior || e.before(b)) {
			others = append(others, e.first)
		}
	}
	c.mu.Unlock()
	// Four dial timeouts: resolve, dial, rediscover and dial again.
	timer := time.NewTimer(4 * p.cfg.DialTimeout)
	defer timer.Stop()
wait:
	for _, ch := range others {
		select {
		case <-ch:
		case <-timer.C:
			break wait
		case <-ctx.Done():
			return outcomeRefused
		}
	}

	var shared *router.BrowserClaim
	// Only a running Chrome's own id can be reached by two users; the
	// names the pool makes itself ("managed:<user>", "tunnel:<user>") are
	// one user's.
	if sc := p.cfg.Shared; sc != nil && strings.HasPrefix(id, "cdp:") {
		claim := router.BrowserClaim{User: b.userID, Since: b.since, Senior: senior, Pinned: pinned}
		how, err := sc.ClaimBrowser(ctx, id, claim)
		if err != nil {
			// A browser this registration holds already (a reconnect) keeps
			// working while Redis is away; a new one waits for it.
			c.mu.Lock()
			mine := c.holders[id] == b
			c.mu.Unlock()
			if !mine {
				b.log.Warn().Err(err).Msg("shared mode: cannot check whether another user holds this browser")
				return outcomeUnavailable
			}
		} else if how != "" {
			return how
		}
		shared = &claim
	}

	c.mu.Lock()
	h := c.holders[id]
	if h != nil && h != b && c.senior[h] && h.before(b) {
		c.mu.Unlock()
		return outcomeRefused
	}
	if h != nil && h != b && !pinned {
		c.mu.Unlock()
		return outcomeReaddressed
	}
	if h != nil && h != b && !c.senior[h] && !b.since.Before(c.since[h]) {
		// h reached the browser at an address it was not pinned to (its
		// name moved, say by DHCP) before b was registered: b, however
		// pinned, came later than h's hold.
		c.mu.Unlock()
		return outcomeRefused
	}
	if old, ok := c.ids[b]; ok && old != id && c.holders[old] == b {
		delete(c.holders, old)
	}
	c.holders[id] = b
	c.ids[b] = id
	c.senior[b] = senior
	if shared != nil {
		c.shared[b] = *shared
	}
	if h != b {
		c.since[b] = time.Now()
	}
	if h != nil && h != b {
		delete(c.ids, h)
		delete(c.senior, h)
		delete(c.since, h)
		delete(c.shared, h)
	}
	c.mu.Unlock()
	if h != nil && h != b {
		h.log.Warn().Msg("an earlier registration reached the same browser; dropping the connection")
		select {
		case h.evicted <- struct{}{}:
		default:
		}
	}
	return ""
}

// ShareClaims makes the pool consult sc, the claims of a cluster's other
// instances, before it hands out a connection. Call it before the pool
// has its first browser.
func (p *Pool) ShareClaims(sc SharedClaims) { p.cfg.Shared = sc }

// VerifyShared renews the cluster's claims of the browsers this pool holds
// and evicts the holders whose browser another instance's registration
// took (shared mode: called every heartbeat). Without Shared it does
// nothing.
func (p *Pool) VerifyShared(ctx context.Context) error {
	sc := p.cfg.Shared
	if sc == nil {
		return nil
	}
	c := &p.claims
	c.mu.Lock()
	held := make(map[string]router.BrowserClaim, len(c.shared))
	for b, claim := range c.shared {
		if id, ok := c.ids[b]; ok && c.holders[id] == b {
			held[id] = claim
		}
	}
	c.mu.Unlock()
	lost, err := sc.VerifyBrowsers(ctx, held)
	for _, id := range lost {
		c.mu.Lock()
		h := c.holders[id]
		if h != nil && c.shared[h] == held[id] {
			delete(c.holders, id)
			delete(c.ids, h)
			delete(c.senior, h)
			delete(c.since, h)
			delete(c.shared, h)
		} else {
			h = nil
		}
		c.mu.Unlock()
		if h != nil {
			h.log.Warn().Msg("a registration on another instance holds this browser; dropping the connection")
			select {
			case h.evicted <- struct{}{}:
			default:
			}
		}
	}
	return err
}
