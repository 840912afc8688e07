package proxy

import (
	"context"
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/web"
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

// TestAPIKeyOfALimitedTokenKeepsItsToolsets: a token limited to some
// toolsets cannot shed the limit by making itself an API key: a key it
// makes without toolsets gets the token's.
func TestAPIKeyOfALimitedTokenKeepsItsToolsets(t *testing.T) {
	h := newHarness(t, "")
	tok, err := h.authn.IssueWithToolsets("carol", nil, []string{tools.GroupCore}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Key string `json:"key"`
	}
	if resp := h.do(http.MethodPost, "/api/apikeys", tok, map[string]any{"name": "ci"}, &created); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	checkOnlyCore(t, h, created.Key)
}

// TestAPIKeyToolsets: POST /api/apikeys takes toolsets, checked against the
// known ones and, for a limited caller, its own; a key with toolsets core
// lists only core tools, and a call of another is refused, named and
// audited like one outside a token's toolsets claim.
func TestAPIKeyToolsets(t *testing.T) {
	h := newHarness(t, "")
	alice := h.token("alice")
	var k CreatedAPIKey
	if resp := h.do(http.MethodPost, "/api/apikeys", alice, map[string]any{"toolsets": []string{"Core"}}, &k); resp.StatusCode != http.StatusCreated || !slices.Equal(k.Toolsets, []string{"core"}) {
		t.Fatalf("alice's core key: %d %+v", resp.StatusCode, k.APIKeyInfo)
	}
	var keys []APIKeyInfo
	if h.do(http.MethodGet, "/api/apikeys", alice, nil, &keys); len(keys) != 1 || !slices.Equal(keys[0].Toolsets, []string{"core"}) {
		t.Errorf("listed: %+v", keys)
	}
	checkOnlyCore(t, h, k.Key)
	if logs := h.logs.String(); !strings.Contains(logs, `"tool":"list_network_requests","reason":"permission"`) {
		t.Errorf("the refused call is not audited:\n%s", logs)
	}

	limited, err := h.authn.IssueWithToolsets("carol", nil, []string{tools.GroupCore, tools.GroupInput}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token string
		sets  any
		code  int
		want  string // in the message; for a 201, the key's toolsets
	}{
		{"unknown toolset", alice, []string{"core", "netwrok"}, http.StatusBadRequest, `unknown toolset "netwrok"`},
		{"no toolset", alice, []string{}, http.StatusBadRequest, "no toolset given"},
		{"all", alice, []string{"all"}, http.StatusCreated, ""},
		{"beyond a limited caller's", limited, []string{"core", "network"}, http.StatusForbidden, "network toolset"},
		{"all for a limited caller", limited, []string{"all"}, http.StatusForbidden, "every toolset"},
		{"within a limited caller's", limited, []string{"input"}, http.StatusCreated, "input"},
		{"a limited caller's own", limited, nil, http.StatusCreated, "core,input"},
	} {
		body := map[string]any{}
		if tc.sets != nil {
			body["toolsets"] = tc.sets
		}
		var out struct {
			APIError
			Toolsets []string `json:"toolsets"`
		}
		resp := h.do(http.MethodPost, "/api/apikeys", tc.token, body, &out)
		switch {
		case resp.StatusCode != tc.code:
			t.Errorf("%s: %d %+v, want %d", tc.name, resp.StatusCode, out, tc.code)
		case tc.code == http.StatusCreated && strings.Join(out.Toolsets, ",") != tc.want:
			t.Errorf("%s: toolsets %q, want %q", tc.name, out.Toolsets, tc.want)
		case tc.code != http.StatusCreated && !strings.Contains(out.Message, tc.want):
			t.Errorf("%s: %q, want it to say %q", tc.name, out.Message, tc.want)
		}
	}
	if logs := h.logs.String(); strings.Count(logs, `"reason":"API key toolsets beyond the caller's"`) != 2 {
		t.Errorf("toolset refusals not audited twice:\n%s", logs)
	}
}

// checkOnlyCore: the API key lists only core tools and is refused
// list_network_requests with a message naming the network toolset.
func checkOnlyCore(t *testing.T, h *harness, key string) {
	t.Helper()
	groups := map[string]string{}
	for _, tl := range tools.All(tools.Config{}) {
		groups[tl.Tool.Name] = tl.Group
	}
	cl := h.connect(viaStateless, key, "")
	names := toolNames(t, cl)
	if len(names) == 0 {
		t.Fatal("the key lists no tool")
	}
	for name := range names {
		if groups[name] != tools.GroupCore {
			t.Errorf("%s (%s) is listed for a core key", name, groups[name])
		}
	}
	text, res := call(t, cl, "list_network_requests", nil)
	if !res.IsError || !strings.Contains(text, "network toolset") || !strings.Contains(text, "--toolsets network") {
		t.Errorf("a core key calling list_network_requests: %q; want a refusal naming the network toolset", text)
	}
}

// TestDashboardKnowsTheToolsets: the dashboard's key form offers the
// toolsets the tools package has, no more, no fewer.
func TestDashboardKnowsTheToolsets(t *testing.T) {
	js, err := fs.ReadFile(web.Static(), "app.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`const TOOLSETS = \[([^\]]*)\];`).FindSubmatch(js)
	if m == nil {
		t.Fatal("app.js has no TOOLSETS list")
	}
	var got []string
	for _, q := range regexp.MustCompile(`"([a-z]+)"`).FindAllSubmatch(m[1], -1) {
		got = append(got, string(q[1]))
	}
	if !slices.Equal(got, tools.Toolsets()) {
		t.Errorf("app.js TOOLSETS %q, tools.Toolsets() %q", got, tools.Toolsets())
	}
}
