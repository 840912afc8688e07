package router

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/net/http/httpguts"
)

// MinStoreKeyLen is the shortest secret NewSealer accepts, in bytes.
const MinStoreKeyLen = 32

// sealVersion is the first byte of every sealed blob, so the format can
// change later.
const sealVersion = 1

// hkdfInfo binds the derived key to this use: the same secret also signs
// JWTs, and the two keys must differ.
const hkdfInfo = "mcp-browser-proxy registration store v1"

// Sealer encrypts the secret part of a registration (browser URL and
// headers) at rest, with AES-256-GCM under a key derived by HKDF-SHA256 from
// a proxy secret. A Sealer is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer derives the store key from secret (at least MinStoreKeyLen
// bytes: the proxy's JWT secret or --store-key).
func NewSealer(secret []byte) (*Sealer, error) {
	if len(secret) < MinStoreKeyLen {
		return nil, fmt.Errorf("store key is %d bytes; at least %d are needed", len(secret), MinStoreKeyLen)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, hkdfInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive store key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("store cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("store cipher: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plain, authenticating ad with it (a different ad makes Open
// fail). The result is version, random nonce, ciphertext.
func (s *Sealer) Seal(plain, ad []byte) []byte {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	// crypto/rand.Read never fails (it panics on a broken system source).
	_, _ = rand.Read(out[1:])
	return s.aead.Seal(out, out[1:], plain, ad)
}

// ErrUnseal is returned when a sealed registration cannot be decrypted,
// typically because the proxy now runs with another key.
var ErrUnseal = errors.New("cannot decrypt the browser URL: the store was written with another key; start with the same --store-key (or --jwt-secret), or delete the registration and register again")

// Open decrypts what Seal returned for the same ad. Errors wrap ErrUnseal.
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w (unknown format)", ErrUnseal)
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], ad)
	if err != nil {
		return nil, ErrUnseal
	}
	return plain, nil
}

// storedRecord is the on-disk form of a Registration. With a Sealer the
// browser URL and headers live only inside Sealed; without one (tests, old
// files) they are in clear.
type storedRecord struct {
	UserID     string            `json:"userId"`
	BrowserURL string            `json:"browserURL,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Sealed     []byte            `json:"sealed,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`
	// BrowserSince: Registration.BrowserSince; absent in older records.
	BrowserSince time.Time `json:"browserSince,omitzero"`
	// Addrs: Registration.Addrs of a record in clear (sealed ones keep
	// them in the sealed part); absent in older records.
	Addrs []netip.Addr `json:"addrs,omitempty"`
}

// sealedPart is what Sealed encrypts.
type sealedPart struct {
	BrowserURL string            `json:"u"`
	Headers    map[string]string `json:"h,omitempty"`
	// Addrs are sealed with the URL they were resolved from: they say
	// where a user's browser is as much as the URL does.
	Addrs []netip.Addr `json:"a,omitempty"`
}

// encodeRecord returns the bytes stored for r, sealing its URL and headers
// when s is non-nil. The user ID is the associated data, so a sealed blob
// moved to another user's record does not open.
func encodeRecord(s *Sealer, r Registration) ([]byte, error) {
	rec := storedRecord{UserID: r.UserID, Metadata: r.Metadata, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, BrowserSince: r.BrowserSince}
	if s == nil {
		rec.BrowserURL, rec.Headers, rec.Addrs = r.BrowserURL, r.Headers, r.Addrs
	} else {
		plain, err := json.Marshal(sealedPart{BrowserURL: r.BrowserURL, Headers: r.Headers, Addrs: r.Addrs})
		if err != nil {
			return nil, err
		}
		rec.Sealed = s.Seal(plain, []byte(r.UserID))
	}
	return json.Marshal(rec)
}

// decodeRecord reverses encodeRecord. A sealed record needs s; a clear one
// (written before the store had a key) is read as is.
func decodeRecord(s *Sealer, data []byte) (Registration, error) {
	var rec storedRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return Registration{}, err
	}
	r := Registration{UserID: rec.UserID, BrowserURL: rec.BrowserURL, Headers: rec.Headers,
		Metadata: rec.Metadata, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt, BrowserSince: rec.BrowserSince, Addrs: rec.Addrs}
	if rec.Sealed == nil {
		return r, nil
	}
	if s == nil {
		return Registration{}, errors.New("the record is encrypted and the store was opened without a key")
	}
	plain, err := s.Open(rec.Sealed, []byte(rec.UserID))
	if err != nil {
		return Registration{}, err
	}
	var part sealedPart
	if err := json.Unmarshal(plain, &part); err != nil {
		return Registration{}, fmt.Errorf("decode sealed part: %w", err)
	}
	r.BrowserURL, r.Headers, r.Addrs = part.BrowserURL, part.Headers, part.Addrs
	return r, nil
}

