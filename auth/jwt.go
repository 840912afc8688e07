package auth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// minSecretLen is the minimum HS256 secret length in bytes.
const minSecretLen = 32

// verifyLeeway is the clock skew tolerated when checking time-based claims.
const verifyLeeway = 30 * time.Second

// claims is the JWT payload used by this package.
type claims struct {
	jwt.RegisteredClaims
	// Perms is the "perms" claim; its zero value, left out of the token,
	// means DefaultPerms.
	Perms permsClaim `json:"perms,omitzero"`
	// KeyID is the "apikey_id" claim: the API key a sessionToken was minted
	// with, directly or through another sessionToken.
	KeyID string `json:"apikey_id,omitempty"`
	// Session is the "session" claim: the token is a sessionToken, minted
	// by IssueSession from another credential and capped at its exp.
	Session bool `json:"session,omitempty"`
	// Toolsets is the "toolsets" claim: the tool groups the holder may use
	// (Principal.Toolsets); absent, every one the server offers.
	Toolsets toolsetsClaim `json:"toolsets,omitzero"`
}

// toolsetsClaim is the "toolsets" claim: an array of toolset names, or one
// string of comma-separated names. Like permsClaim it tells an absent claim
// (all toolsets) from a present one, even [] or null (none).
type toolsetsClaim struct {
	present bool
	sets    []string
}

// UnmarshalJSON is called only for a claim that is in the token.
func (t *toolsetsClaim) UnmarshalJSON(b []byte) error {
	t.present = true
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		t.sets = strings.Split(one, ",")
		return nil
	}
	return json.Unmarshal(b, &t.sets)
}

// MarshalJSON writes a present claim as an array.
func (t toolsetsClaim) MarshalJSON() ([]byte, error) {
	if t.sets == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(t.sets)
}

// IsZero makes omitzero leave an absent claim out.
func (t toolsetsClaim) IsZero() bool { return !t.present }

// granted returns Principal.Toolsets of the claim: nil when absent, else
// the names lower-cased, trimmed and without repeats (never nil). A name
// that is not a plain word is an error; the tools package, which knows the
// toolsets, grants nothing for a word it does not know.
func (t toolsetsClaim) granted() ([]string, error) {
	if !t.present {
		return nil, nil
	}
	out := []string{}
	for _, s := range t.sets {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" || slices.Contains(out, s) {
			continue
		}
		if len(s) > 32 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz_-") != "" {
			return nil, fmt.Errorf("toolset name %q is not a word of letters", s)
		}
		out = append(out, s)
	}
	return out, nil
}

// permsClaim is the "perms" claim, which tells an absent claim (the holder
// gets DefaultPerms) from a present one, even [] or null (the holder gets
// exactly what it lists: nothing).
type permsClaim struct {
	present bool
	perms   []string
}

// UnmarshalJSON is called only for a claim that is in the token, null
// included.
func (p *permsClaim) UnmarshalJSON(b []byte) error {
	p.present = true
	return json.Unmarshal(b, &p.perms)
}

// MarshalJSON writes a present claim; an empty one is [] (never null).
func (p permsClaim) MarshalJSON() ([]byte, error) {
	if p.perms == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(p.perms)
}

// IsZero makes omitzero leave an absent claim out.
func (p permsClaim) IsZero() bool { return !p.present }

// granted returns the permissions the claim grants.
func (p permsClaim) granted() ([]string, error) {
	if !p.present {
		return DefaultPerms(), nil
	}
	return heldPerms(p.perms)
}

