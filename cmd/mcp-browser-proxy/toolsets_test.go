package main

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
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

// TestAPIKeyCreateToolsets: apikey create --toolsets stores the toolsets
// with the key, checked against the known names; without it the key has
// every toolset; list shows them.
func TestAPIKeyCreateToolsets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	coreKey, coreID := createKey(t, dir, "--user", "alice", "--toolsets", "network,core")
	allKey, allID := createKey(t, dir, "--user", "bob")
	if _, _, err := run(t, "apikey", "create", "--data-dir", dir, "--user", "carol", "--toolsets", "core,bogus"); err == nil ||
		!strings.Contains(err.Error(), `unknown toolset "bogus"`) || !strings.Contains(err.Error(), "core, input") {
		t.Errorf("unknown toolset: %v", err)
	}
	out, _, err := run(t, "apikey", "list", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "TOOLSETS") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, coreID) && !strings.Contains(line, " core,network ") ||
			strings.Contains(line, allID) && !strings.Contains(line, " all ") {
			t.Errorf("list line %q", line)
		}
	}
	if strings.Count(out, "\n") != 3 {
		t.Errorf("the refused key was stored:\n%s", out)
	}
	store, err := router.OpenBolt(filepath.Join(dir, "registrations.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for key, want := range map[string][]string{coreKey: {"core", "network"}, allKey: nil} {
		p, err := auth.VerifyAPIKey(context.Background(), store, key)
		if err != nil || !slices.Equal(p.Toolsets, want) || (p.Toolsets == nil) != (want == nil) {
			t.Errorf("key of %s: toolsets %#v, %v; want %#v", p.UserID, p.Toolsets, err, want)
		}
	}
}

// TestAPIKeyCreateToolsetsOnRunningProxy: apikey create --server sends
// --toolsets, and the proxy bounds them by the --token's own.
func TestAPIKeyCreateToolsetsOnRunningProxy(t *testing.T) {
	dir := t.TempDir()
	base := startServe(t, dir).base
	out, _, err := run(t, "token", "issue", "--user", "alice", "--toolsets", "core,input", "--ttl", "1h", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	remote := []string{"--server", base, "--token", strings.TrimSpace(out)}
	_, stderr, err := run(t, append([]string{"apikey", "create", "--toolsets", "core"}, remote...)...)
	if err != nil || !strings.Contains(stderr, "toolsets core)") {
		t.Errorf("remote create --toolsets core: %v %q", err, stderr)
	}
	_, stderr, err = run(t, append([]string{"apikey", "create"}, remote...)...)
	if err != nil || !strings.Contains(stderr, "toolsets core,input)") {
		t.Errorf("remote create without --toolsets: %v %q; want the token's core,input", err, stderr)
	}
	if _, _, err := run(t, append([]string{"apikey", "create", "--toolsets", "core,network"}, remote...)...); err == nil ||
		!strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "network toolset") {
		t.Errorf("remote create beyond the token's toolsets: %v", err)
	}
	out, _, err = run(t, append([]string{"apikey", "list"}, remote...)...)
	if err != nil || !strings.Contains(out, " core,input ") || !strings.Contains(out, " core ") {
		t.Errorf("remote list: %v\n%s", err, out)
	}
}
