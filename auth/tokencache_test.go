package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestVerifyRemembersTokens: a token verified twice is parsed once (the
// second answer comes from the cache and equals the first), a caller that
// changes its Principal does not change the cached one, and tokens that
// fail are not remembered.
func TestVerifyRemembersTokens(t *testing.T) {
	a := newTestAuth(t)
	tok, err := a.IssueWithToolsets("alice", []string{PermRead}, []string{"core"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := a.CachedTokens(); n != 1 {
		t.Fatalf("after one verify: %d cached tokens, want 1", n)
	}
	first.Perms[0] = PermAdmin // a caller's change must not reach the cache
	first.Toolsets[0] = "all"
	second, err := a.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if second.UserID != "alice" || !slices.Equal(second.Perms, []string{PermRead}) || !slices.Equal(second.Toolsets, []string{"core"}) {
		t.Errorf("cached principal %+v, want alice with browser:read and toolset core", second)
	}
	if n := a.CachedTokens(); n != 1 {
		t.Errorf("after verifying the same token again: %d cached tokens, want 1", n)
	}

	bad := sign(t, jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := a.Verify(bad[:len(bad)-2] + "xx"); err == nil {
		t.Fatal("a token with a broken signature verified")
	}
	expired := sign(t, jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(-time.Hour).Unix()})
	if _, err := a.Verify(expired); err == nil {
		t.Fatal("an expired token verified")
	}
	if n := a.CachedTokens(); n != 1 {
		t.Errorf("after two failures: %d cached tokens, want 1 (failures are not remembered)", n)
	}

	// Another user's token is its own entry, never alice's answer.
	bobTok, _ := a.Issue("bob", nil, time.Hour)
	if p, err := a.Verify(bobTok); err != nil || p.UserID != "bob" {
		t.Errorf("bob's token: %+v, %v", p, err)
	}
}

// TestVerifyCacheOff: a negative TokenCacheSize remembers nothing.
func TestVerifyCacheOff(t *testing.T) {
	a, err := NewAuthenticatorWith(testSecret, Options{TokenCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := a.Issue("alice", nil, time.Hour)
	for range 2 {
		if _, err := a.VerifyContext(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.CachedTokens(); n != 0 {
		t.Errorf("%d cached tokens with the cache off", n)
	}
}

// TestTokenCacheExpiryAndBound: an entry is not served at or after its
// token's exp, and the cache never holds more than its bound.
func TestTokenCacheExpiryAndBound(t *testing.T) {
	now := time.Now()
	c := newTokenCache(8)
	key := sha256.Sum256([]byte("t"))
	c.put(key, Principal{UserID: "alice", Expires: now.Add(time.Minute)}, now)
	if p, ok := c.get(key, now.Add(59*time.Second)); !ok || p.UserID != "alice" {
		t.Errorf("before exp: %+v %v, want alice", p, ok)
	}
	if _, ok := c.get(key, now.Add(time.Minute)); ok {
		t.Error("served at exp")
	}
	c.put(sha256.Sum256([]byte("no exp")), Principal{UserID: "k"}, now)
	c.put(sha256.Sum256([]byte("past")), Principal{UserID: "p", Expires: now.Add(-time.Second)}, now)
	if n := c.len(); n != 1 {
		t.Errorf("%d entries after putting a credential without exp and an expired one, want 1", n)
	}
	for i := range 100 {
		c.put(sha256.Sum256(fmt.Appendf(nil, "tok%d", i)), Principal{UserID: "u", Expires: now.Add(time.Hour)}, now)
		if n := c.len(); n > 8 {
			t.Fatalf("%d entries after %d puts, bound 8", n, i+1)
		}
	}
	last := sha256.Sum256([]byte("tok99"))
	if _, ok := c.get(last, now); !ok {
		t.Error("the newest entry was evicted")
	}
}

// TestTokenKeyIsSHA256: the cache key is the token's SHA-256 whether the
// token is hashed from the stack (up to 1 KB) or not.
func TestTokenKeyIsSHA256(t *testing.T) {
	for _, n := range []int{0, 1, 200, 1023, 1024, 1025, 5000} {
		tok := strings.Repeat("t", n)
		if tokenKey(tok) != sha256.Sum256([]byte(tok)) {
			t.Errorf("tokenKey of %d bytes is not its SHA-256", n)
		}
	}
}
