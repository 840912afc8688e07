package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
)

// OAuth defaults.
const (
	// DefaultOAuthUserClaim is the claim that names the user by default.
	DefaultOAuthUserClaim = "sub"
	// DefaultOAuthPermsClaim is the claim that grants permissions by
	// default: the OAuth scope claim of RFC 9068 access tokens.
	DefaultOAuthPermsClaim = "scope"

	defaultOAuthTimeout = 10 * time.Second
	defaultOAuthRetry   = 10 * time.Second
)

// ErrIssuerUnavailable means the OAuth issuer's discovery document (and so
// its keys) could not be fetched yet, so its tokens cannot be checked: the
// caller should answer 503 and the client try again later.
var ErrIssuerUnavailable = errors.New("OAuth issuer unavailable")

// OAuthConfig configures NewOAuth. Zero values take the defaults.
type OAuthConfig struct {
	// Issuer is the authorization server's issuer URL, compared exactly
	// with the iss claim and with the issuer of its discovery document
	// (Issuer + "/.well-known/openid-configuration"): https, or http for a
	// loopback host only.
	Issuer string
	// Audiences lists the aud values accepted: a token must name at least
	// one. Required: this proxy's resource URL(s), so that a token minted
	// for another service is never accepted here.
	Audiences []string
	// UserClaim is the claim whose string value is the user ID (default
	// "sub"); it must pass ValidateUserID.
	UserClaim string
	// PermsClaim is the claim the permissions come from (default "scope").
	// See OAuth.Verify for the formats accepted.
	PermsClaim string
	// PrivilegedClaim is the only claim admin and browser:all-tabs may
	// come from (e.g. "roles" or "groups", same formats); "" means an OAuth
	// token never carries them. A scope is what the client asked for, and
	// many providers let any user ask for any scope the client has: it
	// must not make an admin.
	PrivilegedClaim string
	// Timeout bounds one fetch of the discovery document or the key set
	// (default 10s).
	Timeout time.Duration
	// RetryInterval is the least time between two discovery attempts
	// while the issuer does not answer (default 10s).
	RetryInterval time.Duration
	// Log receives discovery failures and background JWKS refresh failures.
	Log zerolog.Logger
}

// OAuthEndpoints are the issuer's endpoints from its discovery document.
type OAuthEndpoints struct {
	Authorization string // authorization_endpoint
	Token         string // token_endpoint
}

// OAuth verifies the access tokens of one OAuth 2.1 / OpenID Connect
// authorization server, for this proxy acting as a resource server. The
// server's JWKS URL is found by OIDC discovery, lazily: an issuer that does
// not answer at start makes Verify fail with ErrIssuerUnavailable (retried
// at most every RetryInterval) instead of stopping the proxy. Keys are
// cached and refreshed by JWKS. It is safe for concurrent use.
type OAuth struct {
	cfg    OAuthConfig
	parser *jwt.Parser
	client *http.Client
	ctx    context.Context // lives until Close; bounds the JWKS refreshes
	cancel context.CancelFunc

	mu        sync.Mutex // guards the fields below and serialises discovery
	jwks      *JWKS      // nil until discovery succeeded
	endpoints OAuthEndpoints
	lastTry   time.Time
	lastErr   error
	closed    bool
}

