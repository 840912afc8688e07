package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// oauthResource is the public URL of the proxy under test: an identifier
// only (audience and metadata), the test reaches the proxy at h.URL.
const oauthResource = "https://mcp.example.test"

// oauthHarness is a proxy with --oauth-issuer set to a mockoidc provider
// on 127.0.0.1, whose client ID is the proxy's resource URL, so that the
// access tokens it issues (aud = client ID) are for this proxy.
type oauthHarness struct {
	*harness
	idp *mockoidc.MockOIDC
}

func startMockIdP(t *testing.T, clientID string, setup ...func(*mockoidc.MockOIDC)) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.ClientID = clientID
	for _, f := range setup {
		f(m)
	}
	// KeyID caches on first use: fill it before handlers run.
	if _, err := m.Keypair.KeyID(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func newOAuthHarness(t *testing.T, dashboardClientID string, setup ...func(*mockoidc.MockOIDC)) *oauthHarness {
	t.Helper()
	m := startMockIdP(t, oauthResource, setup...)
	v, err := auth.NewOAuth(context.Background(), auth.OAuthConfig{Issuer: m.Issuer(), Audiences: OAuthAudiences(oauthResource), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	h := buildHarness(t, harnessSetup{metrics: true, edit: func(c *Config) {
		c.OAuth = OAuthConfig{Verifier: v, Resource: oauthResource, DashboardClientID: dashboardClientID}
	}})
	return &oauthHarness{harness: h, idp: m}
}

// token signs claims with the provider's own key, for the cases its
// endpoints do not make (scopes, bad claims).
func (o *oauthHarness) token(user string, edit func(jwt.MapClaims)) string {
	o.t.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"iss": o.idp.Issuer(), "aud": oauthResource, "sub": user,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	tok, err := o.idp.Keypair.SignJWT(c)
	if err != nil {
		o.t.Fatal(err)
	}
	return tok
}

// signIn does what an IDE does on a 401: read resource_metadata from
// WWW-Authenticate, fetch the metadata, discover the authorization server
// and run the authorization code flow with PKCE (S256) as user. It returns
// the access token.
func (o *oauthHarness) signIn(user string) string {
	t := o.t
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Post(o.URL+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	meta := challengeParam(resp.Header.Get("WWW-Authenticate"), "resource_metadata")
	if resp.StatusCode != http.StatusUnauthorized || meta != oauthResource+protectedResourcePath {
		t.Fatalf("POST /mcp without a token: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// The resource URL is an identifier; this proxy listens at o.URL.
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	getJSON(t, hc, o.URL+strings.TrimPrefix(meta, oauthResource), &prm)
	if prm.Resource != oauthResource || len(prm.AuthorizationServers) != 1 {
		t.Fatalf("metadata %+v", prm)
	}
	var disc struct {
		Authorization string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
	}
	getJSON(t, hc, prm.AuthorizationServers[0]+"/.well-known/openid-configuration", &disc)

	o.idp.QueueUser(&mockoidc.MockUser{Subject: user})
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	const redirect = "http://127.0.0.1/callback"
	q := url.Values{
		"client_id": {o.idp.ClientID}, "response_type": {"code"}, "redirect_uri": {redirect},
		"scope": {"openid"}, "state": {"s1"}, "resource": {oauthResource},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	resp, err = hc.Get(disc.Authorization + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != "s1" || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = hc.PostForm(disc.Token, url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
		"client_id": {o.idp.ClientID}, "client_secret": {o.idp.ClientSecret}, "code_verifier": {verifier},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token endpoint: %d %v", resp.StatusCode, err)
	}
	return tr.AccessToken
}

func getJSON(t testing.TB, hc *http.Client, u string, out any) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// challengeParam returns the value of the auth-param name of a Bearer
// challenge ("" when absent).
func challengeParam(h, name string) string {
	_, after, ok := strings.Cut(h, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, `"`)
	return v
}

// TestOAuthSignInLikeAnIDE: an IDE that starts from a 401 on /mcp finds
// the issuer through the RFC 9728 metadata, signs in at the provider, and
// its access token works for MCP (initialize and tools/list, over
// Streamable HTTP and SSE) and for the API; the proxy's own tokens and API
// keys keep working beside it.
func TestOAuthSignInLikeAnIDE(t *testing.T) {
	o := newOAuthHarness(t, "")
	tok := o.signIn("alice")

	c := o.connect(viaStreamable, tok, "alice")
	names := toolNames(t, c)
	// No scope claim in mockoidc's access tokens: read, write and script.
	for _, want := range []string{"take_snapshot", "navigate_page", "evaluate_script"} {
		if !names[want] {
			t.Errorf("tools/list with the OAuth token lacks %s: %v", want, names)
		}
	}
	sse := o.connect(viaSSE, tok, "")
	if len(toolNames(t, sse)) == 0 {
		t.Error("tools/list over SSE is empty")
	}
	var list []SessionInfo
	if resp := o.do(http.MethodGet, "/api/sessions", tok, nil, &list); resp.StatusCode != http.StatusOK || len(list) != 2 {
		t.Fatalf("GET /api/sessions with the OAuth token: %d %+v", resp.StatusCode, list)
	}
	for _, s := range list {
		if s.UserID != "alice" {
			t.Errorf("session of %q, want alice", s.UserID)
		}
	}
	// The proxy's HS256 tokens and API keys work alongside.
	if code, _ := o.get("/api/sessions", o.harness.token("bob")); code != http.StatusOK {
		t.Errorf("HS256 token next to OAuth: %d", code)
	}
	key, _ := o.apiKey("carol")
	if code, _ := o.get("/api/sessions", key); code != http.StatusOK {
		t.Errorf("API key next to OAuth: %d", code)
	}
}

// TestOAuthRefusedTokens: tokens with the wrong audience or issuer,
// expired, signed by another key, unsigned (alg none), or naming an invalid
// user are refused on every protected route with 401 and a challenge that
// points to the metadata and says invalid_token; each refusal is audited
// and counted.
func TestOAuthRefusedTokens(t *testing.T) {
	o := newOAuthHarness(t, "")
	other, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	other.Kid = o.idp.Keypair.Kid
	forged, err := other.SignJWT(jwt.MapClaims{"iss": o.idp.Issuer(), "aud": oauthResource, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": o.idp.Issuer(), "aud": oauthResource, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]struct{ tok, says string }{
		"wrong audience":   {o.token("alice", func(c jwt.MapClaims) { c["aud"] = "https://other.example.test" }), "audience"},
		"wrong issuer":     {o.token("alice", func(c jwt.MapClaims) { c["iss"] = "https://idp.example.test" }), "not valid"},
		"expired":          {o.token("alice", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), "expired"},
		"forged signature": {forged, "signature"},
		"alg none":         {none, "signing method"},
		"user ../x":        {o.token("../x", nil), "not a valid user ID"},
		"user too long":    {o.token(strings.Repeat("u", 65), nil), "not a valid user ID"},
	}
	routes := []struct{ method, path, body string }{
		{http.MethodPost, "/mcp", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`},
		{http.MethodGet, "/sse", ""},
		{http.MethodPost, "/message?sessionId=abc", `{}`},
		{http.MethodGet, "/api/sessions", ""},
		{http.MethodPost, "/api/register", `{"userId":"alice","browserURL":"http://127.0.0.1:9"}`},
	}
	for name, tc := range tokens {
		for _, r := range routes {
			var e APIError
			resp := o.do(r.method, r.path, tc.tok, r.body, &e)
			ch := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != http.StatusUnauthorized || e.Code != CodeUnauthorized {
				t.Errorf("%s on %s %s: %d %+v, want 401", name, r.method, r.path, resp.StatusCode, e)
				continue
			}
			if challengeParam(ch, "resource_metadata") != oauthResource+protectedResourcePath || challengeParam(ch, "error") != "invalid_token" || !strings.HasPrefix(ch, "Bearer ") {
				t.Errorf("%s on %s: WWW-Authenticate %q", name, r.path, ch)
			}
			if !strings.Contains(e.Message, tc.says) {
				t.Errorf("%s on %s: message %q does not say %q", name, r.path, e.Message, tc.says)
			}
		}
	}
	if n, want := strings.Count(o.logs.String(), `"event":"denied"`), len(tokens)*len(routes); n < want {
		t.Errorf("%d refusals audited, want %d", n, want)
	}
	if code, body := metricsText(t, o.harness, o.harness.token("root", auth.PermAdmin)); code != http.StatusOK ||
		!strings.Contains(body, fmt.Sprintf(`mbp_http_denials_total{reason="unauthorized"} %d`, len(tokens)*len(routes))) {
		t.Errorf("denials not counted: %d\n%s", code, grepLines(body, "mbp_http_denials_total"))
	}
	// No credential at all: the challenge without an error, and the scopes.
	resp := o.do(http.MethodGet, "/api/sessions", "", nil, nil)
	ch := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || challengeParam(ch, "resource_metadata") == "" ||
		challengeParam(ch, "error") != "" || challengeParam(ch, "scope") != "browser:read browser:write browser:script" {
		t.Errorf("no token: %d %q", resp.StatusCode, ch)
	}
}

// TestOAuthPermsFromScope: a token whose scope claim grants only
// browser:read lists no write tools, cannot navigate, and cannot register
// a browser; one with browser:write can.
func TestOAuthPermsFromScope(t *testing.T) {
	o := newOAuthHarness(t, "")
	reader := o.token("rita", func(c jwt.MapClaims) { c["scope"] = "openid browser:read" })
	c := o.connect(viaStreamable, reader, "")
	names := toolNames(t, c)
	if !names["take_snapshot"] || names["navigate_page"] || names["evaluate_script"] {
		t.Errorf("read-only OAuth token sees %v", names)
	}
	text, res := call(t, c, "navigate_page", map[string]any{"url": "http://127.0.0.1:9/"})
	if !res.IsError || !strings.Contains(text, auth.PermWrite) {
		t.Errorf("navigate_page with a read-only OAuth token: %v %q", res.IsError, text)
	}
	var e APIError
	if resp := o.do(http.MethodPost, "/api/register", reader, map[string]string{"userId": "rita", "browserURL": deadURL(t)}, &e); resp.StatusCode != http.StatusForbidden {
		t.Errorf("register with a read-only OAuth token: %d %+v", resp.StatusCode, e)
	}
	writer := o.token("rita", func(c jwt.MapClaims) { c["scope"] = "browser:read browser:write" })
	if !toolNames(t, o.connect(viaStreamable, writer, ""))["navigate_page"] {
		t.Error("a browser:write OAuth token cannot list navigate_page")
	}
	// An empty scope grants nothing.
	empty := o.token("rita", func(c jwt.MapClaims) { c["scope"] = "openid" })
	if names := toolNames(t, o.connect(viaStreamable, empty, "")); names["take_snapshot"] {
		t.Errorf("an OAuth token without browser scopes sees %v", names)
	}
}

// TestOAuthMetadata: with --oauth-issuer the RFC 9728 documents name the
// issuer, at the root and under the MCP endpoints' paths; without it there
// is no document and no resource_metadata.
func TestOAuthMetadata(t *testing.T) {
	o := newOAuthHarness(t, "")
	for path, resource := range map[string]string{
		protectedResourcePath:          oauthResource,
		protectedResourcePath + "/mcp": oauthResource + "/mcp",
		protectedResourcePath + "/sse": oauthResource + "/sse",
	} {
		var doc struct {
			Resource      string   `json:"resource"`
			Servers       []string `json:"authorization_servers"`
			BearerMethods []string `json:"bearer_methods_supported"`
			Scopes        []string `json:"scopes_supported"`
		}
		resp := o.do(http.MethodGet, path, "", nil, &doc)
		if resp.StatusCode != http.StatusOK || doc.Resource != resource || len(doc.Servers) != 1 || doc.Servers[0] != o.idp.Issuer() ||
			strings.Join(doc.BearerMethods, ",") != "header" || strings.Join(doc.Scopes, " ") != "browser:read browser:write browser:script" {
			t.Errorf("GET %s: %d %+v", path, resp.StatusCode, doc)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
	}
	// A token for the /mcp resource (from a client that found the path
	// document) is accepted too.
	if code, _ := o.get("/api/sessions", o.token("alice", func(c jwt.MapClaims) { c["aud"] = oauthResource + "/mcp" })); code != http.StatusOK {
		t.Errorf("token for %s/mcp: %d", oauthResource, code)
	}

	plain := newHarness(t, "")
	for _, path := range []string{protectedResourcePath, protectedResourcePath + "/mcp", protectedResourcePath + "/sse"} {
		if code, _ := plain.get(path, ""); code != http.StatusNotFound {
			t.Errorf("GET %s without --oauth-issuer: %d, want 404", path, code)
		}
	}
	resp := plain.do(http.MethodPost, "/mcp", "", `{}`, nil)
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || strings.Contains(ch, "resource_metadata") || strings.Contains(ch, "scope") {
		t.Errorf("401 without --oauth-issuer: %d %q", resp.StatusCode, ch)
	}
	var cfg map[string]any
	if resp := plain.do(http.MethodGet, "/api/ui-config", "", nil, &cfg); resp.StatusCode != http.StatusOK || cfg["oauth"] != nil || len(cfg) != 1 {
		t.Errorf("ui-config without OAuth: %d %v", resp.StatusCode, cfg)
	}
}

// TestUIConfig: the dashboard learns the issuer's endpoints and its client
// ID without a credential, only when both are configured.
func TestUIConfig(t *testing.T) {
	o := newOAuthHarness(t, "dashboard-client")
	var cfg struct {
		OAuth *uiOAuth `json:"oauth"`
	}
	resp := o.do(http.MethodGet, "/api/ui-config", "", nil, &cfg)
	if resp.StatusCode != http.StatusOK || cfg.OAuth == nil {
		t.Fatalf("ui-config: %d %+v", resp.StatusCode, cfg)
	}
	got := *cfg.OAuth
	if got.Issuer != o.idp.Issuer() || got.AuthorizationEndpoint != o.idp.AuthorizationEndpoint() || got.TokenEndpoint != o.idp.TokenEndpoint() ||
		got.ClientID != "dashboard-client" || got.Resource != oauthResource || strings.Join(got.Scopes, " ") != "openid browser:read browser:write browser:script" {
		t.Errorf("ui-config %+v", got)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	// The dashboard may exchange its code at the token endpoint (and only
	// there, beside itself).
	page := o.do(http.MethodGet, "/", "", nil, nil)
	tokenURL, _ := url.Parse(o.idp.TokenEndpoint())
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' http://"+tokenURL.Host+";") {
		t.Errorf("dashboard CSP %q does not allow the token endpoint's origin", csp)
	}
	noClient := newOAuthHarness(t, "")
	if csp := noClient.do(http.MethodGet, "/", "", nil, nil).Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("dashboard CSP without OAuth sign-in: %q", csp)
	}
	var raw map[string]any
	if resp := noClient.do(http.MethodGet, "/api/ui-config", "", nil, &raw); resp.StatusCode != http.StatusOK || raw["oauth"] != nil {
		t.Errorf("ui-config without a dashboard client ID: %d %v", resp.StatusCode, raw)
	}
}

// TestOAuthIssuerDown: a proxy whose issuer does not answer starts, says
// 503 with Retry-After to the issuer's tokens (audited and counted), and
// keeps serving its own tokens.
func TestOAuthIssuerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts nothing: a hung provider
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	issuer := "http://" + ln.Addr().String() + "/oidc"
	v, err := auth.NewOAuth(context.Background(), auth.OAuthConfig{Issuer: issuer, Audiences: []string{oauthResource},
		Timeout: 200 * time.Millisecond, RetryInterval: time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	h := buildHarness(t, harnessSetup{edit: func(c *Config) {
		c.OAuth = OAuthConfig{Verifier: v, Resource: oauthResource, DashboardClientID: "dash"}
	}})
	kp, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := kp.SignJWT(jwt.MapClaims{"iss": issuer, "aud": oauthResource, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	var e APIError
	resp := h.do(http.MethodGet, "/api/sessions", tok, nil, &e)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(e.Message, issuer) {
		t.Errorf("OAuth token with the issuer down: %d %q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), e)
	}
	if !strings.Contains(h.logs.String(), `"reason":"OAuth issuer unavailable"`) {
		t.Error("the refusal is not audited")
	}
	if resp := h.do(http.MethodGet, "/api/ui-config", "", nil, &e); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("ui-config with the issuer down: %d", resp.StatusCode)
	}
	if code, _ := h.get("/api/sessions", h.token("bob")); code != http.StatusOK {
		t.Errorf("HS256 token with the issuer down: %d", code)
	}
}
