package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
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
