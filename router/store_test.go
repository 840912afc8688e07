package router

// The store suite: every test here runs against each backend (bbolt and a
// real redis-server), through storeEnv. Tests of one backend's own
// mechanics (bbolt's file lock, crash safety, rekeying of old files;
// Redis's reachability and key layout) live beside it.

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
)

// testStore is a Store whose clock a test can set.
type testStore interface {
	Store
	setNow(func() time.Time)
}

func (s *BoltStore) setNow(f func() time.Time)  { s.now = f }
func (s *RedisStore) setNow(f func() time.Time) { s.now = f }

// storeEnv is one backing of a store (a bbolt file, a Redis prefix).
type storeEnv struct {
	// open opens a new handle on the backing, sealed with sealer when it
	// is not nil; it is closed when the test ends, if not before. A bbolt
	// file takes one handle at a time (close the last before opening).
	open func(t *testing.T, sealer *Sealer) testStore
	// raw returns everything the backing holds, to look for secrets.
	raw func(t *testing.T) []byte
	// shared: several handles may be open at once, as instances are.
	shared bool
}

// storeBackends are the constructors the suite runs for.
var storeBackends = []struct {
	name   string
	newEnv func(t *testing.T) storeEnv
}{
	{"bolt", boltEnv},
	{"redis", redisEnv},
}