// Options configures what an Authenticator accepts besides HS256 tokens
// signed with its own secret. The zero value accepts only those.
type Options struct {
	// Issuer, when set, must be the iss claim of every token, and Issue
	// puts it into the tokens it makes.
	Issuer string
	// Audience, when set, must be one of the aud claim's values of every
	// token, and Issue puts it into the tokens it makes.
	Audience string
	// PublicKey, when set, verifies RS256 tokens (an *rsa.PublicKey of at
	// least 2048 bits) or ES256 tokens (an *ecdsa.PublicKey on P-256),
	// whatever their kid. See LoadPublicKey.
	PublicKey crypto.PublicKey
	// JWKS, when set, verifies RS256 and ES256 tokens with the key their
	// kid header names. It excludes PublicKey.
	JWKS *JWKS
	// TokenCacheSize bounds how many verified tokens are remembered until
	// their exp (0: 10,000; negative: none are). Tokens verified with a
	// JWKS key are not remembered: the provider may withdraw that key.
	TokenCacheSize int
}

// Authenticator issues HS256 JWTs with one secret and verifies HS256 JWTs
// signed with that secret and, when configured, RS256/ES256 JWTs signed by
// an identity provider. It is safe for concurrent use.
type Authenticator struct {
	secret []byte
	opts   Options
	parser *jwt.Parser
	cache  *tokenCache
}

// NewAuthenticator returns an Authenticator using secret, which must be at
// least 32 bytes, and accepting only HS256 tokens signed with it. The secret
// is copied.
func NewAuthenticator(secret []byte) (*Authenticator, error) {
	return NewAuthenticatorWith(secret, Options{})
}

// NewAuthenticatorWith is NewAuthenticator that also accepts the tokens opts
// allows. A public key of the wrong type or size, or both PublicKey and
// JWKS, is an error.
func NewAuthenticatorWith(secret []byte, opts Options) (*Authenticator, error) {
	if len(secret) < minSecretLen {
		return nil, fmt.Errorf("new authenticator: secret is %d bytes, need at least %d", len(secret), minSecretLen)
	}
	methods := []string{jwt.SigningMethodHS256.Alg()}
	switch {
	case opts.PublicKey != nil && opts.JWKS != nil:
		return nil, errors.New("new authenticator: use either a JWKS URL or a public key file, not both")
	case opts.PublicKey != nil:
		alg, err := algForKey(opts.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("new authenticator: %w", err)
		}
		methods = append(methods, alg)
	case opts.JWKS != nil:
		methods = append(methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg())
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(verifyLeeway),
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	return &Authenticator{
		secret: append([]byte(nil), secret...),
		opts:   opts,
		parser: jwt.NewParser(popts...),
		cache:  newTokenCache(opts.TokenCacheSize),
	}, nil
}

// Issue returns a signed token for userID with the given permissions, valid
// for ttl (which must be positive), signed HS256 with a's secret. The token
// carries sub, iat, exp, a random jti, the configured iss and aud if any and,
// when perms is non-empty, a "perms" claim; nil or empty perms means the
// holder gets DefaultPerms. Every perm must be known.
func (a *Authenticator) Issue(userID string, perms []string, ttl time.Duration) (string, error) {
	return a.IssueWithToolsets(userID, perms, nil, ttl)
}

// IssueWithToolsets is Issue with a "toolsets" claim when toolsets is
// non-nil: the holder may use only those tool groups (of the ones the
// server offers). The caller checks the names (tools.ParseToolsets).
func (a *Authenticator) IssueWithToolsets(userID string, perms, toolsets []string, ttl time.Duration) (string, error) {
	if err := ValidateUserID(userID); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("issue token: ttl must be positive, got %v", ttl)
	}
	perms, err := normalizePerms(perms)
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	sets, err := toolsetsClaim{present: toolsets != nil, sets: toolsets}.granted()
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	now := time.Now()
	return a.sign(userID, permsClaim{present: perms != nil, perms: perms}, sets, now, now.Add(ttl), "", false)
}

