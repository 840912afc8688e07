package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// idp is a fake identity provider: a JWKS endpoint on 127.0.0.1 and the
// private keys to sign tokens with.
type idp struct {
	t       *testing.T
	srv     *httptest.Server
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	fetches atomic.Int64

	mu   sync.Mutex
	keys []jwkset.JWKMarshal
	body string // when set, served instead of the keys
}

// testKeys are generated once: RSA generation is slow under -race.
var testKeys = sync.OnceValues(func() (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return r, e
})

func newIDP(t *testing.T) *idp {
	t.Helper()
	r, e := testKeys()
	p := &idp{t: t, rsa: r, ec: e}
	p.add(&r.PublicKey, "rsa1", jwkset.AlgRS256, "")
	p.add(&e.PublicKey, "ec1", jwkset.AlgES256, "")
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		body := p.body
		if body == "" {
			b, _ := json.Marshal(jwkset.JWKSMarshal{Keys: p.keys})
			body = string(b)
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// add publishes key under kid.
func (p *idp) add(key any, kid string, alg jwkset.ALG, use jwkset.USE) {
	p.t.Helper()
	j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Marshal: jwkset.JWKMarshalOptions{Private: true}, Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: use}})
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.keys = append(p.keys, j.Marshal())
	p.mu.Unlock()
}

func (p *idp) jwks(t *testing.T, cfg JWKSConfig) *JWKS {
	t.Helper()
	cfg.URL = p.srv.URL + "/jwks.json"
	j, err := NewJWKS(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewJWKS: %v", err)
	}
	t.Cleanup(j.Close)
	return j
}

