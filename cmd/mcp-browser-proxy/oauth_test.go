package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"
	"github.com/rs/zerolog"
)

// TestServeOAuth: serve --oauth-issuer on a loopback address publishes the
// metadata with the default public URL (http://--addr) and hands the
// dashboard its sign-in settings.
func TestServeOAuth(t *testing.T) {
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	s := startServe(t, filepath.Join(t.TempDir(), "data"), "--oauth-issuer", m.Issuer(), "--oauth-dashboard-client-id", "dash")
	var doc struct {
		Resource string   `json:"resource"`
		Servers  []string `json:"authorization_servers"`
	}
	getJSONInto(t, s.base+"/.well-known/oauth-protected-resource", &doc)
	if doc.Resource != s.base || len(doc.Servers) != 1 || doc.Servers[0] != m.Issuer() {
		t.Errorf("metadata %+v, want resource %s and issuer %s", doc, s.base, m.Issuer())
	}
	var cfg struct {
		OAuth struct {
			ClientID      string `json:"clientId"`
			TokenEndpoint string `json:"tokenEndpoint"`
		} `json:"oauth"`
	}
	getJSONInto(t, s.base+"/api/ui-config", &cfg)
	if cfg.OAuth.ClientID != "dash" || cfg.OAuth.TokenEndpoint != m.TokenEndpoint() {
		t.Errorf("ui-config %+v", cfg)
	}
}

func getJSONInto(t *testing.T, u string, out any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// TestOAuthFlagsRefused: the OAuth flags' mistakes stop serve with an error
// that names the flag.
func TestOAuthFlagsRefused(t *testing.T) {
	const issuer = "http://127.0.0.1:1/oidc" // never contacted: every case fails before
	cases := []struct {
		f    oauthFlags
		addr string
		says string
	}{
		{oauthFlags{audience: "x"}, "127.0.0.1:3000", "--oauth-audience needs --oauth-issuer"},
		{oauthFlags{dashboardClientID: "x"}, "127.0.0.1:3000", "--oauth-dashboard-client-id needs --oauth-issuer"},
		{oauthFlags{issuer: issuer}, "0.0.0.0:3000", "--public-url"},
		{oauthFlags{issuer: issuer}, "127.0.0.1:0", "--public-url"},
		{oauthFlags{issuer: issuer, publicURL: "https://mcp.example.com/sub"}, "0.0.0.0:3000", "has a path"},
		{oauthFlags{issuer: issuer, publicURL: "mcp.example.com"}, "0.0.0.0:3000", "not an absolute"},
		{oauthFlags{issuer: issuer, publicURL: "https://mcp.example.com?x"}, "0.0.0.0:3000", "query"},
		{oauthFlags{issuer: "https://idp.example.com/?q", publicURL: "https://mcp.example.com"}, "0.0.0.0:3000", "--oauth-issuer"},
	}
	for _, tc := range cases {
		_, closeFn, err := tc.f.build(context.Background(), "http", tc.addr, "", zerolog.Nop())
		closeFn()
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v on %s: %v, want an error saying %q", tc.f, tc.addr, err, tc.says)
		}
	}
	_, closeFn, err := oauthFlags{issuer: issuer, publicURL: "https://mcp.example.com"}.build(context.Background(), "http", "0.0.0.0:3000", issuer, zerolog.Nop())
	closeFn()
	if err == nil || !strings.Contains(err.Error(), "--jwt-issuer must differ") {
		t.Errorf("--jwt-issuer = --oauth-issuer: %v", err)
	}
	// No OAuth flag: nothing configured.
	cfg, closeFn, err := oauthFlags{userClaim: "sub", permsClaim: "scope"}.build(context.Background(), "http", "0.0.0.0:3000", "", zerolog.Nop())
	closeFn()
	if err != nil || cfg.Verifier != nil {
		t.Errorf("without --oauth-issuer: %+v, %v", cfg, err)
	}
}
