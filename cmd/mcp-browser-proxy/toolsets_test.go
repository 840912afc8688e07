package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// TestServeRefusesUnknownToolsets: serve stops at start on a toolset it
// does not know, from the flag or its env twin, and names the valid ones.
func TestServeRefusesUnknownToolsets(t *testing.T) {
	check := func(how string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), `unknown toolset "netwrok"`) || !strings.Contains(err.Error(), "core, input, network") {
			t.Errorf("%s: %v; want an unknown toolset error listing the valid ones", how, err)
		}
	}
	_, _, err := run(t, "serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--toolsets", "core,netwrok")
	check("--toolsets", err)
	t.Setenv("MBP_TOOLSETS", "netwrok")
	_, _, err = run(t, "serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0")
	check("MBP_TOOLSETS", err)
}

// TestTokenIssueToolsets: token issue --toolsets puts a toolsets claim in
// the token; all (the default) puts none; an unknown name is refused.
func TestTokenIssueToolsets(t *testing.T) {
	secret := strings.Repeat("s", 32)
	a, _ := auth.NewAuthenticator([]byte(secret))
	out, _, err := run(t, "token", "issue", "--jwt-secret", secret, "--user", "alice", "--toolsets", "network,core")
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Verify(strings.TrimSpace(out))
	if err != nil || !slices.Equal(p.Toolsets, []string{"core", "network"}) {
		t.Errorf("--toolsets network,core: %v %q", err, p.Toolsets)
	}
	for _, args := range [][]string{nil, {"--toolsets", "all"}} {
		out, _, err := run(t, append([]string{"token", "issue", "--jwt-secret", secret, "--user", "alice"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := a.Verify(strings.TrimSpace(out)); err != nil || p.Toolsets != nil {
			t.Errorf("%v: %v, toolsets %q; want no claim", args, err, p.Toolsets)
		}
	}
	if out, _, err := run(t, "token", "issue", "--jwt-secret", secret, "--user", "alice", "--toolsets", "core,bogus"); err == nil || !strings.Contains(err.Error(), "bogus") || out != "" {
		t.Errorf("unknown toolset: %q, %v", out, err)
	}
}
