package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// protectedResourcePath is the RFC 9728 well-known path of the metadata of
// the resource at the root of this proxy; the metadata of a resource at a
// path (the MCP endpoints) is at this path followed by that path.
const protectedResourcePath = "/.well-known/oauth-protected-resource"

// oauthRetryAfter is the Retry-After, in seconds, of a 503 while the OAuth
// issuer does not answer.
const oauthRetryAfter = 10

// OAuthConfig makes the proxy an OAuth 2.1 resource server. The zero value
// (no Verifier) advertises nothing: no metadata route, no resource_metadata
// in WWW-Authenticate, and GET /api/ui-config says {"oauth": null}.
type OAuthConfig struct {
	// Verifier checks the issuer's access tokens (auth.NewOAuth, with
	// OAuthAudiences(Resource) or the operator's audience).
	Verifier *auth.OAuth
	// Resource is this proxy's public URL, an origin such as
	// https://mcp.example.com (see ParsePublicURL): the RFC 9728 resource
	// identifier of the proxy as a whole.
	Resource string
	// DashboardClientID is the OAuth client ID of the dashboard, a public
	// client (authorization code with PKCE); "" leaves the dashboard with
	// token sign-in only.
	DashboardClientID string
}

// OAuthScopes returns the scopes the proxy advertises (scopes_supported,
// and scope in WWW-Authenticate): the permissions a user holds by default.
// browser:all-tabs and admin are honoured when a token carries them but are
// not offered, so that clients do not ask for them by default.
func OAuthScopes() []string { return auth.DefaultPerms() }

// OAuthAudiences returns the audiences accepted by default for the resource
// resource: the proxy's public URL, and its MCP endpoints' URLs for clients
// that found the metadata under their endpoint's path (RFC 9728 section
// 3.1) and asked for a token for that resource.
func OAuthAudiences(resource string) []string {
	return []string{resource, resource + "/mcp", resource + "/sse"}
}

// ParsePublicURL checks the URL clients reach the proxy at and returns it
// normalised (lower-case scheme and host, no trailing slash): http or
// https, a host, and no path, query, fragment or user info, since the
// well-known metadata and the routes live at the root.
func ParsePublicURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return "", fmt.Errorf("%q is not an absolute http(s) URL; give the URL clients reach the proxy at, e.g. https://mcp.example.com", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q has user info, a query or a fragment; give only scheme and host, e.g. https://mcp.example.com", raw)
	case u.Path != "" && u.Path != "/":
		return "", fmt.Errorf("%q has a path; the proxy must be reached at the root of its host (a reverse proxy may not move it under a path)", raw)
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host), nil
}

// routeOAuth adds the routes of the resource server: the RFC 9728 metadata
// (only with a Verifier) and GET /api/ui-config (always).
func (s *Server) routeOAuth(e *echo.Echo) {
	e.GET("/api/ui-config", s.uiConfig)
	o := s.cfg.OAuth
	if o.Verifier == nil {
		return
	}
	e.GET(protectedResourcePath, s.resourceMetadata(o.Resource))
	for _, p := range []string{"/mcp", "/sse"} {
		e.GET(protectedResourcePath+p, s.resourceMetadata(o.Resource+p))
	}
}

// resourceMetadata answers the RFC 9728 metadata of resource.
func (s *Server) resourceMetadata(resource string) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		// Public metadata: browser-based MCP clients may read it too.
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Cache-Control", "public, max-age=300")
		return c.JSON(http.StatusOK, map[string]any{
			"resource":                 resource,
			"authorization_servers":    []string{s.cfg.OAuth.Verifier.Issuer()},
			"bearer_methods_supported": []string{"header"},
			"scopes_supported":         OAuthScopes(),
			"resource_name":            "mcp-browser-proxy",
		})
	}
}

// uiOAuth is the OAuth part of GET /api/ui-config, read by the dashboard's
// oauth.js.
type uiOAuth struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorizationEndpoint"`
	TokenEndpoint         string   `json:"tokenEndpoint"`
	ClientID              string   `json:"clientId"`
	Scopes                []string `json:"scopes"`
	Resource              string   `json:"resource"` // the RFC 8707 resource parameter to send
}

