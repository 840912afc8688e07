// Package auth identifies who is calling: it defines the verified caller
// (Principal) and its permissions, validates user IDs, issues HS256 JSON
// Web Tokens and verifies them (and, when configured, RS256/ES256 tokens of
// an identity provider, with keys from a JWKS URL or a PEM file), persists
// the signing secret, and makes and checks API keys for machines.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Permission names.
const (
	// PermRead allows reading browser state (pages, screenshots, DOM).
	PermRead = "browser:read"
	// PermWrite allows navigating and interacting with pages.
	PermWrite = "browser:write"
	// PermScript allows evaluating arbitrary JavaScript in pages.
	PermScript = "browser:script"
	// PermAllTabs allows access to tabs not owned by the caller.
	PermAllTabs = "browser:all-tabs"
	// PermAdmin allows administrative actions, including acting for other users.
	PermAdmin = "admin"
)

// maxUserIDLen is the maximum length of a user ID in bytes.
const maxUserIDLen = 64

// DefaultPerms returns the permissions granted when a token carries no perms
// claim at all, and given to an API key created without perms: read, write
// and script. A perms claim that is present but empty grants nothing. The
// returned slice is a fresh copy.
func DefaultPerms() []string {
	return []string{PermRead, PermWrite, PermScript}
}

// AllPerms returns every known permission. The returned slice is a fresh copy.
func AllPerms() []string {
	return []string{PermRead, PermWrite, PermScript, PermAllTabs, PermAdmin}
}

// isKnownPerm reports whether perm is one of AllPerms.
func isKnownPerm(perm string) bool {
	switch perm {
	case PermRead, PermWrite, PermScript, PermAllTabs, PermAdmin:
		return true
	}
	return false
}

// Principal is a verified caller.
type Principal struct {
	// UserID identifies the caller; it satisfies ValidateUserID.
	UserID string
	// Perms lists the permissions the caller holds.
	Perms []string
	// Expires is when the caller's credential expires (a token's exp); zero
	// for a credential without expiry (an API key).
	Expires time.Time
	// KeyID names the API key the credential is or was minted from (an
	// API key's own ID, or a token's apikey_id claim); "" for none. Such a
	// credential is void once the key is revoked (CheckAPIKeyLive).
	KeyID string
	// Minted reports a sessionToken (IssueSession): a credential derived
	// from another and capped at its exp, which must not make credentials
	// that outlive it (API keys).
	Minted bool
	// Toolsets are the tool groups the credential may use (a token's
	// "toolsets" claim, an API key's Toolsets); nil, for a credential without the claim, means
	// every toolset the server offers, and an empty non-nil list none. They
	// narrow the server's toolsets and never widen them; a name the server
	// does not know grants nothing.
	Toolsets []string
}

// Has reports whether p holds perm. Membership is exact: PermAdmin does not
// imply any other permission.
func (p Principal) Has(perm string) bool {
	return slices.Contains(p.Perms, perm)
}

// CanActAs reports whether p may act for userID: either p is that user or p
// holds PermAdmin.
func (p Principal) CanActAs(userID string) bool {
	if p.UserID != "" && p.UserID == userID {
		return true
	}
	return p.Has(PermAdmin)
}

// ValidateUserID checks that id is 1-64 characters, each one of A-Z, a-z,
// 0-9, '.', '_', '@' or '-', and not only dots. A valid ID is therefore one
// local path element: per-user directories are named after it, and "." or
// ".." would name the parent or its parent.
func ValidateUserID(id string) error {
	const allowed = "user IDs must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '@', '-', and not only dots"
	switch {
	case id == "":
		return fmt.Errorf("invalid user ID: empty; %s", allowed)
	case len(id) > maxUserIDLen:
		return fmt.Errorf("invalid user ID: %d bytes long; %s", len(id), allowed)
	}
	for i, r := range id {
		if !isUserIDChar(r) {
			return fmt.Errorf("invalid user ID %q: character %q at offset %d; %s", id, r, i, allowed)
		}
	}
	if strings.Trim(id, ".") == "" {
		return fmt.Errorf("invalid user ID %q: only dots (a path, not a name); %s", id, allowed)
	}
	return nil
}

// isUserIDChar reports whether r may appear in a user ID.
func isUserIDChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	case r == '.', r == '_', r == '@', r == '-':
		return true
	}
	return false
}

// ParsePerms parses a comma-separated permission list such as
// "browser:read, admin". Entries are trimmed, empty entries dropped and
// duplicates removed, keeping first-seen order. An unknown name is an error
// that names it and lists the valid ones. An empty (or all-blank) string
// yields nil, nil.
func ParsePerms(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	perms, err := normalizePerms(out)
	if err != nil {
		return nil, fmt.Errorf("parse permissions: %w", err)
	}
	return perms, nil
}

// normalizePerms checks that every entry of perms is known and returns a new
// slice without duplicates, or nil when perms is empty.
func normalizePerms(perms []string) ([]string, error) {
	if len(perms) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(perms))
	for _, p := range perms {
		if !isKnownPerm(p) {
			return nil, fmt.Errorf("unknown permission %q (valid: %s)", p, strings.Join(AllPerms(), ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// grantedPerms is normalizePerms for a credential being made: nil or empty
// perms ask for DefaultPerms.
func grantedPerms(perms []string) ([]string, error) {
	out, err := normalizePerms(perms)
	if out == nil && err == nil {
		out = DefaultPerms()
	}
	return out, err
}

// heldPerms is normalizePerms for a credential being verified whose perms
// are present (a perms claim, a stored key's list): they grant exactly what
// they list, so an empty list grants nothing. Only a credential without any
// perms claim gets DefaultPerms, and that is decided by its caller.
func heldPerms(perms []string) ([]string, error) {
	out, err := normalizePerms(perms)
	if out == nil && err == nil {
		out = []string{}
	}
	return out, err
}

// Sentinel errors; test for them with errors.Is.
var (
	// ErrNoToken means the request carried no bearer token.
	ErrNoToken = errors.New("no bearer token")
	// ErrInvalidToken means the token is malformed, badly signed, uses a
	// disallowed algorithm, or carries an invalid subject or perms claim.
	ErrInvalidToken = errors.New("invalid token")
	// ErrExpiredToken means the token's expiry time has passed.
	ErrExpiredToken = errors.New("token expired")
)

// principalKey is the context key for a Principal.
type principalKey struct{}

// principalCtx is the context of WithPrincipal: context.WithValue's, in
// one allocation instead of two (its node, and p boxed in an interface);
// the proxy makes one for every authenticated request.
type principalCtx struct {
	context.Context
	p Principal
}

// Value answers principalKey with a pointer to the context's own copy
// (a pointer needs no allocation to become an interface); other keys go
// to the parent, as with context.WithValue.
func (c *principalCtx) Value(key any) any {
	if key == (principalKey{}) {
		return &c.p
	}
	return c.Context.Value(key)
}

// String names the context, as context.WithValue's String does, without
// the principal.
func (c *principalCtx) String() string {
	return fmt.Sprint(c.Context) + ".WithPrincipal"
}

// WithPrincipal returns a copy of ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	if ctx == nil {
		panic("auth: WithPrincipal of a nil context") // as context.WithValue
	}
	return &principalCtx{Context: ctx, p: p}
}

// FromContext returns the Principal stored in ctx by WithPrincipal, and
// whether one was present.
func FromContext(ctx context.Context) (Principal, bool) {
	if p, ok := ctx.Value(principalKey{}).(*Principal); ok {
		return *p, true
	}
	return Principal{}, false
}
