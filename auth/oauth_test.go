package auth

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/rs/zerolog"
)

const testResource = "https://mcp.example.test"

// startIdP runs a mockoidc provider on 127.0.0.1 until the test ends.
func startIdP(t *testing.T) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	// KeyID caches its value on first use: compute it before the JWKS
	// handler and the test's signing race for it.
	if _, err := m.Keypair.KeyID(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func newTestOAuth(t *testing.T, cfg OAuthConfig) *OAuth {
	t.Helper()
	if cfg.Audiences == nil {
		cfg.Audiences = []string{testResource}
	}
	cfg.Log = zerolog.Nop()
	o, err := NewOAuth(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return o
}

// oauthClaims are valid claims of m's access token for testResource.
func oauthClaims(m *mockoidc.MockOIDC, user string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": m.Issuer(), "aud": []string{testResource}, "sub": user,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
}

func signIdP(t *testing.T, kp *mockoidc.Keypair, c jwt.MapClaims) string {
	t.Helper()
	tok, err := kp.SignJWT(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestOAuthVerifyPermsClaim: the perms claim in both formats, unknown
// scopes ignored, absent claim = DefaultPerms, present but empty = nothing.
func TestOAuthVerifyPermsClaim(t *testing.T) {
	m := startIdP(t)
	o := newTestOAuth(t, OAuthConfig{Issuer: m.Issuer()})
	arr := newTestOAuth(t, OAuthConfig{Issuer: m.Issuer(), PermsClaim: "perms", UserClaim: "preferred_username"})
	priv := newTestOAuth(t, OAuthConfig{Issuer: m.Issuer(), PrivilegedClaim: "roles"})
	cases := []struct {
		name  string
		o     *OAuth
		extra jwt.MapClaims
		want  []string
	}{
		{"scope string", o, jwt.MapClaims{"scope": "openid browser:read profile browser:write"}, []string{PermRead, PermWrite}},
		{"scope with admin: never from a scope", o, jwt.MapClaims{"scope": "admin browser:all-tabs browser:read"}, []string{PermRead}},
		{"admin from the privileged claim", priv, jwt.MapClaims{"scope": "admin browser:read", "roles": []string{"admin", "browser:write"}}, []string{PermRead, PermAdmin}},
		{"privileged claim absent", priv, jwt.MapClaims{"scope": "browser:read admin"}, []string{PermRead}},
		{"no scope claim", o, nil, DefaultPerms()},
		{"only other scopes", o, jwt.MapClaims{"scope": "openid email"}, []string{}},
		{"empty scope", o, jwt.MapClaims{"scope": ""}, []string{}},
		{"null scope", o, jwt.MapClaims{"scope": nil}, []string{}},
		{"perms array", arr, jwt.MapClaims{"perms": []string{"browser:read", "browser:script", "groups:x"}, "preferred_username": "bob"}, []string{PermRead, PermScript}},
		{"empty perms array", arr, jwt.MapClaims{"perms": []string{}, "preferred_username": "bob"}, []string{}},
	}
	for _, tc := range cases {
		c := oauthClaims(m, "alice")
		for k, v := range tc.extra {
			c[k] = v
		}
		p, err := tc.o.Verify(context.Background(), signIdP(t, m.Keypair, c))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		wantUser := "alice"
		if tc.o == arr {
			wantUser = "bob"
		}
		if p.UserID != wantUser || !slices.Equal(p.Perms, tc.want) || p.Expires.IsZero() {
			t.Errorf("%s: %+v, want user %s perms %v and an expiry", tc.name, p, wantUser, tc.want)
		}
	}
	// A perms claim of another type is refused, not read as empty.
	c := oauthClaims(m, "alice")
	c["scope"] = 42
	if _, err := o.Verify(context.Background(), signIdP(t, m.Keypair, c)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("numeric scope claim: %v, want ErrInvalidToken", err)
	}
}

// TestOAuthVerifyRefusals: every way a token can be wrong is refused with
// ErrInvalidToken or ErrExpiredToken.
func TestOAuthVerifyRefusals(t *testing.T) {
	m := startIdP(t)
	o := newTestOAuth(t, OAuthConfig{Issuer: m.Issuer()})
	other, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	other.Kid = m.Keypair.Kid // same kid, another key: a forged signature
	unknown, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := oauthClaims(m, "alice")
		edit(c)
		return c
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, oauthClaims(m, "alice")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, oauthClaims(m, "alice"))
	hs.Header["kid"] = m.Keypair.Kid
	hsTok, err := hs.SignedString([]byte("a-secret-the-attacker-picked-at-least-32-bytes"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		tok  string
		want error
		says string
	}{
		"wrong audience":   {signIdP(t, m.Keypair, with(func(c jwt.MapClaims) { c["aud"] = "https://other.example" })), ErrInvalidToken, "audience"},
		"no audience":      {signIdP(t, m.Keypair, with(func(c jwt.MapClaims) { delete(c, "aud") })), ErrInvalidToken, "aud"},
		"wrong issuer":     {signIdP(t, m.Keypair, with(func(c jwt.MapClaims) { c["iss"] = m.Issuer() + "/other" })), ErrInvalidToken, "issuer"},
		"expired":          {signIdP(t, m.Keypair, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), ErrExpiredToken, ""},
		"no exp":           {signIdP(t, m.Keypair, with(func(c jwt.MapClaims) { delete(c, "exp") })), ErrInvalidToken, "exp"},
		"not yet valid":    {signIdP(t, m.Keypair, with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), ErrInvalidToken, "not valid yet"},
		"forged signature": {signIdP(t, other, oauthClaims(m, "alice")), ErrInvalidToken, "signature"},
		"unknown key":      {signIdP(t, unknown, oauthClaims(m, "alice")), ErrInvalidToken, "unknown key"},
		"alg none":         {none, ErrInvalidToken, "signing method"},
		"HS256":            {hsTok, ErrInvalidToken, "signing method"},
		"user ../x":        {signIdP(t, m.Keypair, oauthClaims(m, "../x")), ErrInvalidToken, "not a valid user ID"},
		"user too long":    {signIdP(t, m.Keypair, oauthClaims(m, strings.Repeat("a", 65))), ErrInvalidToken, "not a valid user ID"},
		"user dots":        {signIdP(t, m.Keypair, oauthClaims(m, "..")), ErrInvalidToken, "not a valid user ID"},
		"no user":          {signIdP(t, m.Keypair, with(func(c jwt.MapClaims) { delete(c, "sub") })), ErrInvalidToken, "not a valid user ID"},
		"numeric user":     {signIdP(t, m.Keypair, with(func(c jwt.MapClaims) { c["sub"] = 7 })), ErrInvalidToken, "not a valid user ID"},
		"garbage":          {"not.a.jwt", ErrInvalidToken, ""},
	}
	for name, tc := range cases {
		p, err := o.Verify(context.Background(), tc.tok)
		if !errors.Is(err, tc.want) || p.UserID != "" {
			t.Errorf("%s: %+v, %v; want %v", name, p, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: error %q does not say %q", name, err, tc.says)
		}
		if strings.Contains(err.Error(), tc.tok) {
			t.Errorf("%s: the error quotes the token", name)
		}
	}
}

// TestOAuthIsIssuedBy routes only tokens naming the issuer.
func TestOAuthIsIssuedBy(t *testing.T) {
	m := startIdP(t)
	o := newTestOAuth(t, OAuthConfig{Issuer: m.Issuer()})
	if !o.IsIssuedBy(signIdP(t, m.Keypair, oauthClaims(m, "alice"))) {
		t.Error("a token of the issuer is not recognised")
	}
	c := oauthClaims(m, "alice")
	c["iss"] = m.Issuer() + "/"
	for name, tok := range map[string]string{"other issuer": signIdP(t, m.Keypair, c), "garbage": "x.y.z", "API key": "mbp_abc"} {
		if o.IsIssuedBy(tok) {
			t.Errorf("%s is taken for the issuer's", name)
		}
	}
}

// TestOAuthIssuerUnreachableAtStart: NewOAuth succeeds while the issuer
// does not answer, Verify says ErrIssuerUnavailable, and once the issuer
// answers (after RetryInterval) its tokens verify.
func TestOAuthIssuerUnreachableAtStart(t *testing.T) {
	// A listener that accepts nothing yet: connections hang until the
	// fetch timeout, like a provider that is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Keypair.KeyID(); err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String() + mockoidc.IssuerBase
	o := newTestOAuth(t, OAuthConfig{Issuer: issuer, Timeout: 300 * time.Millisecond, RetryInterval: time.Millisecond})
	c := oauthClaims(m, "alice")
	c["iss"] = issuer
	tok := signIdP(t, m.Keypair, c)
	if _, err := o.Verify(context.Background(), tok); !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("issuer down: %v, want ErrIssuerUnavailable", err)
	}
	if _, err := o.Endpoints(context.Background()); !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("endpoints with the issuer down: %v", err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := o.Verify(context.Background(), tok)
		if err == nil {
			if p.UserID != "alice" {
				t.Fatalf("principal %+v", p)
			}
			break
		}
		if !errors.Is(err, ErrIssuerUnavailable) || time.Now().After(deadline) {
			t.Fatalf("issuer back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ep, err := o.Endpoints(context.Background())
	if err != nil || ep.Authorization != m.AuthorizationEndpoint() || ep.Token != m.TokenEndpoint() {
		t.Fatalf("endpoints %+v, %v", ep, err)
	}
}

// TestOAuthDiscoveryIssuerMismatch: a discovery document naming another
// issuer is not trusted.
func TestOAuthDiscoveryIssuerMismatch(t *testing.T) {
	m := startIdP(t)
	// The document lives under .../oidc; asking for it with a trailing
	// slash makes its issuer differ from the configured one.
	o := newTestOAuth(t, OAuthConfig{Issuer: m.Issuer() + "/", RetryInterval: time.Millisecond})
	c := oauthClaims(m, "alice")
	c["iss"] = m.Issuer() + "/"
	if _, err := o.Verify(context.Background(), signIdP(t, m.Keypair, c)); !errors.Is(err, ErrIssuerUnavailable) || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("mismatched discovery: %v", err)
	}
}

// TestNewOAuthRefusesBadConfig checks the issuer URL and the audiences.
func TestNewOAuthRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]OAuthConfig{
		"no issuer":          {Audiences: []string{testResource}},
		"http issuer":        {Issuer: "http://idp.example.com", Audiences: []string{testResource}},
		"issuer with query":  {Issuer: "https://idp.example.com/?x=1", Audiences: []string{testResource}},
		"relative issuer":    {Issuer: "idp.example.com", Audiences: []string{testResource}},
		"no audience":        {Issuer: "https://idp.example.com"},
		"blank audience":     {Issuer: "https://idp.example.com", Audiences: []string{" "}},
		"ftp issuer":         {Issuer: "ftp://idp.example.com", Audiences: []string{testResource}},
		"issuer w/ userinfo": {Issuer: "https://u:p@idp.example.com", Audiences: []string{testResource}},
	} {
		if o, err := NewOAuth(context.Background(), cfg); err == nil {
			o.Close()
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "u:p") {
			t.Errorf("%s: the error shows user info: %v", name, err)
		}
	}
}