// uiConfig tells the dashboard, before sign-in, whether it can offer OAuth
// sign-in: {"oauth": null} unless both the issuer and the dashboard's
// client ID are configured.
func (s *Server) uiConfig(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	o := s.cfg.OAuth
	if o.Verifier == nil || o.DashboardClientID == "" {
		return c.JSON(http.StatusOK, map[string]any{"oauth": nil})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 15*time.Second)
	defer cancel()
	ep, err := o.Verifier.Endpoints(ctx)
	if err != nil {
		s.log.Warn().Err(err).Str("request_id", requestID(c)).Msg("dashboard sign-in: OAuth issuer unavailable")
		return &APIError{Status: http.StatusServiceUnavailable, Code: CodeUnauthorized, RetryAfter: oauthRetryAfter,
			Message: "the identity provider " + o.Verifier.Issuer() + " does not answer, so sign-in with it is unavailable; sign in with a token, or try again shortly"}
	}
	return c.JSON(http.StatusOK, map[string]any{"oauth": uiOAuth{
		Issuer:                o.Verifier.Issuer(),
		AuthorizationEndpoint: ep.Authorization,
		TokenEndpoint:         ep.Token,
		ClientID:              o.DashboardClientID,
		Scopes:                append([]string{"openid"}, OAuthScopes()...),
		Resource:              o.Resource,
	}})
}

// verifyOAuth checks a token of the OAuth issuer and turns its failures
// into the answers of authenticate (audited there or here).
func (s *Server) verifyOAuth(c echo.Context, tok string) (auth.Principal, error) {
	o := s.cfg.OAuth.Verifier
	p, err := o.Verify(c.Request().Context(), tok)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, auth.ErrIssuerUnavailable):
		markDenied(c, denyUnauthorized)
		s.deny(c, "", "OAuth issuer unavailable")
		s.log.Warn().Err(err).Str("request_id", requestID(c)).Msg("OAuth token not checked: issuer unavailable")
		return p, &APIError{Status: http.StatusServiceUnavailable, Code: CodeUnauthorized, RetryAfter: oauthRetryAfter,
			Message: "the token's issuer " + o.Issuer() + " does not answer, so its tokens cannot be checked now; try again shortly (API keys and tokens of this proxy still work)"}
	case errors.Is(err, auth.ErrExpiredToken):
		s.deny(c, "", "expired OAuth token")
		return p, &APIError{Status: http.StatusUnauthorized, Code: CodeUnauthorized, bearer: "invalid_token",
			Message: "the OAuth token has expired; sign in again (your MCP client refreshes it)"}
	case errors.Is(err, auth.ErrInvalidToken):
		reason := oauthReason(err)
		s.deny(c, "", "invalid OAuth token: "+reason)
		return p, &APIError{Status: http.StatusUnauthorized, Code: CodeUnauthorized, bearer: "invalid_token",
			Message: "the OAuth token is not valid for this proxy (" + reason + "); sign in again, and if it persists the operator checks --oauth-audience, --oauth-user-claim and --oauth-perms-claim against what " + o.Issuer() + " issues"}
	}
	return p, fmt.Errorf("authenticate OAuth token: %w", err)
}

// oauthReason is the part of a verification error worth telling the caller
// and the audit log, bounded in length.
func oauthReason(err error) string {
	r := err.Error()
	if _, after, ok := strings.Cut(r, auth.ErrInvalidToken.Error()+": "); ok {
		r = after
	}
	if len(r) > 300 {
		r = r[:300] + "..."
	}
	return r
}

// challenge is the WWW-Authenticate value of a 401: with OAuth, the RFC
// 9728 resource_metadata URL and the scopes to ask for (MCP clients start
// their sign-in from these); bearer is the RFC 6750 error code, if any.
func (s *Server) challenge(bearer string) string {
	parts := []string{`realm="mcp-browser-proxy"`}
	if o := s.cfg.OAuth; o.Verifier != nil {
		parts = append(parts,
			`resource_metadata="`+o.Resource+protectedResourcePath+`"`,
			`scope="`+strings.Join(OAuthScopes(), " ")+`"`)
	}
	if bearer != "" {
		parts = append(parts, `error="`+bearer+`"`)
	}
	return "Bearer " + strings.Join(parts, ", ")
}
