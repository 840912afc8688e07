package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// Store keeps registrations. Implementations are safe for concurrent use.
type Store interface {
	// Put creates or replaces userID's registration atomically. If another
	// user already holds the same browser (a key of EndpointKeys(BrowserURL,
	// Addrs) in common: the same host and port in any spelling, or an
	// address and port in common) it returns ErrConflict and changes
	// nothing. CreatedAt is kept from an
	// existing record of the same user; UpdatedAt is set to now.
	// BrowserSince is kept only from an existing record of the same user
	// and the same browser URL (a new URL is registered now), or taken
	// from r when set: only a caller restoring a record it read from the
	// store sets it, never one built from a request. Put returns the
	// stored record.
	Put(ctx context.Context, r Registration) (Registration, error)
	// Get returns userID's registration, or ErrNotFound.
	Get(ctx context.Context, userID string) (Registration, error)
	// Delete removes userID's registration, or returns ErrNotFound when
	// there is none.
	Delete(ctx context.Context, userID string) error
	// List returns all registrations sorted by UserID.
	List(ctx context.Context) ([]Registration, error)
	// Count returns the number of registrations.
	Count(ctx context.Context) (int, error)
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
	// APIKeyStore keeps the API keys of machines (see apikeys.go).
	APIKeyStore
}

// Bucket names of the bbolt layout.
const (
	// bucketRegistrations maps userID to the JSON-encoded Registration.
	bucketRegistrations = "registrations"
	// bucketBrowserURLs maps every key of EndpointKeys of a registration
	// to its userID. Stores written before endpoint keys held one
	// CanonicalURL of an older form per user; OpenBolt rewrites them.
	bucketBrowserURLs = "browser_urls"
)

// openTimeout bounds how long OpenBolt waits for the file lock.
const openTimeout = 2 * time.Second

// BoltStore is a Store backed by a bbolt file. Every write happens in a
// single bbolt transaction, synced to disk before it returns.
type BoltStore struct {
	db     *bolt.DB
	path   string
	now    func() time.Time
	sealer *Sealer                 // seals browser URLs and headers; nil stores them in clear
	cache  readCache[Registration] // decoded records read already (boltcache.go)
	keys   readCache[auth.APIKey]  // the same for API keys
}

// BoltOption configures OpenBolt.
type BoltOption func(*BoltStore)

// WithSealer makes the store keep each registration's browser URL and
// headers encrypted with s (see Sealer); records written in clear before are
// sealed when the store opens.
func WithSealer(s *Sealer) BoltOption {
	return func(b *BoltStore) { b.sealer = s }
}

var _ Store = (*BoltStore)(nil)

// OpenBolt opens the bbolt store at path, creating its directory (mode 0700)
// and file (mode 0600) if needed. If another process holds the file lock,
// OpenBolt gives up after 2 seconds. Errors name the path.
func OpenBolt(path string, opts ...BoltOption) (*BoltStore, error) {
	if path == "" {
		return nil, errors.New("open registration store: path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open registration store %s: create directory: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open registration store %s: file is locked, another proxy may be using it: %w", path, err)
		}
		return nil, fmt.Errorf("open registration store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{bucketRegistrations, bucketBrowserURLs} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
	s := &BoltStore{db: db, path: path, now: time.Now,
		cache: readCache[Registration]{clone: Registration.clone},
		keys:  readCache[auth.APIKey]{clone: cloneAPIKey}}
	for _, o := range opts {
		o(s)
	}
	if err == nil {
		err = db.Update(rekeyIndex)
	}
	if err == nil && s.sealer != nil {
		err = db.Update(s.sealClearRecords)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open registration store %s: %w", path, err)
	}
	return s, nil
}

// Path returns the file the store was opened from.
func (s *BoltStore) Path() string { return s.path }

// newRecord is what a store keeps for r, registered now with its
// normalised URL norm, before any earlier record of the user is taken
// into account (see over).
func newRecord(r Registration, norm string, now time.Time) Registration {
	rec := Registration{
		UserID:     r.UserID,
		BrowserURL: norm,
		Metadata:   maps.Clone(r.Metadata),
		Headers:    maps.Clone(r.Headers),
		Addrs:      slices.Clone(r.Addrs),
	}
	if len(rec.Metadata) == 0 {
		rec.Metadata = nil
	}
	if len(rec.Headers) == 0 {
		rec.Headers = nil
	}
	now = now.Round(0).UTC()
	rec.CreatedAt, rec.UpdatedAt, rec.BrowserSince = now, now, now
	if !r.BrowserSince.IsZero() && r.BrowserSince.Before(now) {
		rec.BrowserSince = r.BrowserSince.Round(0).UTC()
	}
	return rec
}

// over returns rec as it replaces the user's stored record old (Put of r):
// CreatedAt is kept, and so is the seniority of the same URL. Seniority
// over a browser is that of the URL that reaches it: an old registration
// of another URL must not win a browser someone else registered before
// this URL was.
func (rec Registration) over(old, r Registration) Registration {
	if !old.CreatedAt.IsZero() {
		rec.CreatedAt = old.CreatedAt
	}
	if old.BrowserURL == rec.BrowserURL && r.BrowserSince.IsZero() && !old.Since().IsZero() {
		rec.BrowserSince = old.Since()
	}
	return rec
}

// checkPut refuses a Put both stores refuse before touching anything: an
// ended context, an empty user, an invalid browser URL. It returns the URL
// normalised.
func checkPut(ctx context.Context, r Registration) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("register %s: %w", r.UserID, err)
	}
	if r.UserID == "" {
		return "", errors.New("register: user ID is empty")
	}
	norm, err := validateStoredURL(r)
	if err != nil {
		return "", fmt.Errorf("register %s: %w", r.UserID, err)
	}
	return norm, nil
}

