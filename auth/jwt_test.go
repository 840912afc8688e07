package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newTestAuth(t *testing.T) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sign makes an HS256 token with arbitrary claims using testSecret.
func sign(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewAuthenticatorShortSecret(t *testing.T) {
	if _, err := NewAuthenticator(testSecret[:31]); err == nil {
		t.Error("31-byte secret accepted")
	}
	if _, err := NewAuthenticator(testSecret); err != nil {
		t.Errorf("32-byte secret rejected: %v", err)
	}
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	a := newTestAuth(t)
	tests := []struct {
		name  string
		perms []string
		want  []string
	}{
		{"nil perms gives default", nil, DefaultPerms()},
		{"empty perms gives default", []string{}, DefaultPerms()},
		{"explicit perms", []string{PermRead, PermAdmin}, []string{PermRead, PermAdmin}},
		{"duplicates removed", []string{PermAllTabs, PermAllTabs}, []string{PermAllTabs}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := a.Issue("alice@example.com", tt.perms, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			p, err := a.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.UserID != "alice@example.com" || !slices.Equal(p.Perms, tt.want) {
				t.Errorf("Verify = %+v, want user alice@example.com perms %v", p, tt.want)
			}
		})
	}
}

func TestIssueClaims(t *testing.T) {
	a := newTestAuth(t)
	tok1, err := a.Issue("bob", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := a.Issue("bob", []string{PermRead}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := jwt.MapClaims{}, jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok1, c1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := jwt.NewParser().ParseUnverified(tok2, c2); err != nil {
		t.Fatal(err)
	}
	if _, ok := c1["perms"]; ok {
		t.Errorf("perms claim present for default perms: %v", c1)
	}
	if got, ok := c2["perms"].([]any); !ok || len(got) != 1 || got[0] != PermRead {
		t.Errorf("perms claim = %#v, want [%q]", c2["perms"], PermRead)
	}
	for _, k := range []string{"sub", "iat", "exp", "jti"} {
		if _, ok := c1[k]; !ok {
			t.Errorf("claim %q missing", k)
		}
	}
	if c1["jti"] == c2["jti"] {
		t.Errorf("jti not random: %v", c1["jti"])
	}
	exp, _ := c1.GetExpirationTime()
	if d := time.Until(exp.Time); d < 50*time.Second || d > 61*time.Second {
		t.Errorf("exp is %v from now, want ~1m", d)
	}
}

func TestIssueRejects(t *testing.T) {
	a := newTestAuth(t)
	tests := []struct {
		name  string
		user  string
		perms []string
		ttl   time.Duration
	}{
		{"bad user", "a/b", nil, time.Hour},
		{"empty user", "", nil, time.Hour},
		{"dot dot user", "..", nil, time.Hour},
		{"zero ttl", "alice", nil, 0},
		{"negative ttl", "alice", nil, -time.Second},
		{"unknown perm", "alice", []string{PermRead, "root"}, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, err := a.Issue(tt.user, tt.perms, tt.ttl); err == nil {
				t.Errorf("Issue succeeded: %s", tok)
			}
		})
	}
}

func TestVerifyExpired(t *testing.T) {
	a := newTestAuth(t)
	// A fresh 1s token is still valid.
	tok, err := a.Issue("alice", nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(tok); err != nil {
		t.Fatalf("fresh 1s token rejected: %v", err)
	}
	now := time.Now()
	// Expired beyond the 30s leeway.
	old := sign(t, jwt.MapClaims{"sub": "alice", "iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})
	_, err = a.Verify(old)
	if !errors.Is(err, ErrExpiredToken) {
		t.Fatalf("Verify(expired) = %v, want ErrExpiredToken", err)
	}
	if errors.Is(err, ErrInvalidToken) {
		t.Errorf("expired token also reported invalid: %v", err)
	}
	if strings.Contains(err.Error(), old) {
		t.Error("error text contains the token")
	}
	// Expired within the leeway is accepted.
	recent := sign(t, jwt.MapClaims{"sub": "alice", "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(-10 * time.Second).Unix()})
	if _, err := a.Verify(recent); err != nil {
		t.Errorf("token expired 10s ago rejected despite 30s leeway: %v", err)
	}
}

func TestVerifyInvalid(t *testing.T) {
	a := newTestAuth(t)
	exp := time.Now().Add(time.Hour).Unix()
	good, err := a.Issue("alice", []string{PermRead}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	other, err := NewAuthenticator([]byte(strings.Repeat("x", 32)))
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret, err := other.Issue("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "exp": exp}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	// RS256 header over an HS256-style signature (alg-confusion attempt).
	parts := strings.Split(good, ".")
	rsHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	rs256 := rsHeader + "." + parts[1] + "." + parts[2]

	// Payload swapped for one granting admin, signature kept.
	evil := base64.RawURLEncoding.EncodeToString(
		[]byte(fmt.Sprintf(`{"sub":"alice","exp":%d,"perms":["admin"]}`, exp)))
	tampered := parts[0] + "." + evil + "." + parts[2]

	tests := []struct {
		name string
		tok  string
	}{
		{"empty", ""},
		{"garbage", "not.a.jwt"},
		{"wrong secret", wrongSecret},
		{"alg none", none},
		{"alg RS256", rs256},
		{"tampered payload", tampered},
		{"bad subject", sign(t, jwt.MapClaims{"sub": "a/b", "exp": exp})},
		{"missing subject", sign(t, jwt.MapClaims{"exp": exp})},
		{"subject dot dot", sign(t, jwt.MapClaims{"sub": "..", "exp": exp})},
		{"subject dot", sign(t, jwt.MapClaims{"sub": ".", "exp": exp})},
		{"missing exp", sign(t, jwt.MapClaims{"sub": "alice"})},
		{"unknown perm", sign(t, jwt.MapClaims{"sub": "alice", "exp": exp, "perms": []string{"root"}})},
		{"perms not array", sign(t, jwt.MapClaims{"sub": "alice", "exp": exp, "perms": "admin"})},
		{"perms not strings", sign(t, jwt.MapClaims{"sub": "alice", "exp": exp, "perms": []int{1}})},
		{"issued in future", sign(t, jwt.MapClaims{"sub": "alice", "exp": exp, "iat": time.Now().Add(10 * time.Minute).Unix()})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Verify(tt.tok)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalidToken", p, err)
			}
			if errors.Is(err, ErrExpiredToken) {
				t.Errorf("also reported expired: %v", err)
			}
			if tt.tok != "" && strings.Contains(err.Error(), tt.tok) {
				t.Error("error text contains the token")
			}
		})
	}
}

func TestVerifyConcurrent(t *testing.T) {
	a := newTestAuth(t)
	tok, err := a.Issue("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if _, err := a.Verify(tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header string
		want   string
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi"},
		{"bearer xyz", "xyz"},
		{"BEARER  xyz ", "xyz"},
		{"", ""},
		{"   ", ""},
		{"Bearer", ""},
		{"Bearer   ", ""},
		{"Basic dXNlcjpwYXNz", ""},
		{"xyz", ""},
		{"Bearerxyz", ""},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			got, err := BearerToken(tt.header)
			if tt.want == "" {
				if !errors.Is(err, ErrNoToken) {
					t.Fatalf("BearerToken(%q) = %q, %v; want ErrNoToken", tt.header, got, err)
				}
				if got != "" {
					t.Errorf("token %q returned alongside error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("BearerToken(%q) = %q, %v; want %q", tt.header, got, err, tt.want)
			}
		})
	}
}

// TestPermsClaimPresentButEmpty: only a token without a perms claim gets
// DefaultPerms; a perms claim that is there but lists nothing (or is null)
// grants nothing.
func TestPermsClaimPresentButEmpty(t *testing.T) {
	a := newTestAuth(t)
	exp := time.Now().Add(time.Hour).Unix()
	for _, tt := range []struct {
		name  string
		perms any // nil: no claim
		want  []string
	}{
		{"no claim", nil, DefaultPerms()},
		{"empty array", []string{}, []string{}},
		{"null", json.RawMessage("null"), []string{}},
		{"one perm", []string{PermRead}, []string{PermRead}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := jwt.MapClaims{"sub": "alice", "exp": exp}
			if tt.perms != nil {
				c["perms"] = tt.perms
			}
			p, err := a.Verify(sign(t, c))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Perms, tt.want) {
				t.Errorf("perms = %v, want %v", p.Perms, tt.want)
			}
			for _, perm := range AllPerms() {
				if p.Has(perm) != slices.Contains(tt.want, perm) {
					t.Errorf("Has(%s) = %v", perm, p.Has(perm))
				}
			}
		})
	}
}
