// Package tunnel holds both ends of the reverse tunnel between the
// developer-machine agent (`mcp-browser-proxy connect`) and the proxy.
//
// Wire format. One tunnel is one WebSocket, dialled by the agent to
// GET /api/tunnel. Every frame is a text frame holding one JSON object:
//
//   - a CDP message (a request from the proxy, a response or event from the
//     browser), relayed unchanged between the proxy's single CDP client and
//     the browser's DevTools websocket;
//   - a control frame, a JSON object whose first key is "tunnel":
//     {"tunnel":"hello",...} (agent, first frame), {"tunnel":"open","conn":N}
//     (proxy: open CDP connection N to the browser, dropping any older one),
//     {"tunnel":"opened","conn":N,"browser":"..."} or
//     {"tunnel":"error","conn":N,"message":"..."} (agent, the outcome),
//     {"tunnel":"close","conn":N} (proxy: drop connection N), and
//     {"tunnel":"closed","conn":N,"message":"..."} (agent: the browser
//     dropped connection N), {"tunnel":"refused","message":"..."} (agent: a
//     frame that was not a CDP request was dropped).
//
// Control frames on the same WebSocket, rather than one WebSocket per CDP
// connection, keep the relay a plain frame copy (no per-message envelope),
// need a single authentication per tunnel, and let the proxy's pool reopen
// the browser connection (after a health check failure) without the agent
// having to redial and re-authenticate. A frame's connection is known from
// its order: the agent stops relaying connection N before it answers a
// later "open", so everything between "opened N" and the next "open" is N's.
package tunnel

import (
	"bytes"
	"encoding/json"
)

// Control frame types.
const (
	typeHello   = "hello"
	typeOpen    = "open"
	typeOpened  = "opened"
	typeError   = "error"
	typeClose   = "close"
	typeClosed  = "closed"
	typeRefused = "refused"
)

// controlPrefix starts every control frame: the first key of a control
// frame is "tunnel"; a CDP message never has that key.
var controlPrefix = []byte(`{"tunnel":`)

// Close codes of the tunnel WebSocket (4000-4999 are for applications).
const (
	// CloseReplaced: a newer tunnel of the same user replaced this one.
	CloseReplaced = 4001
	// CloseExpired: the credential the tunnel was opened with expired.
	CloseExpired = 4002
	// CloseRevoked: the API key the credential came from was revoked.
	CloseRevoked = 4003
	// CloseProtocol: the peer sent something the wire format does not allow.
	CloseProtocol = 4004
	// CloseShutdown: the proxy is shutting down; reconnect later.
	CloseShutdown = 4005
	// CloseUnregistered: the user's registration was deleted
	// (DELETE /api/users/:id); reconnecting would register it again.
	CloseUnregistered = 4006
)

// Hello is the agent's first frame.
type Hello struct {
	// AgentVersion is the version of the agent's binary.
	AgentVersion string `json:"agentVersion"`
	// Browser is the browser's product (e.g. "Chrome/144.0...") when the
	// agent could read it without opening a CDP connection; "" otherwise.
	Browser string `json:"browser,omitempty"`
}

// control is any control frame; fields are set by type.
type control struct {
	Tunnel       string `json:"tunnel"`
	Conn         uint64 `json:"conn,omitempty"`
	AgentVersion string `json:"agentVersion,omitempty"`
	Browser      string `json:"browser,omitempty"`
	// BrowserID, in "opened", is the <id> of the /devtools/browser/<id>
	// websocket the agent reached: the browser's identity, compared with
	// every other registration's so that one browser has one owner.
	BrowserID string `json:"browserId,omitempty"`
	// BrowserPort, in "opened", is the loopback port of the browser's
	// DevTools on the agent's machine: the proxy keeps its pages off it.
	BrowserPort int    `json:"browserPort,omitempty"`
	Message     string `json:"message,omitempty"`
}

func (c control) marshal() []byte {
	b, _ := json.Marshal(c) // a struct of strings and ints always marshals
	return b
}

// isControl reports whether a frame is a control frame.
func isControl(frame []byte) bool { return bytes.HasPrefix(frame, controlPrefix) }
