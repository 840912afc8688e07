package proxy

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// decodedMethod is rpcMethod as it was, with encoding/json's Decoder: the
// reference the pooled jsontext reader must agree with.
func decodedMethod(b []byte) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return ""
		}
		switch k {
		case "method":
			var m string
			if dec.Decode(&m) != nil {
				return ""
			}
			return m
		case "params":
			return ""
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}

// TestRPCMethodAsDecoded checks rpcMethod against encoding/json's reading
// of the same bytes: whole messages, heads cut anywhere, escaped names and
// methods, methods after params, and what is not a message.
func TestRPCMethodAsDecoded(t *testing.T) {
	msgs := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"click","arguments":{"uid":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		`{"id":{"a":[1,2,{"b":"}"}]},"method":"ping"}`,
		`{"params":{},"method":"tools/call"}`,
		`{"\u006dethod":"tools/call","id":3}`,
		`{"method":"tools\/call"}`,
		`{"method":"tools/\u0063all"}`,
		`{"method":3}`,
		`{"method":null}`,
		`{"Method":"tools/call"}`,
		`{"jsonrpc":"2.0"}`,
		` { "method" : "tools/call" } `,
		`[{"method":"tools/call"}]`,
		`"method"`,
		``,
		`{`,
		`{"method"`,
		`{"method":`,
		`{"id":1,,"method":"x"}`,
	}
	for _, m := range msgs {
		for n := 0; n <= len(m); n++ {
			head := []byte(m[:n])
			if got, want := rpcMethod(head), decodedMethod(head); got != want {
				t.Errorf("rpcMethod(%q) = %q, encoding/json reads %q", head, got, want)
			}
		}
	}
}

func BenchmarkRPCMethod(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	b.ReportAllocs()
	for b.Loop() {
		if rpcMethod(msg) != "tools/list" {
			b.Fatal("no method")
		}
	}
}

// TestQueryGetAsParsed checks queryGet against url.ParseQuery and
// Values.Get on queries built from pieces that trip the parser.
func TestQueryGetAsParsed(t *testing.T) {
	pieces := []string{"sessionId=abc", "sessionId=", "sessionId", "sessionId=a%20b", "sessionId=a+b",
		"session%49d=x", "sessionId=%zz", "%zz=1", "a=1", "", "sessionId=x;y", "a;b=1", "sessionid=no",
		"sessionId=1=2", "session+Id=sp", "=v", "sessionId=%E2%82%AC"}
	var queries []string
	for _, a := range pieces {
		queries = append(queries, a)
		for _, b := range pieces {
			queries = append(queries, a+"&"+b)
			for _, c := range pieces[:6] {
				queries = append(queries, a+"&"+b+"&"+c)
			}
		}
	}
	queries = append(queries, strings.Repeat("&", maxQueryParams-1)+"sessionId=1", strings.Repeat("&", maxQueryParams)+"sessionId=1")
	for _, q := range queries {
		vals, _ := url.ParseQuery(q)
		if got, want := queryGet(q, "sessionId"), vals.Get("sessionId"); got != want {
			t.Errorf("queryGet(%.80q) = %q, url.ParseQuery reads %q", q, got, want)
		}
	}
}

// TestQuickNotSpoofed checks that a message is handled on the POST's
// goroutine only when mcp-go reads the same quick method: a second
// "method", or one spelled in another case, is what encoding/json takes.
func TestQuickNotSpoofed(t *testing.T) {
	for msg, want := range map[string]bool{
		`{"jsonrpc":"2.0","id":1,"method":"ping"}`:                                             true,
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`:                                       true,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`:                 false,
		`{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"x"}}`: false,
		`{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"x"}}`: false,
		`{"jsonrpc":"2.0","id":1,"method":"ping","METHOD":"tools/call","params":{"name":"x"}}`: false,
	} {
		if got := isQuick([]byte(msg)); got != want {
			t.Errorf("isQuick(%s) = %v, want %v", msg, got, want)
		}
	}
}