// IssueSession returns the sessionToken that parent, a verified caller,
// gets for userID (itself, or anyone for an admin): a token that never
// outlives or outranks parent. Its exp is at most parent.Expires (when set)
// and now+ttl (which must be positive); its perms are SessionPerms; it
// carries parent.KeyID, so that it dies with that API key. A parent that
// has expired (within the verify leeway) gets an error wrapping
// ErrExpiredToken.
func (a *Authenticator) IssueSession(parent Principal, userID string, ttl time.Duration) (string, error) {
	if err := ValidateUserID(userID); err != nil {
		return "", fmt.Errorf("issue session token: %w", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("issue session token: ttl must be positive, got %v", ttl)
	}
	if parent.KeyID != "" && !ValidAPIKeyID(parent.KeyID) {
		return "", errors.New("issue session token: malformed API key ID")
	}
	now := time.Now()
	exp := now.Add(ttl)
	if !parent.Expires.IsZero() && parent.Expires.Before(exp) {
		exp = parent.Expires
	}
	// exp is kept in whole seconds: one under a second away is gone.
	if exp.Truncate(jwt.TimePrecision).Sub(now) < time.Second {
		return "", fmt.Errorf("issue session token: %w: the caller's own credential expires now", ErrExpiredToken)
	}
	perms := SessionPerms(parent, userID)
	// The parent's toolsets pass on as they are: a sessionToken never
	// offers more tools than its parent.
	return a.sign(userID, permsClaim{present: true, perms: perms}, parent.Toolsets, now, exp, parent.KeyID, true)
}

// SessionPerms returns the permissions a sessionToken that parent mints for
// userID holds: parent's own perms for parent itself; for another user,
// parent's perms intersected with DefaultPerms, the most a user holds
// without a grant of their own (the proxy keeps no per-user grants), so
// admin and browser:all-tabs never pass to another user. The result may be
// empty, and then grants nothing.
func SessionPerms(parent Principal, userID string) []string {
	out := []string{}
	for _, p := range parent.Perms {
		if !isKnownPerm(p) || slices.Contains(out, p) {
			continue
		}
		if userID != parent.UserID && !slices.Contains(DefaultPerms(), p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// sign makes an HS256 token of the given claims, with a random jti and the
// configured iss and aud; session marks a sessionToken; toolsets nil leaves
// the toolsets claim out.
func (a *Authenticator) sign(userID string, perms permsClaim, toolsets []string, iat, exp time.Time, keyID string, session bool) (string, error) {
	jti, err := newTokenID()
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID,
			IssuedAt:  jwt.NewNumericDate(iat),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        jti,
			Issuer:    a.opts.Issuer,
		},
		Perms:    perms,
		KeyID:    keyID,
		Session:  session,
		Toolsets: toolsetsClaim{present: toolsets != nil, sets: toolsets},
	}
	if a.opts.Audience != "" {
		c.Audience = jwt.ClaimStrings{a.opts.Audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.secret)
	if err != nil {
		return "", fmt.Errorf("issue token: sign: %w", err)
	}
	return s, nil
}

// Verify is VerifyContext without a context: a JWKS fetch it triggers is
// bounded only by the JWKS timeout.
func (a *Authenticator) Verify(token string) (Principal, error) {
	return a.VerifyContext(context.Background(), token)
}

// VerifyContext parses token and returns the Principal it identifies.
// Accepted are HS256 signed with a's secret and, when configured, RS256 or
// ES256 signed with the configured public key or the JWKS key named by the
// kid header; the algorithm must match the key's type, so an HS256 token is
// never checked against a public key and "none" is never accepted. exp is
// required, time claims are checked with 30s leeway, iss and aud must match
// when configured; the subject must pass ValidateUserID; a perms claim, if
// present, must be an array of known permissions or null, and grants exactly
// those (an empty array or null grants nothing); only a token without a
// perms claim gets DefaultPerms. An apikey_id claim, if present, must be an
// API key ID; the Principal carries it (KeyID) and exp (Expires), and the
// caller must also check that key with CheckAPIKeyLive. A JWKS fetch for an
// unknown kid is bounded by ctx. Failures wrap ErrExpiredToken or ErrInvalidToken; the token itself never
// appears in the error text. A token verified once (except with a JWKS key)
// is remembered, by its hash, until its exp: checking it again costs a hash
// and a map lookup.
func (a *Authenticator) VerifyContext(ctx context.Context, token string) (Principal, error) {
	key := tokenKey(token)
	now := time.Now()
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	p, cacheable, err := a.verify(ctx, token)
	if err == nil && cacheable {
		a.cache.put(key, p, now)
	}
	return p, err
}

// tokenKey is the SHA-256 of token. A token of usual size is copied to the
// stack to be hashed: []byte(token) would be a heap allocation per request.
func tokenKey(token string) [sha256.Size]byte {
	var buf [1024]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(append(buf[:0], token...))
	}
	return sha256.Sum256([]byte(token))
}

// CachedTokens returns how many verified tokens a remembers.
func (a *Authenticator) CachedTokens() int { return a.cache.len() }

// verify is VerifyContext without the cache; cacheable reports a token
// whose key cannot be withdrawn while a runs (its secret, the public key).
func (a *Authenticator) verify(ctx context.Context, token string) (p Principal, cacheable bool, err error) {
	var c claims
	_, err = a.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		cacheable = t.Method.Alg() == jwt.SigningMethodHS256.Alg() || a.opts.JWKS == nil
		return a.key(ctx, t)
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Principal{}, false, fmt.Errorf("verify token: %w", ErrExpiredToken)
		}
		return Principal{}, false, fmt.Errorf("verify token: %w: %w", ErrInvalidToken, err)
	}
	if err := ValidateUserID(c.Subject); err != nil {
		return Principal{}, false, fmt.Errorf("verify token: %w: bad subject: %w", ErrInvalidToken, err)
	}
	perms, err := c.Perms.granted()
	if err != nil {
		return Principal{}, false, fmt.Errorf("verify token: %w: bad perms claim: %w", ErrInvalidToken, err)
	}
	if c.KeyID != "" && !ValidAPIKeyID(c.KeyID) {
		return Principal{}, false, fmt.Errorf("verify token: %w: bad apikey_id claim", ErrInvalidToken)
	}
	sets, err := c.Toolsets.granted()
	if err != nil {
		return Principal{}, false, fmt.Errorf("verify token: %w: bad toolsets claim: %w", ErrInvalidToken, err)
	}
	return Principal{UserID: c.Subject, Perms: perms, Expires: c.ExpiresAt.Time, KeyID: c.KeyID, Minted: c.Session, Toolsets: sets}, cacheable, nil
}

