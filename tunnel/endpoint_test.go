package tunnel

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// syncBuffer is a bytes.Buffer safe for a logger and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Count(s.b.Bytes(), []byte("\n"))
}

// TestAgentCannotFloodTheLog: every "refused" or unreadable control frame
// was a log line; an agent sending them at network speed filled the
// proxy's log.
func TestAgentCannotFloodTheLog(t *testing.T) {
	var logs syncBuffer
	reg := NewRegistry(zerolog.New(&logs))
	t.Cleanup(reg.Close)
	served := make(chan string, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		tun, err := reg.Accept("alice", ws)
		if err != nil {
			served <- err.Error()
			return
		}
		served <- tun.Serve()
	}))
	t.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, control{Tunnel: typeHello}.marshal()); err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		frame := control{Tunnel: typeRefused, Message: "no"}.marshal()
		if i%2 == 1 {
			frame = []byte(`{"tunnel":`)
		}
		if err := ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			t.Fatal(err)
		}
	}
	ws.Close()
	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not end")
	}
	if got := logs.lines(); got > 2*agentLogBurst+5 {
		t.Errorf("%d frames of the agent wrote %d log lines", n, got)
	}
}
