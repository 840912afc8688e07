package proxy

import (
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tunnel"
)

// BenchmarkEvaluateScriptTunnel is one evaluate_script round trip over
// Streamable HTTP against the same Chromium, registered directly and
// reached through the agent's tunnel (loopback), in the same run.
func BenchmarkEvaluateScriptTunnel(b *testing.B) {
	c := testchrome.Start(b)
	for _, via := range []string{"direct", "tunnel"} {
		b.Run(via, func(b *testing.B) {
			var h *harness
			tok := ""
			if via == "direct" {
				h = newHarness(b, "")
				tok = h.token("alice")
				h.register(tok, "alice", c.URL)
			} else {
				h, _ = tunnelHarness(b)
				tok = h.token("alice")
				a := startAgent(b, h.URL, tok, c, tunnel.Policy{})
				defer a.stop(b)
				waitConnected(b, h, tok, "alice")
			}
			cl := h.connect(viaStreamable, tok, "")
			defer cl.Close()
			mustCall(b, cl, "new_page", nil)
			benchEvaluate(b, cl, 20)
		})
	}
}
