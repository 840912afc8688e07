package proxy

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// decodedPlainRequest is plainRequest as it was before it read tokens:
// the body decoded with encoding/json, as mcp-go decodes it. It is the
// reference plainRequest must never be more permissive than.
func decodedPlainRequest(body []byte) bool {
	var head struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
		Params struct {
			Meta json.RawMessage `json:"_meta"`
		} `json:"params"`
	}
	if i := bytes.IndexAny(body, "{["); i < 0 || body[i] != '{' {
		return false
	}
	if json.Unmarshal(body, &head) != nil {
		return false
	}
	if head.Method == "" || head.Method == string(mcp.MethodInitialize) ||
		len(head.ID) == 0 || string(head.ID) == "null" || head.Result != nil || head.Error != nil {
		return false
	}
	if m := head.Params.Meta; len(m) > 0 && string(m) != "null" {
		var meta map[string]json.RawMessage
		if json.Unmarshal(m, &meta) != nil {
			return false
		}
		if v, ok := meta[mcp.MetaKeyProtocolVersion]; ok {
			var version string
			if json.Unmarshal(v, &version) != nil || mcp.IsModernProtocol(version) {
				return false
			}
		}
	}
	return true
}

// plainBodies are requests plainRequest takes (true) or leaves to mcp-go.
var plainBodies = []struct {
	body string
	want bool
}{
	{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"evaluate_script","arguments":{"function":"() => 1+1"}}}`, true},
	{` {"jsonrpc":"2.0","id":"a","method":"tools/list"} `, true},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}`, true},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":3}}}`, true},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":null}}`, true},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"` + mcp.MetaKeyProtocolVersion + `":"2025-06-18"}}}`, true},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"` + mcp.MetaKeyProtocolVersion + `":"2026-07-28"}}}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"` + mcp.MetaKeyProtocolVersion + `":7}}}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":[1]}}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_META":{}}}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,2]}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, false},
	{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, false},
	{`{"jsonrpc":"2.0","id":null,"method":"tools/list"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":null}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":""}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":3}`, false},
	{`{"jsonrpc":"2.0","id":1,"result":{}}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"x","result":null}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"x","error":{"code":1}}`, false},
	{`{"jsonrpc":"2.0","ID":1,"method":"tools/list"}`, false},
	{`{"jsonrpc":"2.0","id":1,"Method":"tools/list"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/list","Result":1}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"initialize"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}{}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/list"`, false},
	{`[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`, false},
	{`"x"{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, false},
	{`{"jsonrpc":"2.0","id":1,"method":"tools/li` + "\xff" + `st"}`, false},
	{`{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/list"}`, true},
	{``, false},
	{`null`, false},
}

// TestPlainRequest: plainRequest takes the common requests, leaves the rest
// to mcp-go, and never takes a body that mcp-go's decoding would not
// dispatch as a plain request (decodedPlainRequest).
func TestPlainRequest(t *testing.T) {
	for _, c := range plainBodies {
		got := plainRequest([]byte(c.body))
		if got != c.want {
			t.Errorf("plainRequest(%s) = %v, want %v", c.body, got, c.want)
		}
		if got && !decodedPlainRequest([]byte(c.body)) {
			t.Errorf("plainRequest(%s) takes what encoding/json leaves to mcp-go", c.body)
		}
	}
}

// FuzzPlainRequest: whatever plainRequest takes, encoding/json would have
// taken too.
func FuzzPlainRequest(f *testing.F) {
	for _, c := range plainBodies {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if plainRequest(body) && !decodedPlainRequest(body) {
			t.Fatalf("plainRequest takes %q, which encoding/json leaves to mcp-go", body)
		}
	})
}

func BenchmarkPlainRequest(b *testing.B) {
	body := []byte(plainBodies[0].body)
	b.Run("tokens", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !plainRequest(body) {
				b.Fatal("not plain")
			}
		}
	})
	b.Run("decoded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !decodedPlainRequest(body) {
				b.Fatal("not plain")
			}
		}
	})
}
