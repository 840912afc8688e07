package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key names of shared mode's leases, under the store's prefix.
const (
	// redisKeyInstance + ID: the advertised base URL of a live instance,
	// with the lease TTL; an instance is alive exactly while it exists.
	redisKeyInstance = "inst:"
	// redisKeySession + session ID: the ID of the instance that holds the
	// session. Its liveness is that of the instance's lease, so the key's
	// own TTL (the longest session lifetime) only collects garbage.
	redisKeySession = "sess:"
	// redisKeyHome + user ID: the ID of the user's home instance, the one
	// that holds the user's browser connection (CDP or tunnel). A home
	// whose instance lease is gone is free to be claimed; the key has no
	// TTL (one per user).
	redisKeyHome = "home:"
	// redisKeyProtected + instance ID: what that instance's pool keeps
	// pages away from (opaque to the store), with the lease TTL.
	redisKeyProtected = "prot:"
	// redisKeyClaim + browser identity: the BrowserClaim (JSON) of the
	// registration that holds that running browser, whichever instance
	// connects it. Renewed by its holder's heartbeats; it outlives them by
	// the session TTL only to collect identities of browsers long gone.
	redisKeyClaim = "claim:"
)

// Outcomes of ClaimBrowser that refuse the browser; they are the audited
// outcomes of the pool's own claims.
const (
	ClaimRefused     = "refused"
	ClaimReaddressed = "refused_readdressed"
)

// Owner is the instance that holds a session or is a user's home.
type Owner struct {
	ID  string // instance ID; "" when nobody holds it
	URL string // the instance's advertised base URL, "" when its lease is gone
}

// Live reports whether an instance holds it and that instance's lease is
// alive.
func (o Owner) Live() bool { return o.ID != "" && o.URL != "" }

// Leases are one instance's leases in the Redis of a RedisStore: its own
// lease (instance ID -> advertised URL), the sessions it holds and the
// users it is home for. Every lease points at the instance ID, and an
// instance is alive while its own lease is: when an instance dies, its
// sessions and homes end with its one lease, with no per-session renewal.
type Leases struct {
	s          *RedisStore
	id, url    string
	ttl        time.Duration // instance lease
	sessionTTL time.Duration // garbage collection of session keys
}

// LeaseOptions configures NewLeases.
type LeaseOptions struct {
	ID         string        // this instance's ID (random per process)
	URL        string        // this instance's advertised base URL
	TTL        time.Duration // lifetime of the instance lease without a heartbeat
	SessionTTL time.Duration // how long a session key may outlive its release (the longest session lifetime)
}

// NewLeases returns the leases of instance opts.ID in s's Redis.
func NewLeases(s *RedisStore, opts LeaseOptions) (*Leases, error) {
	switch {
	case opts.ID == "" || opts.URL == "":
		return nil, errors.New("leases: the instance needs an ID and an advertised URL")
	case opts.TTL < 100*time.Millisecond:
		return nil, fmt.Errorf("leases: TTL %s is too short; use at least 100ms", opts.TTL)
	}
	if opts.SessionTTL < opts.TTL {
		opts.SessionTTL = 24 * time.Hour
	}
	return &Leases{s: s, id: opts.ID, url: opts.URL, ttl: opts.TTL, sessionTTL: opts.SessionTTL}, nil
}

// ID returns this instance's ID.
func (l *Leases) ID() string { return l.id }

// URL returns this instance's advertised base URL.
func (l *Leases) URL() string { return l.url }

// TTL returns the instance lease's lifetime.
func (l *Leases) TTL() time.Duration { return l.ttl }

// Heartbeat writes this instance's lease for another TTL. lost reports
// that the lease was not there (first heartbeat, expired while Redis was
// out of reach, or Redis restarted empty): the caller then writes its
// session and home leases again.
func (l *Leases) Heartbeat(ctx context.Context) (lost bool, err error) {
	err = l.s.call(ctx, func(ctx context.Context) error {
		_, err := l.s.rdb.SetArgs(ctx, l.s.key(redisKeyInstance+l.id), l.url, redis.SetArgs{TTL: l.ttl, Get: true}).Result()
		if errors.Is(err, redis.Nil) {
			lost = true
			return nil
		}
		return redisErr(err)
	})
	if err != nil {
		return false, fmt.Errorf("instance lease: %w", err)
	}
	return lost, nil
}

