package proxy

import (
	"net/http"
	"testing"

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