// NewOAuth checks cfg and tries discovery once, bounded by cfg.Timeout. A
// failed discovery is logged, not returned: the proxy starts and retries on
// demand. Call Close to stop the key refreshes.
func NewOAuth(ctx context.Context, cfg OAuthConfig) (*OAuth, error) {
	if err := checkIssuerURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("OAuth issuer %q: %w", safeURL(cfg.Issuer), err)
	}
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("OAuth: no audience; give this proxy's public URL (--public-url) or --oauth-audience")
	}
	for _, a := range cfg.Audiences {
		if strings.TrimSpace(a) == "" {
			return nil, errors.New("OAuth: empty audience")
		}
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = DefaultOAuthUserClaim
	}
	if cfg.PermsClaim == "" {
		cfg.PermsClaim = DefaultOAuthPermsClaim
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultOAuthTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = defaultOAuthRetry
	}
	o := &OAuth{
		cfg: cfg,
		// The allow-list is what JWKS.Key can check a key against: never
		// none, never HS* (the issuer's public keys are not secrets).
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audiences...),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(verifyLeeway),
		),
		client: &http.Client{
			Timeout:   cfg.Timeout,
			Transport: capTransport{base: http.DefaultTransport, max: defaultJWKSMaxBytes},
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= maxJWKSRedirects {
					return fmt.Errorf("more than %d redirects", maxJWKSRedirects)
				}
				return checkJWKSURL(req.URL.String())
			},
		},
	}
	o.ctx, o.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := o.discover(ctx, true); err != nil {
		cfg.Log.Warn().Err(err).Str("issuer", safeURL(cfg.Issuer)).
			Msg("OAuth issuer unreachable at start; its tokens are refused with 503 until it answers (retried on demand)")
	}
	return o, nil
}

// Close stops the key refreshes. Verify fails afterwards.
func (o *OAuth) Close() {
	o.cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.jwks != nil {
		o.jwks.Close()
	}
}

// Issuer returns the configured issuer URL.
func (o *OAuth) Issuer() string { return o.cfg.Issuer }

// Endpoints returns the issuer's authorization and token endpoints, running
// discovery first if it has not succeeded yet; the error wraps
// ErrIssuerUnavailable.
func (o *OAuth) Endpoints(ctx context.Context) (OAuthEndpoints, error) {
	if err := o.discover(ctx, false); err != nil {
		return OAuthEndpoints{}, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.endpoints, nil
}

// IsIssuedBy reports whether token, unverified, names o's issuer in its iss
// claim: a routing hint only (Verify checks everything).
func (o *OAuth) IsIssuedBy(token string) bool {
	var c jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		return false
	}
	iss, err := c.GetIssuer()
	return err == nil && iss == o.cfg.Issuer
}

// discover fetches the discovery document and the key set unless that has
// succeeded, or was tried less than RetryInterval ago (unless first).
func (o *OAuth) discover(ctx context.Context, first bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed:
		return fmt.Errorf("%w: the verifier is closed", ErrIssuerUnavailable)
	case o.jwks != nil:
		return nil
	case !first && time.Since(o.lastTry) < o.cfg.RetryInterval:
		return fmt.Errorf("%w: %s did not answer %s ago (%v); next try in at most %v", ErrIssuerUnavailable,
			safeURL(o.cfg.Issuer), time.Since(o.lastTry).Round(time.Second), o.lastErr, o.cfg.RetryInterval)
	}
	o.lastTry = time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	// go-oidc fetches the discovery document and checks that its issuer
	// is exactly ours; the keys then come through JWKS, which caps sizes,
	// checks key types and rate-limits refreshes on an unknown kid.
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.client), o.cfg.Issuer)
	if err != nil {
		o.lastErr = err
		return fmt.Errorf("%w: discovery at %s: %w", ErrIssuerUnavailable, safeURL(o.cfg.Issuer), err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		o.lastErr = errors.New("the discovery document has no jwks_uri")
		return fmt.Errorf("%w: %v", ErrIssuerUnavailable, o.lastErr)
	}
	jwks, err := NewJWKS(o.ctx, JWKSConfig{URL: meta.JWKSURI, Timeout: o.cfg.Timeout, Log: o.cfg.Log})
	if err != nil {
		o.lastErr = err
		return fmt.Errorf("%w: %w", ErrIssuerUnavailable, err)
	}
	ep := p.Endpoint()
	o.jwks, o.endpoints, o.lastErr = jwks, OAuthEndpoints{Authorization: ep.AuthURL, Token: ep.TokenURL}, nil
	return nil
}

// keys returns the key set, running discovery if needed.
func (o *OAuth) keys(ctx context.Context) (*JWKS, error) {
	if err := o.discover(ctx, false); err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.jwks, nil
}