func boltEnv(t *testing.T) storeEnv {
	path := filepath.Join(t.TempDir(), "sub", "router.db")
	return storeEnv{
		open: func(t *testing.T, sealer *Sealer) testStore {
			t.Helper()
			var opts []BoltOption
			if sealer != nil {
				opts = append(opts, WithSealer(sealer))
			}
			s, err := OpenBolt(path, opts...)
			if err != nil {
				t.Fatalf("OpenBolt: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		raw: func(t *testing.T) []byte {
			t.Helper()
			return readFile(t, path)
		},
	}
}

// redisEnv starts a redis-server for the test and gives each test its own
// key prefix, which also checks that the prefix keeps data apart.
func redisEnv(t *testing.T) storeEnv {
	srv := testredis.Start(t)
	prefix := "test:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
	return storeEnv{
		shared: true,
		open: func(t *testing.T, sealer *Sealer) testStore {
			t.Helper()
			s, err := OpenRedis(RedisOptions{URL: srv.URL, Prefix: prefix, Sealer: sealer})
			if err != nil {
				t.Fatalf("OpenRedis: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		raw: func(t *testing.T) []byte {
			t.Helper()
			return redisDump(t, srv.URL, "*")
		},
	}
}

// redisDump returns every key matching pattern with its fields and values
// (all the store's keys are hashes).
func redisDump(t *testing.T, url, pattern string) []byte {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := rdb.Keys(ctx, pattern).Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	sort.Strings(keys)
	var out bytes.Buffer
	for _, k := range keys {
		all, err := rdb.HGetAll(ctx, k).Result()
		if err != nil {
			t.Fatalf("HGETALL %s: %v", k, err)
		}
		fmt.Fprintf(&out, "%s\n", k)
		for f, v := range all {
			fmt.Fprintf(&out, "  %s = %s\n", f, v)
		}
	}
	return out.Bytes()
}

// storeSuite is the shared suite; see TestStores.
var storeSuite = []struct {
	name string
	fn   func(t *testing.T, env storeEnv)
}{
	{"RoundTrip", testStoreRoundTrip},
	{"PutInvalid", testStorePutInvalid},
	{"PutConflict", testStorePutConflict},
	{"ReRegisterFreesOldURL", testStoreReRegisterFreesOldURL},
	{"CreatedAtKept", testStoreCreatedAtKept},
	{"Persistence", testStorePersistence},
	{"ConcurrentPuts", testStoreConcurrentPuts},
	{"ConcurrentSameBrowser", testStoreConcurrentSameBrowser},
	{"CanceledContext", testStoreCanceledContext},
	{"PutConflictSpellings", testStorePutConflictSpellings},
	{"PutConflictByAddress", testStorePutConflictByAddress},
	{"BrowserSince", testStoreBrowserSince},
	{"SealsCredentials", testStoreSealsCredentials},
	{"KeepsRegistrationAddrs", testStoreKeepsRegistrationAddrs},
	{"APIKeyRoundTrip", testAPIKeyRoundTrip},
	{"CreateAPIKeyRejects", testCreateAPIKeyRejects},
	{"APIKeyToolsets", testAPIKeyToolsets},
}

// TestStores runs the store suite for each backend: run one with e.g.
// -run 'TestStores/redis/PutConflict'.
func TestStores(t *testing.T) {
	for _, be := range storeBackends {
		t.Run(be.name, func(t *testing.T) {
			for _, tc := range storeSuite {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, be.newEnv(t)) })
			}
		})
	}
}

func testStoreRoundTrip(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	if _, err := s.Get(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on empty store = %v, want ErrNotFound", err)
	}
	if l, err := s.List(ctx); err != nil || l == nil || len(l) != 0 {
		t.Fatalf("List on empty store = %#v, %v; want empty non-nil", l, err)
	}

	bob, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "HTTP://127.0.0.1:9333/"})
	if err != nil {
		t.Fatalf("Put bob: %v", err)
	}
	if bob.BrowserURL != "http://127.0.0.1:9333" {
		t.Errorf("stored URL = %q, want normalised", bob.BrowserURL)
	}
	if bob.CreatedAt.IsZero() || !bob.UpdatedAt.Equal(bob.CreatedAt) {
		t.Errorf("new record times: created %v updated %v", bob.CreatedAt, bob.UpdatedAt)
	}
	alice, err := s.Put(ctx, Registration{
		UserID:     "alice",
		BrowserURL: "http://127.0.0.1:9222",
		Metadata:   map[string]string{"team": "qa"},
	})
	if err != nil {
		t.Fatalf("Put alice: %v", err)
	}

	got, err := s.Get(ctx, "alice")
	if err != nil {
		t.Fatalf("Get alice: %v", err)
	}
	if got.BrowserURL != alice.BrowserURL || got.Metadata["team"] != "qa" || !got.CreatedAt.Equal(alice.CreatedAt) {
		t.Errorf("Get alice = %+v, want %+v", got, alice)
	}

	list, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 2 || list[0].UserID != "alice" || list[1].UserID != "bob" {
		t.Errorf("List = %+v, want alice then bob", list)
	}
	if n, err := s.Count(ctx); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}

	if err := s.Delete(ctx, "alice"); err != nil {
		t.Fatalf("Delete alice: %v", err)
	}
	if _, err := s.Get(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if n, err := s.Count(ctx); err != nil || n != 1 {
		t.Errorf("Count after Delete = %d, %v; want 1", n, err)
	}
	// Delete freed alice's URL.
	if _, err := s.Put(ctx, Registration{UserID: "carol", BrowserURL: "ws://127.0.0.1:9222/devtools/browser/z"}); err != nil {
		t.Errorf("Put carol on freed URL: %v", err)
	}
}

func testStorePutInvalid(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	_, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1"})
	var ue *URLError
	if !errors.As(err, &ue) {
		t.Errorf("Put with bad URL = %v, want *URLError", err)
	}
	if _, err := s.Put(ctx, Registration{BrowserURL: "http://127.0.0.1:9222"}); err == nil {
		t.Error("Put with empty user ID succeeded")
	}
	if n, _ := s.Count(ctx); n != 0 {
		t.Errorf("Count = %d after failed Puts, want 0", n)
	}
}

func testStorePutConflict(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "ws://127.0.0.1:9222/devtools/browser/abc"}); err != nil {
		t.Fatalf("Put alice: %v", err)
	}
	_, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "HTTP://127.0.0.1:9222"})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Put bob on alice's browser = %v, want ErrConflict", err)
	}
	if !strings.Contains(err.Error(), "bob") {
		t.Errorf("error %q does not name the user", err)
	}
	if _, err := s.Get(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob's record exists after conflict: %v", err)
	}
	if n, _ := s.Count(ctx); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}
	// The same user may re-register the same browser in another spelling.
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Errorf("alice re-registering her own browser: %v", err)
	}
}

