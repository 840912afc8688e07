package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// TestToolsetsOverMCP: serve's toolsets and a token's toolsets claim select
// what tools/list offers, over both protocols, and a call outside them is
// refused (not "tool not found"), names the toolset and how to get it, and
// is audited. A claim never widens the server's toolsets.
func TestToolsetsOverMCP(t *testing.T) {
	h := buildHarness(t, harnessSetup{edit: func(c *Config) {
		c.Tools.Toolsets = []string{tools.GroupCore, tools.GroupNetwork}
	}})
	groups := map[string]string{}
	for _, tl := range tools.All(tools.Config{}) {
		groups[tl.Tool.Name] = tl.Group
	}
	sign := func(sets []string) string {
		tok, err := h.authn.IssueWithToolsets("alice", nil, sets, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, kind := range []transportKind{viaStateless, viaStreamable} {
		for _, c := range []struct {
			claim []string
			want  string // the groups listed
		}{
			{nil, "core network"},
			{[]string{"core"}, "core"},
			{[]string{"core", "storage"}, "core"}, // storage is not the server's
		} {
			cl := h.connect(kind, sign(c.claim), "")
			seen := map[string]bool{}
			for name := range toolNames(t, cl) {
				seen[groups[name]] = true
				if !strings.Contains(" "+c.want+" ", " "+groups[name]+" ") {
					t.Errorf("%s, claim %q: %s (%s) is listed", kind, c.claim, name, groups[name])
				}
			}
			for _, g := range strings.Fields(c.want) {
				if !seen[g] {
					t.Errorf("%s, claim %q: no tool of %s is listed", kind, c.claim, g)
				}
			}
		}
	}
	cl := h.connect(viaStateless, sign([]string{"core"}), "")
	text, res := call(t, cl, "list_network_requests", nil)
	if !res.IsError || !strings.Contains(text, "network toolset") || !strings.Contains(text, "--toolsets network") {
		t.Errorf("a core token calling list_network_requests: %q; want a refusal naming the network toolset", text)
	}
	text, res = call(t, cl, "get_cookies", nil)
	if !res.IsError || !strings.Contains(text, "storage toolset, which this proxy does not offer") || !strings.Contains(text, "serve --toolsets") {
		t.Errorf("get_cookies on a core,network proxy: %q; want a refusal naming serve --toolsets", text)
	}
	logs := h.logs.String()
	for _, want := range []string{`"tool":"list_network_requests","reason":"permission"`, `"tool":"get_cookies","reason":"permission"`, "storage toolset is outside"} {
		if !strings.Contains(logs, want) {
			t.Errorf("audit log lacks %s:\n%s", want, logs)
		}
	}
}

// TestInstructionsDescribeSharedParameters: the parameters the tool schemas
// leave undescribed are described once, in the server instructions.
func TestInstructionsDescribeSharedParameters(t *testing.T) {
	h := newHarness(t, "")
	tok := h.token("alice")
	c := h.connect(viaStreamable, tok, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "0"}
	res, err := c.Initialize(ctx, init)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"pageId", "uid", "timeout", "filePath", "pageSize", "pageIdx", "includePreservedMessages", "browser:script", "toolsets"} {
		if !strings.Contains(res.Instructions, p) {
			t.Errorf("instructions do not mention %s:\n%s", p, res.Instructions)
		}
	}
}
