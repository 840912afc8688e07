package tools

import (
	"context"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// TestArgPermsNameRealArguments: an ArgPerms entry for an argument the
// schema does not have (a rename) would silently check nothing.
func TestArgPermsNameRealArguments(t *testing.T) {
	n := 0
	for _, tl := range All(Config{}) {
		for arg, perm := range tl.ArgPerms {
			n++
			if _, ok := tl.Tool.InputSchema.Properties[arg]; !ok {
				t.Errorf("%s: ArgPerms names %q, which is not one of its arguments", tl.Tool.Name, arg)
			}
			if perm == tl.Perm {
				t.Errorf("%s: argument %s needs %s, which the tool needs anyway", tl.Tool.Name, arg, perm)
			}
		}
	}
	if n == 0 {
		t.Error("no tool has argument permissions; navigate_page's initScript needs browser:script")
	}
}

func TestMissingPerm(t *testing.T) {
	nav := (&toolset{}).navigatePage()
	writer := auth.Principal{UserID: "w", Perms: []string{auth.PermWrite}}
	scripter := auth.Principal{UserID: "s", Perms: []string{auth.PermWrite, auth.PermScript}}
	for _, tc := range []struct {
		p         auth.Principal
		args      map[string]any
		perm, arg string
	}{
		{writer, map[string]any{"url": "http://x.test/"}, "", ""},
		{writer, map[string]any{"url": "http://x.test/", "initScript": ""}, "", ""},
		{writer, map[string]any{"url": "http://x.test/", "initScript": nil}, "", ""},
		{writer, map[string]any{"url": "http://x.test/", "initScript": "alert(1)"}, auth.PermScript, "initScript"},
		// A non-string value is refused too rather than guessed harmless.
		{writer, map[string]any{"initScript": []any{"alert(1)"}}, auth.PermScript, "initScript"},
		{scripter, map[string]any{"initScript": "alert(1)"}, "", ""},
		{auth.Principal{UserID: "r", Perms: []string{auth.PermRead, auth.PermScript}}, map[string]any{"initScript": "x"}, auth.PermWrite, ""},
	} {
		perm, arg := nav.MissingPerm(tc.p, tc.args)
		if perm != tc.perm || arg != tc.arg {
			t.Errorf("MissingPerm(%v, %v) = %q, %q; want %q, %q", tc.p.Perms, tc.args, perm, arg, tc.perm, tc.arg)
		}
	}
	if msg := nav.Refusal(auth.PermScript, "initScript"); !strings.Contains(msg, "navigate_page with initScript needs the browser:script permission") {
		t.Errorf("refusal: %q", msg)
	}
}

// TestAccessOneRule: the rule that hides a tool from tools/list is the one
// that refuses its call, and every tool carries a group.
func TestAccessOneRule(t *testing.T) {
	list := All(Config{})
	a := NewAccess(list)
	reader := auth.Principal{UserID: "r", Perms: []string{auth.PermRead}}
	res := &mcp.ListToolsResult{}
	for _, tl := range list {
		if tl.Group == "" {
			t.Errorf("%s has no group", tl.Tool.Name)
		}
		res.Tools = append(res.Tools, tl.Tool)
	}
	a.HideForbidden()(auth.WithPrincipal(context.Background(), reader), nil, nil, res)
	listed := map[string]bool{}
	for _, tl := range res.Tools {
		listed[tl.Name] = true
	}
	for _, tl := range list {
		perm, _, refusal := a.Check(reader, tl.Tool.Name, nil)
		if listed[tl.Tool.Name] != (perm == "") {
			t.Errorf("%s: listed=%v but Check says %q", tl.Tool.Name, listed[tl.Tool.Name], perm)
		}
		if perm != "" && refusal != PermissionRefusal(tl.Tool.Name, perm) {
			t.Errorf("%s: refusal %q", tl.Tool.Name, refusal)
		}
	}
	if !listed["take_snapshot"] || listed["click"] {
		t.Errorf("a read-only token lists take_snapshot=%v click=%v", listed["take_snapshot"], listed["click"])
	}
	if perm, _, _ := a.Check(reader, "no_such_tool", nil); perm != "" {
		t.Errorf("an unknown tool is refused with %q; mcp-go answers it", perm)
	}
}

// TestAPIKeyToolsetRefusal: a call outside an API key's toolsets (or those
// of a token minted with the key) says so, and how to get a key with them.
func TestAPIKeyToolsetRefusal(t *testing.T) {
	a := NewAccess(All(Config{}))
	p := auth.Principal{UserID: "u", Perms: auth.AllPerms(), KeyID: "0123456789abcdef", Toolsets: []string{GroupCore}}
	perm, _, refusal := a.Check(p, "list_network_requests", nil)
	want := "list_network_requests is in the network toolset, which your API key's toolsets (core) leave out; ask an admin for an API key with --toolsets network"
	if perm != "toolset:network" || refusal != want {
		t.Errorf("Check = %q, %q; want toolset:network, %q", perm, refusal, want)
	}
}
