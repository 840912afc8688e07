package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// redisFlags choose the shared store: with --redis-url, registrations and
// API keys live in Redis instead of the bbolt file of --data-dir.
type redisFlags struct {
	url, prefix string
	timeout     time.Duration
}

func addRedisFlags(fl *pflag.FlagSet, f *redisFlags) {
	fl.StringVar(&f.url, "redis-url", "", "keep registrations and API keys in this Redis, shared by every proxy using it: redis://[user:password@]host:port[/db], rediss:// for TLS; prefer the env twin, it holds a password (default: the bbolt file in --data-dir)")
	fl.StringVar(&f.prefix, "redis-prefix", router.DefaultRedisPrefix, "prefix of every Redis key, so that several deployments can share one Redis")
	fl.DurationVar(&f.timeout, "redis-timeout", router.DefaultRedisTimeout, "bound of each Redis call; a Redis that does not answer in time counts as unreachable (503 STORE_UNAVAILABLE)")
}

// shared reports whether the store is Redis.
func (f redisFlags) shared() bool { return f.url != "" }

// open opens the Redis store. It does not wait for Redis: a proxy starts
// while Redis is down. Errors never hold the URL.
func (f redisFlags) open(sealer *router.Sealer) (*router.RedisStore, error) {
	if f.timeout <= 0 {
		return nil, fmt.Errorf("--redis-timeout %s: use a positive duration, e.g. 3s", f.timeout)
	}
	s, err := router.OpenRedis(router.RedisOptions{URL: f.url, Prefix: f.prefix, Timeout: f.timeout, Sealer: sealer})
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	return s, nil
}

// openServeStore opens the store serve keeps registrations and API keys
// in: Redis with --redis-url, else the bbolt file in --data-dir. The data
// dir keeps the JWT secret either way. desc names the store for logs. A
// Redis written with another store key is refused; an unreachable one is
// not (the check waits for the next start).
func openServeStore(ctx context.Context, f serveFlags, sealer *router.Sealer, log zerolog.Logger) (store router.Store, desc string, err error) {
	if f.redis.shared() {
		s, err := f.redis.open(sealer)
		if err != nil {
			return nil, "", err
		}
		err = s.CheckSealer(ctx)
		if errors.Is(err, router.ErrUnavailable) {
			log.Warn().Err(err).Msg("the store key could not be checked against the shared store")
			err = nil
		}
		if err != nil {
			s.Close()
			return nil, "", err
		}
		return s, "redis://" + s.Addr() + " (prefix " + f.redis.prefix + ")", nil
	}
	s, err := router.OpenBolt(filepath.Join(f.dataDir, storeFile), router.WithSealer(sealer))
	if err != nil {
		return nil, "", fmt.Errorf("%w; --data-dir must be a writable directory with free space", err)
	}
	return s, s.Path(), nil
}

// restoreRetry is how often serve tries again to restore the registrations
// while the shared store is unreachable.
const restoreRetry = 2 * time.Second

// restore connects the pool to the stored registrations. A shared store
// that is unreachable at start does not stop the proxy (its /ready says
// 503 and the routes that need the store answer STORE_UNAVAILABLE): the
// restore is retried in the background until Redis answers. stop ends
// that retry and waits for it; call it before the pool closes.
func restore(ctx context.Context, srv *proxy.Server, log zerolog.Logger) (stop func(), err error) {
	err = srv.Restore(ctx)
	if !errors.Is(err, router.ErrUnavailable) {
		return func() {}, err
	}
	log.Warn().Err(err).Dur("retry", restoreRetry).
		Msg("the shared store is unreachable: starting anyway; /ready answers 503 and registrations are restored once Redis answers")
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(restoreRetry)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			err := srv.Restore(ctx)
			if err == nil {
				return
			}
			if !errors.Is(err, router.ErrUnavailable) {
				log.Error().Err(err).Msg("restore registrations")
				return
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}
