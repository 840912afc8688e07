package browserpool

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testdns"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testfwd"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

func TestBrowserIdentity(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:9222/devtools/browser/abc-1":         "cdp:abc-1",
		"wss://h/devtools/browser/x?token=t":                 "cdp:x",
		"ws://h:1/devtools/page/ABC":                         "cdp:/devtools/page/ABC",
		"ws://h:1/devtools/browser/managed:alice":            "cdp:managed:alice",
		"ws://h:1/devtools/browser/tunnel%3Aalice":           "cdp:tunnel:alice",
		"ws://h:1/devtools/browser/" + "managed:" + "alice/": "cdp:managed:alice/",
	} {
		if got := browserIdentity(in); got != want {
			t.Errorf("browserIdentity(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSameBrowserFirstRegistrationKeepsIt: of two registrations that reach
// one running browser, the one registered first keeps it, even when it
// connects last; the other never gets a connection (or loses it at once),
// whatever URL led it there.
func TestSameBrowserFirstRegistrationKeepsIt(t *testing.T) {
	c := testchrome.Start(t)
	fwd := testfwd.Start(t, "127.0.0.1:"+strconv.Itoa(c.Port))
	fwd.SetEnabled(false)
	p := New(testConfig())
	defer p.Close()
	ctx := context.Background()
	t0 := time.Now()

	// alice registered first, through a forward that is down.
	alice := p.EnsureEndpoint("alice", Endpoint{URL: fwd.URL, Registered: t0})
	if st := alice.WaitSettled(ctx, 10*time.Second); st.State == StateConnected {
		t.Fatalf("alice connected through a closed forward: %+v", st)
	}
	// bob, registered later, reaches the browser first.
	bob := p.EnsureEndpoint("bob", Endpoint{URL: c.URL, Registered: t0.Add(time.Minute)})
	bobConn, err := bob.Conn(ctx, 10*time.Second)
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	// alice's path comes up: she takes her browser back, and bob's
	// connection is dropped.
	fwd.SetEnabled(true)
	alice.Retry()
	if _, err := alice.Conn(ctx, 10*time.Second); err != nil {
		t.Fatalf("alice: %v", err)
	}
	st := waitStatus(t, bob, "bob to be evicted", func(s Status) bool { return s.State == StateConflict })
	if !strings.Contains(st.LastError, "another user") || strings.Contains(st.LastError, "alice") {
		t.Errorf("bob's status: %+v", st)
	}
	select {
	case <-bobConn.Ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("bob's connection was not dropped")
	}
	_, err = bob.Conn(ctx, 5*time.Second)
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Retryable() || !strings.Contains(err.Error(), "another user") || strings.Contains(err.Error(), "alice") {
		t.Errorf("bob's Conn: %v", err)
	}

	// A websocket URL with a made-up id finds the running browser through
	// /json/version; it is still alice's.
	ws := c.WSURL(t)
	carol := p.EnsureEndpoint("carol", Endpoint{URL: ws[:strings.LastIndex(ws, "/")+1] + "made-up", Registered: t0.Add(2 * time.Minute)})
	if st := carol.WaitSettled(ctx, 10*time.Second); st.State != StateConflict || st.Generation != 0 {
		t.Errorf("carol: %+v; want conflict, never connected", st)
	}

	// So does the websocket of one of its pages.
	page := strings.Replace(c.URL, "http://", "ws://", 1) + "/devtools/page/" + c.Pages(t)[0].ID
	dave := p.EnsureEndpoint("dave", Endpoint{URL: page, Registered: t0.Add(3 * time.Minute)})
	if st := dave.WaitSettled(ctx, 10*time.Second); st.State != StateConflict || st.Generation != 0 {
		t.Errorf("dave on a page of alice's browser: %+v; want conflict, never connected", st)
	}
	p.Remove("dave")

	// Once alice is gone, bob (registered next) may have it.
	p.Remove("alice")
	bob.Retry()
	waitStatus(t, bob, "bob to connect once alice left", func(s Status) bool { return s.State == StateConnected })
	waitStatus(t, carol, "carol, registered after bob, to stay off", func(s Status) bool { return s.State == StateConflict })
	if n := len(c.Pages(t)); n != 1 {
		t.Errorf("browser has %d pages, want the 1 it started with", n)
	}
}

// TestRebindCannotTakeAHeldBrowser: bob registers a name of his own first,
// alice her browser by its address later; bob then points his name at
// alice's browser. However senior bob's registration, reaching the browser
// through an address his name did not have when he registered does not
// take it from alice: bob goes to conflict, alice keeps her connection.
func TestRebindCannotTakeAHeldBrowser(t *testing.T) {
	c := testchrome.Start(t)
	port := strconv.Itoa(c.Port)
	res := testdns.New("127.0.0.2") // bob's host: Chromium listens on 127.0.0.1 only
	pol, err := router.NewPolicy(router.DefaultAllowCIDRs(), router.DefaultDenyCIDRs(), nil, res)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Policy = pol
	p := New(cfg)
	defer p.Close()
	ctx := context.Background()
	t0 := time.Now()

	bob := p.EnsureEndpoint("bob", Endpoint{URL: "http://bob.test:" + port, Registered: t0, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.2")}})
	if st := bob.WaitSettled(ctx, 10*time.Second); st.State == StateConnected {
		t.Fatalf("bob connected to 127.0.0.2: %+v", st)
	}
	alice := p.EnsureEndpoint("alice", Endpoint{URL: c.URL, Registered: t0.Add(time.Minute), Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	aliceConn, err := alice.Conn(ctx, 10*time.Second)
	if err != nil {
		t.Fatalf("alice: %v", err)
	}

	// bob re-points his name at alice's browser and reconnects.
	res.Set("127.0.0.1")
	bob.Retry()
	st := waitStatus(t, bob, "bob to be refused", func(s Status) bool { return s.State == StateConflict })
	if strings.Contains(st.LastError, "alice") || st.Generation != 0 {
		t.Errorf("bob's status: %+v; want conflict, never connected, without alice's name", st)
	}
	if _, err := bob.Conn(ctx, 5*time.Second); err == nil {
		t.Error("bob got a connection to alice's browser")
	}
	// alice kept hers: same connection, still alive, still connected.
	if aliceConn.Ctx.Err() != nil {
		t.Error("alice's connection was dropped")
	}
	if st := alice.Status(); st.State != StateConnected || st.Generation != aliceConn.Generation {
		t.Errorf("alice's status %+v; want connected at generation %d", st, aliceConn.Generation)
	}
}

// TestJuniorHolderKeepsItFromLaterRegistrations: alice's name moved (DHCP)
// and she reached her browser at an address she was not pinned to; mallory
// registers that address afterwards. Mallory is pinned there, but she came
// after alice's hold: she is refused and alice keeps her browser. A
// registration made before the hold (bob) still takes it.
func TestJuniorHolderKeepsItFromLaterRegistrations(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close() // nothing listens: the pool's own attempts fail at once
	p := New(testConfig())
	defer p.Close()
	ctx := context.Background()
	moved, later := netip.MustParseAddr("127.0.0.9"), time.Now().Add(time.Hour)
	bob := p.EnsureEndpoint("bob", Endpoint{URL: "http://127.0.0.9:" + port, Registered: time.Now().Add(-time.Hour), Addrs: []netip.Addr{moved}})
	alice := p.EnsureEndpoint("alice", Endpoint{URL: "http://alice-laptop.test:" + port, Registered: time.Now().Add(-time.Minute), Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.5")}})
	mallory := p.EnsureEndpoint("mallory", Endpoint{URL: "http://127.0.0.9:" + port, Registered: later, Addrs: []netip.Addr{moved}})
	for _, b := range []*Browser{bob, alice, mallory} {
		b.WaitSettled(ctx, 10*time.Second)
	}
	if how := p.claim(ctx, alice, "cdp:X", moved); how != "" {
		t.Fatalf("alice's claim at her new address: %q", how)
	}
	if how := p.claim(ctx, mallory, "cdp:X", moved); how != outcomeRefused {
		t.Errorf("mallory, registered after alice took her browser: %q, want %q", how, outcomeRefused)
	}
	select {
	case <-alice.evicted:
		t.Fatal("alice was evicted by a later registration")
	default:
	}
	if how := p.claim(ctx, bob, "cdp:X", moved); how != "" {
		t.Errorf("bob, registered at that address before alice's hold: %q", how)
	}
}

// fakeShared are a cluster's claims as a test sets them.
type fakeShared struct {
	mu      sync.Mutex
	outcome string // what ClaimBrowser answers
	err     error
	lost    bool // VerifyBrowsers reports every hold lost
	claims  []router.BrowserClaim
}

func (f *fakeShared) ClaimBrowser(_ context.Context, id string, c router.BrowserClaim) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims = append(f.claims, c)
	return f.outcome, f.err
}

func (f *fakeShared) VerifyBrowsers(_ context.Context, held map[string]router.BrowserClaim) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lost []string
	if f.lost {
		for id := range held {
			lost = append(lost, id)
		}
	}
	return lost, f.err
}

func (f *fakeShared) set(fn func(*fakeShared)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// TestSharedClaims: in shared mode the pool asks the cluster before it
// hands a connection out, and lets go of a browser another instance's
// registration took. A Redis that does not answer keeps a new browser
// unconnected, and a browser already held connected.
func TestSharedClaims(t *testing.T) {
	c := testchrome.Start(t)
	f := &fakeShared{outcome: router.ClaimRefused}
	cfg := testConfig()
	p := New(cfg)
	p.ShareClaims(f)
	defer p.Close()
	ctx := context.Background()

	bob := p.EnsureEndpoint("bob", Endpoint{URL: c.URL, Registered: time.Now()})
	if st := bob.WaitSettled(ctx, 10*time.Second); st.State != StateConflict {
		t.Fatalf("a browser the cluster refused: %+v, want conflict", st)
	}
	p.Remove("bob")

	f.set(func(f *fakeShared) { f.outcome, f.err = "", router.ErrUnavailable })
	carol := p.EnsureEndpoint("carol", Endpoint{URL: c.URL, Registered: time.Now()})
	if st := carol.WaitSettled(ctx, 10*time.Second); st.State == StateConnected || !strings.Contains(st.LastError, "shared store") {
		t.Fatalf("a new browser while the cluster's claims do not answer: %+v", st)
	}
	f.set(func(f *fakeShared) { f.err = nil })
	carol.Retry()
	if _, err := carol.Conn(ctx, 10*time.Second); err != nil {
		t.Fatalf("carol once the claims answer: %v", err)
	}
	f.mu.Lock()
	last := f.claims[len(f.claims)-1]
	f.mu.Unlock()
	if last.User != "carol" || !last.Pinned || !last.Senior {
		t.Errorf("carol's claim as sent: %+v; want carol's, pinned and senior (she reached her registered address)", last)
	}

	// Redis goes away: carol's hold is kept.
	f.set(func(f *fakeShared) { f.err = router.ErrUnavailable })
	if err := p.VerifyShared(ctx); err == nil {
		t.Error("VerifyShared hid the store's error")
	}
	if st := carol.Status(); st.State != StateConnected {
		t.Fatalf("carol's browser after a failed verification: %+v", st)
	}
	// Another instance's registration took it.
	f.set(func(f *fakeShared) { f.err, f.lost, f.outcome = nil, true, router.ClaimRefused })
	if err := p.VerifyShared(ctx); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return carol.Status().State == StateConflict }) {
		t.Fatalf("carol's browser after another instance took it: %+v, want conflict", carol.Status())
	}
}
