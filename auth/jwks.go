package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// JWKS defaults.
const (
	defaultJWKSRefresh    = time.Hour
	defaultJWKSUnknownKID = time.Minute
	defaultJWKSTimeout    = 10 * time.Second
	defaultJWKSMaxBytes   = 1 << 20
	maxJWKSRedirects      = 3
)

// ErrUnknownKey means a token names a key ID the JWKS does not hold, even
// after a refresh (or while refreshes are rate limited).
var ErrUnknownKey = errors.New("unknown key ID")

// JWKSConfig configures NewJWKS. Zero durations and sizes take the defaults.
type JWKSConfig struct {
	// URL of the JSON Web Key Set: https, or http for a loopback host only.
	URL string
	// RefreshInterval is how often the set is fetched again in the
	// background (default 1h).
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two fetches triggered by
	// tokens whose kid the set does not hold (default 1m).
	UnknownKIDInterval time.Duration
	// Timeout bounds one fetch, connection and body included (default 10s).
	Timeout time.Duration
	// MaxBytes caps the size of the key set document (default 1 MiB).
	MaxBytes int64
	// Log receives failed background refreshes.
	Log zerolog.Logger
}

// JWKS holds the public keys of an identity provider, fetched from its JWKS
// URL: once at start, then every RefreshInterval by a goroutine that Close
// ends, and on demand when a token names an unknown kid (at most once per
// UnknownKIDInterval). It is safe for concurrent use.
type JWKS struct {
	cfg     JWKSConfig
	client  *http.Client
	keys    atomic.Value // jwkset.Storage of the last successful fetch
	fetchMu sync.Mutex   // serialises fetches
	limiter *rate.Limiter
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewJWKS validates cfg, fetches the key set once (an error when that
// fails, naming the URL) and starts the background refresh, which lasts
// until ctx ends or Close is called.
func NewJWKS(ctx context.Context, cfg JWKSConfig) (*JWKS, error) {
	if err := checkJWKSURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("JWKS URL: %w", err)
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = defaultJWKSRefresh
	}
	if cfg.UnknownKIDInterval <= 0 {
		cfg.UnknownKIDInterval = defaultJWKSUnknownKID
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultJWKSTimeout
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = defaultJWKSMaxBytes
	}
	base, _ := http.DefaultTransport.(*http.Transport)
	var rt http.RoundTripper = http.DefaultTransport
	if base != nil {
		rt = base.Clone()
	}
	j := &JWKS{
		cfg: cfg,
		client: &http.Client{
			Timeout:   cfg.Timeout,
			Transport: capTransport{base: rt, max: cfg.MaxBytes},
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= maxJWKSRedirects {
					return fmt.Errorf("more than %d redirects", maxJWKSRedirects)
				}
				return checkJWKSURL(req.URL.String())
			},
		},
		limiter: rate.NewLimiter(rate.Every(cfg.UnknownKIDInterval), 1),
		done:    make(chan struct{}),
	}
	if err := j.fetch(ctx); err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", safeURL(cfg.URL), err)
	}
	ctx, j.cancel = context.WithCancel(ctx)
	go j.refreshLoop(ctx)
	return j, nil
}

// Close stops the background refresh and waits for it to end. Keys fetched
// so far stay usable.
func (j *JWKS) Close() {
	j.cancel()
	<-j.done
}

// Key returns the public key with key ID kid for a token signed with alg
// (RS256 or ES256). The key must be RSA (at least 2048 bits) for RS256 or
// ECDSA P-256 for ES256, and its JWK "alg" and "use", when present, must be
// alg and "sig". An unknown kid triggers a rate-limited refresh bounded by
// ctx and the fetch timeout; if the kid is still unknown the error wraps
// ErrUnknownKey.
func (j *JWKS) Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	jwk, err := j.lookup(ctx, kid)
	if err != nil {
		return nil, err
	}
	m := jwk.Marshal()
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, fmt.Errorf("JWKS key %q is not a signing key (use %q)", kid, m.USE)
	}
	if m.ALG != "" && string(m.ALG) != alg {
		return nil, fmt.Errorf("JWKS key %q is for %s, the token says %s", kid, m.ALG, alg)
	}
	key := jwk.Key()
	if err := keySuitsAlg(key, alg); err != nil {
		return nil, fmt.Errorf("JWKS key %q: %w", kid, err)
	}
	return key, nil
}

