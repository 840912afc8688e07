package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// API key format: APIKeyPrefix, then the key ID (8 random bytes as 16
// lower-case hex digits), "_", then the secret (32 random bytes as 64
// lower-case hex digits).
const (
	// APIKeyPrefix starts every API key, so it is told apart from a JWT.
	APIKeyPrefix  = "mbp_"
	apiKeyIDBytes = 8
	apiKeySecret  = 32
	apiKeyIDLen   = 2 * apiKeyIDBytes
	apiKeyLen     = len(APIKeyPrefix) + apiKeyIDLen + 1 + 2*apiKeySecret
	maxKeyNameLen = 64
)

// lastUsedGranularity is how stale APIKey.LastUsed may get before a
// successful verification records a new time (a store write).
const lastUsedGranularity = time.Minute

// ErrAPIKeyNotFound is what an APIKeyStore returns (wrapped or not) for an
// API key ID it does not hold.
var ErrAPIKeyNotFound = errors.New("API key not found")

// APIKey is what a store keeps about an API key: never the secret, only its
// SHA-256.
type APIKey struct {
	// ID is the public part of the key, 16 hex digits; it names the key in
	// `apikey list` and `apikey revoke`.
	ID string
	// UserID is the user the key acts as.
	UserID string
	// Perms are the permissions the key grants: NewAPIKey stores
	// DefaultPerms for a key made without any; a record with none grants
	// nothing.
	Perms []string
	// Name is an optional label, e.g. "ci".
	Name string
	// Toolsets are the tool groups the key may use, as a token's toolsets
	// claim (Principal.Toolsets): nil, every toolset the server offers.
	Toolsets []string
	// SecretHash is the SHA-256 of the key's secret part.
	SecretHash []byte
	// CreatedAt is when the key was made.
	CreatedAt time.Time
	// LastUsed is when the key was last accepted, to within a minute; zero
	// if never.
	LastUsed time.Time
}

// APIKeyStore is the part of a key store that VerifyAPIKey needs.
type APIKeyStore interface {
	// GetAPIKey returns the key with id, or an error wrapping
	// ErrAPIKeyNotFound.
	GetAPIKey(ctx context.Context, id string) (APIKey, error)
	// TouchAPIKey sets the key's LastUsed to at (if later); a missing key
	// is not an error.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
}

// NewAPIKey makes a new API key for userID with perms (nil or empty means
// DefaultPerms) and an optional name of at most 64 printable characters.
// It returns the key to hand out once, and the record to store, which holds
// only the SHA-256 of the secret.
func NewAPIKey(userID string, perms []string, name string) (string, APIKey, error) {
	return NewAPIKeyWithToolsets(userID, perms, nil, name)
}

// NewAPIKeyWithToolsets is NewAPIKey for a key limited to toolsets when
// that is non-nil, as a token with a toolsets claim is. The caller checks
// the names (tools.ParseToolsets); here each must be a word.
func NewAPIKeyWithToolsets(userID string, perms, toolsets []string, name string) (string, APIKey, error) {
	if err := ValidateUserID(userID); err != nil {
		return "", APIKey{}, fmt.Errorf("new API key: %w", err)
	}
	perms, err := grantedPerms(perms)
	if err != nil {
		return "", APIKey{}, fmt.Errorf("new API key: %w", err)
	}
	toolsets, err = toolsetsClaim{present: toolsets != nil, sets: toolsets}.granted()
	if err != nil {
		return "", APIKey{}, fmt.Errorf("new API key: %w", err)
	}
	if err := validateKeyName(name); err != nil {
		return "", APIKey{}, fmt.Errorf("new API key: %w", err)
	}
	buf := make([]byte, apiKeyIDBytes+apiKeySecret)
	if _, err := rand.Read(buf); err != nil {
		return "", APIKey{}, fmt.Errorf("new API key: %w", err)
	}
	id := hex.EncodeToString(buf[:apiKeyIDBytes])
	secret := hex.EncodeToString(buf[apiKeyIDBytes:])
	sum := sha256.Sum256([]byte(secret))
	rec := APIKey{
		ID:         id,
		UserID:     userID,
		Perms:      perms,
		Name:       name,
		Toolsets:   toolsets,
		SecretHash: sum[:],
		CreatedAt:  time.Now().UTC().Round(0),
	}
	return APIKeyPrefix + id + "_" + secret, rec, nil
}

// IsAPIKey reports whether token has the form of an API key (its prefix);
// JWTs never do.
func IsAPIKey(token string) bool {
	return strings.HasPrefix(token, APIKeyPrefix)
}