// PutSessions records that this instance holds the sessions ids, in one
// pipeline.
func (l *Leases) PutSessions(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	err := l.s.call(ctx, func(ctx context.Context) error {
		_, err := l.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range ids {
				p.Set(ctx, l.s.key(redisKeySession+id), l.id, l.sessionTTL)
			}
			return nil
		})
		return redisErr(err)
	})
	if err != nil {
		return fmt.Errorf("session leases: %w", err)
	}
	return nil
}

// releaseScript deletes each key of KEYS that still names instance
// ARGV[1]: a lease another instance took over meanwhile stays.
var releaseScript = redis.NewScript(`
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k); n = n + 1 end
end
return n
`)

// DropSessions releases the session leases ids held by this instance.
func (l *Leases) DropSessions(ctx context.Context, ids ...string) error {
	return l.release(ctx, redisKeySession, ids)
}

func (l *Leases) release(ctx context.Context, kind string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = l.s.key(kind + id)
	}
	err := l.s.call(ctx, func(ctx context.Context) error {
		return redisErr(releaseScript.Run(ctx, l.s.rdb, keys, l.id).Err())
	})
	if err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	return nil
}

// ownerScript reads the instance ID under KEYS[1] and that instance's
// URL (ARGV[1] is the instance key prefix), in one round trip.
var ownerScript = redis.NewScript(`
local id = redis.call('GET', KEYS[1])
if not id then return {'', ''} end
return {id, redis.call('GET', ARGV[1] .. id) or ''}
`)

// Session returns the instance that holds session id: Owner{} when no
// instance does, an Owner that is not Live when the holder is dead.
func (l *Leases) Session(ctx context.Context, id string) (Owner, error) {
	return l.owner(ctx, redisKeySession+id)
}

// Home returns the home instance of user, as Session does.
func (l *Leases) Home(ctx context.Context, user string) (Owner, error) {
	return l.owner(ctx, redisKeyHome+user)
}

func (l *Leases) owner(ctx context.Context, key string) (Owner, error) {
	var o Owner
	err := l.s.call(ctx, func(ctx context.Context) error {
		res, err := ownerScript.Run(ctx, l.s.rdb, []string{l.s.key(key)}, l.s.key(redisKeyInstance)).StringSlice()
		if err != nil {
			return redisErr(err)
		}
		if len(res) == 2 {
			o = Owner{ID: res[0], URL: res[1]}
		}
		return nil
	})
	if err != nil {
		return Owner{}, fmt.Errorf("look up lease: %w", err)
	}
	return o, nil
}

// claimScript makes ARGV[1] the holder of KEYS[1] unless a live instance
// other than it holds it (ARGV[2]: instance key prefix), and answers the
// holder and its URL. Home keys have no TTL: a home lives exactly as long
// as its instance, however long the user goes without a new session, and
// there is at most one key per user.
var claimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  local url = redis.call('GET', ARGV[2] .. cur)
  if url then return {cur, url} end
