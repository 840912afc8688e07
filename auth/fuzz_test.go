package auth

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fuzzSecret signs the tokens of the FuzzVerify seed corpus. Every seed is
// refused: expired, a bad subject or perms claim, issued in the future, no
// exp, alg none or HS384, or signed with another secret.
const fuzzSecret = "fuzz-secret-fuzz-secret-fuzz-secret!"

// FuzzValidateUserID checks that ValidateUserID never panics, accepts
// exactly the documented alphabet and length minus the dot-only IDs, that an
// accepted ID is a single local path element (it names a per-user
// directory), and that it survives a token round trip.
func FuzzValidateUserID(f *testing.F) {
	a, err := NewAuthenticator([]byte(fuzzSecret))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateUserID(id)
		valid := id != "" && len(id) <= maxUserIDLen
		for i := 0; i < len(id) && valid; i++ {
			c := id[i]
			valid = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._@-", c) >= 0
		}
		if strings.Trim(id, ".") == "" {
			valid = false
		}
		if (err == nil) != valid {
			t.Fatalf("ValidateUserID(%q) = %v, want valid=%v", id, err, valid)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid user ID") {
				t.Fatalf("error %q does not say what is wrong", err)
			}
			return
		}
		if !filepath.IsLocal(id) || filepath.Base(id) != id || filepath.Join("base", id) == "base" {
			t.Fatalf("accepted ID %q is not one local path element", id)
		}
		tok, err := a.Issue(id, nil, time.Minute)
		if err != nil {
			t.Fatalf("Issue(%q): %v", id, err)
		}
		if p, err := a.Verify(tok); err != nil || p.UserID != id {
			t.Fatalf("round trip of %q: %+v %v", id, p, err)
		}
	})
}

// FuzzVerify checks that Verify never panics and never accepts a string it
// did not issue, and that its errors wrap ErrInvalidToken or
// ErrExpiredToken without repeating the token.
func FuzzVerify(f *testing.F) {
	a, err := NewAuthenticator([]byte(fuzzSecret))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := a.Verify(token)
		if err == nil {
			t.Fatalf("Verify accepted %q as %+v", token, p)
		}
		if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("error %q wraps neither ErrInvalidToken nor ErrExpiredToken", err)
		}
		// A JWT-shaped string is never quoted (shorter or other ones may
		// coincide with the library's message text).
		if len(token) >= 16 && strings.Count(token, ".") == 2 && strings.Contains(err.Error(), token) {
			t.Fatalf("error %q repeats the token", err)
		}
		if p.UserID != "" || p.Perms != nil {
			t.Fatalf("a refusal returned the principal %+v", p)
		}
	})
}