// ParseAPIKey splits an API key into its ID and the SHA-256 of its secret.
// A malformed key is an error wrapping ErrInvalidToken that does not repeat
// the key.
func ParseAPIKey(key string) (id string, secretHash []byte, err error) {
	rest, ok := strings.CutPrefix(key, APIKeyPrefix)
	if !ok || len(key) != apiKeyLen {
		return "", nil, fmt.Errorf("%w: not an API key (mbp_<id>_<secret>)", ErrInvalidToken)
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || !isLowerHex(id, apiKeyIDLen) || !isLowerHex(secret, 2*apiKeySecret) {
		return "", nil, fmt.Errorf("%w: not an API key (mbp_<id>_<secret>)", ErrInvalidToken)
	}
	sum := sha256.Sum256([]byte(secret))
	return id, sum[:], nil
}

// ValidAPIKeyID reports whether id has the form of an API key ID.
func ValidAPIKeyID(id string) bool {
	return isLowerHex(id, apiKeyIDLen)
}

// VerifyAPIKey checks an API key against store and returns the Principal it
// stands for. The secret's hash is compared in constant time. A malformed,
// unknown (e.g. revoked) or wrong key, or a stored record that is no longer
// valid, yields an error wrapping ErrInvalidToken; a store failure is
// returned wrapped as is. On success the key's LastUsed is updated when it
// is more than a minute old; a failure to record it does not fail the
// verification. Errors never contain the key.
func VerifyAPIKey(ctx context.Context, store APIKeyStore, key string) (Principal, error) {
	id, hash, err := ParseAPIKey(key)
	if err != nil {
		return Principal{}, fmt.Errorf("verify API key: %w", err)
	}
	rec, err := store.GetAPIKey(ctx, id)
	if errors.Is(err, ErrAPIKeyNotFound) {
		return Principal{}, fmt.Errorf("verify API key: %w: unknown or revoked key", ErrInvalidToken)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("verify API key: %w", err)
	}
	if len(rec.SecretHash) != sha256.Size || subtle.ConstantTimeCompare(rec.SecretHash, hash) != 1 {
		return Principal{}, fmt.Errorf("verify API key: %w: wrong secret", ErrInvalidToken)
	}
	if err := ValidateUserID(rec.UserID); err != nil {
		return Principal{}, fmt.Errorf("verify API key: %w: stored user: %w", ErrInvalidToken, err)
	}
	// NewAPIKey stores DefaultPerms for a key made without perms; a record
	// with none was not made by it and grants nothing.
	perms, err := heldPerms(rec.Perms)
	if err != nil {
		return Principal{}, fmt.Errorf("verify API key: %w: stored perms: %w", ErrInvalidToken, err)
	}
	sets, err := toolsetsClaim{present: rec.Toolsets != nil, sets: rec.Toolsets}.granted()
	if err != nil {
		return Principal{}, fmt.Errorf("verify API key: %w: stored toolsets: %w", ErrInvalidToken, err)
	}
	if now := time.Now(); now.Sub(rec.LastUsed) >= lastUsedGranularity {
		// LastUsed is informational; a failed write must not lock the key out.
		_ = store.TouchAPIKey(ctx, id, now)
	}
	return Principal{UserID: rec.UserID, Perms: perms, KeyID: rec.ID, Toolsets: sets}, nil
}

// CheckAPIKeyLive checks that the API key id, which a token was minted with
// (Principal.KeyID), is still in store: a revoked key voids the tokens
// minted with it at once. A revoked key yields an error wrapping
// ErrInvalidToken; a store failure is returned wrapped as is.
func CheckAPIKeyLive(ctx context.Context, store APIKeyStore, id string) error {
	if !ValidAPIKeyID(id) {
		return fmt.Errorf("check API key: %w: malformed key ID", ErrInvalidToken)
	}
	_, err := store.GetAPIKey(ctx, id)
	if errors.Is(err, ErrAPIKeyNotFound) {
		return fmt.Errorf("check API key: %w: the API key the token was minted with is revoked", ErrInvalidToken)
	}
	if err != nil {
		return fmt.Errorf("check API key: %w", err)
	}
	return nil
}

// validateKeyName checks an API key's optional label.
func validateKeyName(name string) error {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxKeyNameLen {
		return fmt.Errorf("name must be at most %d characters of valid UTF-8", maxKeyNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("name must be printable: character %q is not", r)
		}
	}
	return nil
}

// isLowerHex reports whether s is n lower-case hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
