package auth

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestIssueDerived(t *testing.T) {
	a, err := NewAuthenticator([]byte("derive-secret-derive-secret-derive!"))
	if err != nil {
		t.Fatal(err)
	}
	parentTok, err := a.Issue("alice", []string{PermRead, PermWrite}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := a.Verify(parentTok)
	if err != nil {
		t.Fatal(err)
	}

	tok, exp, err := a.IssueDerived(parent, []string{PermRead}, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserID != "alice" || !slices.Equal(p.Perms, []string{PermRead}) || !p.Minted {
		t.Errorf("derived principal %+v: want alice, [browser:read], minted", p)
	}
	if d := time.Until(exp); d > 10*time.Minute || d < 9*time.Minute || !p.Expires.Equal(exp) {
		t.Errorf("exp %v (principal %v): want about 10 minutes from now", exp, p.Expires)
	}

	// Never past the parent's exp.
	_, exp, err = a.IssueDerived(parent, nil, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if exp.After(parent.Expires) {
		t.Errorf("exp %v is after the parent's %v", exp, parent.Expires)
	}

	// Never more perms than the parent.
	if _, _, err := a.IssueDerived(parent, []string{PermRead, PermAdmin}, time.Minute); !errors.Is(err, ErrPermsBeyondParent) {
		t.Errorf("admin from a non-admin: %v, want ErrPermsBeyondParent", err)
	}
	if _, _, err := a.IssueDerived(parent, []string{"browser:fly"}, time.Minute); err == nil {
		t.Error("unknown perm accepted")
	}
	expired := parent
	expired.Expires = time.Now()
	if _, _, err := a.IssueDerived(expired, nil, time.Minute); !errors.Is(err, ErrExpiredToken) {
		t.Errorf("expiring parent: %v, want ErrExpiredToken", err)
	}
	if _, _, err := a.IssueDerived(parent, nil, 0); err == nil {
		t.Error("zero ttl accepted")
	}
}
