package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

const pingMsg = `{"jsonrpc":"2.0","id":7,"method":"ping"}`

// TestNoLockOutBySessionsNeverDeleted checks that clients that never send
// DELETE /mcp (short runs of the TypeScript SDK, the inspector) do not lock
// their user out: at the per-user limit, a new initialize closes the least
// recently used session that is not in use, which then gets 404, so that
// its client re-initialises.
func TestNoLockOutBySessionsNeverDeleted(t *testing.T) {
	h := newHarnessWith(t, "", session.Config{MaxSessionsPerUser: 3, IdleTimeout: time.Hour})
	tok := h.token("alice")
	var sids []string
	for i := range 3 {
		sid, err := openStreamable(http.DefaultClient, h, tok)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		sids = append(sids, sid)
	}
	// The first is the least recently used, even after the others answer.
	for _, sid := range sids[1:] {
		if resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", tok, sid, pingMsg); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("ping: %v %v %q", err, resp, body)
		}
	}
	fourth, err := openStreamable(http.DefaultClient, h, tok)
	if err != nil {
		t.Fatalf("the 4th initialize at the limit, with no session in use: %v", err)
	}
	resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", tok, sids[0], pingMsg)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the evicted session's next request: %v %v %q, want 404", err, resp, body)
	}
	for _, sid := range append(sids[1:], fourth) {
		if resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", tok, sid, pingMsg); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("session %s after the eviction: %v %v %q", sid, err, resp, body)
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"event":"session_close"`) || !strings.Contains(logs, `"reason":"evicted"`) ||
		!strings.Contains(logs, sids[0]) {
		t.Errorf("the eviction is not audited:\n%s", logs)
	}
}

// TestLockOutOnlyWhenEverySessionIsInUse checks that sessions holding a
// stream are never evicted: with every session of the user streaming, the
// next initialize is refused with 429.
func TestLockOutOnlyWhenEverySessionIsInUse(t *testing.T) {
	h := newHarnessWith(t, "", session.Config{MaxSessionsPerUser: 3, IdleTimeout: time.Hour})
	tok := h.token("alice")
	for i := range 3 {
		if st := openStream(t, h, "/sse", tok); st.status != http.StatusOK {
			t.Fatalf("SSE stream %d: %d %s", i, st.status, st.body)
		}
	}
	resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", tok, "", initializeMsg)
	if err != nil || resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "in use") {
		t.Fatalf("initialize with 3 streaming sessions: %v %v %q, want 429", err, resp, body)
	}
	if n, _ := h.mgr.UserStats("alice"); n != 3 {
		t.Errorf("alice has %d sessions, want her 3 streaming ones", n)
	}

	// A streamable session with its GET stream open is in use too.
	h2 := newHarnessWith(t, "", session.Config{MaxSessionsPerUser: 1, IdleTimeout: time.Hour})
	tok2 := h2.token("bob")
	sid, err := openStreamable(http.DefaultClient, h2, tok2)
	if err != nil {
		t.Fatal(err)
	}
	get := dialStreamableGET(t, h2, tok2, sid)
	defer get.reset()
	if resp, body, err := rpcPost(http.DefaultClient, h2, "/mcp", tok2, "", initializeMsg); err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("initialize while the only session streams: %v %v %q, want 429", err, resp, body)
	}
	if resp, body, err := rpcPost(http.DefaultClient, h2, "/mcp", tok2, sid, pingMsg); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the streaming session was evicted: %v %v %q", err, resp, body)
	}
}

// TestStaleSessionClosed checks that a session with no stream and no
// request for the stale timeout is closed by the sweep (its next request
// gets 404), while one with a stream open stays.
func TestStaleSessionClosed(t *testing.T) {
	h := newLifeHarness(t, session.Config{StaleTimeout: 500 * time.Millisecond, IdleTimeout: time.Hour}, nil)
	tok := h.token("alice")
	abandoned, err := openStreamable(http.DefaultClient, h, tok)
	if err != nil {
		t.Fatal(err)
	}
	streaming, err := openStreamable(http.DefaultClient, h, tok)
	if err != nil {
		t.Fatal(err)
	}
	get := dialStreamableGET(t, h, tok, streaming)
	defer get.reset()
	waitUntil(t, 20*time.Second, "the abandoned session closed as stale", func() bool {
		_, open := h.mgr.Owner(abandoned)
		return !open
	})
	if resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", tok, abandoned, pingMsg); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the stale session's next request: %v %v %q, want 404", err, resp, body)
	}
	if resp, body, err := rpcPost(http.DefaultClient, h, "/mcp", tok, streaming, pingMsg); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the session with a stream open was closed: %v %v %q", err, resp, body)
	}
	if !strings.Contains(h.logs.String(), `"reason":"stale"`) {
		t.Error("the stale close is not audited with reason stale")
	}
}