// key returns the verification key for t, whose alg the parser has already
// checked against the allowed methods: the secret for HS256, else the
// configured public key or the JWKS key of t's kid, which must suit the alg.
func (a *Authenticator) key(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == jwt.SigningMethodHS256.Alg() {
		return a.secret, nil
	}
	switch {
	case a.opts.JWKS != nil:
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, fmt.Errorf("%s token has no kid header", alg)
		}
		return a.opts.JWKS.Key(ctx, kid, alg)
	case a.opts.PublicKey != nil:
		if err := keySuitsAlg(a.opts.PublicKey, alg); err != nil {
			return nil, err
		}
		return a.opts.PublicKey, nil
	}
	return nil, fmt.Errorf("no key configured for %s", alg)
}

// BearerToken extracts the token from an Authorization header value of the
// form "Bearer <token>"; the scheme is matched case-insensitively. It returns
// an error wrapping ErrNoToken when the header is empty, uses another scheme,
// or carries an empty token.
func BearerToken(header string) (string, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return "", fmt.Errorf("%w: Authorization header missing", ErrNoToken)
	}
	scheme, token, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Do not echo the scheme: a bare token would end up in the error.
		return "", fmt.Errorf("%w: Authorization header is not a Bearer credential", ErrNoToken)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", fmt.Errorf("%w: empty Bearer token", ErrNoToken)
	}
	return token, nil
}

// newTokenID returns a random 128-bit hex token ID.
func newTokenID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