// HeaderNames returns the canonical names of headers, sorted, for logs and
// API answers: header values are credentials and are never shown.
func HeaderNames(headers map[string]string) []string {
	names := make([]string, 0, len(headers))
	for k := range maps.Keys(headers) {
		names = append(names, http.CanonicalHeaderKey(k))
	}
	slices.Sort(names)
	return names
}

// MaxHeaders is the most headers a registration may carry.
const MaxHeaders = 16

// maxHeaderValue bounds one header value, in bytes.
const maxHeaderValue = 4096

// ValidateHeaders checks the headers sent to a browser on the CDP handshake
// and /json/version: at most MaxHeaders, valid names and values, none that
// the proxy sets itself or that would change the connection (Host,
// Connection, Upgrade, Origin, Sec-*, Content-Length, Transfer-Encoding,
// Proxy-*...). It returns them with canonical names; nil for none. Errors
// name the header, never its value.
func ValidateHeaders(h map[string]string) (map[string]string, error) {
	if len(h) == 0 {
		return nil, nil
	}
	if len(h) > MaxHeaders {
		return nil, fmt.Errorf("%d headers; at most %d are allowed", len(h), MaxHeaders)
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("header name %q is not a valid HTTP header name", k)
		}
		name := http.CanonicalHeaderKey(k)
		if forbiddenHeader(name) {
			return nil, fmt.Errorf("header %s is set by the proxy itself and cannot be given", name)
		}
		if !httpguts.ValidHeaderFieldValue(v) || len(v) > maxHeaderValue {
			return nil, fmt.Errorf("the value of header %s is not a valid header value of at most %d bytes", name, maxHeaderValue)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("header %s is given twice", name)
		}
		out[name] = v
	}
	return out, nil
}

// forbiddenHeader reports whether a canonical header name is one the
// handshake owns.
func forbiddenHeader(name string) bool {
	switch name {
	case "Host", "Connection", "Upgrade", "Origin", "Content-Length", "Transfer-Encoding",
		"Keep-Alive", "Te", "Trailer", "Expect":
		return true
	}
	return strings.HasPrefix(name, "Sec-") || strings.HasPrefix(name, "Proxy-")
}

// sealClearRecords rewrites records stored in clear (before the store had a
// key) sealed. bbolt may keep the old bytes in free pages until they are
// reused; register again, or compact the file, to be sure they are gone.
func (s *BoltStore) sealClearRecords(tx *bolt.Tx) error {
	regs, _, err := buckets(tx)
	if err != nil {
		return err
	}
	type update struct {
		key, data []byte
	}
	var updates []update
	err = regs.ForEach(func(k, v []byte) error {
		var rec storedRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decode record %s: %w", k, err)
		}
		if rec.Sealed != nil {
			return nil
		}
		r, err := decodeRecord(nil, v)
		if err != nil {
			return fmt.Errorf("decode record %s: %w", k, err)
		}
		data, err := encodeRecord(s.sealer, r)
		if err != nil {
			return fmt.Errorf("seal record %s: %w", k, err)
		}
		updates = append(updates, update{slices.Clone(k), data})
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range updates {
		if err := regs.Put(u.key, u.data); err != nil {
			return fmt.Errorf("seal record %s: %w", u.key, err)
		}
	}
	return nil
}
