package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/server"
)

// TestRegisteredSchemasEncodeAsBefore: Register hands mcp-go each tool's
// schemas already encoded, and tools/list still answers, for every tool,
// exactly the JSON of the tool as defined (the snapshots' form).
func TestRegisteredSchemasEncodeAsBefore(t *testing.T) {
	list := All(Config{})
	s := server.NewMCPServer("t", "0", server.WithToolCapabilities(false))
	Register(s, list)
	out := s.HandleMessage(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	raw, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Result struct {
			Tools []json.RawMessage `json:"tools"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		t.Fatal(err)
	}
	listed := map[string]json.RawMessage{}
	for _, tl := range resp.Result.Tools {
		var named struct{ Name string }
		_ = json.Unmarshal(tl, &named)
		listed[named.Name] = tl
	}
	if len(listed) != len(list) {
		t.Fatalf("tools/list has %d tools, %d registered", len(listed), len(list))
	}
	encoded := 0
	for _, tl := range list {
		want, err := json.Marshal(tl.Tool)
		if err != nil {
			t.Fatal(err)
		}
		if got := listed[tl.Tool.Name]; !bytes.Equal(got, want) {
			t.Errorf("%s on tools/list:\n%s\nwant\n%s", tl.Tool.Name, got, want)
		}
		if e := encodedSchemas(tl.Tool); e.RawInputSchema != nil && e.InputSchema.Type == "" {
			encoded++
		}
	}
	if encoded != len(list) {
		t.Errorf("%d of %d tools registered with an encoded input schema", encoded, len(list))
	}
}
