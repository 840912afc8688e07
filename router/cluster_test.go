package router

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
)

func newTestLeases(t *testing.T, s *RedisStore, id string, ttl time.Duration) *Leases {
	t.Helper()
	l, err := NewLeases(s, LeaseOptions{ID: id, URL: "http://" + id + ".test:3000", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLeases: the leases of two instances on a real Redis. A session or
// home is live exactly while its instance's lease is; a home is claimed
// by the first instance and moves only when that instance is gone; an
// instance releases only its own leases; a Redis restarted empty makes the
// next heartbeat report the lease lost; calls with Redis down fail with
// ErrUnavailable.
func TestLeases(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	sa := openRedisTest(t, RedisOptions{URL: srv.URL, Timeout: 500 * time.Millisecond})
	sb := openRedisTest(t, RedisOptions{URL: srv.URL, Timeout: 500 * time.Millisecond})
	a := newTestLeases(t, sa, "a", time.Minute)
	b := newTestLeases(t, sb, "b", 300*time.Millisecond)

	if lost, err := a.Heartbeat(ctx); err != nil || !lost {
		t.Fatalf("first heartbeat: lost=%v %v, want lost (no lease yet)", lost, err)
	}
	if lost, err := a.Heartbeat(ctx); err != nil || lost {
		t.Fatalf("second heartbeat: lost=%v %v, want kept", lost, err)
	}
	if _, err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}

	// Sessions.
	if err := a.PutSessions(ctx, "s1", "s2"); err != nil {
		t.Fatal(err)
	}
	if o, err := b.Session(ctx, "s1"); err != nil || o != (Owner{ID: "a", URL: a.URL()}) || !o.Live() {
		t.Fatalf("b's view of a's session: %+v %v", o, err)
	}
	if o, _ := b.Session(ctx, "nope"); o != (Owner{}) || o.Live() {
		t.Fatalf("an unknown session: %+v", o)
	}
	if err := b.DropSessions(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if o, _ := a.Session(ctx, "s1"); o.ID != "a" {
		t.Fatalf("b released a's session lease: %+v", o)
	}
	if err := a.DropSessions(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if o, _ := b.Session(ctx, "s1"); o != (Owner{}) {
		t.Fatalf("a released session: %+v", o)
	}

	// Homes: first claim wins, a live home stays.
	if o, err := a.ClaimHome(ctx, "alice"); err != nil || o.ID != "a" || !o.Live() {
		t.Fatalf("a claims alice: %+v %v", o, err)
	}
	if o, err := b.ClaimHome(ctx, "alice"); err != nil || o.ID != "a" {
		t.Fatalf("b claims alice's live home on a: %+v %v", o, err)
	}
	if o, err := a.ClaimHome(ctx, "bob"); err != nil || o.ID != "a" {
		t.Fatal(o, err)
	}
	if o, _ := b.ClaimHome(ctx, "carol"); o.ID != "b" {
		t.Fatalf("b claims carol: %+v", o)
	}

	// b dies without a word: once its lease expires its session and home
	// are dead, and carol's home moves to the next claimant.
	if err := b.PutSessions(ctx, "sb"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		o, err := a.Session(ctx, "sb")
		if err != nil {
			t.Fatal(err)
		}
		if o.ID == "b" && !o.Live() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's session still live after its lease's TTL: %+v", o)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if o, _ := a.Home(ctx, "carol"); o.Live() {
		t.Fatalf("the dead b still carol's live home: %+v", o)
	}
	if o, _ := a.ClaimHome(ctx, "carol"); o.ID != "a" {
		t.Fatalf("carol's home did not move to a: %+v", o)
	}

	// A graceful leave ends a's leases at once for everyone.
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if o, _ := b.Home(ctx, "alice"); o.Live() {
		t.Fatalf("alice's home is still live after a left: %+v", o)
	}
	if err := a.DropHomes(ctx, "alice", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	if o, _ := b.Home(ctx, "alice"); o != (Owner{}) {
		t.Fatalf("alice's home after DropHomes: %+v", o)
	}

	// The first instance's forwarding key fingerprint is the deployment's.
	if err := a.CheckForwardKey(ctx, "fp1"); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckForwardKey(ctx, "fp1"); err != nil {
		t.Errorf("same fingerprint: %v", err)
	}
	if err := b.CheckForwardKey(ctx, "fp2"); !errors.Is(err, ErrClusterSecretMismatch) {
		t.Errorf("another fingerprint: %v, want ErrClusterSecretMismatch", err)
	}

	// Redis restarted empty: the next heartbeat says the lease was lost.
	if _, err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := a.Heartbeat(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("heartbeat with Redis down: %v, want ErrUnavailable", err)
	}
	if _, err := a.ClaimHome(ctx, "alice"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("claim with Redis down: %v, want ErrUnavailable", err)
	}
	if _, err := a.Session(ctx, "s2"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("session lookup with Redis down: %v, want ErrUnavailable", err)
	}
	srv.Start()
	if lost, err := a.Heartbeat(ctx); err != nil || !lost {
		t.Errorf("heartbeat after Redis restarted empty: lost=%v %v, want lost", lost, err)
	}
}

// TestLeasesInstances: Instances lists the URLs of the live instances
// only, Alive tells them, and Protected reads what they published, under
// this store's prefix (a prefix with glob characters matches itself, not
// its neighbours).
func TestLeasesInstances(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := openRedisTest(t, RedisOptions{URL: srv.URL, Prefix: "p*:", Timeout: time.Second})
	other := openRedisTest(t, RedisOptions{URL: srv.URL, Prefix: "px:", Timeout: time.Second})
	a := newTestLeases(t, s, "a", time.Minute)
	b := newTestLeases(t, s, "b", 200*time.Millisecond)
	x := newTestLeases(t, other, "x", time.Minute)
	for _, l := range []*Leases{a, b, x} {
		if _, err := l.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.Instances(ctx)
	if err != nil || len(got) != 2 || !slices.Contains(got, a.URL()) || !slices.Contains(got, b.URL()) {
		t.Fatalf("instances: %v %v; want a's and b's", got, err)
	}
	time.Sleep(400 * time.Millisecond) // b's lease expires
	if got, err := a.Instances(ctx); err != nil || !slices.Equal(got, []string{a.URL()}) {
		t.Fatalf("instances after b's lease expired: %v %v; want a's only", got, err)
	}
	if err := a.PutProtected(ctx, "data of a"); err != nil {
		t.Fatal(err)
	}
	if err := x.PutProtected(ctx, "data of x"); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Protected(ctx); err != nil || len(got) != 1 || got["a"] != "data of a" {
		t.Fatalf("protected: %v %v; want a's data only", got, err)
	}
	alive, err := a.Alive(ctx, "a", "b", "x")
	if err != nil || !alive["a"] || alive["b"] || alive["x"] {
		t.Fatalf("alive: %v %v; want a only (b expired, x under another prefix)", alive, err)
	}
}

// TestBrowserClaims: the cluster-wide claims on a running browser follow
// the pool's rules, and a claim stays in force exactly while its holder's
// registration is the one it was made for.
func TestBrowserClaims(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := openRedisTest(t, RedisOptions{URL: srv.URL, Timeout: time.Second})
	a := newTestLeases(t, s, "a", time.Minute)
	b := newTestLeases(t, s, "b", time.Minute)
	ra, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"})
	if err != nil {
		t.Fatal(err)
	}
	re, err := s.Put(ctx, Registration{UserID: "eve", BrowserURL: "http://127.0.0.1:9225"})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9223"})
	if err != nil {
		t.Fatal(err)
	}
	alice := BrowserClaim{User: "alice", Since: ra.Since(), Senior: true, Pinned: true}
	bob := BrowserClaim{User: "bob", Since: rb.Since(), Senior: true, Pinned: true}
	claim := func(l *Leases, c BrowserClaim, want string) {
		t.Helper()
		if got, err := l.ClaimBrowser(ctx, "cdp:X", c); err != nil || got != want {
			t.Fatalf("%s claims cdp:X through %s: %q %v, want %q", c.User, l.ID(), got, err, want)
		}
	}
	claim(a, alice, "")
	claim(a, alice, "") // held already
	claim(b, bob, ClaimRefused)
	unpinned := bob
	unpinned.Pinned = false
	claim(b, unpinned, ClaimRefused)
	if lost, err := a.VerifyBrowsers(ctx, map[string]BrowserClaim{"cdp:X": alice}); err != nil || len(lost) != 0 {
		t.Fatalf("alice's hold verified: lost %v %v", lost, err)
	}

	// Redis forgets everything but the registrations: the holder's next
	// verification writes its claim again.
	if err := s.rdb.Del(ctx, s.key(redisKeyClaim+"cdp:X")).Err(); err != nil {
		t.Fatal(err)
	}
	if lost, err := a.VerifyBrowsers(ctx, map[string]BrowserClaim{"cdp:X": alice}); err != nil || len(lost) != 0 {
		t.Fatalf("alice's lost claim written again: lost %v %v", lost, err)
	}
	claim(b, bob, ClaimRefused)

	// alice unregisters: her claim is void, bob takes the browser, and
	// alice's instance learns it lost it.
	if err := s.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	claim(b, bob, "")
	if lost, err := a.VerifyBrowsers(ctx, map[string]BrowserClaim{"cdp:X": alice}); err != nil || !slices.Equal(lost, []string{"cdp:X"}) {
		t.Fatalf("alice's void claim: lost %v %v, want cdp:X", lost, err)
	}

	// carol, registered after bob took it, cannot take it from him, pinned
	// or not, senior hold or junior; eve, registered before bob took it,
	// can when bob's hold is junior (he reached it at an address he was
	// not pinned to), and bob's instance learns it lost it.
	rc, err := s.Put(ctx, Registration{UserID: "carol", BrowserURL: "http://127.0.0.1:9224"})
	if err != nil {
		t.Fatal(err)
	}
	carol := BrowserClaim{User: "carol", Since: rc.Since(), Senior: true, Pinned: true}
	claim(a, carol, ClaimRefused)
	junior := bob
	junior.Senior = false
	claim(b, junior, "")
	claim(a, carol, ClaimRefused)
	eve := BrowserClaim{User: "eve", Since: re.Since(), Senior: true, Pinned: true}
	claim(a, eve, "")
	if lost, err := b.VerifyBrowsers(ctx, map[string]BrowserClaim{"cdp:X": junior}); err != nil || !slices.Equal(lost, []string{"cdp:X"}) {
		t.Fatalf("bob's junior hold after eve's: lost %v %v, want cdp:X", lost, err)
	}
	claim(b, junior, ClaimRefused)
}