func testStoreReRegisterFreesOldURL(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9333"}); err != nil {
		t.Fatalf("alice moving to new URL: %v", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Errorf("bob taking alice's old URL: %v", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "carol", BrowserURL: "http://127.0.0.1:9333"}); !errors.Is(err, ErrConflict) {
		t.Errorf("carol taking alice's new URL = %v, want ErrConflict", err)
	}
}

func testStoreCreatedAtKept(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	now := t0
	s.setNow(func() time.Time { return now })

	first, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"})
	if err != nil {
		t.Fatal(err)
	}
	if !first.CreatedAt.Equal(t0) {
		t.Fatalf("CreatedAt = %v, want %v", first.CreatedAt, t0)
	}
	now = t0.Add(time.Hour)
	second, err := s.Put(ctx, Registration{
		UserID:     "alice",
		BrowserURL: "http://127.0.0.1:9333",
		CreatedAt:  t0.Add(-24 * time.Hour), // ignored
	})
	if err != nil {
		t.Fatal(err)
	}
	if !second.CreatedAt.Equal(t0) || !second.UpdatedAt.Equal(now) {
		t.Errorf("after update created %v updated %v, want %v and %v", second.CreatedAt, second.UpdatedAt, t0, now)
	}
	got, err := s.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(now) || got.BrowserURL != "http://127.0.0.1:9333" {
		t.Errorf("Get = %+v", got)
	}
}

func testStorePersistence(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	want, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222", Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping after Close succeeded")
	}

	s = env.open(t, nil)
	got, err := s.Get(ctx, "alice")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if got.BrowserURL != want.BrowserURL || got.Metadata["k"] != "v" ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("after reopen got %+v, want %+v", got, want)
	}
	// The URL index persisted too.
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "ws://127.0.0.1:9222/devtools/browser/q"}); !errors.Is(err, ErrConflict) {
		t.Errorf("Put bob after reopen = %v, want ErrConflict", err)
	}
}

func testStoreConcurrentPuts(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.Put(ctx, Registration{
				UserID:     fmt.Sprintf("user%02d", i),
				BrowserURL: fmt.Sprintf("http://127.0.0.1:%d", 9000+i),
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Put: %v", err)
		}
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("List has %d records, want %d", len(list), n)
	}
	for i, r := range list {
		if want := fmt.Sprintf("user%02d", i); r.UserID != want {
			t.Errorf("list[%d] = %s, want %s", i, r.UserID, want)
		}
	}
	if c, err := s.Count(ctx); err != nil || c != n {
		t.Errorf("Count = %d, %v; want %d", c, err, n)
	}
}

// testStoreConcurrentSameBrowser: many users race to register one browser,
// each in its own spelling (and, where the backend is shared, through two
// store handles, as two proxy instances would): exactly one wins, every
// other gets ErrConflict, and the winner holds every spelling afterwards.
// Each user also re-registers itself at once, which races its own record.
func testStoreConcurrentSameBrowser(t *testing.T, env storeEnv) {
	ctx := context.Background()
	handles := []testStore{env.open(t, nil)}
	if env.shared {
		handles = append(handles, env.open(t, nil))
	}
	spellings := []string{
		"http://127.0.0.1:9222", "http://localhost:9222", "ws://127.0.0.1:9222/devtools/browser/a",
		"http://[::1]:9222", "http://127.1:9222", "https://LOCALHOST.:9222", "http://0x7f.0.0.1:9222",
		"wss://sub.localhost:9222/devtools/page/1", "http://2130706433:9222", "http://127.0.0.2:9222",
	}
	const rounds = 3
	for round := range rounds {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []string
		for i := range 24 {
			user := fmt.Sprintf("r%du%02d", round, i)
			u := spellings[i%len(spellings)]
			s := handles[i%len(handles)]
			wg.Go(func() {
				_, err := s.Put(ctx, Registration{UserID: user, BrowserURL: u})
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, user)
					mu.Unlock()
					// Winning twice is still one winner.
					if _, err := s.Put(ctx, Registration{UserID: user, BrowserURL: u, Metadata: map[string]string{"again": "1"}}); err != nil {
						t.Errorf("%s re-registering its own browser: %v", user, err)
					}
				case !errors.Is(err, ErrConflict):
					t.Errorf("%s on %s: %v, want nil or ErrConflict", user, u, err)
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: winners %v, want exactly one", round, winners)
		}
		for _, s := range handles {
			for _, u := range spellings {
				if _, err := s.Put(ctx, Registration{UserID: "late", BrowserURL: u}); !errors.Is(err, ErrConflict) {
					t.Errorf("round %d: a late user on %s = %v, want ErrConflict", round, u, err)
				}
			}
		}
		if n, err := handles[0].Count(ctx); err != nil || n != 1 {
			t.Errorf("round %d: Count = %d, %v; want 1", round, n, err)
		}
		// The winner leaving frees the browser for the next round.
		if err := handles[len(handles)-1].Delete(ctx, winners[0]); err != nil {
			t.Fatal(err)
		}
	}
}

func testStoreCanceledContext(t *testing.T, env storeEnv) {
	s := env.open(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with canceled ctx = %v", err)
	}
	for name, err := range map[string]error{
		"Get":    func() error { _, err := s.Get(ctx, "alice"); return err }(),
		"List":   func() error { _, err := s.List(ctx); return err }(),
		"Delete": s.Delete(ctx, "alice"),
		"Ping":   s.Ping(ctx),
	} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled ctx = %v", name, err)
		}
	}
	if n, _ := s.Count(context.Background()); n != 0 {
		t.Errorf("Count = %d after canceled Put, want 0", n)
	}
}