// lookup finds kid in the current set, refreshing once (rate limited) when
// it is missing.
func (j *JWKS) lookup(ctx context.Context, kid string) (jwkset.JWK, error) {
	if k, err := j.current().KeyRead(ctx, kid); err == nil {
		return k, nil
	}
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	// A fetch that ended while this one waited may have brought the key.
	if k, err := j.current().KeyRead(ctx, kid); err == nil {
		return k, nil
	}
	if !j.limiter.Allow() {
		return jwkset.JWK{}, fmt.Errorf("%w %q (JWKS refreshed recently; next refresh in at most %v)", ErrUnknownKey, kid, j.cfg.UnknownKIDInterval)
	}
	if err := j.fetchLocked(ctx); err != nil {
		return jwkset.JWK{}, fmt.Errorf("%w %q: refresh JWKS: %w", ErrUnknownKey, kid, err)
	}
	k, err := j.current().KeyRead(ctx, kid)
	if err != nil {
		return jwkset.JWK{}, fmt.Errorf("%w %q", ErrUnknownKey, kid)
	}
	return k, nil
}

// current returns the key set of the last successful fetch.
func (j *JWKS) current() jwkset.Storage {
	return j.keys.Load().(jwkset.Storage)
}

// fetch downloads and parses the key set and, on success, replaces the
// current one.
func (j *JWKS) fetch(ctx context.Context) error {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	return j.fetchLocked(ctx)
}

// fetchLocked is fetch with fetchMu held.
func (j *JWKS) fetchLocked(ctx context.Context) error {
	// jwkset does the request (bounded by our client and Timeout) and
	// parses and validates every JWK; without RefreshInterval it starts no
	// goroutine of its own.
	st, err := jwkset.NewStorageFromHTTP(j.cfg.URL, jwkset.HTTPClientStorageOptions{
		Client:      j.client,
		Ctx:         ctx,
		HTTPTimeout: j.cfg.Timeout,
	})
	if err != nil {
		return err
	}
	all, err := st.KeyReadAll(ctx)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		return errors.New("the key set holds no usable key")
	}
	j.keys.Store(st)
	return nil
}

// refreshLoop fetches the set every RefreshInterval until ctx ends. A failed
// refresh keeps the previous keys.
func (j *JWKS) refreshLoop(ctx context.Context) {
	defer close(j.done)
	t := time.NewTicker(j.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := j.fetch(ctx); err != nil && ctx.Err() == nil {
			j.cfg.Log.Warn().Err(err).Str("jwks_url", safeURL(j.cfg.URL)).
				Msg("JWKS refresh failed; keeping the previous keys")
		}
	}
}

// checkJWKSURL accepts https URLs, and http URLs whose host is a loopback
// address or "localhost".
func checkJWKSURL(raw string) error {
	if raw == "" {
		return errors.New("empty; give the identity provider's JWKS URL, e.g. https://idp.example.com/.well-known/jwks.json")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("not an absolute URL, e.g. https://idp.example.com/.well-known/jwks.json")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
			return nil
		}
		return errors.New("http is allowed only for a loopback host; use https")
	}
	return fmt.Errorf("scheme %q is not supported; use https", u.Scheme)
}

// safeURL returns raw without userinfo, query and fragment, for logs and
// errors.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// errBodyTooLarge is returned while reading a response body over the cap.
var errBodyTooLarge = errors.New("JWKS document exceeds the size limit")

// capTransport refuses response bodies larger than max bytes.
type capTransport struct {
	base http.RoundTripper
	max  int64
}

// RoundTrip implements http.RoundTripper.
func (t capTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %d bytes announced, the limit is %d", errBodyTooLarge, resp.ContentLength, t.max)
	}
	resp.Body = &capReader{rc: resp.Body, left: t.max}
	return resp, nil
}

// capReader reads at most left bytes and fails, instead of truncating, when
// the body is longer.
type capReader struct {
	rc   io.ReadCloser
	left int64
}

// Read implements io.Reader.
func (c *capReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, errBodyTooLarge
	}
	return n, err
}

// Close implements io.Closer.
func (c *capReader) Close() error { return c.rc.Close() }