// Verify checks an access token of the issuer and returns its Principal.
//
// The token must be RS256 or ES256 (never none or HS*), signed by the key
// its kid names in the issuer's JWKS; iss must equal the issuer exactly,
// aud must contain one of the configured audiences, exp is required, and
// exp, nbf and iat are checked with 30s leeway. The user claim must be a
// string that passes ValidateUserID. The perms claim grants permissions:
//
//   - a string is a list separated by spaces (the OAuth scope format, e.g.
//     "openid browser:read browser:write") or commas;
//   - an array of strings is a list (the format of the proxy's own perms
//     claim);
//   - entries that are permission names (browser:read, browser:write,
//     browser:script, browser:all-tabs, admin) are granted, every other
//     entry (openid, profile, offline_access...) is ignored;
//   - a claim that is present but grants no permission (null, "", [] or
//     only other scopes) grants nothing;
//   - a token without the claim gets DefaultPerms (read, write, script),
//     like a proxy token without perms, never admin or all-tabs.
//
// Failures wrap ErrIssuerUnavailable (discovery has not succeeded),
// ErrExpiredToken or ErrInvalidToken; the token never appears in them.
func (o *OAuth) Verify(ctx context.Context, token string) (Principal, error) {
	jwks, err := o.keys(ctx)
	if err != nil {
		return Principal{}, err
	}
	var c jwt.MapClaims
	_, err = o.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, fmt.Errorf("%s token has no kid header", t.Method.Alg())
		}
		return jwks.Key(ctx, kid, t.Method.Alg())
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Principal{}, fmt.Errorf("verify OAuth token: %w", ErrExpiredToken)
		}
		return Principal{}, fmt.Errorf("verify OAuth token: %w: %w", ErrInvalidToken, err)
	}
	user, _ := c[o.cfg.UserClaim].(string)
	if err := ValidateUserID(user); err != nil {
		return Principal{}, fmt.Errorf("verify OAuth token: %w: the %q claim is not a valid user ID: %w", ErrInvalidToken, o.cfg.UserClaim, err)
	}
	perms, err := oauthPerms(c, o.cfg.PermsClaim)
	if err != nil {
		return Principal{}, fmt.Errorf("verify OAuth token: %w: %w", ErrInvalidToken, err)
	}
	perms = slices.DeleteFunc(perms, privileged)
	if o.cfg.PrivilegedClaim != "" {
		if _, ok := c[o.cfg.PrivilegedClaim]; ok {
			extra, err := oauthPerms(c, o.cfg.PrivilegedClaim)
			if err != nil {
				return Principal{}, fmt.Errorf("verify OAuth token: %w: %w", ErrInvalidToken, err)
			}
			for _, p := range extra {
				if privileged(p) && !slices.Contains(perms, p) {
					perms = append(perms, p)
				}
			}
		}
	}
	exp, _ := c.GetExpirationTime()
	return Principal{UserID: user, Perms: perms, Expires: exp.Time}, nil
}

// privileged reports whether p is a permission an OAuth token may take only
// from OAuthConfig.PrivilegedClaim.
func privileged(p string) bool { return p == PermAdmin || p == PermAllTabs }

// oauthPerms maps the perms claim name of c to permissions (see Verify).
func oauthPerms(c jwt.MapClaims, name string) ([]string, error) {
	raw, present := c[name]
	if !present {
		return DefaultPerms(), nil
	}
	var entries []string
	switch v := raw.(type) {
	case nil:
	case string:
		entries = strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' })
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("the %q claim must be a string or an array of strings", name)
			}
			entries = append(entries, s)
		}
	default:
		return nil, fmt.Errorf("the %q claim must be a string or an array of strings", name)
	}
	out := []string{}
	for _, e := range entries {
		if e = strings.TrimSpace(e); isKnownPerm(e) && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// checkIssuerURL accepts what checkJWKSURL accepts, without a query or
// fragment (RFC 8414 issuer identifiers have neither).
func checkIssuerURL(raw string) error {
	if raw == "" {
		return errors.New("empty; give the authorization server's issuer URL, e.g. https://idp.example.com/realms/team")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("not an absolute URL, e.g. https://idp.example.com/realms/team")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("an issuer URL has no query, fragment or user info")
	}
	return checkJWKSURL(raw)
}