// testStorePutConflictSpellings: every spelling of a host and port that
// reaches the same endpoint is the same browser, without any lookup.
func testStorePutConflictSpellings(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"http://localhost:9222", "HTTP://LOCALHOST.:9222", "http://[::ffff:127.0.0.1]:9222",
		"http://127.1:9222", "http://0x7f.0.0.1:9222", "http://2130706433:9222", "http://127.0.0.2:9222",
		"http://[::1]:9222", "https://127.0.0.1:9222", "wss://localhost:9222/devtools/browser/x",
		"ws://sub.localhost:9222/devtools/page/1",
	} {
		if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: u}); !errors.Is(err, ErrConflict) {
			t.Errorf("bob registering %s = %v, want ErrConflict", u, err)
		}
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9223"}); err != nil {
		t.Errorf("bob on another port: %v", err)
	}
	// Default ports collapse: ws without a port is port 80.
	if _, err := s.Put(ctx, Registration{UserID: "carol", BrowserURL: "ws://browser.test/devtools/browser/x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "dave", BrowserURL: "http://Browser.Test.:80"}); !errors.Is(err, ErrConflict) {
		t.Errorf("dave on carol's browser with an explicit default port = %v, want ErrConflict", err)
	}
}

// testStorePutConflictByAddress: registrations resolved to a common
// address and port conflict, whatever their names.
func testStorePutConflictByAddress(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	a := netip.MustParseAddr("10.0.0.5")
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://mybox.test:9222", Addrs: []netip.Addr{a}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://10.0.0.5:9222"}); !errors.Is(err, ErrConflict) {
		t.Errorf("bob on alice's address = %v, want ErrConflict", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://alias.test:9222", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("::ffff:10.0.0.5")}}); !errors.Is(err, ErrConflict) {
		t.Errorf("bob on an alias sharing alice's address = %v, want ErrConflict", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://mybox.test:9222"}); !errors.Is(err, ErrConflict) {
		t.Errorf("bob on alice's name, unresolved = %v, want ErrConflict", err)
	}
	// alice moving elsewhere frees every key she held.
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://10.0.0.7:9222"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://10.0.0.5:9222"}); err != nil {
		t.Errorf("bob on alice's old address: %v", err)
	}
}

