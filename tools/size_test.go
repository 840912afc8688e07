package tools

import (
	"context"
	"encoding/json"
	"slices"
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

func TestParseToolsets(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
		err  string
	}{
		{[]string{"all"}, "<nil>", ""},
		{[]string{"core", "all"}, "<nil>", ""},
		{[]string{"network", " Core ", "network"}, "core network", ""},
		{[]string{"core", "netwrok"}, "", `unknown toolset "netwrok"; valid toolsets: core, input, network, console, emulation, performance, storage, extensions (or all)`},
		{[]string{""}, "", "no toolset given"},
		{nil, "", "no toolset given"},
	} {
		got, err := ParseToolsets(c.in)
		s := strings.Join(got, " ")
		if got == nil {
			s = "<nil>"
		}
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v; want error %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || s != c.want {
			t.Errorf("%q: %q, %v; want %q", c.in, s, err, c.want)
		}
	}
}

// TestToolsetsNarrowListingAndCalls: the server's toolsets and a token's
// toolsets claim both narrow what is listed and what may be called, by the
// same rule, and the refusal names the toolset and how to get it.
func TestToolsetsNarrowListingAndCalls(t *testing.T) {
	everyone := auth.AllPerms()
	for _, c := range []struct {
		name       string
		server     []string
		claim      []string
		listed     string // the tools of these groups, no others
		refusal    string // of a call of list_network_requests
		allowsCall bool
	}{
		{"server core", []string{GroupCore}, nil, "core", "list_network_requests is in the network toolset, which this proxy does not offer (it offers core); ask its admin to add network to serve --toolsets", false},
		{"claim core", nil, []string{"core"}, "core", "list_network_requests is in the network toolset, which your token's toolsets claim (core) leaves out; ask an admin for a token with --toolsets network", false},
		{"claim cannot widen", []string{GroupCore}, []string{"core", "network"}, "core", "does not offer", false},
		{"claim narrows server", []string{GroupCore, GroupNetwork}, []string{"network"}, "network", "", true},
		{"empty claim grants none", nil, []string{}, "", "toolsets claim (none)", false},
		{"unknown claim name grants nothing", nil, []string{"everything"}, "", "leaves out", false},
		{"claim all", []string{GroupNetwork}, []string{"all"}, "network", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, names := listedBytes(t, c.server, c.claim)
			groups := map[string]string{}
			for _, tl := range All(Config{}) {
				groups[tl.Tool.Name] = tl.Group
			}
			for _, n := range names {
				if !strings.Contains(" "+c.listed+" ", " "+groups[n]+" ") {
					t.Errorf("%s of %s is listed", n, groups[n])
				}
			}
			if c.listed != "" && len(names) == 0 {
				t.Error("nothing listed")
			}
			a := NewAccess(All(Config{}), c.server...)
			p := auth.Principal{UserID: "u", Perms: everyone, Toolsets: c.claim}
			perm, _, refusal := a.Check(p, "list_network_requests", nil)
			if c.allowsCall != (perm == "") {
				t.Errorf("call allowed=%v (%q), want %v", perm == "", refusal, c.allowsCall)
			}
			if perm != "" && (perm != "toolset:network" || !strings.Contains(refusal, c.refusal)) {
				t.Errorf("refusal %q %q; want toolset:network and %q", perm, refusal, c.refusal)
			}
			// The rule of the listing is the rule of the call.
			for _, tl := range All(Config{}) {
				perm, _, _ := a.Check(p, tl.Tool.Name, nil)
				if listed := slices.Contains(names, tl.Tool.Name); listed != (perm == "") {
					t.Errorf("%s listed=%v, Check %q", tl.Tool.Name, listed, perm)
				}
			}
		})
	}
}
