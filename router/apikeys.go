package router

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// bucketAPIKeys maps an API key ID to its JSON-encoded apiKeyRecord. It is
// created by the first CreateAPIKey; until then the store holds no key.
const bucketAPIKeys = "api_keys"

// ErrAPIKeyExists is returned by CreateAPIKey when the ID is taken.
var ErrAPIKeyExists = errors.New("an API key with this ID exists")

// APIKeyStore keeps API keys (only the SHA-256 of their secrets). Errors
// for an unknown ID wrap auth.ErrAPIKeyNotFound.
type APIKeyStore interface {
	auth.APIKeyStore
	// CreateAPIKey stores a new key; ErrAPIKeyExists when its ID is taken.
	CreateAPIKey(ctx context.Context, k auth.APIKey) error
	// ListAPIKeys returns userID's keys, or every key when userID is "",
	// sorted by user, then creation time.
	ListAPIKeys(ctx context.Context, userID string) ([]auth.APIKey, error)
	// RevokeAPIKey deletes the key with id; the next verification of it
	// fails.
	RevokeAPIKey(ctx context.Context, id string) error
}

var _ APIKeyStore = (*BoltStore)(nil)

// apiKeyRecord is the stored form of an auth.APIKey.
type apiKeyRecord struct {
	ID     string   `json:"id"`
	UserID string   `json:"userId"`
	Perms  []string `json:"perms"`
	Name   string   `json:"name,omitempty"`
	// Toolsets has no omitempty: [] (none) must not come back as nil (all).
	Toolsets   []string  `json:"toolsets"`
	SecretHash []byte    `json:"secretHash"`
	CreatedAt  time.Time `json:"createdAt"`
	LastUsed   time.Time `json:"lastUsed,omitzero"`
}

func (r apiKeyRecord) key() auth.APIKey {
	return auth.APIKey(r)
}

// IsLocked reports whether err, from OpenBolt, means another process (a
// running proxy) holds the store file.
func IsLocked(err error) bool {
	return errors.Is(err, berrors.ErrTimeout)
}

// encodeNewAPIKey checks a key to create, for every store (the ID must be
// a valid API key ID, the user valid, the hash a SHA-256), and returns the
// record to store.
func encodeNewAPIKey(ctx context.Context, k auth.APIKey) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create API key: %w", err)
	}
	if !auth.ValidAPIKeyID(k.ID) {
		return nil, errors.New("create API key: malformed key ID")
	}
	if err := auth.ValidateUserID(k.UserID); err != nil {
		return nil, fmt.Errorf("create API key: %w", err)
	}
	if len(k.SecretHash) != sha256.Size {
		return nil, errors.New("create API key: secret hash is not a SHA-256")
	}
	data, err := json.Marshal(apiKeyRecord(k))
	if err != nil {
		return nil, fmt.Errorf("create API key: encode: %w", err)
	}
	return data, nil
}

// CreateAPIKey implements APIKeyStore (see encodeNewAPIKey).
func (s *BoltStore) CreateAPIKey(ctx context.Context, k auth.APIKey) error {
	data, err := encodeNewAPIKey(ctx, k)
	if err != nil {
		return err
	}
	defer s.keys.drop(k.ID)
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucketAPIKeys))
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketAPIKeys, err)
		}
		if b.Get([]byte(k.ID)) != nil {
			return ErrAPIKeyExists
		}
		return b.Put([]byte(k.ID), data)
	})
	if err != nil {
		return fmt.Errorf("create API key %s: %w", k.ID, err)
	}
	return nil
}

// GetAPIKey implements auth.APIKeyStore.
func (s *BoltStore) GetAPIKey(ctx context.Context, id string) (auth.APIKey, error) {
	if err := ctx.Err(); err != nil {
		return auth.APIKey{}, fmt.Errorf("get API key: %w", err)
	}
	cached, ok, gen := s.keys.get(id)
	if ok {
		return cached, nil
	}
	var rec apiKeyRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketAPIKeys))
		if b == nil {
			return auth.ErrAPIKeyNotFound
		}
		data := b.Get([]byte(id))
		if data == nil {
			return auth.ErrAPIKeyNotFound
		}
		return json.Unmarshal(data, &rec)
	})
	if err != nil {
		return auth.APIKey{}, fmt.Errorf("get API key %s: %w", redactID(id), err)
	}
	k := rec.key()
	s.keys.fill(id, k, gen)
	return k, nil
}

// TouchAPIKey implements auth.APIKeyStore.
func (s *BoltStore) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("touch API key: %w", err)
	}
	at = at.UTC().Round(0)
	defer s.keys.drop(id)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketAPIKeys))
		if b == nil {
			return nil
		}
		data := b.Get([]byte(id))
		if data == nil {
			return nil // revoked meanwhile: do not bring it back
		}
		var rec apiKeyRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		if !at.After(rec.LastUsed) {
			return nil
		}
		rec.LastUsed = at
		out, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		return b.Put([]byte(id), out)
	})
	if err != nil {
		return fmt.Errorf("touch API key %s: %w", redactID(id), err)
	}
	return nil
}

// ListAPIKeys implements APIKeyStore. It returns an empty, non-nil slice
// when there are none.
func (s *BoltStore) ListAPIKeys(ctx context.Context, userID string) ([]auth.APIKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	out := []auth.APIKey{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketAPIKeys))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var rec apiKeyRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode API key %s: %w", redactID(string(k)), err)
			}
			if userID == "" || rec.UserID == userID {
				out = append(out, rec.key())
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	sortAPIKeys(out)
	return out, nil
}

// sortAPIKeys orders keys by user, then creation time, then ID, as
// ListAPIKeys returns them.
func sortAPIKeys(keys []auth.APIKey) {
	slices.SortFunc(keys, func(a, b auth.APIKey) int {
		if c := strings.Compare(a.UserID, b.UserID); c != 0 {
			return c
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// RevokeAPIKey implements APIKeyStore: it deletes the record, or returns an
// error wrapping auth.ErrAPIKeyNotFound when there is none.
func (s *BoltStore) RevokeAPIKey(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("revoke API key: %w", err)
	}
	defer s.keys.drop(id)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketAPIKeys))
		if b == nil || b.Get([]byte(id)) == nil {
			return auth.ErrAPIKeyNotFound
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("revoke API key %s: %w", redactID(id), err)
	}
	return nil
}

// redactID returns id when it has the form of an API key ID, else a
// placeholder, so a secret passed by mistake never reaches an error.
func redactID(id string) string {
	if auth.ValidAPIKeyID(id) {
		return id
	}
	return "(malformed ID)"
}
