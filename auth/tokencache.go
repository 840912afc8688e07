package auth

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

// defaultTokenCacheSize bounds the verified tokens an Authenticator keeps:
// about 200 bytes each, so the default costs at most a few MB.
const defaultTokenCacheSize = 10000

// tokenCache remembers the Principal of each token verified already, until
// the token's exp, so that a client sending the same bearer token on every
// request pays for one parse and signature check, not one per request. It
// is keyed by the SHA-256 of the token, so no token is kept in memory. Only
// what the token itself proves is cached: checks against mutable state (an
// API key's revocation, CheckAPIKeyLive) stay with the caller and run on
// every request. Failures are never cached, so only tokens signed by a key
// the Authenticator trusts take room.
type tokenCache struct {
	max int // <= 0: caching is off

	mu sync.RWMutex
	m  map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	p     Principal
	until time.Time // the token's exp
}

func newTokenCache(size int) *tokenCache {
	if size == 0 {
		size = defaultTokenCacheSize
	}
	return &tokenCache{max: size, m: map[[sha256.Size]byte]cachedToken{}}
}

func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (Principal, bool) {
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return Principal{}, false
	}
	return e.p.clone(), true
}

// put remembers p until its Expires. At the bound it first drops expired
// entries and then, if that freed too little, arbitrary ones down to three
// quarters of the bound, so that a full cache costs one sweep per quarter
// of its size rather than one per insert.
func (c *tokenCache) put(key [sha256.Size]byte, p Principal, now time.Time) {
	if c.max <= 0 || p.Expires.IsZero() || !now.Before(p.Expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max*3/4 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = cachedToken{p: p.clone(), until: p.Expires}
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// clone copies p's slices, so that no caller can change a cached entry.
func (p Principal) clone() Principal {
	p.Perms = slices.Clone(p.Perms)
	p.Toolsets = slices.Clone(p.Toolsets)
	return p
}
