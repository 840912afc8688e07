package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tunnel"
)

// clusterNode is one proxy instance of a shared-mode deployment: its own
// pool, sessions and tunnels, the Redis store and leases it shares with
// the other nodes.
type clusterNode struct {
	*harness
	leases   *router.Leases
	tunnels  *tunnel.Registry
	stopBeat func()
}

// clusterTTL is the instance lease of the test nodes: short, so that a
// killed node is seen dead soon.
const clusterTTL = 3 * time.Second

func newClusterNode(t *testing.T, rs *testredis.Server) *clusterNode {
	t.Helper()
	return newClusterNodeWith(t, rs, session.Config{})
}

// newClusterNodeWith is newClusterNode with session limits of the test's
// choosing.
func newClusterNodeWith(t *testing.T, rs *testredis.Server, scfg session.Config) *clusterNode {
	t.Helper()
	return newClusterNodeConfig(t, rs, scfg, nil)
}

// newClusterNodeConfig is newClusterNodeWith with edit applied to the
// node's Config last (nil: none).
func newClusterNodeConfig(t *testing.T, rs *testredis.Server, scfg session.Config, edit func(*Config)) *clusterNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := router.NewSealer([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	store, err := router.OpenRedis(router.RedisOptions{URL: rs.URL, Prefix: "cl:", Timeout: 2 * time.Second, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() }) // after the harness's cleanup (LIFO)
	var b [8]byte
	_, _ = rand.Read(b[:])
	leases, err := router.NewLeases(store, router.LeaseOptions{ID: hex.EncodeToString(b[:]), URL: "http://" + ln.Addr().String(), TTL: clusterTTL})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewForwardSigner([]byte(testSecret), 0)
	if err != nil {
		t.Fatal(err)
	}
	reg := tunnel.NewRegistry(zerolog.Nop())
	t.Cleanup(reg.Close)
	h := buildHarness(t, harnessSetup{
		ln: ln, session: scfg, capConns: true,
		pool: browserpool.Config{HealthInterval: time.Second, DialTimeout: 5 * time.Second,
			InitialBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Tunnels: reg},
		edit: func(c *Config) {
			c.Store = store
			c.Tunnels = reg
			c.TunnelCheckInterval = 100 * time.Millisecond
			c.Cluster = ClusterConfig{Leases: leases, Signer: signer}
			if edit != nil {
				edit(c)
			}
		},
	})
	n := &clusterNode{harness: h, leases: leases, tunnels: reg}
	n.stopBeat = h.srv.StartCluster(context.Background())
	t.Cleanup(n.stopBeat)
	return n
}

// kill stops the node as a crash would: no lease is released, its
// connections (streams, tunnels) drop, its port stops answering.
func (n *clusterNode) kill() {
	n.stopBeat()
	n.tunnels.Close()
	n.hs.CloseClientConnections()
	n.hs.Close()
}

// hostHop sends each request that pick selects to the hosts in turn, and
// the others unchanged: one MCP client then talks to several instances.
type hostHop struct {
	hosts []string
	pick  func(*http.Request) bool
	keep1 bool // the first request goes where the client sent it
	n     atomic.Int64
	sent  atomic.Bool
}

func (h *hostHop) RoundTrip(r *http.Request) (*http.Response, error) {
	if first := !h.sent.Swap(true); first && h.keep1 {
		return http.DefaultTransport.RoundTrip(r)
	}
	if h.pick == nil || h.pick(r) {
		r = r.Clone(r.Context())
		r.URL.Host = h.hosts[int(h.n.Add(1)-1)%len(h.hosts)]
		r.Host = ""
	}
	return http.DefaultTransport.RoundTrip(r)
}

func hostOf(base string) string { return strings.TrimPrefix(base, "http://") }

// dialHopping starts an initialized mcp-go client whose stream (SSE) or
// first request (Streamable) goes to first, and whose requests then go to
// the hosts of hop in turn.
func dialHopping(t *testing.T, kind transportKind, first string, hop *hostHop, token string) *client.Client {
	t.Helper()
	headers := map[string]string{"Authorization": "Bearer " + token}
	hc := &http.Client{Transport: hop}
	var c *client.Client
	if kind == viaSSE {
		tr, err := transport.NewSSE(first+"/sse", transport.WithHeaders(headers), transport.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		c = client.NewClient(tr)
	} else {
		tr, err := transport.NewStreamableHTTP(first+"/mcp", transport.WithHTTPHeaders(headers), transport.WithHTTPBasicClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		c = client.NewClient(tr, client.WithProtocolVersion(mcp.ProtocolVersion20251125))
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "0"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize %s via %s: %v", kind, first, err)
	}
	return c
}

const rawInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`

const rawList = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`

// rawMCP sends one request to base's /mcp (or another path) and returns
// the answer with its body read.
func rawMCP(t *testing.T, method, url, token, sid, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

func sessionsOf(n *clusterNode, user string) int { return len(n.mgr.List(user)) }

// TestClusterSharedMode: two proxy instances on two loopback ports share
// one real Redis. A registration made on A is seen from B, and B does not
// connect the browser too; a tunnel that reaches A through B serves
// sessions whichever instance the client talks to (an SSE session on A
// whose messages go to B, a Streamable session driven through A and B in
// turn, a session living on B driven through A); every cross-user check
// holds across instances and the inter-instance header cannot be forged
// or replayed; with Redis stopped, sessions on an instance keep working,
// new ones are refused, and all recovers when Redis is back; a killed
// instance's sessions answer 404 once its lease expires and its user's
// next session, and tunnel, land on the other instance.
func TestClusterSharedMode(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	chrome := testchrome.Start(t)
	pages := testPages(t)
	alice, bob, carol := a.token("alice"), a.token("bob"), a.token("carol")

	// Register on A, status on B: B forwards to bob's home, A, and never
	// connects bob's browser itself.
	nothing, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bobBrowser := "http://" + nothing.Addr().String()
	nothing.Close()
	a.register(bob, "bob", bobBrowser)
	var st UserStatus
	if resp := b.do(http.MethodGet, "/api/users/bob/status", bob, nil, &st); resp.StatusCode != http.StatusOK || st.UserID != "bob" {
		t.Fatalf("status of bob on B: %d %+v", resp.StatusCode, st)
	}
	if _, ok := b.pool.Get("bob"); ok {
		t.Error("B connected bob's browser too: one instance (the home) must hold it")
	}
	// The request log line is written once the handler returns, which
	// may be after the client read the whole answer: wait for it.
	logged := func() bool {
		return strings.Contains(b.logs.String(), `"forwarded_to":"`+a.leases.ID()+`"`) && strings.Contains(a.logs.String(), `"forwarded_by":"`+b.leases.ID()+`"`)
	}
	for deadline := time.Now().Add(5 * time.Second); !logged() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !logged() {
		t.Error("the request logs of B and A do not name the forwarding")
	}
	if _, ok := a.pool.Get("bob"); !ok {
		t.Error("A, bob's home, does not hold bob's browser")
	}

	// alice's home is A (first need there); her agent connects through B:
	// the WebSocket is forwarded, and the tunnel lands on A.
	if resp := a.do(http.MethodGet, "/api/users/alice/status", alice, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status of unregistered alice: %d", resp.StatusCode)
	}
	startAgent(t, b.URL, alice, chrome, tunnel.Policy{})
	waitConnected(t, b.harness, alice, "alice")
	if _, ok := a.tunnels.Get("alice"); !ok {
		t.Fatal("alice's tunnel, opened through B, is not on A, her home")
	}
	if _, ok := b.tunnels.Get("alice"); ok {
		t.Fatal("alice's tunnel is on B too")
	}

	// An SSE session opened on A whose messages are posted to B.
	sse := dialHopping(t, viaSSE, a.URL, &hostHop{hosts: []string{hostOf(b.URL)}, pick: func(r *http.Request) bool { return r.Method == http.MethodPost }}, alice)
	mustCall(t, sse, "navigate_page", map[string]any{"url": pages})
	if snap := mustCall(t, sse, "take_snapshot", nil); !strings.Contains(snap, `button "Press me"`) {
		t.Fatalf("snapshot of the SSE session through B: %s", snap)
	}
	if sessionsOf(a, "alice") != 1 || sessionsOf(b, "alice") != 0 {
		t.Fatalf("alice's SSE session: %d on A, %d on B; want it on A only", sessionsOf(a, "alice"), sessionsOf(b, "alice"))
	}
	sseID := sse.GetTransport().(*transport.SSE).GetEndpoint().Query().Get("sessionId")
	if sseID == "" {
		t.Fatal("no session ID in the SSE endpoint")
	}

	// A Streamable session opened on B, driven through A and B in turn:
	// it lives at alice's home (A) and uses the tunnel there.
	hop := dialHopping(t, viaStreamable, b.URL, &hostHop{hosts: []string{hostOf(a.URL), hostOf(b.URL)}, keep1: true}, alice)
	mustCall(t, hop, "navigate_page", map[string]any{"url": pages})
	for i := range 4 {
		if out := mustCall(t, hop, "evaluate_script", map[string]any{"function": "() => document.title + ':' + (6*7)"}); !strings.Contains(out, "Test page:42") {
			t.Fatalf("call %d of the hopping session: %s", i, out)
		}
	}
	hopID := hop.GetSessionId()

	// carol's home is B: her session lives on B and is driven through A.
	carolHop := dialHopping(t, viaStreamable, b.URL, &hostHop{hosts: []string{hostOf(a.URL)}, keep1: true}, carol)
	if len(toolNames(t, carolHop)) == 0 || sessionsOf(b, "carol") != 1 || sessionsOf(a, "carol") != 0 {
		t.Fatalf("carol's session: %d on B, %d on A; want it on B", sessionsOf(b, "carol"), sessionsOf(a, "carol"))
	}

	// Cross-user checks across instances: the owner checks the client's
	// credential, whoever forwarded the request.
	if resp, body := rawMCP(t, http.MethodPost, b.URL+"/message?sessionId="+sseID, bob, "", rawList, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob posting to alice's SSE session (on A) through B: %d %s, want 403", resp.StatusCode, body)
	}
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		if resp, body := rawMCP(t, m, b.URL+"/mcp", bob, hopID, rawList, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("bob %s alice's Streamable session (on A) through B: %d %s, want 403", m, resp.StatusCode, body)
		}
	}
	if resp := b.do(http.MethodGet, "/api/users/alice/status", bob, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob reading alice's status on B: %d, want 403", resp.StatusCode)
	}
	// The dashboard's close of a session on another instance is forwarded
	// too, and checked there.
	carolID := carolHop.GetSessionId()
	if resp := a.do(http.MethodDelete, "/api/sessions/"+carolID, bob, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bob closing carol's session (on B) through A: %d, want 404", resp.StatusCode)
	}
	if resp := a.do(http.MethodDelete, "/api/sessions/"+carolID, carol, nil, nil); resp.StatusCode != http.StatusNoContent || sessionsOf(b, "carol") != 0 {
		t.Errorf("carol closing her session (on B) through A: %d, %d left on B; want 204 and none", resp.StatusCode, sessionsOf(b, "carol"))
	}
	// The closing DELETE /mcp without credentials (mcp-go's) reaches the
	// session's instance.
	carol2 := dialHopping(t, viaStreamable, b.URL, &hostHop{hosts: []string{hostOf(b.URL)}}, carol)
	if resp, body := rawMCP(t, http.MethodDelete, a.URL+"/mcp", "", carol2.GetSessionId(), "", nil); resp.StatusCode >= 300 || sessionsOf(b, "carol") != 0 {
		t.Errorf("DELETE /mcp without credentials of carol's session on B, through A: %d %s, %d left on B", resp.StatusCode, body, sessionsOf(b, "carol"))
	}
	// Without a credential, a session on another instance is not even
	// looked up, except for the closing DELETE that knowing the ID allows.
	if resp, body := rawMCP(t, http.MethodPost, b.URL+"/mcp", "", hopID, rawList, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no credential, alice's session through B: %d %s, want 401", resp.StatusCode, body)
	}
	if !strings.Contains(a.logs.String(), "session belongs to another user") {
		t.Error("A did not audit bob's forwarded use of alice's session")
	}

	// The forwarding header: forged or stale ones are refused (bob cannot
	// open a session away from his home, A, by posing as forwarded); a
	// valid one only says "serve here", never who the caller is.
	signer, err := auth.NewForwardSigner([]byte(testSecret), 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.NewForwardSigner([]byte("another-secret-another-secret-another!"), 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]string{
		"forged":             "v1;" + a.leases.ID() + ";" + strconv.FormatInt(time.Now().Unix(), 10) + ";" + strings.Repeat("ab", 32),
		"another secret":     other.Sign(http.MethodPost, "/mcp", a.leases.ID()),
		"another request":    signer.Sign(http.MethodPost, "/sse", a.leases.ID()),
		"replayed (too old)": signer.SignAt(http.MethodPost, "/mcp", a.leases.ID(), time.Now().Add(-time.Minute)),
		"malformed":          "yes",
	} {
		resp, body := rawMCP(t, http.MethodPost, b.URL+"/mcp", bob, "", rawInit, map[string]string{auth.ForwardHeader: h})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "forwarding header") {
			t.Errorf("%s forwarding header: %d %s, want 403", name, resp.StatusCode, body)
		}
	}
	if sessionsOf(b, "bob") != 0 {
		t.Fatal("a refused forwarding header opened a session on B")
	}
	if !strings.Contains(b.logs.String(), "forged or stale inter-instance forwarding header") {
		t.Error("B did not audit the forged forwarding headers")
	}
	if resp := b.do(http.MethodGet, "/api/users/alice/status", bob, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's status of alice: %d", resp.StatusCode)
	}
	resp, body := rawMCP(t, http.MethodGet, b.URL+"/api/users/alice/status", bob, "", "",
		map[string]string{auth.ForwardHeader: signer.Sign(http.MethodGet, "/api/users/alice/status", a.leases.ID())})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's status of alice with a valid forwarding header: %d %s; the header must not stand for identity", resp.StatusCode, body)
	}
	// A forwarded request is served where it arrives, never forwarded
	// again: B does not hold alice's session (A does), so it is unknown.
	resp, body = rawMCP(t, http.MethodPost, b.URL+"/mcp", alice, hopID, rawList,
		map[string]string{auth.ForwardHeader: signer.Sign(http.MethodPost, "/mcp", a.leases.ID())})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a forwarded request for a session of another instance: %d %s, want 404 (no second hop)", resp.StatusCode, body)
	}
	resp, body = rawMCP(t, http.MethodPost, b.URL+"/mcp", "", "", rawInit,
		map[string]string{auth.ForwardHeader: signer.Sign(http.MethodPost, "/mcp", a.leases.ID())})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a forwarded request without a credential: %d %s, want 401", resp.StatusCode, body)
	}

	// Redis goes away (keeping its data).
	local := dialHopping(t, viaStreamable, a.URL, &hostHop{hosts: []string{hostOf(a.URL)}}, alice) // lives on A, talks to A
	rs.StopKeepingData()
	for _, n := range []*clusterNode{a, b} {
		var e APIError
		if resp := n.do(http.MethodGet, "/ready", "", nil, &e); resp.StatusCode != http.StatusServiceUnavailable || e.Code != CodeStoreUnavailable {
			t.Errorf("/ready with Redis down: %d %+v", resp.StatusCode, e)
		}
		resp, body := rawMCP(t, http.MethodPost, n.URL+"/mcp", alice, "", rawInit, nil)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, CodeStoreUnavailable) || resp.Header.Get("Retry-After") == "" {
			t.Errorf("a new session with Redis down: %d %s Retry-After=%q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	if out := mustCall(t, local, "evaluate_script", map[string]any{"function": "() => 6*7"}); !strings.Contains(out, "42") {
		t.Fatalf("a session on A with Redis down: %s", out)
	}
	rs.Start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, _ := rawMCP(t, http.MethodPost, b.URL+"/mcp", alice, "", rawInit, nil)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new sessions still refused %v after Redis came back: %d", 20*time.Second, resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := mustCall(t, sse, "evaluate_script", map[string]any{"function": "() => 6*7"}); !strings.Contains(out, "42") {
		t.Fatalf("the SSE session (on A, posting to B) after Redis came back: %s", out)
	}
	mustCall(t, hop, "evaluate_script", map[string]any{"function": "() => 1"})
	mustCall(t, local, "evaluate_script", map[string]any{"function": "() => 1"})

	// A dies without a word. Its sessions, asked for through B, are
	// unreachable (503, retry) until its lease expires, then ended (404:
	// the client initializes again).
	a.kill()
	deadline = time.Now().Add(20 * time.Second)
	for {
		resp, body := rawMCP(t, http.MethodPost, b.URL+"/mcp", alice, hopID, rawList, nil)
		if resp.StatusCode == http.StatusNotFound {
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, CodeInstanceUnavailable) {
			t.Fatalf("a session of the dead A through B: %d %s, want 503 with Retry-After, then 404", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead A's session never answered 404")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp, _ := rawMCP(t, http.MethodPost, b.URL+"/message?sessionId="+sseID, alice, "", rawList, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the dead A's SSE session through B: %d, want 404", resp.StatusCode)
	}
	// The agent reconnects (through B) and its tunnel lands on B, alice's
	// new home; her next session, on B, drives the browser.
	waitConnected(t, b.harness, alice, "alice")
	if _, ok := b.tunnels.Get("alice"); !ok {
		t.Fatal("alice's tunnel did not move to B")
	}
	again := dialHopping(t, viaStreamable, b.URL, &hostHop{hosts: []string{hostOf(b.URL)}}, alice)
	mustCall(t, again, "navigate_page", map[string]any{"url": pages + "/two"})
	if out := mustCall(t, again, "evaluate_script", map[string]any{"function": "() => document.title"}); !strings.Contains(out, "Two") {
		t.Fatalf("alice's new session on B: %s", out)
	}
	if sessionsOf(b, "alice") == 0 {
		t.Error("alice's new session is not on B")
	}
	// bob's registration outlived his home: his next session lands on B.
	dialHopping(t, viaStreamable, b.URL, &hostHop{hosts: []string{hostOf(b.URL)}}, bob)
	if sessionsOf(b, "bob") != 1 {
		t.Errorf("bob's new session: %d on B, want 1", sessionsOf(b, "bob"))
	}
	if _, ok := b.pool.Get("bob"); !ok {
		t.Error("B, bob's new home, did not take bob's registered browser")
	}
}

// TestClusterLimitsAtHome: a user's new sessions are opened at the user's
// home whichever instance the client asks, so the per-user session limit
// holds across instances.
func TestClusterLimitsAtHome(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNodeWith(t, rs, session.Config{MaxSessionsPerUser: 1})
	b := newClusterNodeWith(t, rs, session.Config{MaxSessionsPerUser: 1})
	dave := a.token("dave")
	// An SSE session with its stream open is in use: never evicted.
	first := dialHopping(t, viaSSE, a.URL, &hostHop{hosts: []string{hostOf(a.URL)}}, dave)
	if len(toolNames(t, first)) == 0 {
		t.Fatal("no tools")
	}
	resp, body := rawMCP(t, http.MethodPost, b.URL+"/mcp", dave, "", rawInit, nil)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, CodeLimitExceeded) {
		t.Fatalf("dave's second session, asked of B: %d %s; want 429 from his home, A", resp.StatusCode, body)
	}
	if sessionsOf(a, "dave") != 1 || sessionsOf(b, "dave") != 0 {
		t.Errorf("dave's sessions: %d on A, %d on B", sessionsOf(a, "dave"), sessionsOf(b, "dave"))
	}
}

// TestClusterRedisRestartedEmpty: when Redis comes back without its data,
// the instances write their leases again by themselves: a session on B is
// reachable through A again, with no client doing anything.
func TestClusterRedisRestartedEmpty(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	erin := a.token("erin")
	c := dialHopping(t, viaStreamable, b.URL, &hostHop{hosts: []string{hostOf(a.URL)}, keep1: true}, erin)
	if len(toolNames(t, c)) == 0 || sessionsOf(b, "erin") != 1 {
		t.Fatalf("erin's session is not on B: %d", sessionsOf(b, "erin"))
	}
	sid := c.GetSessionId()
	rs.Restart() // empty: no instance, session or home lease left
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, body := rawMCP(t, http.MethodPost, a.URL+"/mcp", erin, sid, rawList, nil)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("erin's session through A after Redis restarted: %d %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("erin's session on B never reachable through A again: %d %s", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(toolNames(t, c)) == 0 {
		t.Fatal("erin's client lost its session")
	}
}

// TestClusterHomeTakenOver: an instance cut off from Redis longer than its
// lease looks dead, and another becomes its users' home; when it is back,
// it lets go of those users (their sessions there end, their browser
// connection closes) instead of holding a second connection to the browser.
func TestClusterHomeTakenOver(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	frank := a.token("frank")
	dialHopping(t, viaSSE, a.URL, &hostHop{hosts: []string{hostOf(a.URL)}}, frank)
	if sessionsOf(a, "frank") != 1 {
		t.Fatal("frank's session is not on A")
	}
	a.stopBeat() // A is cut off: its lease expires
	deadline := time.Now().Add(20 * time.Second)
	for {
		o, err := b.leases.Home(context.Background(), "frank")
		if err != nil {
			t.Fatal(err)
		}
		if !o.Live() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("A's lease never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	dialHopping(t, viaStreamable, b.URL, &hostHop{hosts: []string{hostOf(b.URL)}}, frank)
	if sessionsOf(b, "frank") != 1 {
		t.Fatal("frank's new session is not on B, his new home")
	}
	stop := a.srv.StartCluster(context.Background()) // A is back; its first heartbeat runs now
	t.Cleanup(stop)
	if sessionsOf(a, "frank") != 0 {
		t.Errorf("A kept frank's session after B became his home: %d", sessionsOf(a, "frank"))
	}
	if !strings.Contains(a.logs.String(), `"event":"home_lost"`) {
		t.Error("A did not audit letting go of frank")
	}
	if sessionsOf(b, "frank") != 1 {
		t.Errorf("frank's session on B: %d, want 1", sessionsOf(b, "frank"))
	}
}

// TestClusterDashboardSeesEveryInstance: the dashboard's views are the
// deployment's, whichever instance the load balancer picked: a user sees
// their own sessions wherever they are (their home), and an admin sees
// every instance's sessions and every browser's state.
func TestClusterDashboardSeesEveryInstance(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	aliceTok, bobTok := a.token("alice"), b.token("bob")
	a.register(aliceTok, "alice", deadURL(t)) // alice's home is A
	b.register(bobTok, "bob", deadURL(t))     // bob's, B
	a.connect(viaStreamable, aliceTok, "")
	b.connect(viaStreamable, bobTok, "")
	if sessionsOf(a, "alice") != 1 || sessionsOf(b, "bob") != 1 {
		t.Fatalf("sessions: alice on A %d, bob on B %d", sessionsOf(a, "alice"), sessionsOf(b, "bob"))
	}
	ids := func(ov Overview) (users, sessions []string) {
		for _, u := range ov.Users {
			users = append(users, fmt.Sprintf("%s:%d", u.UserID, u.Sessions))
		}
		for _, s := range ov.Sessions {
			sessions = append(sessions, s.UserID)
		}
		slices.Sort(sessions)
		return users, sessions
	}
	root := a.token("root", auth.PermAdmin)
	for _, n := range []*clusterNode{a, b} {
		var ov Overview
		if resp := n.do(http.MethodGet, "/api/overview", aliceTok, nil, &ov); resp.StatusCode != 200 {
			t.Fatalf("alice's overview: %d", resp.StatusCode)
		}
		if users, sessions := ids(ov); !slices.Equal(users, []string{"alice:1"}) || !slices.Equal(sessions, []string{"alice"}) {
			t.Errorf("alice's overview through %s: users %v, sessions %v; want her row with her session", n.URL, users, sessions)
		}
		ov = Overview{}
		if resp := n.do(http.MethodGet, "/api/overview", root, nil, &ov); resp.StatusCode != 200 {
			t.Fatalf("admin's overview: %d", resp.StatusCode)
		}
		if users, sessions := ids(ov); !slices.Equal(users, []string{"alice:1", "bob:1"}) || !slices.Equal(sessions, []string{"alice", "bob"}) {
			t.Errorf("admin's overview through %s: users %v, sessions %v; want both users with a session each", n.URL, users, sessions)
		}
		var list []SessionInfo
		if resp := n.do(http.MethodGet, "/api/sessions", root, nil, &list); resp.StatusCode != 200 || len(list) != 2 {
			t.Errorf("admin's GET /api/sessions through %s: %d, %d sessions; want 2", n.URL, resp.StatusCode, len(list))
		}
		list = nil
		if resp := n.do(http.MethodGet, "/api/sessions", bobTok, nil, &list); resp.StatusCode != 200 || len(list) != 1 || list[0].UserID != "bob" {
			t.Errorf("bob's GET /api/sessions through %s: %d %+v; want his one session", n.URL, resp.StatusCode, list)
		}
		_, _, events, stop := eventStream(t, n.URL, root)
		var evov Overview
		if err := json.Unmarshal([]byte(nextEvent(t, events, "overview").data), &evov); err != nil {
			t.Fatal(err)
		}
		stop()
		if users, _ := ids(evov); !slices.Equal(users, []string{"alice:1", "bob:1"}) {
			t.Errorf("admin's events through %s: users %v", n.URL, users)
		}
	}
}

// TestClusterForwardedAnswerHeaders: a forwarded answer carries each of
// the headers both instances set once, and both instances log the request
// under one request ID.
func TestClusterForwardedAnswerHeaders(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs)
	b := newClusterNode(t, rs)
	tok := a.token("jo")
	a.register(tok, "jo", deadURL(t)) // jo's home is A
	req, _ := http.NewRequest(http.MethodGet, b.URL+"/api/users/jo/status", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jo's status through B: %d", resp.StatusCode)
	}
	ids := resp.Header.Values("X-Request-Id")
	if len(ids) != 1 {
		t.Fatalf("X-Request-Id of a forwarded answer: %q, want one", ids)
	}
	if v := resp.Header.Values("Vary"); len(v) > 1 {
		t.Errorf("Vary of a forwarded answer: %q, want it once", v)
	}
	// Each request line is written once its answer is out.
	waitFor(t, "the request ID in both instances' logs", func() bool {
		return strings.Contains(a.logs.String(), ids[0]) && strings.Contains(b.logs.String(), ids[0])
	})
}
