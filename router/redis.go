package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// ErrUnavailable is returned (wrapped) by a store whose backend cannot be
// reached: Redis down, unreachable, or not answering in time. Nothing was
// changed, or the change is unknown: the caller may retry later.
var ErrUnavailable = errors.New("the registration store (Redis) is unreachable")

// DefaultRedisPrefix is the prefix of every Redis key the store uses,
// unless RedisOptions.Prefix says otherwise.
const DefaultRedisPrefix = "mbp:"

// DefaultRedisTimeout bounds every store call to Redis unless
// RedisOptions.Timeout says otherwise: a call to a Redis that is down or
// slow fails with ErrUnavailable instead of hanging.
const DefaultRedisTimeout = 3 * time.Second

// Key names under the prefix. Registrations and the endpoint index are
// hashes so that List and Count are one command each and a Put touches a
// fixed set of keys (one Lua script); later parts of shared mode (session
// leases, tunnel ownership, limits) take other names under the same prefix.
const (
	// redisKeyRegs: hash userID -> encoded registration (encodeRecord,
	// the bbolt record format, sealed when the store has a Sealer).
	redisKeyRegs = "reg"
	// redisKeyEndpoints: hash endpoint key (EndpointKeys) -> userID.
	redisKeyEndpoints = "ep"
	// redisKeyUserEndpoints: hash userID -> JSON list of the endpoint
	// keys that user holds, so a Put or Delete frees them without a scan.
	redisKeyUserEndpoints = "user-ep"
	// redisKeyAPIKeys: hash API key ID -> JSON apiKeyRecord.
	redisKeyAPIKeys = "apikey"
	// redisKeyMeta: hash of facts about the store itself; field
	// "seal-check" holds a known text sealed with the store key of the
	// instance that wrote first (see CheckSealer).
	redisKeyMeta = "meta"
)

// sealCheck is what the seal-check field seals: no secret, only proof of
// the key.
const sealCheck = "mcp-browser-proxy store key check"

// ErrSealerMismatch is returned by CheckSealer when the shared store was
// written with another store key.
var ErrSealerMismatch = errors.New("the shared store (Redis) was written with another store key: give every instance the same --jwt-secret, or the same --store-key, as the instances already using this Redis and prefix")

// maxCASAttempts bounds the retries of a Put or TouchAPIKey whose record
// changed between read and write (another instance wrote it meanwhile).
const maxCASAttempts = 16

// RedisOptions configures OpenRedis.
type RedisOptions struct {
	// URL is a go-redis URL: redis://[user:password@]host:port[/db] or
	// rediss:// for TLS (see redis.ParseURL). It holds credentials: it is
	// never put in an error or a log.
	URL string
	// Prefix starts every key (default DefaultRedisPrefix), so that
	// several deployments can share one Redis.
	Prefix string
	// Timeout bounds each store call (default DefaultRedisTimeout).
	Timeout time.Duration
	// Sealer seals each registration's browser URL, headers and
	// addresses, as WithSealer does for bbolt; nil stores them in clear.
	Sealer *Sealer
}

// RedisStore is a Store backed by Redis, shared by every proxy instance
// that uses the same Redis and prefix. Conflict checks run inside Lua
// scripts, which Redis runs atomically: two instances registering the same
// browser at once get one winner and one ErrConflict.
type RedisStore struct {
	rdb     *redis.Client
	prefix  string
	timeout time.Duration
	now     func() time.Time
	sealer  *Sealer
	addr    string // host:port, for errors (never the URL: it may hold a password)
}

var _ Store = (*RedisStore)(nil)

// OpenRedis connects to the Redis of opts.URL. It does not wait for Redis
// to answer: a proxy starts while Redis is down and its calls fail with
// ErrUnavailable until Redis is back (use Ping to check). Errors never
// contain the URL.
func OpenRedis(opts RedisOptions) (*RedisStore, error) {
	if opts.URL == "" {
		return nil, errors.New("open Redis store: the URL is empty; give e.g. redis://127.0.0.1:6379/0")
	}
	ro, err := redis.ParseURL(opts.URL)
	if err != nil {
		// go-redis's parse errors may quote the URL, password and all.
		return nil, errors.New("open Redis store: cannot parse the URL; use redis://[user:password@]host:port[/db] or rediss:// for TLS")
	}
	quietRedisLog.Do(func() { redis.SetLogger(discardLogger{}) })
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	// Every socket wait is bounded by the call's context (itself bounded
	// by Timeout), and by shorter fixed bounds on top, so that a call to
	// a Redis that vanished cannot hang.
	ro.ContextTimeoutEnabled = true
	ro.DialTimeout = min(opts.Timeout, 2*time.Second)
	ro.ReadTimeout = opts.Timeout
	ro.WriteTimeout = opts.Timeout
	ro.PoolTimeout = opts.Timeout
	ro.DialerRetries = 1
	ro.MaxRetries = 1
	return &RedisStore{
		rdb:     redis.NewClient(ro),
		prefix:  opts.Prefix,
		timeout: opts.Timeout,
		now:     time.Now,
		sealer:  opts.Sealer,
		addr:    ro.Addr,
	}, nil
}

