package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrPermsBeyondParent is returned when a derived token asks for a
// permission its parent does not hold.
var ErrPermsBeyondParent = errors.New("permission beyond the caller's")

// IssueDerived returns a token for parent's own user with perms, which must
// be known and held by parent (nil: all of parent's), valid for ttl (which
// must be positive) and never past parent.Expires. It is a sessionToken
// like IssueSession's (Minted once verified), so it cannot make credentials
// that outlive it, and it carries parent.KeyID, so it dies with that key.
// It also returns the token's exp.
func (a *Authenticator) IssueDerived(parent Principal, perms []string, ttl time.Duration) (string, time.Time, error) {
	if err := ValidateUserID(parent.UserID); err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: %w", err)
	}
	if ttl <= 0 {
		return "", time.Time{}, fmt.Errorf("issue token: ttl must be positive, got %v", ttl)
	}
	if parent.KeyID != "" && !ValidAPIKeyID(parent.KeyID) {
		return "", time.Time{}, errors.New("issue token: malformed API key ID")
	}
	own := SessionPerms(parent, parent.UserID)
	if perms == nil {
		perms = own
	}
	perms, err := normalizePerms(perms)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: %w", err)
	}
	for _, p := range perms {
		if !slices.Contains(own, p) {
			return "", time.Time{}, fmt.Errorf("issue token: %w: %s", ErrPermsBeyondParent, p)
		}
	}
	if perms == nil {
		perms = []string{}
	}
	now := time.Now()
	exp := now.Add(ttl)
	if !parent.Expires.IsZero() && parent.Expires.Before(exp) {
		exp = parent.Expires
	}
	exp = exp.Truncate(jwt.TimePrecision)
	if exp.Sub(now) < time.Second {
		return "", time.Time{}, fmt.Errorf("issue token: %w: the caller's own credential expires now", ErrExpiredToken)
	}
	tok, err := a.sign(parent.UserID, permsClaim{present: true, perms: perms}, parent.Toolsets, now, exp, parent.KeyID, true)
	return tok, exp, err
}
