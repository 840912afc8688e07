package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
	// Perms is the "perms" claim; nil when absent (meaning DefaultPerms).
	Perms []string `json:"perms,omitempty"`
}

// Authenticator issues and verifies HS256 JWTs with one secret.
// It is safe for concurrent use.
type Authenticator struct {
	secret []byte
	parser *jwt.Parser
}

// NewAuthenticator returns an Authenticator using secret, which must be at
// least 32 bytes. The secret is copied.
func NewAuthenticator(secret []byte) (*Authenticator, error) {
	if len(secret) < minSecretLen {
		return nil, fmt.Errorf("new authenticator: secret is %d bytes, need at least %d", len(secret), minSecretLen)
	}
	return &Authenticator{
		secret: append([]byte(nil), secret...),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(verifyLeeway),
		),
	}, nil
}

// Issue returns a signed token for userID with the given permissions, valid
// for ttl (which must be positive). The token carries sub, iat, exp, a random
// jti and, when perms is non-empty, a "perms" claim; nil or empty perms means
// the holder gets DefaultPerms. Every perm must be known.
func (a *Authenticator) Issue(userID string, perms []string, ttl time.Duration) (string, error) {
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
	jti, err := newTokenID()
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	now := time.Now()
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        jti,
		},
		Perms: perms,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.secret)
	if err != nil {
		return "", fmt.Errorf("issue token: sign: %w", err)
	}
	return s, nil
}

// Verify parses token and returns the Principal it identifies. Only HS256
// signed with a's secret is accepted; exp is required and time claims are
// checked with 30s leeway; the subject must pass ValidateUserID; a perms
// claim, if present, must be an array of known permissions (absent, null or
// empty means DefaultPerms). Failures wrap ErrExpiredToken or
// ErrInvalidToken; the token itself never appears in the error text.
func (a *Authenticator) Verify(token string) (Principal, error) {
	var c claims
	_, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) {
		return a.secret, nil
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Principal{}, fmt.Errorf("verify token: %w", ErrExpiredToken)
		}
		return Principal{}, fmt.Errorf("verify token: %w: %w", ErrInvalidToken, err)
	}
	if err := ValidateUserID(c.Subject); err != nil {
		return Principal{}, fmt.Errorf("verify token: %w: bad subject: %w", ErrInvalidToken, err)
	}
	perms, err := normalizePerms(c.Perms)
	if err != nil {
		return Principal{}, fmt.Errorf("verify token: %w: bad perms claim: %w", ErrInvalidToken, err)
	}
	if perms == nil {
		perms = DefaultPerms()
	}
	return Principal{UserID: c.Subject, Perms: perms}, nil
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
