package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// Bounds of the tools/list answer: every tool at most half of what
// chrome-devtools-mcp lists (28,618 bytes), core alone at most 5 KiB.
const (
	maxListBytesAll  = 14 * 1024
	maxListBytesCore = 5 * 1024
)

// listedBytes returns the JSON of the tools/list result that a caller with
// every browser permission and the token toolsets claim gets from a server
// offering serverSets, as mcp-go writes it on the wire, and its tool names.
func listedBytes(t *testing.T, serverSets []string, claim []string) (json.RawMessage, []string) {
	t.Helper()
	list := All(Config{})
	a := NewAccess(list, serverSets...)
	hooks := &server.Hooks{}
	hooks.AddAfterListTools(a.HideForbidden())
	s := server.NewMCPServer("t", "0", server.WithToolCapabilities(false), server.WithHooks(hooks))
	Register(s, list)
	p := auth.Principal{UserID: "u", Perms: auth.AllPerms(), Toolsets: claim}
	ctx := auth.WithPrincipal(context.Background(), p)
	out := s.HandleMessage(ctx, json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`))
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &msg); err != nil || msg.Result == nil {
		t.Fatalf("tools/list answered %s (%v)", b, err)
	}
	var res mcp.ListToolsResult
	if err := json.Unmarshal(msg.Result, &res); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return msg.Result, names
}

// TestToolsListSize bounds the bytes a client spends on tools/list, and logs
// them per toolset (BENCHMARKS.md: go test ./tools/ -run TestToolsListSize -v).
func TestToolsListSize(t *testing.T) {
	all, names := listedBytes(t, nil, nil)
	if len(names) != len(All(Config{})) {
		t.Fatalf("tools/list shows %d of %d tools", len(names), len(All(Config{})))
	}
	t.Logf("all: %d bytes, %d tools", len(all), len(names))
	if len(all) > maxListBytesAll {
		t.Errorf("tools/list of every tool is %d bytes, more than %d", len(all), maxListBytesAll)
	}
	for _, set := range Toolsets() {
		b, names := listedBytes(t, []string{set}, nil)
		t.Logf("%s: %d bytes, %d tools: %s", set, len(b), len(names), strings.Join(names, " "))
		if set == GroupCore && len(b) > maxListBytesCore {
			t.Errorf("tools/list of core is %d bytes, more than %d", len(b), maxListBytesCore)
		}
	}
}

// TestCoreToolset: core holds what most tasks need, and nothing else.
func TestCoreToolset(t *testing.T) {
	_, names := listedBytes(t, []string{GroupCore}, nil)
	want := "click close_page evaluate_script fill list_pages navigate_page new_page press_key select_page take_screenshot take_snapshot wait_for"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("core lists %s\nwant        %s", got, want)
	}
}
