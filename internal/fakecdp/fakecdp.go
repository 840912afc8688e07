// Package fakecdp is a DevTools endpoint for the faults a real Chromium
// cannot produce on demand: a browser that accepts the websocket and then
// stays silent.
package fakecdp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
)

// Silent is a DevTools endpoint on 127.0.0.1 that answers /json/version and
// accepts the browser websocket, then answers the n-th CDP command of a
// connection (from 0) only when its answer func says so: with an empty
// result, or a version for Browser.getVersion.
type Silent struct {
	// URL is the http endpoint to register, e.g. http://127.0.0.1:40123.
	URL string
	// Open counts the websocket handlers running, Total the websockets
	// accepted, Cmds the commands received.
	Open, Total, Cmds atomic.Int64
}

// NewSilent starts a Silent endpoint, closed with t.
func NewSilent(t testing.TB, answer func(n int) bool) *Silent {
	t.Helper()
	f := &Silent{}
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/json/version", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"Browser": "Silent/1.0", "webSocketDebuggerUrl": "ws://" + r.Host + "/devtools/browser/silent"})
	})
	mux.HandleFunc("/devtools/browser/", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.Open.Add(1)
		f.Total.Add(1)
		defer f.Open.Add(-1)
		defer c.Close()
		for n := 0; ; n++ {
			var msg struct {
				ID     int64  `json:"id"`
				Method string `json:"method"`
			}
			if err := c.ReadJSON(&msg); err != nil {
				return
			}
			f.Cmds.Add(1)
			if !answer(n) {
				continue
			}
			result := map[string]any{}
			if msg.Method == "Browser.getVersion" {
				result = map[string]any{"protocolVersion": "1.3", "product": "Silent/1.0", "revision": "1", "userAgent": "silent", "jsVersion": "1"}
			}
			if err := c.WriteJSON(map[string]any{"id": msg.ID, "result": result}); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	f.URL = srv.URL
	return f
}
