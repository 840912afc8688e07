package proxy

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testfwd"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tunnel"
)

// TestClusterRegisterParsedAsHandler: a registration body the handler
// accepts (one JSON value, then anything) is forwarded to the user's home
// like any other: the home decision must read the body as the handler
// does. Served on another instance, the registration would connect the
// browser there while the home kept its connection to the old browser,
// which another user may register next.
func TestClusterRegisterParsedAsHandler(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	gina := a.token("gina")
	old := deadURL(t)
	a.register(gina, "gina", old) // gina's home is A
	if _, ok := a.pool.Get("gina"); !ok {
		t.Fatal("A, gina's home, does not hold her browser")
	}
	moved := deadURL(t)
	body := `{"userId":"gina","browserURL":"` + moved + `"} trailing`
	resp, out := rawMCP(t, http.MethodPost, b.URL+"/api/register", gina, "", body, nil)
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("register with a trailing value through B: %d %s", resp.StatusCode, out)
	}
	if _, ok := b.pool.Get("gina"); ok {
		t.Error("B, not gina's home, connected her browser: the registration was served away from her home")
	}
	if br, ok := a.pool.Get("gina"); ok && resp.StatusCode < 300 && br.URL() != moved {
		t.Errorf("A, gina's home, still connects %s after she registered %s", br.URL(), moved)
	}
}

// TestClusterForwardBodyTooLarge: a body over --max-body without a length
// (chunked), sent to an instance that forwards it, is refused as too large
// (413, audited as body_too_large), not answered as an unreachable owner
// (503 with Retry-After, which tells the client to send it again, and a
// warning per request in the log).
func TestClusterForwardBodyTooLarge(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	hank := a.token("hank")
	if resp := a.do(http.MethodGet, "/api/users/hank/status", hank, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status of unregistered hank: %d", resp.StatusCode) // hank's home is A now
	}
	body := io.MultiReader(strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"pad":"`),
		strings.NewReader(strings.Repeat("a", 2<<20)), strings.NewReader(`"}}`))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL+"/mcp", io.NopCloser(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+hank)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a chunked body over --max-body through B: %d %s, want 413", resp.StatusCode, out)
	}
	if strings.Contains(b.logs.String(), "did not answer") {
		t.Error("B logged the owner as unreachable for a body that was too large")
	}
}

