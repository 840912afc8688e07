package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memKeys is an in-memory APIKeyStore.
type memKeys struct {
	mu      sync.Mutex
	keys    map[string]APIKey
	touches int
	fail    error
}

func (m *memKeys) GetAPIKey(_ context.Context, id string) (APIKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return APIKey{}, m.fail
	}
	k, ok := m.keys[id]
	if !ok {
		return APIKey{}, fmt.Errorf("get %s: %w", id, ErrAPIKeyNotFound)
	}
	return k, nil
}

func (m *memKeys) TouchAPIKey(_ context.Context, id string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.touches++
	if k, ok := m.keys[id]; ok {
		k.LastUsed = at
		m.keys[id] = k
	}
	return nil
}

var keyFormat = regexp.MustCompile(`^mbp_[0-9a-f]{16}_[0-9a-f]{64}$`)

func TestNewAPIKey(t *testing.T) {
	key, rec, err := NewAPIKey("alice", []string{PermRead, PermRead}, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if !keyFormat.MatchString(key) || !IsAPIKey(key) {
		t.Fatalf("key %q does not match mbp_<16 hex>_<64 hex>", key)
	}
	_, secret, _ := strings.Cut(strings.TrimPrefix(key, APIKeyPrefix), "_")
	sum := sha256.Sum256([]byte(secret))
	if rec.ID != key[4:20] || rec.UserID != "alice" || rec.Name != "ci" || !slices.Equal(rec.Perms, []string{PermRead}) {
		t.Errorf("record = %+v", rec)
	}
	if string(rec.SecretHash) != string(sum[:]) {
		t.Error("SecretHash is not the SHA-256 of the secret")
	}
	if strings.Contains(fmt.Sprintf("%+v", rec), secret) {
		t.Error("record holds the secret")
	}
	if rec.CreatedAt.IsZero() || !rec.LastUsed.IsZero() {
		t.Errorf("times: %+v", rec)
	}
	id, hash, err := ParseAPIKey(key)
	if err != nil || id != rec.ID || string(hash) != string(rec.SecretHash) {
		t.Errorf("ParseAPIKey = %s, %x, %v", id, hash, err)
	}

	key2, rec2, err := NewAPIKey("alice", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if key2 == key || rec2.ID == rec.ID {
		t.Error("keys are not random")
	}
	if !slices.Equal(rec2.Perms, DefaultPerms()) {
		t.Errorf("default perms = %v", rec2.Perms)
	}

	for name, tt := range map[string]struct {
		user  string
		perms []string
		label string
	}{
		"bad user":    {"a/b", nil, ""},
		"dot dot":     {"..", nil, ""},
		"bad perm":    {"alice", []string{"root"}, ""},
		"long name":   {"alice", nil, strings.Repeat("n", 65)},
		"control":     {"alice", nil, "a\nb"},
		"invalid utf": {"alice", nil, "\xff"},
	} {
		if k, _, err := NewAPIKey(tt.user, tt.perms, tt.label); err == nil {
			t.Errorf("%s: NewAPIKey succeeded: %s", name, k)
		}
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	good, _, err := NewAPIKey("alice", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"", "mbp_", "mbp__", good[:len(good)-1], good + "0",
		strings.ToUpper(good), "xbp" + good[3:],
		good[:20] + "-" + good[21:], // separator
		good[:5] + "g" + good[6:],   // non-hex in the ID
		good[:30] + "G" + good[31:], // non-hex in the secret
	} {
		_, _, err := ParseAPIKey(k)
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ParseAPIKey(%q) = %v, want ErrInvalidToken", k, err)
		}
		if len(k) > 10 && err != nil && strings.Contains(err.Error(), k) {
			t.Errorf("error repeats the key: %v", err)
		}
	}
}

func TestVerifyAPIKey(t *testing.T) {
	ctx := context.Background()
	key, rec, err := NewAPIKey("bob", []string{PermRead, PermAdmin}, "ci")
	if err != nil {
		t.Fatal(err)
	}
	store := &memKeys{keys: map[string]APIKey{rec.ID: rec}}

	p, err := VerifyAPIKey(ctx, store, key)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserID != "bob" || !slices.Equal(p.Perms, []string{PermRead, PermAdmin}) {
		t.Errorf("principal = %+v", p)
	}
	if store.touches != 1 || store.keys[rec.ID].LastUsed.IsZero() {
		t.Errorf("LastUsed not recorded: %d touches", store.touches)
	}
	// Within a minute, no further store writes.
	if _, err := VerifyAPIKey(ctx, store, key); err != nil {
		t.Fatal(err)
	}
	if store.touches != 1 {
		t.Errorf("%d touches, want 1 (LastUsed is kept to the minute)", store.touches)
	}

	// Same ID, other secret.
	forged := key[:21] + strings.Repeat("0", 64)
	// Unknown ID.
	other, _, _ := NewAPIKey("bob", nil, "")
	for name, k := range map[string]string{"wrong secret": forged, "unknown id": other, "malformed": "mbp_xyz"} {
		p, err := VerifyAPIKey(ctx, store, k)
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %+v, %v; want ErrInvalidToken", name, p, err)
		}
		if strings.Contains(err.Error(), k) || len(k) > 21 && strings.Contains(err.Error(), k[21:]) {
			t.Errorf("%s: error repeats the key: %v", name, err)
		}
	}

	// A corrupt stored record is refused.
	bad := rec
	bad.Perms = []string{"root"}
	store.keys[rec.ID] = bad
	if _, err := VerifyAPIKey(ctx, store, key); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("stored unknown perm: %v", err)
	}
	// A stored record without perms (NewAPIKey never makes one) grants
	// nothing, like a token with an empty perms claim.
	bad = rec
	bad.Perms = nil
	store.keys[rec.ID] = bad
	if p, err := VerifyAPIKey(ctx, store, key); err != nil || p.UserID != "bob" || len(p.Perms) != 0 {
		t.Errorf("stored key without perms: %+v, %v; want bob with no permission", p, err)
	}
	bad = rec
	bad.SecretHash = nil
	store.keys[rec.ID] = bad
	if _, err := VerifyAPIKey(ctx, store, key); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("stored empty hash: %v", err)
	}

	// Revoked: gone from the store.
	delete(store.keys, rec.ID)
	if _, err := VerifyAPIKey(ctx, store, key); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("revoked key: %v", err)
	}

	// A store failure is not an invalid key.
	store.fail = errors.New("disk on fire")
	_, err = VerifyAPIKey(ctx, store, key)
	if err == nil || errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("store failure: %v", err)
	}
}

func TestValidAPIKeyID(t *testing.T) {
	if !ValidAPIKeyID("0123456789abcdef") {
		t.Error("valid ID refused")
	}
	for _, id := range []string{"", "0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "../../../etc/pas"} {
		if ValidAPIKeyID(id) {
			t.Errorf("ValidAPIKeyID(%q) = true", id)
		}
	}
}
