package router

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

func TestAPIKeyRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)

	if l, err := s.ListAPIKeys(ctx, ""); err != nil || l == nil || len(l) != 0 {
		t.Fatalf("ListAPIKeys on a fresh store = %#v, %v; want empty non-nil", l, err)
	}
	if _, err := s.GetAPIKey(ctx, "0123456789abcdef"); !errors.Is(err, auth.ErrAPIKeyNotFound) {
		t.Fatalf("GetAPIKey on a fresh store = %v", err)
	}

	aliceKey, alice, err := auth.NewAPIKey("alice", []string{auth.PermRead}, "ci")
	if err != nil {
		t.Fatal(err)
	}
	bobKey, bob, err := auth.NewAPIKey("bob", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	_, alice2, err := auth.NewAPIKey("alice", []string{auth.PermAdmin}, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	alice2.CreatedAt = alice.CreatedAt.Add(time.Second)
	for _, k := range []auth.APIKey{alice2, bob, alice} {
		if err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatalf("CreateAPIKey %s: %v", k.UserID, err)
		}
	}
	if err := s.CreateAPIKey(ctx, alice); !errors.Is(err, ErrAPIKeyExists) {
		t.Errorf("duplicate ID: %v, want ErrAPIKeyExists", err)
	}

	got, err := s.GetAPIKey(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != "alice" || got.Name != "ci" || !slices.Equal(got.Perms, alice.Perms) ||
		!bytes.Equal(got.SecretHash, alice.SecretHash) || !got.CreatedAt.Equal(alice.CreatedAt) || !got.LastUsed.IsZero() {
		t.Errorf("GetAPIKey = %+v, want %+v", got, alice)
	}

	all, err := s.ListAPIKeys(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range all {
		ids = append(ids, k.ID)
	}
	if want := []string{alice.ID, alice2.ID, bob.ID}; !slices.Equal(ids, want) {
		t.Errorf("ListAPIKeys order = %v, want %v (by user, then creation)", ids, want)
	}
	mine, err := s.ListAPIKeys(ctx, "bob")
	if err != nil || len(mine) != 1 || mine[0].ID != bob.ID {
		t.Errorf("ListAPIKeys(bob) = %+v, %v", mine, err)
	}

	// Verification through the real store, then LastUsed.
	p, err := auth.VerifyAPIKey(ctx, s, aliceKey)
	if err != nil || p.UserID != "alice" || !slices.Equal(p.Perms, []string{auth.PermRead}) {
		t.Fatalf("VerifyAPIKey = %+v, %v", p, err)
	}
	if got, _ := s.GetAPIKey(ctx, alice.ID); got.LastUsed.IsZero() {
		t.Error("LastUsed not recorded")
	}
	earlier := time.Now().Add(-time.Hour)
	if err := s.TouchAPIKey(ctx, alice.ID, earlier); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAPIKey(ctx, alice.ID); got.LastUsed.Before(earlier.Add(time.Minute)) {
		t.Error("TouchAPIKey moved LastUsed backwards")
	}

	// The file holds the hashes, never the secrets.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{aliceKey, bobKey} {
		secret := key[len(auth.APIKeyPrefix)+17:]
		bin, _ := hex.DecodeString(secret)
		if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, bin) || bytes.Contains(raw, []byte(key)) {
			t.Fatalf("the store file contains an API key secret")
		}
	}
	if !bytes.Contains(raw, []byte(alice.ID)) || !bytes.Contains(raw, []byte("api_keys")) {
		t.Error("the store file lacks the key record (is the test looking at the right file?)")
	}

	// Reopen: keys persist; revoke removes at once.
	s, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := auth.VerifyAPIKey(ctx, s, bobKey); err != nil {
		t.Fatalf("bob's key after reopen: %v", err)
	}
	if err := s.RevokeAPIKey(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.VerifyAPIKey(ctx, s, bobKey); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("revoked key: %v, want ErrInvalidToken", err)
	}
	if err := s.RevokeAPIKey(ctx, bob.ID); !errors.Is(err, auth.ErrAPIKeyNotFound) {
		t.Errorf("second revoke: %v, want ErrAPIKeyNotFound", err)
	}
	// A touch racing a revoke must not bring the key back.
	if err := s.TouchAPIKey(ctx, bob.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAPIKey(ctx, bob.ID); !errors.Is(err, auth.ErrAPIKeyNotFound) {
		t.Errorf("touch resurrected a revoked key: %v", err)
	}
	if l, _ := s.ListAPIKeys(ctx, ""); len(l) != 2 {
		t.Errorf("%d keys after revoke, want 2", len(l))
	}
	// Registrations are untouched by all this.
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Errorf("Count = %d, %v", n, err)
	}
}

func TestCreateAPIKeyRejects(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	_, good, err := auth.NewAPIKey("alice", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*auth.APIKey){
		"bad id":   func(k *auth.APIKey) { k.ID = "../x" },
		"bad user": func(k *auth.APIKey) { k.UserID = "" },
		"no hash":  func(k *auth.APIKey) { k.SecretHash = nil },
	} {
		k := good
		mut(&k)
		if err := s.CreateAPIKey(ctx, k); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if l, _ := s.ListAPIKeys(ctx, ""); len(l) != 0 {
		t.Errorf("refused keys were stored: %+v", l)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.CreateAPIKey(cctx, good); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
	if _, err := s.GetAPIKey(ctx, "not-an-id-"+strings.Repeat("x", 60)); err == nil || strings.Contains(err.Error(), "xxxx") {
		t.Errorf("GetAPIKey error repeats a malformed ID: %v", err)
	}
}

func TestIsLocked(t *testing.T) {
	_, path := openTest(t)
	_, err := OpenBolt(path)
	if err == nil || !IsLocked(err) {
		t.Fatalf("second OpenBolt: %v, want a locked error", err)
	}
	if IsLocked(errors.New("other")) {
		t.Error("IsLocked(other) = true")
	}
}