// testStoreBrowserSince: seniority over a browser is that of its URL. A
// user who moves to another URL registers it now, whatever their
// CreatedAt; the same URL again keeps it, and a restored record keeps its.
func testStoreBrowserSince(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	now := t0
	s.setNow(func() time.Time { return now })
	first, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9222"})
	if err != nil || !first.Since().Equal(t0) {
		t.Fatalf("first: %v since %v", err, first.Since())
	}
	now = t0.Add(time.Hour)
	same, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9222", Metadata: map[string]string{"a": "b"}})
	if err != nil || !same.Since().Equal(t0) {
		t.Errorf("same URL again: %v since %v, want %v", err, same.Since(), t0)
	}
	now = t0.Add(2 * time.Hour)
	moved, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9333"})
	if err != nil || !moved.Since().Equal(now) || !moved.CreatedAt.Equal(t0) {
		t.Errorf("moved: %v since %v created %v, want since %v created %v", err, moved.Since(), moved.CreatedAt, now, t0)
	}
	if got, _ := s.Get(ctx, "bob"); !got.Since().Equal(now) {
		t.Errorf("stored since %v, want %v", got.Since(), now)
	}
	now = t0.Add(3 * time.Hour)
	back, err := s.Put(ctx, first)
	if err != nil || !back.Since().Equal(t0) {
		t.Errorf("restored: %v since %v, want %v", err, back.Since(), t0)
	}
}

