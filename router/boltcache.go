package router

import (
	"maps"
	"slices"
	"sync"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// readCache keeps the decoded records a BoltStore has read (registrations,
// API keys), so that a status request or an API key check is a map lookup
// rather than a bolt transaction, a decryption and a JSON decode. It is
// exact, not a guess with a TTL: the bolt file is locked by one process, so
// every write to it goes through this store, and every write drops the
// record's entry once its transaction has committed (or failed). A read
// that raced a write does not fill the cache (gen), so it cannot put back
// what the write replaced. The store holds at most one entry per record,
// so the cache needs no other bound. Misses (unknown IDs) are not cached.
type readCache[V any] struct {
	clone func(V) V // copies what a caller could change

	mu  sync.RWMutex
	gen uint64 // bumped by every write
	m   map[string]V
}

// get returns id's cached record and the generation to fill with.
func (c *readCache[V]) get(id string) (V, bool, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[id]
	if ok {
		v = c.clone(v)
	}
	return v, ok, c.gen
}

// fill caches v, read from the store at generation gen, unless a write has
// happened since.
func (c *readCache[V]) fill(id string, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil {
		c.m = map[string]V{}
	}
	c.m[id] = c.clone(v)
}

// drop forgets id's record; writers defer it around their transaction.
func (c *readCache[V]) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, id)
}

// clone copies r's maps and slices.
func (r Registration) clone() Registration {
	r.Metadata = maps.Clone(r.Metadata)
	r.Headers = maps.Clone(r.Headers)
	r.Addrs = slices.Clone(r.Addrs)
	return r
}

func cloneAPIKey(k auth.APIKey) auth.APIKey {
	k.Perms = slices.Clone(k.Perms)
	k.SecretHash = slices.Clone(k.SecretHash)
	return k
}
