package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
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
	// The silent owner: it reads requests and never answers.
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
	silent, err := router.NewLeases(store, router.LeaseOptions{ID: "silent", URL: "http://" + ln.Addr().String(), TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := silent.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	sid := strings.Repeat("ab", 16)
	if err := silent.PutSessions(ctx, sid); err != nil {
		t.Fatal(err)
	}
	// No more heartbeats: the lease ends within a second.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/mcp", strings.NewReader(rawList))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ivy)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("a request for the silent owner's session: %v (the forward outlived the owner's lease)", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), CodeInstanceUnavailable) {
		t.Errorf("a request for the silent owner's session: %d %s, want 503 %s", resp.StatusCode, body, CodeInstanceUnavailable)
	}
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
