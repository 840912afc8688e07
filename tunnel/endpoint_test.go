package tunnel

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

// acceptServer upgrades every request and hands the result of Accept to
// results.
func acceptServer(t *testing.T, reg *Registry) (string, <-chan error) {
	t.Helper()
	results := make(chan error, 4)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			results <- err
			return
		}
		tun, err := reg.Accept("alice", ws)
		if err == nil {
			tun.Close(websocket.CloseNormalClosure, "test over")
		}
		results <- err
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), results
}

// TestAcceptBoundsTheHello: the hello is read before the tunnel counts as
// the user's one tunnel, so any number of them may be pending at once; a
// hello as large as a CDP frame (256 MiB) from each would hold that much
// memory per connection. A hello over its small bound is refused.
func TestAcceptBoundsTheHello(t *testing.T) {
	reg := NewRegistry(zerolog.Nop())
	t.Cleanup(reg.Close)
	url, results := acceptServer(t, reg)
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	big := `{"tunnel":"hello","agentVersion":"` + strings.Repeat("v", 1<<20) + `"}`
	// The write may fail: the refusal can cut it short.
	_ = ws.WriteMessage(websocket.TextMessage, []byte(big))
	select {
	case err := <-results:
		if err == nil {
			t.Fatal("a 1 MiB hello was accepted")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Accept did not return")
	}
	if reg.Count() != 0 {
		t.Errorf("%d tunnels live after a refused hello", reg.Count())
	}

	// A hello of ordinary size still opens the tunnel.
	ws2, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	if err := ws2.WriteMessage(websocket.TextMessage, control{Tunnel: typeHello, AgentVersion: "v1"}.marshal()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-results:
		if err != nil {
			t.Fatalf("an ordinary hello: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Accept did not return")
	}
}
