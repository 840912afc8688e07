package router

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
)

// Redis-only tests: reachability and key layout. The store's behaviour is
// tested for every backend in store_test.go.

func openRedisTest(t *testing.T, opts RedisOptions) *RedisStore {
	t.Helper()
	s, err := OpenRedis(opts)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRedisUnreachable: with Redis stopped every call fails, within its
// bound, with ErrUnavailable and changes nothing; when Redis is back the
// same store works again without being reopened.
func TestRedisUnreachable(t *testing.T) {
	srv := testredis.Start(t)
	s := openRedisTest(t, RedisOptions{URL: srv.URL, Timeout: 500 * time.Millisecond})
	ctx := context.Background()
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	_, key, err := auth.NewAPIKey("alice", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func(context.Context) error{
		"Ping": s.Ping,
		"Put": func(ctx context.Context) error {
			_, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9333"})
			return err
		},
		"Get":          func(ctx context.Context) error { _, err := s.Get(ctx, "alice"); return err },
		"Delete":       func(ctx context.Context) error { return s.Delete(ctx, "alice") },
		"List":         func(ctx context.Context) error { _, err := s.List(ctx); return err },
		"Count":        func(ctx context.Context) error { _, err := s.Count(ctx); return err },
		"CreateAPIKey": func(ctx context.Context) error { return s.CreateAPIKey(ctx, key) },
		"GetAPIKey":    func(ctx context.Context) error { _, err := s.GetAPIKey(ctx, key.ID); return err },
		"TouchAPIKey":  func(ctx context.Context) error { return s.TouchAPIKey(ctx, key.ID, time.Now()) },
		"ListAPIKeys":  func(ctx context.Context) error { _, err := s.ListAPIKeys(ctx, ""); return err },
		"RevokeAPIKey": func(ctx context.Context) error { return s.RevokeAPIKey(ctx, key.ID) },
	}
	for name, call := range calls {
		// The caller's bound is generous: the store's own bound must end
		// the call, and the call must say why.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := call(cctx)
		callerDone := cctx.Err() != nil
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with Redis stopped = %v, want ErrUnavailable", name, err)
		}
		if callerDone {
			t.Errorf("%s with Redis stopped ran until the caller's deadline: not bounded by the store", name)
		}
	}
	// The caller's own deadline stays the caller's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Ping(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with a canceled context and Redis stopped = %v, want context.Canceled", err)
	}

	srv.Start() // empty: nothing is persisted
	waitRedisPing(t, s)
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9333"}); err != nil {
		t.Errorf("Put after Redis is back: %v", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "carol", BrowserURL: "http://localhost:9333"}); !errors.Is(err, ErrConflict) {
		t.Errorf("conflict after Redis is back = %v, want ErrConflict", err)
	}
}

// TestRedisErrorsHoldNoSecret: neither a URL that does not parse nor a
// password Redis refuses reaches an error.
func TestRedisErrorsHoldNoSecret(t *testing.T) {
	const pw = "pw-SECRET-77"
	if _, err := OpenRedis(RedisOptions{URL: "redis://u:" + pw + "@127.0.0.1:notaport/0"}); err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("OpenRedis with a bad URL = %v (must fail without the password)", err)
	}
	if _, err := OpenRedis(RedisOptions{URL: "http://u:" + pw + "@127.0.0.1:6379"}); err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("OpenRedis with an http URL = %v (must fail without the password)", err)
	}
	if _, err := OpenRedis(RedisOptions{}); err == nil {
		t.Error("OpenRedis with no URL succeeded")
	}
	srv := testredis.Start(t) // no password set: AUTH fails
	s := openRedisTest(t, RedisOptions{URL: "redis://u:" + pw + "@" + srv.Addr + "/0", Timeout: time.Second})
	ctx := context.Background()
	err := s.Ping(ctx)
	if err == nil {
		t.Fatal("Ping with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("Ping error %q holds the password", err)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with refused credentials = %v, want ErrUnavailable", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("Put with refused credentials = %v", err)
	}
}

// TestRedisKeyLayout: the default prefix is mbp:, a custom one keeps two
// deployments on one Redis apart, and the keys are those the README
// documents.
func TestRedisKeyLayout(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	def := openRedisTest(t, RedisOptions{URL: srv.URL})
	other := openRedisTest(t, RedisOptions{URL: srv.URL, Prefix: "team2:"})
	if _, err := def.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Fatal(err)
	}
	_, k, err := auth.NewAPIKey("alice", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := def.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	// The other prefix sees nothing and may take the same browser.
	if n, err := other.Count(ctx); err != nil || n != 0 {
		t.Errorf("other prefix Count = %d, %v; want 0", n, err)
	}
	if _, err := other.GetAPIKey(ctx, k.ID); !errors.Is(err, auth.ErrAPIKeyNotFound) {
		t.Errorf("other prefix GetAPIKey = %v, want not found", err)
	}
	if _, err := other.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Errorf("other prefix Put: %v", err)
	}
	dump := string(redisDump(t, srv.URL, "mbp:*"))
	for _, want := range []string{"mbp:reg\n  alice = ", "mbp:ep\n  tcp://127.0.0.1:9222 = alice", `mbp:user-ep` + "\n" + `  alice = ["tcp://127.0.0.1:9222"]`, "mbp:apikey\n  " + k.ID + " = "} {
		if !strings.Contains(dump, want) {
			t.Errorf("the default prefix's keys lack %q:\n%s", want, dump)
		}
	}
	if strings.Contains(dump, "bob") {
		t.Errorf("the other prefix wrote under mbp:\n%s", dump)
	}
}

// waitRedisPing waits (up to 15 s) until s reaches Redis again: go-redis
// probes a server it could not dial about once a second.
func waitRedisPing(t *testing.T, s *RedisStore) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := s.Ping(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not reach Redis again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisCheckSealer: instances sharing a Redis must share the store
// key; one with another key is told so before it serves anything.
func TestRedisCheckSealer(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	a := openRedisTest(t, RedisOptions{URL: srv.URL, Sealer: testSealer(t, keyA)})
	if err := a.CheckSealer(ctx); err != nil {
		t.Fatalf("first instance: %v", err)
	}
	if err := openRedisTest(t, RedisOptions{URL: srv.URL, Sealer: testSealer(t, keyA)}).CheckSealer(ctx); err != nil {
		t.Errorf("an instance with the same key: %v", err)
	}
	err := openRedisTest(t, RedisOptions{URL: srv.URL, Sealer: testSealer(t, keyB)}).CheckSealer(ctx)
	if !errors.Is(err, ErrSealerMismatch) || !strings.Contains(err.Error(), "--store-key") {
		t.Errorf("an instance with another key: %v, want ErrSealerMismatch", err)
	}
	// Another prefix is another store, with its own key.
	if err := openRedisTest(t, RedisOptions{URL: srv.URL, Prefix: "other:", Sealer: testSealer(t, keyB)}).CheckSealer(ctx); err != nil {
		t.Errorf("another prefix with another key: %v", err)
	}
	srv.Stop()
	if err := a.CheckSealer(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("CheckSealer with Redis stopped: %v, want ErrUnavailable", err)
	}
}