// quietRedisLog silences go-redis's own logger (process-wide, once): it
// writes to stderr outside the proxy's structured log, a line per failed
// dial while Redis is down. Every failure reaches the caller as an error
// of the store instead, and /ready reports it.
var quietRedisLog sync.Once

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

// Addr returns the host:port of the Redis server, for logs.
func (s *RedisStore) Addr() string { return s.addr }

func (s *RedisStore) key(name string) string { return s.prefix + name }

// call runs fn with ctx bounded by the store's timeout. fn passes every
// error of the Redis client through redisErr; when the caller's own
// context ended meanwhile, that is the error rather than ErrUnavailable.
func (s *RedisStore) call(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := fn(cctx)
	if errors.Is(err, ErrUnavailable) && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// errRetry: the record changed between read and write more often than
// maxCASAttempts.
var errRetry = errors.New("the record kept changing while it was written; try again")

// redisErr classifies an error of the Redis client: anything that says
// Redis could not be reached or did not answer in time wraps
// ErrUnavailable; an error reply is reported by its code only.
func redisErr(err error) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !redis.IsLoadingError(err) && !redis.IsMasterDownError(err) &&
		!redis.IsTryAgainError(err) && !redis.IsClusterDownError(err) && !redis.IsReadOnlyError(err) &&
		!redis.IsMaxClientsError(err) && !redis.HasErrorPrefix(err, "BUSY") {
		// Redis answered, with an error: say which, without the request.
		if redis.IsAuthError(err) || redis.IsPermissionError(err) {
			return fmt.Errorf("%w: Redis refused the credentials of --redis-url (%s)", ErrUnavailable, firstWord(rerr.Error()))
		}
		return fmt.Errorf("redis error %s", firstWord(rerr.Error()))
	}
	// Network errors, timeouts, a closed client, a server still loading:
	// Redis is not there for now. Their text names at most host:port.
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// firstWord returns the error code of a Redis error reply ("WRONGPASS",
// "NOSCRIPT"), which never holds user data.
func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

// putScript creates or replaces a registration, atomically:
// KEYS: reg, ep, user-ep; ARGV: userID, the record Put read (""
// for none), the new record, JSON list of the new endpoint keys.
// It answers "retry" when the record is no longer the one read (another
// instance wrote it), "conflict" when another user holds one of the
// keys, "ok" once written.
var putScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if cur ~= ARGV[2] then return 'retry' end
local eps = cjson.decode(ARGV[4])
for _, k in ipairs(eps) do
  local o = redis.call('HGET', KEYS[2], k)
  if o and o ~= ARGV[1] then return 'conflict' end
end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then
  for _, k in ipairs(cjson.decode(old)) do
    if redis.call('HGET', KEYS[2], k) == ARGV[1] then redis.call('HDEL', KEYS[2], k) end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
for _, k in ipairs(eps) do redis.call('HSET', KEYS[2], k, ARGV[1]) end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return 'ok'
`)

// deleteScript removes a registration and frees its endpoint keys:
// KEYS: reg, ep, user-ep; ARGV: userID. It answers 0 when there is none.
var deleteScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then
  for _, k in ipairs(cjson.decode(old)) do
    if redis.call('HGET', KEYS[2], k) == ARGV[1] then redis.call('HDEL', KEYS[2], k) end
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
`)

// casScript sets a hash field only if it still holds what was read, so a
// write based on a stale read (or on a field deleted meanwhile) changes
// nothing: KEYS: hash; ARGV: field, expected value, new value.
var casScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// Put implements Store, with the semantics of BoltStore.Put. The record is
// built from the one it reads; if that record changes before the write
// (another instance's Put of the same user), Put reads again.
func (s *RedisStore) Put(ctx context.Context, r Registration) (Registration, error) {
	norm, err := checkPut(ctx, r)
	if err != nil {
		return Registration{}, err
	}
	endpoints, err := json.Marshal(EndpointKeys(norm, r.Addrs))
	if err != nil {
		return Registration{}, fmt.Errorf("register %s: encode endpoint keys: %w", r.UserID, err)
	}
	keys := []string{s.key(redisKeyRegs), s.key(redisKeyEndpoints), s.key(redisKeyUserEndpoints)}
	var rec Registration
	err = s.call(ctx, func(ctx context.Context) error {
		for range maxCASAttempts {
			cur, err := s.rdb.HGet(ctx, keys[0], r.UserID).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return redisErr(err)
			}
			rec, err = s.newRecord(r, norm, cur)
			if err != nil {
				return err
			}
			data, err := encodeRecord(s.sealer, rec)
			if err != nil {
				return fmt.Errorf("encode record: %w", err)
			}
			res, err := putScript.Run(ctx, s.rdb, keys, r.UserID, cur, data, endpoints).Text()
			if err != nil {
				return redisErr(err)
			}
			switch res {
			case "ok":
				return nil
			case "conflict":
				return ErrConflict
			}
		}
		return errRetry
	})
	if err != nil {
		return Registration{}, fmt.Errorf("register %s: %w", r.UserID, err)
	}
	return rec, nil
}