// signed signs claims with method and key, setting kid when non-empty.
func signed(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// idpClaims are valid claims for the IdP tests.
func idpClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": "alice", "iss": "https://idp.test", "aud": "mbp", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func pemOf(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestJWKSVerify(t *testing.T) {
	p := newIDP(t)
	a, err := NewAuthenticatorWith(testSecret, Options{Issuer: "https://idp.test", Audience: "mbp", JWKS: p.jwks(t, JWKSConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	c := idpClaims()
	exp := time.Now().Add(time.Hour).Unix()

	for _, tt := range []struct {
		name string
		tok  string
	}{
		{"RS256", signed(t, jwt.SigningMethodRS256, p.rsa, "rsa1", c)},
		{"ES256", signed(t, jwt.SigningMethodES256, p.ec, "ec1", c)},
		{"ES256 with perms", signed(t, jwt.SigningMethodES256, p.ec, "ec1", with(c, "perms", []string{PermRead}))},
		{"aud array", signed(t, jwt.SigningMethodRS256, p.rsa, "rsa1", with(c, "aud", []string{"other", "mbp"}))},
	} {
		t.Run("accept "+tt.name, func(t *testing.T) {
			pr, err := a.Verify(tt.tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if pr.UserID != "alice" || len(pr.Perms) == 0 {
				t.Errorf("principal = %+v", pr)
			}
		})
	}
	pr, _ := a.Verify(signed(t, jwt.SigningMethodES256, p.ec, "ec1", with(c, "perms", []string{PermRead})))
	if len(pr.Perms) != 1 || pr.Perms[0] != PermRead {
		t.Errorf("perms claim of an IdP token ignored: %+v", pr)
	}
	// An IdP token with an empty perms claim grants nothing, as ours.
	for _, alg := range []struct {
		m   jwt.SigningMethod
		key any
		kid string
	}{{jwt.SigningMethodRS256, p.rsa, "rsa1"}, {jwt.SigningMethodES256, p.ec, "ec1"}} {
		pr, err := a.Verify(signed(t, alg.m, alg.key, alg.kid, with(c, "perms", []string{})))
		if err != nil || pr.UserID != "alice" || len(pr.Perms) != 0 {
			t.Errorf("%s token with perms []: %+v, %v; want alice with no permission", alg.m.Alg(), pr, err)
		}
	}

	rsaPEM := pemOf(t, &p.rsa.PublicKey)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&p.rsa.PublicKey)
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)

	for _, tt := range []struct {
		name    string
		tok     string
		expired bool
	}{
		{"wrong kid", signed(t, jwt.SigningMethodRS256, p.rsa, "nope", c), false},
		{"no kid", signed(t, jwt.SigningMethodRS256, p.rsa, "", c), false},
		{"RS256 signed by another key", signed(t, jwt.SigningMethodRS256, otherRSA, "rsa1", c), false},
		{"RS256 token naming the EC key", signed(t, jwt.SigningMethodRS256, p.rsa, "ec1", c), false},
		{"ES256 token naming the RSA key", signed(t, jwt.SigningMethodES256, p.ec, "rsa1", c), false},
		{"RS384 (not allowed)", signed(t, jwt.SigningMethodRS384, p.rsa, "rsa1", c), false},
		{"PS256 (not allowed)", signed(t, jwt.SigningMethodPS256, p.rsa, "rsa1", c), false},
		{"HS256 keyed with the RSA public key PEM", signed(t, jwt.SigningMethodHS256, rsaPEM, "rsa1", c), false},
		{"HS256 keyed with the RSA public key DER", signed(t, jwt.SigningMethodHS256, rsaDER, "rsa1", c), false},
		{"alg none", none, false},
		{"expired", signed(t, jwt.SigningMethodRS256, p.rsa, "rsa1", with(with(c, "exp", time.Now().Add(-time.Hour).Unix()), "iat", time.Now().Add(-2*time.Hour).Unix())), true},
		{"no exp", signed(t, jwt.SigningMethodRS256, p.rsa, "rsa1", with(c, "exp", nil)), false},
		{"wrong iss", signed(t, jwt.SigningMethodRS256, p.rsa, "rsa1", with(c, "iss", "https://evil.test")), false},
		{"no iss", signed(t, jwt.SigningMethodRS256, p.rsa, "rsa1", with(c, "iss", nil)), false},
		{"wrong aud", signed(t, jwt.SigningMethodES256, p.ec, "ec1", with(c, "aud", "other")), false},
		{"no aud", signed(t, jwt.SigningMethodES256, p.ec, "ec1", with(c, "aud", nil)), false},
		{"bad sub", signed(t, jwt.SigningMethodRS256, p.rsa, "rsa1", with(c, "sub", "auth0|123")), false},
		{"not yet valid", signed(t, jwt.SigningMethodRS256, p.rsa, "rsa1", with(c, "nbf", time.Now().Add(time.Hour).Unix())), false},
		{"HS256 with our secret but without iss/aud", sign(t, jwt.MapClaims{"sub": "alice", "exp": exp}), false},
	} {
		t.Run("refuse "+tt.name, func(t *testing.T) {
			pr, err := a.Verify(tt.tok)
			if err == nil {
				t.Fatalf("accepted: %+v", pr)
			}
			want := ErrInvalidToken
			if tt.expired {
				want = ErrExpiredToken
			}
			if !errors.Is(err, want) {
				t.Errorf("err = %v, want %v", err, want)
			}
			if strings.Contains(err.Error(), tt.tok) {
				t.Error("error text contains the token")
			}
		})
	}

	// The proxy's own tokens still verify, and carry the configured iss/aud.
	own, err := a.Issue("bob", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if pr, err := a.Verify(own); err != nil || pr.UserID != "bob" {
		t.Fatalf("own HS256 token: %+v, %v", pr, err)
	}
	mc := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(own, mc); err != nil {
		t.Fatal(err)
	}
	if tok, _, _ := jwt.NewParser().ParseUnverified(own, jwt.MapClaims{}); tok.Method.Alg() != "HS256" {
		t.Errorf("Issue signs with %s, want HS256", tok.Method.Alg())
	}
	if mc["iss"] != "https://idp.test" || mc["aud"] == nil {
		t.Errorf("issued claims lack iss/aud: %v", mc)
	}
}

func TestJWKSUnknownKIDRefreshIsRateLimited(t *testing.T) {
	p := newIDP(t)
	j := p.jwks(t, JWKSConfig{UnknownKIDInterval: time.Hour})
	a, err := NewAuthenticatorWith(testSecret, Options{JWKS: j})
	if err != nil {
		t.Fatal(err)
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	// Rotation: the IdP publishes a new key; the first token naming it
	// makes the JWKS refresh once.
	newKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.add(&newKey.PublicKey, "ec2", jwkset.AlgES256, "")
	c := with(with(idpClaims(), "iss", nil), "aud", nil)
	if _, err := a.Verify(signed(t, jwt.SigningMethodES256, newKey, "ec2", c)); err != nil {
		t.Fatalf("token of a rotated-in key: %v", err)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after an unknown kid, want 2", n)
	}
	// Further unknown kids within the interval do not reach the IdP.
	for range 5 {
		_, err := a.Verify(signed(t, jwt.SigningMethodES256, newKey, "random-kid", c))
		if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after rate-limited unknown kids, want 2", n)
	}
	// Known keys keep working without fetches.
	if _, err := a.Verify(signed(t, jwt.SigningMethodRS256, p.rsa, "rsa1", c)); err != nil {
		t.Fatal(err)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

func TestJWKSKeyConstraints(t *testing.T) {
	p := newIDP(t)
	r, e := testKeys()
	p.add(&r.PublicKey, "rsa-enc", jwkset.AlgRS256, jwkset.UseEnc)
	p.add(&e.PublicKey, "ec-no-alg", "", "")
	p.add([]byte(strings.Repeat("k", 32)), "oct", jwkset.AlgHS256, "")
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p.add(&small.PublicKey, "rsa-small", jwkset.AlgRS256, "")
	j := p.jwks(t, JWKSConfig{})
	ctx := context.Background()

	if _, err := j.Key(ctx, "rsa1", "RS256"); err != nil {
		t.Errorf("rsa1: %v", err)
	}
	if _, err := j.Key(ctx, "ec-no-alg", "ES256"); err != nil {
		t.Errorf("EC key without alg: %v", err)
	}
	for _, tt := range []struct{ kid, alg, want string }{
		{"rsa-enc", "RS256", "signing"},
		{"ec-no-alg", "RS256", "does not match"},
		{"rsa1", "ES256", "ES256"},
		{"oct", "HS256", "unsupported key type"},
		{"oct", "RS256", "RS256"},
		{"rsa-small", "RS256", "2048"},
	} {
		if _, err := j.Key(ctx, tt.kid, tt.alg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Key(%s, %s) = %v, want error mentioning %q", tt.kid, tt.alg, err, tt.want)
		}
	}

	// An HS256 token keyed with the JWKS's own symmetric key is still
	// checked against the proxy's secret only.
	a, err := NewAuthenticatorWith(testSecret, Options{JWKS: j})
	if err != nil {
		t.Fatal(err)
	}
	tok := signed(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), "oct", jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	if pr, err := a.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("HS256 token keyed with a JWKS oct key: %+v, %v", pr, err)
	}
}

func TestNewJWKSErrors(t *testing.T) {
	p := newIDP(t)
	for _, tt := range []struct{ url, want string }{
		{"", "empty"},
		{"http://idp.example.com/jwks", "https"},
		{"ftp://127.0.0.1/jwks", "scheme"},
		{"/jwks", "absolute"},
	} {
		if _, err := NewJWKS(context.Background(), JWKSConfig{URL: tt.url}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewJWKS(%q) = %v, want error mentioning %q", tt.url, err, tt.want)
		}
	}

	// A body over the cap is refused, whether announced or streamed.
	p.mu.Lock()
	p.body = `{"keys":[` + strings.Repeat(" ", 4096) + `]}`
	p.mu.Unlock()
	if _, err := NewJWKS(context.Background(), JWKSConfig{URL: p.srv.URL, MaxBytes: 1024}); !errors.Is(err, errBodyTooLarge) {
		t.Errorf("oversized JWKS: %v, want errBodyTooLarge", err)
	}
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[`))
		w.(http.Flusher).Flush() // chunked: no Content-Length
		for range 100 {
			_, _ = w.Write([]byte(strings.Repeat(" ", 1024)))
		}
		_, _ = w.Write([]byte(`]}`))
	}))
	defer big.Close()
	if _, err := NewJWKS(context.Background(), JWKSConfig{URL: big.URL, MaxBytes: 4096}); !errors.Is(err, errBodyTooLarge) {
		t.Errorf("streamed oversized JWKS: %v, want errBodyTooLarge", err)
	}

	// An empty set and an unreachable IdP fail at start, naming the URL.
	p.mu.Lock()
	p.body = `{"keys":[]}`
	p.mu.Unlock()
	if _, err := NewJWKS(context.Background(), JWKSConfig{URL: p.srv.URL + "/k?secret=x"}); err == nil || !strings.Contains(err.Error(), "no usable key") || strings.Contains(err.Error(), "secret=x") {
		t.Errorf("empty JWKS: %v", err)
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if _, err := NewJWKS(context.Background(), JWKSConfig{URL: dead.URL, Timeout: 5 * time.Second}); err == nil || !strings.Contains(err.Error(), dead.URL) {
		t.Errorf("unreachable JWKS: %v", err)
	}
}

func TestJWKSBackgroundRefreshStopsOnClose(t *testing.T) {
	p := newIDP(t)
	j, err := NewJWKS(context.Background(), JWKSConfig{URL: p.srv.URL, RefreshInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.fetches.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no background refresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A failing refresh keeps the previous keys.
	p.mu.Lock()
	p.body = "not json"
	p.mu.Unlock()
	for n := p.fetches.Load(); p.fetches.Load() < n+2; {
		if time.Now().After(deadline) {
			t.Fatal("no background refresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := j.Key(context.Background(), "rsa1", "RS256"); err != nil {
		t.Errorf("keys lost after a failed refresh: %v", err)
	}
	j.Close()
	// A fetch Close cancelled in flight may still reach the server after
	// Close returned: count from when it has landed.
	time.Sleep(100 * time.Millisecond)
	n := p.fetches.Load()
	time.Sleep(100 * time.Millisecond)
	if m := p.fetches.Load(); m != n {
		t.Errorf("%d fetches after Close", m-n)
	}
}

func TestPublicKeyFile(t *testing.T) {
	r, e := testKeys()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := dir + "/" + name
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	rsaPath := write("rsa.pem", pemOf(t, &r.PublicKey))
	ecPath := write("ec.pem", pemOf(t, &e.PublicKey))
	pkcs1Path := write("rsa1.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&r.PublicKey)}))

	c := with(with(idpClaims(), "iss", nil), "aud", nil)
	for _, path := range []string{rsaPath, pkcs1Path} {
		key, err := LoadPublicKey(path)
		if err != nil {
			t.Fatalf("LoadPublicKey(%s): %v", path, err)
		}
		a, err := NewAuthenticatorWith(testSecret, Options{PublicKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Verify(signed(t, jwt.SigningMethodRS256, r, "any-kid", c)); err != nil {
			t.Errorf("RS256 with PEM key: %v", err)
		}
		if _, err := a.Verify(signed(t, jwt.SigningMethodRS256, r, "", c)); err != nil {
			t.Errorf("RS256 without kid with PEM key: %v", err)
		}
		for name, tok := range map[string]string{
			"ES256":               signed(t, jwt.SigningMethodES256, e, "", c),
			"HS256 with PEM text": signed(t, jwt.SigningMethodHS256, pemOf(t, &r.PublicKey), "", c),
			"expired":             signed(t, jwt.SigningMethodRS256, r, "", with(c, "exp", time.Now().Add(-time.Hour).Unix())),
			"no exp":              signed(t, jwt.SigningMethodRS256, r, "", with(c, "exp", nil)),
		} {
			if pr, err := a.Verify(tok); err == nil {
				t.Errorf("%s accepted: %+v", name, pr)
			}
		}
	}
	key, err := LoadPublicKey(ecPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticatorWith(testSecret, Options{PublicKey: key, Issuer: "https://idp.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(signed(t, jwt.SigningMethodES256, e, "", with(c, "iss", "https://idp.test"))); err != nil {
		t.Errorf("ES256 with PEM key: %v", err)
	}
	if _, err := a.Verify(signed(t, jwt.SigningMethodES256, e, "", with(c, "iss", "https://other.test"))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("ES256 with wrong iss: %v", err)
	}
	if _, err := a.Verify(signed(t, jwt.SigningMethodRS256, r, "", with(c, "iss", "https://idp.test"))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("RS256 against an EC key: %v", err)
	}

	privDER, _ := x509.MarshalPKCS8PrivateKey(r)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, tt := range map[string]struct {
		data []byte
		want string
	}{
		"private key": {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), "only the public key"},
		"P-384":       {pemOf(t, &p384.PublicKey), "P-256"},
		"RSA 1024":    {pemOf(t, &small.PublicKey), "2048"},
		"not PEM":     {[]byte("hello"), "no PUBLIC KEY"},
		"garbage DER": {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("xx")}), "parse PUBLIC KEY"},
	} {
		path := write(strings.ReplaceAll(name, " ", "_")+".pem", tt.data)
		_, err := LoadPublicKey(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want one naming %s and mentioning %q", name, err, path, tt.want)
		}
	}
	if _, err := LoadPublicKey(dir + "/missing.pem"); err == nil {
		t.Error("missing file accepted")
	}
}

func TestNewAuthenticatorWithErrors(t *testing.T) {
	p := newIDP(t)
	r, _ := testKeys()
	if _, err := NewAuthenticatorWith(testSecret, Options{PublicKey: &r.PublicKey, JWKS: p.jwks(t, JWKSConfig{})}); err == nil {
		t.Error("PublicKey and JWKS together accepted")
	}
	if _, err := NewAuthenticatorWith(testSecret, Options{PublicKey: r}); err == nil {
		t.Error("a private key as PublicKey accepted")
	}
	if _, err := NewAuthenticatorWith(testSecret[:31], Options{}); err == nil {
		t.Error("short secret accepted")
	}
}
