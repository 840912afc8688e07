package proxy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// TestOneLogLinePerToolCall: at the default level (info) a tool call is one
// log line on every transport, its tool_call line, which carries the
// request ID of the HTTP request that brought it; that request's own line
// is at debug level. Other MCP requests (initialize, tools/list) keep
// their line.
func TestOneLogLinePerToolCall(t *testing.T) {
	c := testchrome.Start(t)
	for _, kind := range []transportKind{viaSSE, viaStreamable, viaStateless} {
		t.Run(string(kind), func(t *testing.T) {
			h := newHarness(t, "")
			tok := h.token("alice")
			h.register(tok, "alice", c.URL)
			cl := h.connect(kind, tok, "")
			before := len(h.logs.String())
			mustCall(t, cl, "list_pages", nil)
			waitFor(t, "the call's line", func() bool { return strings.Contains(h.logs.String()[before:], `"event":"tool_call"`) })
			var info, calls []map[string]any
			var debugIDs []string
			for _, line := range strings.Split(h.logs.String()[before:], "\n") {
				var ev map[string]any
				if json.Unmarshal([]byte(line), &ev) != nil {
					continue
				}
				switch {
				case ev["level"] == "debug" && ev["message"] == "http":
					id, _ := ev["request_id"].(string)
					debugIDs = append(debugIDs, id)
				case ev["level"] == "debug":
				default:
					info = append(info, ev)
					if ev["event"] == "tool_call" {
						calls = append(calls, ev)
					}
				}
			}
			if len(info) != 1 || len(calls) != 1 {
				t.Fatalf("one tool call wrote %d lines at info and above (%d tool_call), want 1: %v", len(info), len(calls), info)
			}
			id, _ := calls[0]["request_id"].(string)
			if id == "" || len(debugIDs) != 1 || debugIDs[0] != id {
				t.Errorf("tool_call request_id %q, the request's own (debug) line %v: want the same ID", id, debugIDs)
			}
			// A request that is not a tool call keeps its line.
			before = len(h.logs.String())
			if _, err := cl.ListTools(t.Context(), mcp.ListToolsRequest{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the tools/list request's info line", func() bool {
				return strings.Contains(h.logs.String()[before:], `"level":"info","request_id"`)
			})
		})
	}
}
