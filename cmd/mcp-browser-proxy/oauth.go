package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
)

// oauthFlags are the serve flags that make the proxy an OAuth 2.1 resource
// server, and the public URL that names it.
type oauthFlags struct {
	publicURL         string
	issuer            string
	audience          string
	userClaim         string
	permsClaim        string
	privilegedClaim   string
	dashboardClientID string
}

func addOAuthFlags(fl *pflag.FlagSet, f *oauthFlags) {
	fl.StringVar(&f.publicURL, "public-url", "", "the URL clients reach the proxy at, scheme and host only (https://mcp.example.com); with --oauth-issuer it is the OAuth resource identifier (default: http(s)://--addr when that is loopback)")
	fl.StringVar(&f.issuer, "oauth-issuer", "", "act as an OAuth 2.1 resource server for this authorization server (issuer URL, found by OIDC discovery): publish /.well-known/oauth-protected-resource and accept its access tokens (default: no OAuth, nothing advertised)")
	fl.StringVar(&f.audience, "oauth-audience", "", "the aud an OAuth access token must carry (default: --public-url, or --public-url + /mcp or /sse)")
	fl.StringVar(&f.userClaim, "oauth-user-claim", auth.DefaultOAuthUserClaim, "claim of an OAuth access token that is the user ID (it must be a valid user ID)")
	fl.StringVar(&f.permsClaim, "oauth-perms-claim", auth.DefaultOAuthPermsClaim, "claim of an OAuth access token that grants permissions: a space-separated scope string or an array; browser:read, browser:write and browser:script are taken, others ignored; without the claim: read, write, script")
	fl.StringVar(&f.privilegedClaim, "oauth-privileged-claim", "", "the only claim of an OAuth access token that may grant admin and browser:all-tabs, e.g. roles or groups: a role your identity provider assigns, never a scope a client may ask for (default: none, OAuth tokens are never admin)")
	fl.StringVar(&f.dashboardClientID, "oauth-dashboard-client-id", "", "OAuth client ID of the dashboard (a public client with PKCE, redirect URI = --public-url + /); enables \"Sign in with\" on the dashboard")
}

// build checks the flags and returns the proxy's OAuth config; the verifier
// in it, if any, lives until the returned close is called. scheme and addr
// are those the proxy listens with, for the default public URL; jwtIssuer
// is --jwt-issuer.
func (f oauthFlags) build(ctx context.Context, scheme, addr, jwtIssuer string, log zerolog.Logger) (proxy.OAuthConfig, func(), error) {
	none := func() {}
	if f.issuer == "" {
		for name, v := range map[string]string{"--oauth-audience": f.audience, "--oauth-dashboard-client-id": f.dashboardClientID} {
			if v != "" {
				return proxy.OAuthConfig{}, none, fmt.Errorf("%s needs --oauth-issuer", name)
			}
		}
		return proxy.OAuthConfig{}, none, nil
	}
	if f.issuer == jwtIssuer {
		// Tokens are routed by iss: the proxy's own would go to the issuer's
		// verifier and be refused.
		return proxy.OAuthConfig{}, none, errors.New("--jwt-issuer must differ from --oauth-issuer: the proxy's own tokens would be taken for the issuer's")
	}
	public := f.publicURL
	if public == "" {
		_, port, err := net.SplitHostPort(addr)
		if !proxy.IsLoopbackAddr(addr) || err != nil || port == "0" {
			return proxy.OAuthConfig{}, none, errors.New("--oauth-issuer needs --public-url, the URL clients reach the proxy at (e.g. https://mcp.example.com): it is the audience tokens are checked for")
		}
		public = scheme + "://" + addr
	}
	resource, err := proxy.ParsePublicURL(public)
	if err != nil {
		return proxy.OAuthConfig{}, none, fmt.Errorf("--public-url: %w", err)
	}
	audiences := proxy.OAuthAudiences(resource)
	if f.audience != "" {
		audiences = []string{f.audience}
	}
	v, err := auth.NewOAuth(ctx, auth.OAuthConfig{
		Issuer:     f.issuer,
		Audiences:  audiences,
		UserClaim:  f.userClaim,
		PermsClaim: f.permsClaim, PrivilegedClaim: f.privilegedClaim,
		Log: log,
	})
	if err != nil {
		return proxy.OAuthConfig{}, none, fmt.Errorf("--oauth-issuer: %w", err)
	}
	log.Info().Str("issuer", f.issuer).Str("resource", resource).Strs("audiences", audiences).
		Str("user_claim", f.userClaim).Str("perms_claim", f.permsClaim).Msg("OAuth resource server: advertising the issuer")
	return proxy.OAuthConfig{Verifier: v, Resource: resource, DashboardClientID: f.dashboardClientID}, v.Close, nil
}