end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], redis.call('GET', ARGV[2] .. ARGV[1]) or ''}
`)

// ClaimHome makes this instance user's home unless another live instance
// is, and returns the home. The answer's URL is "" when the home is this
// instance and its own lease is gone (Redis lost it; the next heartbeat
// writes it again).
func (l *Leases) ClaimHome(ctx context.Context, user string) (Owner, error) {
	var o Owner
	err := l.s.call(ctx, func(ctx context.Context) error {
		res, err := claimScript.Run(ctx, l.s.rdb, []string{l.s.key(redisKeyHome + user)},
			l.id, l.s.key(redisKeyInstance)).StringSlice()
		if err != nil {
			return redisErr(err)
		}
		if len(res) == 2 {
			o = Owner{ID: res[0], URL: res[1]}
		}
		return nil
	})
	if err != nil {
		return Owner{}, fmt.Errorf("claim home of %s: %w", user, err)
	}
	return o, nil
}

// DropHomes releases the homes of users held by this instance.
func (l *Leases) DropHomes(ctx context.Context, users ...string) error {
	return l.release(ctx, redisKeyHome, users)
}

// Instances returns the advertised base URLs of the live instances, this
// one's included.
func (l *Leases) Instances(ctx context.Context) ([]string, error) {
	vals, err := l.scan(ctx, redisKeyInstance)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	var out []string
	for _, u := range vals {
		if u != "" {
			out = append(out, u)
		}
	}
	return out, nil
}

// scan returns the string values of every key under kind's prefix, by the
// key's name after the prefix (SCAN, then one MGET).
func (l *Leases) scan(ctx context.Context, kind string) (map[string]string, error) {
	out := map[string]string{}
	err := l.s.call(ctx, func(ctx context.Context) error {
		clear(out)
		prefix := l.s.key(kind)
		var keys []string
		iter := l.s.rdb.Scan(ctx, 0, globEscape(prefix)+"*", 100).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return redisErr(err)
		}
		if len(keys) == 0 {
			return nil
		}
		vals, err := l.s.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return redisErr(err)
		}
		for i, v := range vals {
			if d, ok := v.(string); ok {
				out[strings.TrimPrefix(keys[i], prefix)] = d
			}
		}
		return nil
	})
	return out, err
}

// Alive reports which of the instances ids hold a lease now.
func (l *Leases) Alive(ctx context.Context, ids ...string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = l.s.key(redisKeyInstance + id)
	}
	err := l.s.call(ctx, func(ctx context.Context) error {
		vals, err := l.s.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return redisErr(err)
		}
		for i, v := range vals {
			out[ids[i]] = v != nil
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check instance leases: %w", err)
	}
	return out, nil
}

// PutProtected publishes this instance's protected endpoints (opaque
// data) for the lease TTL.
func (l *Leases) PutProtected(ctx context.Context, data string) error {
	err := l.s.call(ctx, func(ctx context.Context) error {
		return redisErr(l.s.rdb.Set(ctx, l.s.key(redisKeyProtected+l.id), data, l.ttl).Err())
	})
	if err != nil {
		return fmt.Errorf("publish protected endpoints: %w", err)
	}
	return nil
}

// Protected returns the data PutProtected published by the instances,
// this one's included, by instance ID.
func (l *Leases) Protected(ctx context.Context) (map[string]string, error) {
	out, err := l.scan(ctx, redisKeyProtected)
	if err != nil {
		return nil, fmt.Errorf("read protected endpoints: %w", err)
	}
	return out, nil
}

// globEscape quotes the glob characters of a key prefix for SCAN MATCH.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`).Replace(s)
}

// Leave deletes this instance's lease, for a graceful shutdown: its
// remaining sessions and homes end at once for every other instance.
func (l *Leases) Leave(ctx context.Context) error {
	err := l.s.call(ctx, func(ctx context.Context) error {
		return redisErr(l.s.rdb.Del(ctx, l.s.key(redisKeyInstance+l.id)).Err())
	})
	if err != nil {
		return fmt.Errorf("leave the cluster: %w", err)
	}
	return nil
}

// ErrClusterSecretMismatch is returned by CheckForwardKey when the
// instances already using this Redis sign forwarded requests with another
// secret: each would refuse the other's.
var ErrClusterSecretMismatch = errors.New("the instances already using this Redis and prefix sign forwarded requests with another secret: give every instance the same --cluster-secret (or, without it, the same --jwt-secret)")