// TestClusterPagesCannotReachOtherHomes: in shared mode each instance's
// pool holds only its home users' browsers, so the page policy must
// protect the DevTools endpoints of every user's registration, whichever
// instance is that user's home, and the listen addresses of every
// instance (each one is the proxy, and forwards): a page of alice's
// session on A reaches neither bob's browser, whose home is B, nor B.
func TestClusterPagesCannotReachOtherHomes(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	chrome := testchrome.Start(t)
	// bob's "DevTools endpoint": a page that must stay out of alice's reach.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bobSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<html><head><title>Bob DevTools</title></head><body>bob's tabs</body></html>`)
	})}
	go func() { _ = bobSrv.Serve(ln) }()
	t.Cleanup(func() { _ = bobSrv.Close() })
	bobURL := "http://" + ln.Addr().String()
	b.register(b.token("bob"), "bob", bobURL) // bob's home is B
	if _, ok := a.pool.Get("bob"); ok {
		t.Fatal("A holds bob's browser; the test needs it on B only")
	}
	alice := a.token("alice")
	a.register(alice, "alice", chrome.URL) // alice's home is A
	c := dialHopping(t, viaStreamable, a.URL, &hostHop{hosts: []string{hostOf(a.URL)}}, alice)
	if sessionsOf(a, "alice") != 1 {
		t.Fatal("alice's session is not on A")
	}
	// The cluster's endpoints are read at each heartbeat.
	deadline := time.Now().Add(20 * time.Second)
	for _, target := range []string{bobURL + "/json", b.URL + "/health"} {
		for {
			text, res := call(t, c, "navigate_page", map[string]any{"url": target})
			if res.IsError && strings.Contains(text, "never reach") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("alice's page on A reached %s: %v %s", target, res.IsError, text)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// TestClusterForwardEndsWithOwnerLease: a forwarded request waits for its
// owner only while the owner's lease lives. An owner that accepted the
// request and then fell silent (hung, or its host gone without a reset)
// is answered 503 INSTANCE_UNAVAILABLE once its lease expires, not held
// for as long as the client waits (or TCP gives up, minutes later).
func TestClusterForwardEndsWithOwnerLease(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	ivy := a.token("ivy")
	// No more heartbeats: the lease ends within a second.
	sid := silentOwner(t, rs, "silent", time.Second)
	resp, body, err := postForSession(a.URL, ivy, sid)
	if err != nil {
		t.Fatalf("a request for the silent owner's session: %v (the forward outlived the owner's lease)", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, CodeInstanceUnavailable) {
		t.Errorf("a request for the silent owner's session: %d %s, want 503 %s", resp.StatusCode, body, CodeInstanceUnavailable)
	}
}

// silentOwner starts an instance that reads requests and never answers,
// gives it a lease of ttl in rs (renewed by no heartbeat) and a session,
// and returns the session's ID.
func silentOwner(t *testing.T, rs *testredis.Server, id string, ttl time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	store, err := router.OpenRedis(router.RedisOptions{URL: rs.URL, Prefix: "cl:", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	owner, err := router.NewLeases(store, router.LeaseOptions{ID: id, URL: "http://" + ln.Addr().String(), TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := owner.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	sid := hex.EncodeToString([]byte(id + strings.Repeat("-", 16))[:16])
	if err := owner.PutSessions(ctx, sid); err != nil {
		t.Fatal(err)
	}
	return sid
}

// postForSession posts a tools/list on session sid to base, bounded by
// 30 s, and returns the answer and its body.
func postForSession(base, token, sid string) (*http.Response, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/mcp", strings.NewReader(rawList))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body), nil
}

// TestClusterPagesCannotReachOtherTunnels: the DevTools port of a browser
// that another instance holds through a tunnel (reported by its agent,
// known only there) is protected on every instance: a page of alice's
// session on A does not reach bob's tunnelled browser, whose home is B.
func TestClusterPagesCannotReachOtherTunnels(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	bobChrome := testchrome.Start(t)
	bob := b.token("bob")
	startAgent(t, b.URL, bob, bobChrome, tunnel.Policy{}) // bob's home is B
	waitConnected(t, b.harness, bob, "bob")
	if _, ok := a.tunnels.Get("bob"); ok {
		t.Fatal("bob's tunnel is on A; the test needs it on B only")
	}
	aliceChrome := testchrome.Start(t)
	alice := a.token("alice")
	a.register(alice, "alice", aliceChrome.URL) // alice's home is A
	c := dialHopping(t, viaStreamable, a.URL, &hostHop{hosts: []string{hostOf(a.URL)}}, alice)
	target := bobChrome.URL + "/json/version"
	deadline := time.Now().Add(20 * time.Second)
	for {
		text, res := call(t, c, "navigate_page", map[string]any{"url": target})
		if res.IsError && strings.Contains(text, "never reach") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's page on A reached bob's tunnelled browser at %s: %v %s", target, res.IsError, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterSameBrowserAcrossInstances: alice's Chrome is held by A, her
// home. bob, homed on B, registers a port forward to it: B's pool has
// never seen alice's browser, so the identity check must hold across the
// cluster, and bob is refused before any tool of his runs there. When A
// dies, alice's registration still holds her browser: bob, retrying on B,
// does not get it while alice has no instance connected to it; and when
// alice's next session brings her browser up on B, she has it.
func TestClusterSameBrowserAcrossInstances(t *testing.T) {
	chrome := testchrome.Start(t)
	pages := testPages(t)
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	aliceTok := a.token("alice")
	a.register(aliceTok, "alice", chrome.URL)
	alice := a.connect(viaStreamable, aliceTok, "")
	mustCall(t, alice, "navigate_page", map[string]any{"url": pages + "/"})
	before := pageIDs(t, chrome)

	fwd := testfwd.Start(t, "127.0.0.1:"+strconv.Itoa(chrome.Port))
	bobTok := b.token("bob")
	status, body := registerRaw(t, b.harness, bobTok, "bob", fwd.URL)
	if fwd.Total() == 0 {
		t.Fatal("B never went through the forward: the test proves nothing")
	}
	if status != http.StatusConflict || !strings.Contains(body, `"code":"CONFLICT"`) || !strings.Contains(body, "another user") {
		t.Fatalf("bob on B registering alice's browser (held by A) through a forward: %d %s; want 409 CONFLICT", status, body)
	}
	if strings.Contains(body, "alice") {
		t.Errorf("the 409 names the owner: %s", body)
	}
	if _, ok := b.pool.Get("bob"); ok {
		t.Error("B holds a browser for bob")
	}
	if n := deniedFor(b.harness, "bob", "another user"); n != 1 {
		t.Errorf("%d refusals of bob audited on B, want 1:\n%s", n, b.logs.String())
	}
	if after := pageIDs(t, chrome); !slices.Equal(before, after) {
		t.Errorf("alice's tabs changed: %v -> %v", before, after)
	}

	// bob registers the forward while it is down (201), then A dies: his
	// browser on B retries and reaches alice's Chrome, which her
	// registration still holds.
	fwd.SetEnabled(false)
	if status, body := registerRaw(t, b.harness, bobTok, "bob", fwd.URL); status != http.StatusCreated {
		t.Fatalf("bob registering a forward that is down: %d %s", status, body)
	}
	a.kill()
	waitFor(t, "A's lease to end", func() bool {
		urls, err := b.leases.Instances(context.Background())
		return err == nil && len(urls) == 1
	})
	seen := fwd.Total()
	fwd.SetEnabled(true)
	waitFor(t, "B to reach alice's browser through the forward again", func() bool { return fwd.Total() > seen })
	br, _ := b.pool.Get("bob")
	waitFor(t, "bob's browser on B to be refused", func() bool { return br.Status().State == browserpool.StateConflict })
	bob := b.connect(viaStreamable, bobTok, "")
	if text, res := call(t, bob, "new_page", map[string]any{"url": pages + "/two"}); !res.IsError {
		t.Errorf("bob's new_page ran on alice's browser: %q", text)
	}
	if after := pageIDs(t, chrome); len(after) > len(before) {
		t.Errorf("a tab was opened in alice's browser: %v -> %v", before, after)
	}
	// alice's next session lands on B, which becomes her home and
	// connects her browser.
	alice2 := b.connect(viaStreamable, b.token("alice"), "")
	mustCall(t, alice2, "navigate_page", map[string]any{"url": pages + "/"})
	if ab, ok := b.pool.Get("alice"); !ok || ab.Status().State != browserpool.StateConnected {
		t.Errorf("B, alice's home now, does not hold her browser connected")
	}
}

// TestClusterForwardToAHungOwnerIsBounded: an owner whose lease lives (its
// heartbeat runs) but whose handlers never answer holds a forwarded
// request no longer than ForwardTimeout: the client gets 503
// INSTANCE_UNAVAILABLE, not a wait without end.
func TestClusterForwardToAHungOwnerIsBounded(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNodeConfig(t, rs, session.Config{}, func(c *Config) { c.Cluster.ForwardTimeout = 500 * time.Millisecond })
	ivy := a.token("ivy")
	sid := silentOwner(t, rs, "hung", time.Minute) // its lease outlives the test
	resp, body, err := postForSession(a.URL, ivy, sid)
	if err != nil {
		t.Fatalf("a request for the hung owner's session: %v (the forward was not bounded)", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, CodeInstanceUnavailable) {
		t.Errorf("a request for the hung owner's session: %d %s, want 503 %s", resp.StatusCode, body, CodeInstanceUnavailable)
	}
}

// TestClusterForwardedStreamsAreNotOneClient: the streams that B forwards
// to A arrive from B's address; counted against A's per-address cap as one
// client, the users behind B would lose their sessions on A once a few of
// them held streams. A connection that carries a request signed by an
// instance is the cluster's own and is not counted; any other still is.
func TestClusterForwardedStreamsAreNotOneClient(t *testing.T) {
	rs := testredis.Start(t)
	const perIP = 4
	a := newClusterNodeConfig(t, rs, session.Config{}, func(c *Config) { c.Conns.MaxPerIP = perIP })
	b := newClusterNode(t, rs)
	const users = 3 * perIP
	var stops []func()
	for i := range users {
		u := fmt.Sprintf("u%d", i)
		tok := a.token(u)
		if resp := a.do(http.MethodGet, "/api/users/"+u+"/status", tok, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status of %s: %d", u, resp.StatusCode) // u's home is A now
		}
		status, body, events, stop := eventStream(t, b.URL, tok)
		if status != http.StatusOK {
			t.Fatalf("stream %d of users homed on A, through B: %d %s (A refused B's connections)", i+1, status, body)
		}
		nextEvent(t, events, "overview")
		stops = append(stops, stop)
	}
	// A plain client is still capped at A.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
		for _, stop := range stops {
			stop()
		}
	}()
	refused := false
	for range perIP + 1 {
		c, err := net.Dial("tcp", strings.TrimPrefix(a.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			refused = true
			break
		}
	}
	if !refused {
		t.Errorf("%d plain connections from one address all held at A (cap %d)", len(held), perIP)
	}
}
