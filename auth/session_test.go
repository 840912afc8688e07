package auth

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// expOf returns the exp claim of tok, unverified.
func expOf(t *testing.T, tok string) time.Time {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, c); err != nil {
		t.Fatal(err)
	}
	exp, err := c.GetExpirationTime()
	if err != nil || exp == nil {
		t.Fatalf("no exp in %v: %v", c, err)
	}
	return exp.Time
}

func TestVerifyCarriesExpiry(t *testing.T) {
	a := newTestAuth(t)
	tok, err := a.Issue("alice", nil, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Expires.Equal(expOf(t, tok)) || p.KeyID != "" {
		t.Errorf("principal = %+v, want Expires %v and no key", p, expOf(t, tok))
	}
}

func TestIssueSessionNeverOutlivesItsParent(t *testing.T) {
	a := newTestAuth(t)
	parentTok, err := a.Issue("alice", nil, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := a.Verify(parentTok)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.IssueSession(parent, "alice", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if exp := expOf(t, tok); exp.After(parent.Expires) {
		t.Errorf("sessionToken exp %v is after its parent's %v", exp, parent.Expires)
	}
	// The TTL caps it too, and a parent without expiry (an API key) gets it.
	before := time.Now()
	tok, err = a.IssueSession(Principal{UserID: "alice", Perms: DefaultPerms(), KeyID: "0123456789abcdef"}, "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if exp := expOf(t, tok); exp.After(before.Add(time.Hour)) || exp.Before(before.Add(time.Hour-2*time.Second)) {
		t.Errorf("exp %v, want about an hour after %v", exp, before)
	}
	// A parent that has just expired (within the verify leeway) mints
	// nothing.
	if tok, err := a.IssueSession(Principal{UserID: "alice", Perms: DefaultPerms(), Expires: time.Now().Add(-time.Second)}, "alice", time.Hour); !errors.Is(err, ErrExpiredToken) {
		t.Errorf("expired parent minted %q, %v", tok, err)
	}
}

func TestIssueSessionNeverOutranksItsParent(t *testing.T) {
	a := newTestAuth(t)
	exp := time.Now().Add(time.Hour)
	for _, tt := range []struct {
		name   string
		parent []string
		user   string
		want   []string
	}{
		{"self keeps its perms", AllPerms(), "root", AllPerms()},
		{"admin for bob: no admin, no all-tabs", AllPerms(), "bob", DefaultPerms()},
		{"admin-only for bob: nothing", []string{PermAdmin}, "bob", []string{}},
		{"read-only stays read-only", []string{PermRead}, "root", []string{PermRead}},
		{"read,write gets no script", []string{PermRead, PermWrite}, "root", []string{PermRead, PermWrite}},
		{"no perms stays none", []string{}, "root", []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parent := Principal{UserID: "root", Perms: tt.parent, Expires: exp}
			tok, err := a.IssueSession(parent, tt.user, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			p, err := a.Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if p.UserID != tt.user || !slices.Equal(p.Perms, tt.want) {
				t.Errorf("minted %+v, want %s with %v", p, tt.user, tt.want)
			}
		})
	}
}

// TestIssueSessionCarriesTheKey: a token minted with an API key, or with a
// token minted with one, names the key, so that it dies with it.
func TestIssueSessionCarriesTheKey(t *testing.T) {
	ctx := context.Background()
	a := newTestAuth(t)
	key, rec, err := NewAPIKey("bob", []string{PermRead, PermWrite}, "ci")
	if err != nil {
		t.Fatal(err)
	}
	store := &memKeys{keys: map[string]APIKey{rec.ID: rec}}
	byKey, err := VerifyAPIKey(ctx, store, key)
	if err != nil || byKey.KeyID != rec.ID || !byKey.Expires.IsZero() {
		t.Fatalf("key principal %+v, %v; want KeyID %s and no expiry", byKey, err, rec.ID)
	}
	tok, err := a.IssueSession(byKey, "bob", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := a.Verify(tok)
	if err != nil || p1.KeyID != rec.ID {
		t.Fatalf("sessionToken principal %+v, %v; want KeyID %s", p1, err, rec.ID)
	}
	tok2, err := a.IssueSession(p1, "bob", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.Verify(tok2)
	if err != nil || p2.KeyID != rec.ID || p2.Expires.After(p1.Expires) {
		t.Fatalf("second-generation principal %+v, %v; want KeyID %s, exp <= %v", p2, err, rec.ID, p1.Expires)
	}
	if err := CheckAPIKeyLive(ctx, store, p2.KeyID); err != nil {
		t.Errorf("live key: %v", err)
	}
	delete(store.keys, rec.ID)
	if err := CheckAPIKeyLive(ctx, store, p2.KeyID); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("revoked key: %v, want ErrInvalidToken", err)
	}
	store.fail = errors.New("disk on fire")
	if err := CheckAPIKeyLive(ctx, store, p2.KeyID); err == nil || errors.Is(err, ErrInvalidToken) {
		t.Errorf("store failure: %v, want the store's error", err)
	}
	// A key claim that is not a key ID is a bad token.
	bad := sign(t, jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(time.Hour).Unix(), "apikey_id": "../../x"})
	if p, err := a.Verify(bad); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("malformed apikey_id claim: %+v, %v", p, err)
	}
}