// CheckForwardKey makes sure every instance signs forwarded requests with
// the same key: the first records fingerprint (auth.ForwardSigner's), later
// ones must present the same or get ErrClusterSecretMismatch.
func (l *Leases) CheckForwardKey(ctx context.Context, fingerprint string) error {
	err := l.s.call(ctx, func(ctx context.Context) error {
		meta := l.s.key(redisKeyMeta)
		if err := l.s.rdb.HSetNX(ctx, meta, "forward-check", fingerprint).Err(); err != nil {
			return redisErr(err)
		}
		got, err := l.s.rdb.HGet(ctx, meta, "forward-check").Result()
		if err != nil {
			return redisErr(err)
		}
		if got != fingerprint {
			return ErrClusterSecretMismatch
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check the forwarding secret: %w", err)
	}
	return nil
}

// BrowserClaim is a registration's hold on a running browser, shared by
// every instance: two users homed on two instances whose URLs reach one
// browser must not share it any more than on one instance (the pool's
// claims). A claim is in force while the holder's registration is the one
// it was made for (same Since), whatever became of the instance that made
// it: registrations outlive instances, and an instance that dies leaves
// its users' browsers to no one until their next session brings them up.
type BrowserClaim struct {
	User string `json:"u"`
	// Since is the holder's Registration.Since: its seniority on its URL.
	Since time.Time `json:"s"`
	// Senior: the holder reached the browser at an address its host had
	// when it registered, or through its tunnel, or started it.
	Senior bool `json:"n"`
	// At is when the holder took the browser.
	At time.Time `json:"a"`
	// Pinned: the claimant reaches the browser at a pinned address now
	// (not stored).
	Pinned bool `json:"-"`
}

// ClaimBrowser decides whether c may hold the running browser id across
// the cluster, by the rules of the pool's own claims: a claim in force of
// another user refuses c when it is senior and older, when c did not reach
// the browser at a pinned address, or when it took the browser before c
// was registered; otherwise c takes it (the holder's instance evicts it at
// its next VerifyBrowsers). It returns "" when c holds the browser, else
// ClaimRefused or ClaimReaddressed.
func (l *Leases) ClaimBrowser(ctx context.Context, id string, c BrowserClaim) (string, error) {
	key := l.s.key(redisKeyClaim + id)
	var outcome string
	err := l.s.call(ctx, func(ctx context.Context) error {
		for range maxCASAttempts {
			err := l.s.rdb.Watch(ctx, func(tx *redis.Tx) error {
				outcome = ""
				cur, err := tx.Get(ctx, key).Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return redisErr(err)
				}
				claim := c
				claim.At = time.Now()
				var h BrowserClaim
				if cur != "" && json.Unmarshal([]byte(cur), &h) == nil && h.User != "" {
					switch {
					case h.User == c.User && h.Since.Equal(c.Since):
						claim.At = h.At // held already: since when stays
					case h.User != c.User:
						in, err := l.claimInForce(ctx, h)
						if err != nil {
							return err
						}
						if in {
							if outcome = claimOutcome(h, c); outcome != "" {
								return nil
							}
							// Taking it from a holder in force needs a
							// claimant in force: a registration gone or
							// moved since takes nothing.
							if mine, err := l.claimInForce(ctx, c); err != nil {
								return err
							} else if !mine {
								outcome = ClaimRefused
								return nil
							}
						}
					}
				}
				data, err := json.Marshal(claim)
				if err != nil {
					return err
				}
				_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, key, data, l.sessionTTL)
					return nil
				})
				return redisErr(err)
			}, key)
			if errors.Is(err, redis.TxFailedErr) {
				continue
			}
			return err
		}
		return errRetry
	})
	if err != nil {
		return "", fmt.Errorf("browser claim: %w", err)
	}
	return outcome, nil
}

// claimOutcome applies the pool's rules to c against h, another user's
// claim in force.
func claimOutcome(h, c BrowserClaim) string {
	older := h.Since.Before(c.Since) || h.Since.Equal(c.Since) && h.User < c.User
	switch {
	case h.Senior && older:
		return ClaimRefused
	case !c.Pinned:
		return ClaimReaddressed
	case !h.Senior && !c.Since.Before(h.At):
		return ClaimRefused
	}
	return ""
}

// claimInForce reports whether h's registration is still the one h was
// made for.
func (l *Leases) claimInForce(ctx context.Context, h BrowserClaim) (bool, error) {
	r, err := l.s.Get(ctx, h.User)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return r.Since().Equal(h.Since), nil
}

// VerifyBrowsers checks, for each running browser this instance holds,
// that its claim still stands: it renews the claims that do, writes again
// those Redis lost, and returns the identities another user's claim took
// (their holders must let go).
func (l *Leases) VerifyBrowsers(ctx context.Context, held map[string]BrowserClaim) (lost []string, err error) {
	if len(held) == 0 {
		return nil, nil
	}
	ids := make([]string, 0, len(held))
	keys := make([]string, 0, len(held))
	for id := range held {
		ids = append(ids, id)
		keys = append(keys, l.s.key(redisKeyClaim+id))
	}
	var vals []any
	err = l.s.call(ctx, func(ctx context.Context) error {
		vals, err = l.s.rdb.MGet(ctx, keys...).Result()
		return redisErr(err)
	})
	if err != nil {
		return nil, fmt.Errorf("verify browser claims: %w", err)
	}
	var renew []string
	for i, v := range vals {
		c := held[ids[i]]
		var h BrowserClaim
		if s, ok := v.(string); ok && json.Unmarshal([]byte(s), &h) == nil && h.User == c.User && h.Since.Equal(c.Since) {
			renew = append(renew, keys[i])
			continue
		}
		how, err := l.ClaimBrowser(ctx, ids[i], c)
		if err != nil {
			return lost, err
		}
		if how != "" {
			lost = append(lost, ids[i])
		}
	}
	if len(renew) > 0 {
		err = l.s.call(ctx, func(ctx context.Context) error {
			_, err := l.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range renew {
					p.Expire(ctx, k, l.sessionTTL)
				}
				return nil
			})
			return redisErr(err)
		})
		if err != nil {
			return lost, fmt.Errorf("renew browser claims: %w", err)
		}
	}
	return lost, nil
}
