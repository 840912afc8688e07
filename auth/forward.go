package auth

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ForwardHeader carries the proof that a request was forwarded by another
// instance of the same deployment (shared mode): "v1;<instance>;<unix
// seconds>;<hex HMAC-SHA256>".
const ForwardHeader = "X-Mbp-Forwarded"

// forwardInfo binds the derived key to this use: the same secret also
// signs tokens and keys the store's sealing.
const forwardInfo = "mcp-browser-proxy instance forwarding v1"

// DefaultForwardSkew is how far a forwarded request's timestamp may be
// from the receiver's clock.
const DefaultForwardSkew = 10 * time.Second

// ErrForward is the error of a forwarding header that does not verify.
var ErrForward = errors.New("the inter-instance forwarding header is not valid")

// ForwardSigner signs and checks ForwardHeader. Every instance of a
// deployment derives the same key from the same secret.
type ForwardSigner struct {
	key  []byte
	skew time.Duration
	now  func() time.Time
}

// NewForwardSigner derives the forwarding key from secret (the JWT secret,
// or a dedicated cluster secret: at least 32 bytes). skew <= 0 takes
// DefaultForwardSkew.
func NewForwardSigner(secret []byte, skew time.Duration) (*ForwardSigner, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("forwarding secret: %d bytes; use at least 32", len(secret))
	}
	key, err := hkdf.Key(sha256.New, secret, nil, forwardInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive the forwarding key: %w", err)
	}
	if skew <= 0 {
		skew = DefaultForwardSkew
	}
	return &ForwardSigner{key: key, skew: skew, now: time.Now}, nil
}

func (f *ForwardSigner) mac(method, target, instance string, ts int64) string {
	h := hmac.New(sha256.New, f.key)
	fmt.Fprintf(h, "v1\n%s\n%s\n%d\n%s", method, target, ts, instance)
	return hex.EncodeToString(h.Sum(nil))
}

// Sign returns the ForwardHeader value for a request of method to target
// (path and query, as in the request line) forwarded by instance now.
func (f *ForwardSigner) Sign(method, target, instance string) string {
	return f.SignAt(method, target, instance, f.now())
}

// SignAt is Sign at time at (tests sign stale headers with it).
func (f *ForwardSigner) SignAt(method, target, instance string, at time.Time) string {
	ts := at.Unix()
	return "v1;" + instance + ";" + strconv.FormatInt(ts, 10) + ";" + f.mac(method, target, instance, ts)
}

// Verify checks a ForwardHeader value for a request of method to target
// and returns the forwarding instance's ID. A header that is malformed,
// signed with another key, for another request, or outside the skew window
// is ErrForward.
func (f *ForwardSigner) Verify(header, method, target string) (string, error) {
	parts := strings.Split(header, ";")
	if len(parts) != 4 || parts[0] != "v1" || parts[1] == "" {
		return "", fmt.Errorf("%w: malformed", ErrForward)
	}
	ts, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: malformed timestamp", ErrForward)
	}
	if d := f.now().Sub(time.Unix(ts, 0)); d > f.skew || d < -f.skew {
		return "", fmt.Errorf("%w: its timestamp is %s away from this instance's clock (at most %s; a replay, or clocks out of sync)", ErrForward, d.Round(time.Second), f.skew)
	}
	want := f.mac(method, target, parts[1], ts)
	if !hmac.Equal([]byte(want), []byte(parts[3])) {
		return "", fmt.Errorf("%w: bad signature (another secret, or another request)", ErrForward)
	}
	return parts[1], nil
}

// Fingerprint returns a value that is the same for every signer of the
// same secret and tells nothing of it (an HMAC of a fixed text), so that
// instances can check at start that they share the secret.
func (f *ForwardSigner) Fingerprint() string {
	h := hmac.New(sha256.New, f.key)
	h.Write([]byte("mcp-browser-proxy forwarding key check"))
	return hex.EncodeToString(h.Sum(nil))
}
