package auth

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestToolsetsClaim: an absent claim grants every toolset (nil); a list or
// a comma-separated string grants those; [] or null grants none; a name
// that is not a word makes the token invalid.
func TestToolsetsClaim(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	a, err := NewAuthenticator(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, c := range []struct {
		name  string
		claim any // nil: absent
		want  []string
		bad   bool
	}{
		{"absent", nil, nil, false},
		{"array", []string{"core", "Network", "core"}, []string{"core", "network"}, false},
		{"string", "core, input", []string{"core", "input"}, false},
		{"empty", []string{}, []string{}, false},
		{"null", "null", []string{}, false},
		{"not a word", []string{"core;drop"}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			mc := jwt.MapClaims{"sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
			switch v := c.claim.(type) {
			case nil:
			case string:
				if v == "null" {
					mc["toolsets"] = nil
				} else {
					mc["toolsets"] = v
				}
			default:
				mc["toolsets"] = v
			}
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, mc).SignedString(secret)
			if err != nil {
				t.Fatal(err)
			}
			p, err := a.Verify(tok)
			if c.bad {
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("%v; want ErrInvalidToken", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (p.Toolsets == nil) != (c.want == nil) || !slices.Equal(p.Toolsets, c.want) {
				t.Errorf("toolsets %#v, want %#v", p.Toolsets, c.want)
			}
		})
	}
}

// TestDerivedTokensKeepToolsets: a sessionToken or a derived token never
// offers more toolsets than the credential it was made from.
func TestDerivedTokensKeepToolsets(t *testing.T) {
	a, err := NewAuthenticator([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.IssueWithToolsets("alice", []string{PermRead, PermWrite}, []string{"core"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := a.Verify(tok)
	if err != nil || !slices.Equal(parent.Toolsets, []string{"core"}) {
		t.Fatalf("parent: %v %q", err, parent.Toolsets)
	}
	sess, err := a.IssueSession(parent, "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	derived, _, err := a.IssueDerived(parent, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"session": sess, "derived": derived} {
		p, err := a.Verify(tok)
		if err != nil || !slices.Equal(p.Toolsets, []string{"core"}) {
			t.Errorf("%s token: %v, toolsets %q; want [core]", name, err, p.Toolsets)
		}
	}
	// A parent without the claim makes tokens without it.
	plain, _ := a.Issue("bob", nil, time.Hour)
	pp, _ := a.Verify(plain)
	sess, _ = a.IssueSession(pp, "bob", time.Hour)
	if p, err := a.Verify(sess); err != nil || p.Toolsets != nil {
		t.Errorf("session of a plain token: %v %q", err, p.Toolsets)
	}
}