// Put implements Store. The browser URL is validated and stored normalised
// (see ValidateBrowserURL); an invalid URL yields a *URLError.
func (s *BoltStore) Put(ctx context.Context, r Registration) (Registration, error) {
	norm, err := checkPut(ctx, r)
	if err != nil {
		return Registration{}, err
	}
	rec := newRecord(r, norm, s.now())
	key := []byte(r.UserID)
	endpoints := EndpointKeys(norm, r.Addrs)

	defer s.cache.drop(r.UserID)
	err = s.db.Update(func(tx *bolt.Tx) error {
		regs, idx, err := buckets(tx)
		if err != nil {
			return err
		}
		for _, ep := range endpoints {
			if owner := idx.Get([]byte(ep)); owner != nil && !bytes.Equal(owner, key) {
				return ErrConflict
			}
		}
		if data := regs.Get(key); data != nil {
			old, err := decodeRecord(s.sealer, data)
			if err != nil {
				return fmt.Errorf("decode existing record: %w", err)
			}
			rec = rec.over(old, r)
		}
		if err := freeEndpoints(idx, key); err != nil {
			return fmt.Errorf("free old browser URL: %w", err)
		}
		data, err := encodeRecord(s.sealer, rec)
		if err != nil {
			return fmt.Errorf("encode record: %w", err)
		}
		if err := regs.Put(key, data); err != nil {
			return fmt.Errorf("write record: %w", err)
		}
		for _, ep := range endpoints {
			if err := idx.Put([]byte(ep), key); err != nil {
				return fmt.Errorf("write browser URL index: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Registration{}, fmt.Errorf("register %s: %w", r.UserID, err)
	}
	return rec, nil
}

// freeEndpoints removes every index key owned by userID. The index is
// small (a few keys per user), and scanning it frees keys whatever their
// form or however the host resolved back then.
func freeEndpoints(idx *bolt.Bucket, userID []byte) error {
	var mine [][]byte
	err := idx.ForEach(func(k, v []byte) error {
		if bytes.Equal(v, userID) {
			mine = append(mine, slices.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range mine {
		if err := idx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// rekeyIndex brings the browser URL index of an older store to the keys of
// CanonicalURL, once (later it finds nothing to change): an older
// key such as http://localhost:9222 becomes tcp://127.0.0.1:9222. When
// several users' keys fall together (alice on 127.0.0.1, bob on localhost,
// both accepted before), the key goes to the one registered first
// (CreatedAt, then user ID); the others keep their registration, and the
// pool's identity check keeps them off the browser.
func rekeyIndex(tx *bolt.Tx) error {
	regs, idx, err := buckets(tx)
	if err != nil {
		return err
	}
	created := func(user []byte) time.Time {
		var rec storedRecord // CreatedAt is never sealed
		if data := regs.Get(user); data != nil && json.Unmarshal(data, &rec) == nil {
			return rec.CreatedAt
		}
		return time.Time{}
	}
	first := func(a, b []byte) bool {
		ta, tb := created(a), created(b)
		if !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return bytes.Compare(a, b) < 0
	}
	type entry struct{ key, owner []byte }
	var stale []entry
	want := map[string][]byte{} // canonical key -> owner
	err = idx.ForEach(func(k, v []byte) error {
		ck := CanonicalURL(string(k))
		if ck != string(k) {
			stale = append(stale, entry{slices.Clone(k), slices.Clone(v)})
		}
		if cur, ok := want[ck]; !ok || first(v, cur) {
			want[ck] = slices.Clone(v)
		}
		return nil
	})
	if err != nil || len(stale) == 0 {
		return err
	}
	for _, e := range stale {
		if err := idx.Delete(e.key); err != nil {
			return fmt.Errorf("rekey browser URL index: %w", err)
		}
	}
	for k, owner := range want {
		if !bytes.Equal(idx.Get([]byte(k)), owner) {
			if err := idx.Put([]byte(k), owner); err != nil {
				return fmt.Errorf("rekey browser URL index: %w", err)
			}
		}
	}
	return nil
}

// Get implements Store.
func (s *BoltStore) Get(ctx context.Context, userID string) (Registration, error) {
	if err := ctx.Err(); err != nil {
		return Registration{}, fmt.Errorf("get registration %s: %w", userID, err)
	}
	rec, ok, gen := s.cache.get(userID)
	if ok {
		return rec, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		regs, _, err := buckets(tx)
		if err != nil {
			return err
		}
		data := regs.Get([]byte(userID))
		if data == nil {
			return ErrNotFound
		}
		if rec, err = decodeRecord(s.sealer, data); err != nil {
			return fmt.Errorf("decode record: %w", err)
		}
		return nil
	})
	if err != nil {
		return Registration{}, fmt.Errorf("get registration %s: %w", userID, err)
	}
	s.cache.fill(userID, rec, gen)
	return rec, nil
}

// Delete implements Store. It also frees the user's browser URL.
func (s *BoltStore) Delete(ctx context.Context, userID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete registration %s: %w", userID, err)
	}
	key := []byte(userID)
	defer s.cache.drop(userID)
	err := s.db.Update(func(tx *bolt.Tx) error {
		regs, idx, err := buckets(tx)
		if err != nil {
			return err
		}
		data := regs.Get(key)
		if data == nil {
			return ErrNotFound
		}
		if err := freeEndpoints(idx, key); err != nil {
			return fmt.Errorf("free browser URL: %w", err)
		}
		if err := regs.Delete(key); err != nil {
			return fmt.Errorf("delete record: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete registration %s: %w", userID, err)
	}
	return nil
}

// List implements Store. It returns an empty, non-nil slice when there are
// no registrations.
func (s *BoltStore) List(ctx context.Context) ([]Registration, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list registrations: %w", err)
	}
	out := []Registration{}
	err := s.db.View(func(tx *bolt.Tx) error {
		regs, _, err := buckets(tx)
		if err != nil {
			return err
		}
		// bbolt iterates keys in byte order, which is UserID order.
		return regs.ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(s.sealer, v)
			if err != nil {
				return fmt.Errorf("decode record %s: %w", k, err)
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list registrations: %w", err)
	}
	return out, nil
}

// Count implements Store.
func (s *BoltStore) Count(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("count registrations: %w", err)
	}
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		regs, _, err := buckets(tx)
		if err != nil {
			return err
		}
		n = regs.Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count registrations: %w", err)
	}
	return n, nil
}

// Ping implements Store: it opens a read transaction and checks the
// buckets exist. It fails once the store is closed.
func (s *BoltStore) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping registration store %s: %w", s.path, err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		_, _, err := buckets(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("ping registration store %s: %w", s.path, err)
	}
	return nil
}

// Close implements Store. It releases the file lock.
func (s *BoltStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close registration store %s: %w", s.path, err)
	}
	return nil
}

// buckets returns the registrations and browser URL index buckets of tx.
func buckets(tx *bolt.Tx) (regs, idx *bolt.Bucket, err error) {
	regs = tx.Bucket([]byte(bucketRegistrations))
	idx = tx.Bucket([]byte(bucketBrowserURLs))
	if regs == nil || idx == nil {
		return nil, nil, errors.New("store is missing its buckets")
	}
	return regs, idx, nil
}