// newRecord builds what Put stores for r from the stored record cur ("" for
// none), by the rules of every store (newRecord, Registration.over).
func (s *RedisStore) newRecord(r Registration, norm, cur string) (Registration, error) {
	rec := newRecord(r, norm, s.now())
	if cur == "" {
		return rec, nil
	}
	old, err := decodeRecord(s.sealer, []byte(cur))
	if err != nil {
		return Registration{}, fmt.Errorf("decode existing record: %w", err)
	}
	return rec.over(old, r), nil
}

// Get implements Store.
func (s *RedisStore) Get(ctx context.Context, userID string) (Registration, error) {
	var rec Registration
	err := s.call(ctx, func(ctx context.Context) error {
		data, err := s.rdb.HGet(ctx, s.key(redisKeyRegs), userID).Bytes()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		if err != nil {
			return redisErr(err)
		}
		if rec, err = decodeRecord(s.sealer, data); err != nil {
			return fmt.Errorf("decode record: %w", err)
		}
		return nil
	})
	if err != nil {
		return Registration{}, fmt.Errorf("get registration %s: %w", userID, err)
	}
	return rec, nil
}

// Delete implements Store. It also frees the user's endpoint keys.
func (s *RedisStore) Delete(ctx context.Context, userID string) error {
	err := s.call(ctx, func(ctx context.Context) error {
		n, err := deleteScript.Run(ctx, s.rdb,
			[]string{s.key(redisKeyRegs), s.key(redisKeyEndpoints), s.key(redisKeyUserEndpoints)}, userID).Int()
		if err != nil {
			return redisErr(err)
		}
		if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete registration %s: %w", userID, err)
	}
	return nil
}

// List implements Store: every registration, sorted by UserID; an empty,
// non-nil slice when there are none.
func (s *RedisStore) List(ctx context.Context) ([]Registration, error) {
	out := []Registration{}
	err := s.call(ctx, func(ctx context.Context) error {
		all, err := s.rdb.HGetAll(ctx, s.key(redisKeyRegs)).Result()
		if err != nil {
			return redisErr(err)
		}
		for _, user := range slices.Sorted(maps.Keys(all)) {
			rec, err := decodeRecord(s.sealer, []byte(all[user]))
			if err != nil {
				return fmt.Errorf("decode record %s: %w", user, err)
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list registrations: %w", err)
	}
	return out, nil
}

// Count implements Store.
func (s *RedisStore) Count(ctx context.Context) (int, error) {
	var n int64
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		n, err = s.rdb.HLen(ctx, s.key(redisKeyRegs)).Result()
		return redisErr(err)
	})
	if err != nil {
		return 0, fmt.Errorf("count registrations: %w", err)
	}
	return int(n), nil
}

// Ping implements Store: Redis must answer PING within the store's
// timeout. It fails once the store is closed.
func (s *RedisStore) Ping(ctx context.Context) error {
	err := s.call(ctx, func(ctx context.Context) error {
		return redisErr(s.rdb.Ping(ctx).Err())
	})
	if err != nil {
		return fmt.Errorf("ping Redis at %s: %w", s.addr, err)
	}
	return nil
}

// Close implements Store: it closes the connections to Redis. The data
// stays in Redis.
func (s *RedisStore) Close() error {
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("close Redis store: %w", err)
	}
	return nil
}

// CheckSealer makes sure every instance sharing the store seals with the
// same key: one with another key could read no registration the others
// wrote. The first instance records a text sealed with its key; later ones
// must be able to open it, or get ErrSealerMismatch. A store without a
// Sealer checks nothing.
func (s *RedisStore) CheckSealer(ctx context.Context) error {
	if s.sealer == nil {
		return nil
	}
	err := s.call(ctx, func(ctx context.Context) error {
		meta := s.key(redisKeyMeta)
		if _, err := s.rdb.HSetNX(ctx, meta, "seal-check", s.sealer.Seal([]byte(sealCheck), []byte("seal-check"))).Result(); err != nil {
			return redisErr(err)
		}
		sealed, err := s.rdb.HGet(ctx, meta, "seal-check").Bytes()
		if err != nil {
			return redisErr(err)
		}
		if plain, err := s.sealer.Open(sealed, []byte("seal-check")); err != nil || string(plain) != sealCheck {
			return ErrSealerMismatch
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check the store key: %w", err)
	}
	return nil
}

// CreateAPIKey implements APIKeyStore, as BoltStore.CreateAPIKey.
func (s *RedisStore) CreateAPIKey(ctx context.Context, k auth.APIKey) error {
	data, err := encodeNewAPIKey(ctx, k)
	if err != nil {
		return err
	}
	err = s.call(ctx, func(ctx context.Context) error {
		ok, err := s.rdb.HSetNX(ctx, s.key(redisKeyAPIKeys), k.ID, data).Result()
		if err == nil && !ok {
			return ErrAPIKeyExists
		}
		return redisErr(err)
	})
	if err != nil {
		return fmt.Errorf("create API key %s: %w", k.ID, err)
	}
	return nil
}

// GetAPIKey implements auth.APIKeyStore. It reads Redis every time, so a
// revocation by any instance holds at once on every other.
func (s *RedisStore) GetAPIKey(ctx context.Context, id string) (auth.APIKey, error) {
	var rec apiKeyRecord
	err := s.call(ctx, func(ctx context.Context) error {
		data, err := s.rdb.HGet(ctx, s.key(redisKeyAPIKeys), id).Bytes()
		if errors.Is(err, redis.Nil) {
			return auth.ErrAPIKeyNotFound
		}
		if err != nil {
			return redisErr(err)
		}
		return json.Unmarshal(data, &rec)
	})
	if err != nil {
		return auth.APIKey{}, fmt.Errorf("get API key %s: %w", redactID(id), err)
	}
	return rec.key(), nil
}

// TouchAPIKey implements auth.APIKeyStore: LastUsed only moves forward,
// and a key revoked meanwhile stays revoked.
func (s *RedisStore) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	at = at.UTC().Round(0)
	hash := s.key(redisKeyAPIKeys)
	err := s.call(ctx, func(ctx context.Context) error {
		for range maxCASAttempts {
			cur, err := s.rdb.HGet(ctx, hash, id).Result()
			if errors.Is(err, redis.Nil) {
				return nil // revoked meanwhile: do not bring it back
			}
			if err != nil {
				return redisErr(err)
			}
			var rec apiKeyRecord
			if err := json.Unmarshal([]byte(cur), &rec); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			if !at.After(rec.LastUsed) {
				return nil
			}
			rec.LastUsed = at
			out, err := json.Marshal(rec)
			if err != nil {
				return fmt.Errorf("encode: %w", err)
			}
			ok, err := casScript.Run(ctx, s.rdb, []string{hash}, id, cur, out).Int()
			if err != nil || ok == 1 {
				return redisErr(err)
			}
		}
		return errRetry
	})
	if err != nil {
		return fmt.Errorf("touch API key %s: %w", redactID(id), err)
	}
	return nil
}

// ListAPIKeys implements APIKeyStore, sorted as BoltStore.ListAPIKeys.
func (s *RedisStore) ListAPIKeys(ctx context.Context, userID string) ([]auth.APIKey, error) {
	out := []auth.APIKey{}
	err := s.call(ctx, func(ctx context.Context) error {
		all, err := s.rdb.HGetAll(ctx, s.key(redisKeyAPIKeys)).Result()
		if err != nil {
			return redisErr(err)
		}
		for id, data := range all {
			var rec apiKeyRecord
			if err := json.Unmarshal([]byte(data), &rec); err != nil {
				return fmt.Errorf("decode API key %s: %w", redactID(id), err)
			}
			if userID == "" || rec.UserID == userID {
				out = append(out, rec.key())
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	sortAPIKeys(out)
	return out, nil
}

// RevokeAPIKey implements APIKeyStore: the record is gone for every
// instance as soon as it returns.
func (s *RedisStore) RevokeAPIKey(ctx context.Context, id string) error {
	err := s.call(ctx, func(ctx context.Context) error {
		n, err := s.rdb.HDel(ctx, s.key(redisKeyAPIKeys), id).Result()
		if err == nil && n == 0 {
			return auth.ErrAPIKeyNotFound
		}
		return redisErr(err)
	})
	if err != nil {
		return fmt.Errorf("revoke API key %s: %w", redactID(id), err)
	}
	return nil
}
