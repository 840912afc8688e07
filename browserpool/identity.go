package browserpool

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"time"
)

// conflictError is the LastError of a browser in StateConflict. It never
// names the other user.
const conflictError = "this browser belongs to another user, who registered it first (it is the same running browser, reached by another URL); the proxy does not connect to it for you. Register your own Chrome, started with its own --remote-debugging-port and --user-data-dir"

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
}

// browserIdentity returns the identity of the browser behind a websocket
// URL that Chrome accepted: the id of a /devtools/browser/<id> path, or the
// whole path for other DevTools targets (a page: its id is unique too).
func browserIdentity(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return ""
	}
	if id, ok := strings.CutPrefix(u.Path, "/devtools/browser/"); ok && id != "" {
		return id
	}
	return u.Path
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
	c.mu.Unlock()
}

// claim decides, before b's connection is handed to anyone, whether b may
// use the running browser id. It refuses when a registration made before
// b's holds it. When b was registered before the holder, b takes the
// browser and the holder is evicted: its connection is dropped and it goes
// to StateConflict.
//
// A browser of the pool registered before b that has not finished its
// first connection attempt yet (after a proxy restart every browser starts
// at once) may be the same browser: claim waits for that attempt, up to a
// bound, so that whoever dials first does not win.
func (p *Pool) claim(ctx context.Context, b *Browser, id string) bool {
	c := &p.claims
	c.mu.Lock()
	var earlier []chan struct{}
	for e := range c.members {
		if e != b && e.before(b) {
			earlier = append(earlier, e.first)
		}
	}
	c.mu.Unlock()
	// Four dial timeouts: resolve, dial, rediscover and dial again.
	timer := time.NewTimer(4 * p.cfg.DialTimeout)
	defer timer.Stop()
wait:
	for _, ch := range earlier {
		select {
		case <-ch:
		case <-timer.C:
			break wait
		case <-ctx.Done():
			return false
		}
	}

	c.mu.Lock()
	h := c.holders[id]
	if h != nil && h != b && h.before(b) {
		c.mu.Unlock()
		return false
	}
	if old, ok := c.ids[b]; ok && old != id && c.holders[old] == b {
		delete(c.holders, old)
	}
	c.holders[id] = b
	c.ids[b] = id
	if h != nil && h != b {
		delete(c.ids, h)
	}
	c.mu.Unlock()
	if h != nil && h != b {
		h.log.Warn().Msg("an earlier registration reached the same browser; dropping the connection")
		select {
		case h.evicted <- struct{}{}:
		default:
		}
	}
	return true
}