// testStoreSealsCredentials: with a Sealer the backing holds no credential
// of a browser URL or header in clear; another key cannot read it.
func testStoreSealsCredentials(t *testing.T, env storeEnv) {
	const pw, tok, hdr = "pw-SECRET-1", "tok-SECRET-2", "hdr-SECRET-3"
	s := env.open(t, testSealer(t, keyA))
	ctx := context.Background()
	in := Registration{
		UserID:     "alice",
		BrowserURL: "wss://bob:" + pw + "@cloud.test:8443/devtools/browser/x?token=" + tok,
		Headers:    map[string]string{"X-Api-Key": hdr},
		Metadata:   map[string]string{"team": "qa"},
	}
	if _, err := s.Put(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.BrowserURL != in.BrowserURL || !reflect.DeepEqual(got.Headers, in.Headers) || got.Metadata["team"] != "qa" {
		t.Fatalf("round trip: %+v", got)
	}
	// The same browser with other credentials is the same browser.
	if _, err := s.Put(ctx, Registration{UserID: "carol", BrowserURL: "wss://cloud.test:8443/devtools/browser/y"}); !errors.Is(err, ErrConflict) {
		t.Errorf("conflict across credentials: %v", err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].Headers["X-Api-Key"] != hdr {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	raw := env.raw(t)
	for _, secret := range []string{pw, tok, hdr, "bob:"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the store holds %q in clear", secret)
		}
	}
	if !bytes.Contains(raw, []byte("tcp://cloud.test:8443")) {
		t.Error("the conflict index is missing (the test would prove nothing)")
	}

	// Another key cannot read it, and says what to do.
	s = env.open(t, testSealer(t, keyB))
	if _, err := s.Get(ctx, "alice"); !errors.Is(err, ErrUnseal) || !strings.Contains(err.Error(), "--store-key") {
		t.Errorf("Get with another key: %v", err)
	}
	s.Close()
	s = env.open(t, nil)
	if _, err := s.Get(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "without a key") {
		t.Errorf("Get without a key: %v", err)
	}
	// A refused decode is not an unreachable store.
	if _, err := s.Get(ctx, "alice"); errors.Is(err, ErrUnavailable) {
		t.Errorf("Get without a key says the store is unreachable: %v", err)
	}
	s.Close()
}

// The addresses a registration was made with survive a reopen, in a sealed
// store and in a clear one. (The browser URL index has them in clear
// anyway, as endpoint keys: the record seals them only with the URL.)
func testStoreKeepsRegistrationAddrs(t *testing.T, env storeEnv) {
	addrs := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::7")}
	for i, sealer := range []*Sealer{testSealer(t, keyA), nil} {
		user := fmt.Sprintf("alice%d", i)
		s := env.open(t, sealer)
		ctx := context.Background()
		if _, err := s.Put(ctx, Registration{UserID: user, BrowserURL: fmt.Sprintf("http://alice-box%d.test:9222", i), Addrs: addrs}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = env.open(t, sealer)
		got, err := s.Get(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		// The next round registers the same addresses.
		if err := s.Delete(ctx, user); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if !slices.Equal(got.Addrs, addrs) {
			t.Errorf("sealed=%v: addrs after reopen = %v, want %v", sealer != nil, got.Addrs, addrs)
		}
	}
}

func testAPIKeyRoundTrip(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)

	if l, err := s.ListAPIKeys(ctx, ""); err != nil || l == nil || len(l) != 0 {
		t.Fatalf("ListAPIKeys on a fresh store = %#v, %v; want empty non-nil", l, err)
	}
	if _, err := s.GetAPIKey(ctx, "0123456789abcdef"); !errors.Is(err, auth.ErrAPIKeyNotFound) {
		t.Fatalf("GetAPIKey on a fresh store = %v", err)
	}

	aliceKey, alice, err := auth.NewAPIKey("alice", []string{auth.PermRead}, "ci")
	if err != nil {
		t.Fatal(err)
	}
	bobKey, bob, err := auth.NewAPIKey("bob", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	_, alice2, err := auth.NewAPIKey("alice", []string{auth.PermAdmin}, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	alice2.CreatedAt = alice.CreatedAt.Add(time.Second)
	for _, k := range []auth.APIKey{alice2, bob, alice} {
		if err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatalf("CreateAPIKey %s: %v", k.UserID, err)
		}
	}
	if err := s.CreateAPIKey(ctx, alice); !errors.Is(err, ErrAPIKeyExists) {
		t.Errorf("duplicate ID: %v, want ErrAPIKeyExists", err)
	}

	got, err := s.GetAPIKey(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != "alice" || got.Name != "ci" || !slices.Equal(got.Perms, alice.Perms) ||
		!bytes.Equal(got.SecretHash, alice.SecretHash) || !got.CreatedAt.Equal(alice.CreatedAt) || !got.LastUsed.IsZero() {
		t.Errorf("GetAPIKey = %+v, want %+v", got, alice)
	}

	all, err := s.ListAPIKeys(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range all {
		ids = append(ids, k.ID)
	}
	if want := []string{alice.ID, alice2.ID, bob.ID}; !slices.Equal(ids, want) {
		t.Errorf("ListAPIKeys order = %v, want %v (by user, then creation)", ids, want)
	}
	mine, err := s.ListAPIKeys(ctx, "bob")
	if err != nil || len(mine) != 1 || mine[0].ID != bob.ID {
		t.Errorf("ListAPIKeys(bob) = %+v, %v", mine, err)
	}

	// Verification through the real store, then LastUsed.
	p, err := auth.VerifyAPIKey(ctx, s, aliceKey)
	if err != nil || p.UserID != "alice" || !slices.Equal(p.Perms, []string{auth.PermRead}) {
		t.Fatalf("VerifyAPIKey = %+v, %v", p, err)
	}
	if got, _ := s.GetAPIKey(ctx, alice.ID); got.LastUsed.IsZero() {
		t.Error("LastUsed not recorded")
	}
	earlier := time.Now().Add(-time.Hour)
	if err := s.TouchAPIKey(ctx, alice.ID, earlier); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAPIKey(ctx, alice.ID); got.LastUsed.Before(earlier.Add(time.Minute)) {
		t.Error("TouchAPIKey moved LastUsed backwards")
	}

	// The backing holds the hashes, never the secrets.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw := env.raw(t)
	for _, key := range []string{aliceKey, bobKey} {
		secret := key[len(auth.APIKeyPrefix)+17:]
		bin, _ := hex.DecodeString(secret)
		if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, bin) || bytes.Contains(raw, []byte(key)) {
			t.Fatalf("the store holds an API key secret")
		}
	}
	if !bytes.Contains(raw, []byte(alice.ID)) {
		t.Error("the store lacks the key record (is the test looking at the right data?)")
	}

	// Reopen: keys persist; revoke removes at once, for every handle.
	s = env.open(t, nil)
	other := s
	if env.shared {
		other = env.open(t, nil)
	}
	if _, err := auth.VerifyAPIKey(ctx, other, bobKey); err != nil {
		t.Fatalf("bob's key after reopen: %v", err)
	}
	if err := s.RevokeAPIKey(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.VerifyAPIKey(ctx, other, bobKey); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("revoked key: %v, want ErrInvalidToken", err)
	}
	if err := other.RevokeAPIKey(ctx, bob.ID); !errors.Is(err, auth.ErrAPIKeyNotFound) {
		t.Errorf("second revoke: %v, want ErrAPIKeyNotFound", err)
	}
	// A touch racing a revoke must not bring the key back.
	if err := other.TouchAPIKey(ctx, bob.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAPIKey(ctx, bob.ID); !errors.Is(err, auth.ErrAPIKeyNotFound) {
		t.Errorf("touch resurrected a revoked key: %v", err)
	}
	if l, _ := s.ListAPIKeys(ctx, ""); len(l) != 2 {
		t.Errorf("%d keys after revoke, want 2", len(l))
	}
	// Concurrent touches leave the latest time.
	base := time.Now().UTC().Add(time.Hour).Round(0)
	var wg sync.WaitGroup
	for i := range 16 {
		h := s
		if i%2 == 1 {
			h = other
		}
		wg.Go(func() {
			if err := h.TouchAPIKey(ctx, alice.ID, base.Add(time.Duration(i)*time.Second)); err != nil {
				t.Errorf("TouchAPIKey: %v", err)
			}
		})
	}
	wg.Wait()
	if got, _ := s.GetAPIKey(ctx, alice.ID); !got.LastUsed.Equal(base.Add(15 * time.Second)) {
		t.Errorf("LastUsed after concurrent touches = %v, want %v", got.LastUsed, base.Add(15*time.Second))
	}
	// Registrations are untouched by all this.
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Errorf("Count = %d, %v", n, err)
	}
}

func testCreateAPIKeyRejects(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	_, good, err := auth.NewAPIKey("alice", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*auth.APIKey){
		"bad id":   func(k *auth.APIKey) { k.ID = "../x" },
		"bad user": func(k *auth.APIKey) { k.UserID = "" },
		"no hash":  func(k *auth.APIKey) { k.SecretHash = nil },
	} {
		k := good
		mut(&k)
		if err := s.CreateAPIKey(ctx, k); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if l, _ := s.ListAPIKeys(ctx, ""); len(l) != 0 {
		t.Errorf("refused keys were stored: %+v", l)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.CreateAPIKey(cctx, good); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
	if _, err := s.GetAPIKey(ctx, "not-an-id-"+strings.Repeat("x", 60)); err == nil || strings.Contains(err.Error(), "xxxx") {
		t.Errorf("GetAPIKey error repeats a malformed ID: %v", err)
	}
}

// testAPIKeyToolsets: a key's toolsets come back from Get, List and
// VerifyAPIKey as they were made: nil (every toolset) stays nil, and an
// empty list (none) does not become nil.
func testAPIKeyToolsets(t *testing.T, env storeEnv) {
	ctx := context.Background()
	s := env.open(t, nil)
	for _, tc := range []struct {
		name string
		sets []string
	}{
		{"core", []string{"core"}},
		{"two", []string{"core", "input"}},
		{"all", nil},
		{"none", []string{}},
	} {
		key, rec, err := auth.NewAPIKeyWithToolsets("alice", nil, tc.sets, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAPIKey(ctx, rec); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetAPIKey(ctx, rec.ID)
		if err != nil || !slices.Equal(got.Toolsets, tc.sets) || (got.Toolsets == nil) != (tc.sets == nil) {
			t.Errorf("%s: GetAPIKey toolsets %#v, %v; want %#v", tc.name, got.Toolsets, err, tc.sets)
		}
		list, err := s.ListAPIKeys(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range list {
			if k.ID == rec.ID && (!slices.Equal(k.Toolsets, tc.sets) || (k.Toolsets == nil) != (tc.sets == nil)) {
				t.Errorf("%s: ListAPIKeys toolsets %#v; want %#v", tc.name, k.Toolsets, tc.sets)
			}
		}
		p, err := auth.VerifyAPIKey(ctx, s, key)
		if err != nil || !slices.Equal(p.Toolsets, tc.sets) || (p.Toolsets == nil) != (tc.sets == nil) {
			t.Errorf("%s: VerifyAPIKey toolsets %#v, %v; want %#v", tc.name, p.Toolsets, err, tc.sets)
		}
	}
}
