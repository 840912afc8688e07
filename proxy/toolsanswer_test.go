package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// toolListAnswer is the proxy's own answer to tools/list for p, with id.
func toolListAnswer(t testing.TB, s *Server, p auth.Principal, id any) any {
	t.Helper()
	idJSON, _ := json.Marshal(id)
	msg := fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"tools/list"}`, idJSON)
	resp := s.mcp.HandleMessage(auth.WithPrincipal(context.Background(), p), json.RawMessage(msg))
	if r, ok := resp.(mcp.JSONRPCResponse); !ok || !isToolList(r.Result) {
		t.Fatalf("tools/list answered %#v", resp)
	}
	return resp
}

// TestToolListAnswerAsMarshalled: the SSE transport's tools/list answers,
// encoded once and then remembered, are byte for byte what json.Marshal
// writes, whatever the request's ID and whichever tools the caller's
// permissions leave; a caller with fewer permissions never gets the list of
// one with more; other answers are json.Marshal's.
func TestToolListAnswerAsMarshalled(t *testing.T) {
	h := newHarness(t, "")
	var l listAnswers
	full := auth.Principal{UserID: "alice", Perms: auth.DefaultPerms()}
	readOnly := auth.Principal{UserID: "bob", Perms: []string{auth.PermRead}}
	var fullLen, readLen int
	for round := range 3 { // a miss, then hits
		for i, id := range []any{1, "req-<&>-\u2028", 9007199254740993} {
			for _, p := range []auth.Principal{full, readOnly} {
				resp := toolListAnswer(t, h.srv, p, id)
				want, err := json.Marshal(resp)
				if err != nil {
					t.Fatal(err)
				}
				got, err := l.encode(resp)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("round %d, id %d, %s: encoded\n%.300s\nwant\n%.300s", round, i, p.UserID, got, want)
				}
				if p.UserID == "alice" {
					fullLen = len(got)
				} else {
					readLen = len(got)
				}
			}
		}
	}
	if readLen >= fullLen {
		t.Errorf("a read-only caller's list (%d bytes) is not shorter than a full one's (%d)", readLen, fullLen)
	}
	// A changed result is encoded anew, not taken for the one remembered.
	changed := toolListAnswer(t, h.srv, full, 7).(mcp.JSONRPCResponse)
	res := changed.Result.(mcp.ListToolsResult)
	res.Tools = append([]mcp.Tool(nil), res.Tools...)
	res.Tools[0].Description += " <changed & more>"
	changed.Result = res
	want, _ := json.Marshal(changed)
	if got, _ := l.encode(changed); !bytes.Equal(got, want) {
		t.Fatalf("a changed list encoded as %.300s", got)
	}
	// Two lists mcp-go made for the same caller are the same values, byte
	// for byte (sameResult's quick path); a list deeply equal but not made
	// of the same values (a schema copied) is still found equal.
	a := toolListAnswer(t, h.srv, full, 8).(mcp.JSONRPCResponse).Result.(mcp.ListToolsResult)
	b := toolListAnswer(t, h.srv, full, 9).(mcp.JSONRPCResponse).Result.(mcp.ListToolsResult)
	if !sameToolValues(a.Tools, b.Tools) {
		t.Error("two tools/list results for one caller are not the same values: the quick comparison never applies")
	}
	b.Tools = append([]mcp.Tool(nil), b.Tools...)
	b.Tools[0].RawInputSchema = append(json.RawMessage(nil), b.Tools[0].RawInputSchema...)
	b.Tools[0].Name = string(append([]byte(nil), b.Tools[0].Name...))
	if sameToolValues(a.Tools, b.Tools) && len(b.Tools[0].RawInputSchema) > 0 {
		t.Error("a list with a copied schema taken for the same values")
	}
	if !sameResult(a, b) || sameResult(a, res) {
		t.Error("sameResult disagrees with reflect.DeepEqual")
	}
	other := mcp.JSONRPCResponse{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(3), Result: map[string]any{"x": "<y>"}}
	want, _ = json.Marshal(other)
	if got, _ := l.encode(other); !bytes.Equal(got, want) {
		t.Fatalf("another answer encoded as %s, want %s", got, want)
	}
}

// BenchmarkToolListAnswer: encoding the proxy's tools/list answer, with
// json.Marshal and remembered (go test -bench ToolListAnswer -benchmem).
func BenchmarkToolListAnswer(b *testing.B) {
	h := newHarness(b, "")
	resp := toolListAnswer(b, h.srv, auth.Principal{UserID: "alice", Perms: auth.DefaultPerms()}, 2)
	data, _ := json.Marshal(resp)
	b.Logf("tools/list answer: %d bytes", len(data))
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(resp)
		}
	})
	b.Run("remembered", func(b *testing.B) {
		var l listAnswers
		b.ReportAllocs()
		for b.Loop() {
			_, _ = l.encodeParts(resp)
		}
	})
}
