package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// newSecHarness is newHarness with a sealed store and the proxy Config
// adjusted by mod (Security, Tools...). The pool enforces the same browser
// policy as the registration check.
func newSecHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	return buildHarness(t, harnessSetup{edit: func(c *Config) {
		if mod != nil {
			mod(c)
		}
		if err := c.Security.Validate(); err != nil {
			t.Fatal(err)
		}
	}})
}

// secRequest sends method path with extra headers and returns the status,
// the answer's headers and the decoded error (if any).
func (h *harness) secRequest(method, path string, hdr map[string]string, body string) (int, http.Header, APIError) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, h.URL+path, strings.NewReader(body))
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var e APIError
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, resp.Header, e
}

// fakeBrowser is a DevTools endpoint on loopback that requires credentials
// and records the handshake of every CDP websocket.
type fakeBrowser struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hdrs []http.Header
	urls []string
}

func newFakeBrowser(t *testing.T, ok func(r *http.Request) bool) *fakeBrowser {
	t.Helper()
	f := &fakeBrowser{}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	var conns []*websocket.Conn
	mux := http.NewServeMux()
	mux.HandleFunc("/json/version", func(w http.ResponseWriter, r *http.Request) {
		if !ok(r) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"webSocketDebuggerUrl": "ws://" + r.Host + "/devtools/browser/fake"})
	})
	mux.HandleFunc("/devtools/browser/", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.hdrs = append(f.hdrs, r.Header.Clone())
		f.urls = append(f.urls, r.URL.String())
		f.mu.Unlock()
		if !ok(r) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.mu.Lock()
		conns = append(conns, c)
		f.mu.Unlock()
		defer c.Close()
		for {
			var msg struct {
				ID     int64  `json:"id"`
				Method string `json:"method"`
			}
			if err := c.ReadJSON(&msg); err != nil {
				return
			}
			result := map[string]any{}
			if msg.Method == "Browser.getVersion" {
				result = map[string]any{"protocolVersion": "1.3", "product": "FakeChrome/1.0", "revision": "1", "userAgent": "fake", "jsVersion": "1"}
			}
			if err := c.WriteJSON(map[string]any{"id": msg.ID, "result": result}); err != nil {
				return
			}
		}
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		f.mu.Unlock()
		f.srv.Close()
	})
	return f
}

func (f *fakeBrowser) handshakes() ([]http.Header, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.hdrs), slices.Clone(f.urls)
}

func TestSecurityRegisterRefusesDeniedAddresses(t *testing.T) {
	loopDenied, err := router.NewPolicy(router.DefaultAllowCIDRs(), []string{"127.0.0.0/8"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newSecHarness(t, nil)
	strict := newSecHarness(t, func(c *Config) { c.Security.BrowserPolicy = loopDenied })
	for _, tc := range []struct {
		name string
		h    *harness
		url  string
		want string
	}{
		{"metadata IPv4", h, "http://169.254.169.254:80", "169.254.0.0/16"},
		{"metadata ws", h, "ws://169.254.169.254:80/devtools/browser/x?token=tok-SECRET", "169.254.0.0/16"},
		{"metadata IPv6", h, "http://[fd00:ec2::254]:9222", "fd00:ec2::254"},
		{"metadata by name", h, "http://metadata.google.internal:80", "metadata"},
		{"link-local IPv6", h, "http://[fe80::1]:9222", "fe80::/10"},
		{"public address", h, "http://203.0.113.5:9222", "--browser-allow-cidrs"},
		{"denied CIDR", strict, "http://user:pw-SECRET@127.0.0.1:9222", "127.0.0.0/8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e APIError
			resp := tc.h.do(http.MethodPost, "/api/register", tc.h.token("alice"),
				map[string]string{"userId": "alice", "browserURL": tc.url}, &e)
			if resp.StatusCode != http.StatusBadRequest || e.Code != CodeInvalidBrowserURL || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("got %d %+v, want 400 %s naming %q", resp.StatusCode, e, CodeInvalidBrowserURL, tc.want)
			}
			if strings.Contains(e.Message, "SECRET") {
				t.Errorf("the answer repeats the URL's credentials: %q", e.Message)
			}
		})
	}
	for _, hh := range []*harness{h, strict} {
		if n, _ := hh.store.Count(context.Background()); n != 0 {
			t.Errorf("refused registrations stored %d records", n)
		}
		if total := totalBrowsers(hh); total != 0 {
			t.Errorf("refused registrations started %d connections", total)
		}
		logs := hh.logs.String()
		if strings.Contains(logs, "SECRET") {
			t.Error("the log holds a credential")
		}
	}
	if !strings.Contains(h.logs.String(), `"reason":"browser URL refused`) {
		t.Error("refusals are not audited")
	}
}

func TestSecurityCredentialsEndToEnd(t *testing.T) {
	const token, key, pw = "tok-SECRET-1", "key-SECRET-2", "pw-SECRET-3"
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:"+pw))
	hosted := newFakeBrowser(t, func(r *http.Request) bool {
		return r.Header.Get("X-Api-Key") == key && r.URL.Query().Get("token") == token
	})
	local := newFakeBrowser(t, func(r *http.Request) bool { return r.Header.Get("Authorization") == basic })
	h := newSecHarness(t, nil)

	// Invalid headers are refused before anything is stored.
	for _, bad := range []map[string]string{{"Origin": "http://x"}, {"Host": "x"}, {"Sec-WebSocket-Key": "x"}, {"Bad Name": "x"}} {
		var e APIError
		resp := h.do(http.MethodPost, "/api/register", h.token("alice"), map[string]any{
			"userId": "alice", "browserURL": "http://127.0.0.1:9222", "headers": bad}, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Code != CodeInvalidRequest {
			t.Errorf("headers %v: %d %+v, want 400 INVALID_REQUEST", bad, resp.StatusCode, e)
		}
	}

	wsURL := strings.Replace(hosted.srv.URL, "http://", "ws://", 1) + "/devtools/browser/abc?token=" + token
	var reg RegisterResponse
	resp := h.do(http.MethodPost, "/api/register", h.token("alice"), map[string]any{
		"userId": "alice", "browserURL": wsURL, "headers": map[string]string{"x-api-key": key}}, &reg)
	if resp.StatusCode != http.StatusCreated || reg.BrowserStatus != "connected" {
		t.Fatalf("register hosted browser: %d %+v", resp.StatusCode, reg)
	}
	if !slices.Equal(reg.BrowserHeaders, []string{"X-Api-Key"}) || !strings.Contains(reg.BrowserURL, "token=redacted") {
		t.Errorf("answer: headers %v, URL %q", reg.BrowserHeaders, reg.BrowserURL)
	}
	hdrs, urls := hosted.handshakes()
	if len(hdrs) == 0 {
		t.Fatal("the fake browser saw no handshake")
	}
	if hdrs[0].Get("X-Api-Key") != key || !strings.Contains(urls[0], "token="+token) {
		t.Errorf("handshake: X-Api-Key %q, URL %q", hdrs[0].Get("X-Api-Key"), urls[0])
	}
	if _, ok := hdrs[0]["Origin"]; ok {
		t.Errorf("the CDP handshake sent an Origin header: %q", hdrs[0].Get("Origin"))
	}

	httpURL := "http://bob:" + pw + "@" + strings.TrimPrefix(local.srv.URL, "http://")
	reg = h.register(h.token("bob"), "bob", httpURL)
	if reg.BrowserStatus != "connected" || strings.Contains(reg.BrowserURL, pw) || !strings.Contains(reg.BrowserURL, "bob:redacted@") {
		t.Errorf("register with userinfo: %+v", reg)
	}
	if lh, _ := local.handshakes(); len(lh) == 0 || lh[0].Get("Authorization") != basic {
		t.Errorf("userinfo was not sent as Basic auth on the handshake")
	}

	var st UserStatus
	h.do(http.MethodGet, "/api/users/alice/status", h.token("alice"), nil, &st)
	if st.BrowserStatus != "connected" || strings.Contains(st.BrowserURL, token) {
		t.Errorf("status: %+v", st)
	}

	// The credentials appear nowhere: not in answers (checked above), not in
	// the log, not in the store file.
	logs := h.logs.String()
	for _, secret := range []string{token, key, pw, base64.StdEncoding.EncodeToString([]byte("bob:" + pw))} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	if !strings.Contains(logs, `"browser_headers":["X-Api-Key"]`) {
		t.Error("the register audit line does not name the headers")
	}
	raw, err := os.ReadFile(h.store.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{token, key, pw} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the store file contains %q in clear", secret)
		}
	}
	// And they survive a restart of the pool from the store.
	got, err := h.store.Get(context.Background(), "alice")
	if err != nil || got.Headers["X-Api-Key"] != key || got.BrowserURL != wsURL {
		t.Errorf("stored registration: %+v, %v", got, err)
	}
}

func TestSecurityOriginCheck(t *testing.T) {
	h := newSecHarness(t, func(c *Config) {
		c.Security.AllowedOrigins = []string{"https://app.example"}
		c.Security.CORSOrigins = []string{"https://ui.example"}
	})
	tok := h.token("alice")
	auth := "Bearer " + tok
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}`
	mcpHdr := func(origin string) map[string]string {
		m := map[string]string{"Authorization": auth, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
		if origin != "" {
			m["Origin"] = origin
		}
		return m
	}
	for _, tc := range []struct {
		name, method, path, origin, body string
		forbidden                        bool
	}{
		{"mcp from evil", http.MethodPost, "/mcp", "http://evil.example", init, true},
		{"mcp from null", http.MethodPost, "/mcp", "null", init, true},
		{"sse from evil", http.MethodGet, "/sse", "https://evil.example", "", true},
		{"message from evil", http.MethodPost, "/message?sessionId=x", "https://evil.example", "{}", true},
		{"api from evil", http.MethodGet, "/api/users/alice/status", "https://evil.example", "", true},
		{"mcp from a CORS-only origin", http.MethodPost, "/mcp", "https://ui.example", init, true},
		{"mcp without origin", http.MethodPost, "/mcp", "", init, false},
		{"mcp same origin", http.MethodPost, "/mcp", h.URL, init, false},
		{"mcp from allowed origin", http.MethodPost, "/mcp", "https://APP.example:443", init, false},
		{"health from evil", http.MethodGet, "/health", "https://evil.example", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, e := h.secRequest(tc.method, tc.path, mcpHdr(tc.origin), tc.body)
			if tc.forbidden {
				if code != http.StatusForbidden || e.Code != CodeForbidden || !strings.Contains(e.Message, "--allowed-origins") {
					t.Fatalf("got %d %+v, want 403 FORBIDDEN", code, e)
				}
				return
			}
			if code == http.StatusForbidden || code >= 500 {
				t.Fatalf("got %d %+v, want the request through", code, e)
			}
			if tc.path == "/mcp" && code != http.StatusOK {
				t.Errorf("initialize: %d %+v", code, e)
			}
			if got := hdr.Get("Access-Control-Allow-Origin"); got == "*" {
				t.Errorf("answer allows every origin")
			}
		})
	}
	if !strings.Contains(h.logs.String(), `"reason":"cross-origin request from \"http://evil.example\""`) {
		t.Error("the refusal is not audited")
	}

	// CORS on /api/* only, for --cors-origins only.
	code, hdr, _ := h.secRequest(http.MethodOptions, "/api/register", map[string]string{
		"Origin": "https://ui.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}, "")
	if code != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "https://ui.example" || !strings.Contains(hdr.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", code, hdr)
	}
	code, hdr, _ = h.secRequest(http.MethodGet, "/api/users/alice/status", map[string]string{"Origin": "https://ui.example", "Authorization": auth}, "")
	if code == http.StatusForbidden || hdr.Get("Access-Control-Allow-Origin") != "https://ui.example" {
		t.Errorf("CORS GET: %d, ACAO %q", code, hdr.Get("Access-Control-Allow-Origin"))
	}
	if _, hdr, _ = h.secRequest(http.MethodGet, "/api/users/alice/status", map[string]string{"Authorization": auth}, ""); hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS header without an Origin: %q", hdr.Get("Access-Control-Allow-Origin"))
	}

	// The SSE stream: mcp-go's "*" is not passed on.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/sse", nil)
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("SSE: %d, ACAO %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	cancel()
	resp.Body.Close()
}

func TestSecurityHostCheck(t *testing.T) {
	h := newSecHarness(t, func(c *Config) { c.Security.AllowedHosts = []string{"proxy.test"} })
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(h.URL, "http://"))
	tok := h.token("alice")
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}`
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"evil.example:" + port, false},
		{"127.0.0.1.nip.io:" + port, false},
		{"localhost:" + port, true},
		{"127.0.0.1:" + port, true},
		{"[::1]:" + port, true},
		{"LOCALHOST", true},
		{"proxy.test:" + port, true},
		{"proxy.test", true},
	} {
		for _, path := range []string{"/health", "/mcp"} {
			hdr := map[string]string{"Host": tc.host, "Authorization": "Bearer " + tok, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
			method, body := http.MethodGet, ""
			if path == "/mcp" {
				method, body = http.MethodPost, init
			}
			code, _, e := h.secRequest(method, path, hdr, body)
			if tc.ok && code != http.StatusOK {
				t.Errorf("Host %s %s: %d %+v, want 200", tc.host, path, code, e)
			}
			if !tc.ok && (code != http.StatusForbidden || e.Code != CodeForbidden || !strings.Contains(e.Message, "--allowed-hosts")) {
				t.Errorf("Host %s %s: %d %+v, want 403 FORBIDDEN", tc.host, path, code, e)
			}
		}
	}
	if !strings.Contains(h.logs.String(), "DNS rebinding") {
		t.Error("Host refusals are not audited")
	}
}

// addrListener reports another address than the one it listens on.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

func TestSecurityAuthNone(t *testing.T) {
	h := newSecHarness(t, func(c *Config) { c.Security.AuthNone = true })
	if IsLoopbackAddr("0.0.0.0:3000") || IsLoopbackAddr(":3000") || IsLoopbackAddr("192.168.1.5:3000") || !IsLoopbackAddr("localhost:3000") || !IsLoopbackAddr("[::1]:3000") {
		t.Error("IsLoopbackAddr is wrong")
	}

	// Serving on a non-loopback address is refused before anything is served.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = h.srv.Serve(ctx, addrListener{l, &net.TCPAddr{IP: net.IPv4zero, Port: 3000}})
	if err == nil || !strings.Contains(err.Error(), "--auth none") || !strings.Contains(err.Error(), "0.0.0.0:3000") {
		t.Fatalf("Serve on 0.0.0.0 with --auth none: %v", err)
	}

	// On loopback it works, without credentials, as "local".
	var reg RegisterResponse
	resp := h.do(http.MethodPost, "/api/register", "", map[string]string{"userId": "local", "browserURL": deadURL(t)}, &reg)
	if resp.StatusCode != http.StatusCreated || reg.UserID != "local" {
		t.Fatalf("register without a token: %d %+v", resp.StatusCode, reg)
	}
	var e APIError
	if resp := h.do(http.MethodPost, "/api/register", "", map[string]string{"userId": "alice", "browserURL": deadURL(t)}, &e); resp.StatusCode != http.StatusForbidden {
		t.Errorf("acting for alice: %d %+v, want 403", resp.StatusCode, e)
	}
	c := h.connect(viaStreamable, "", "")
	names := toolNames(t, c)
	if !names["evaluate_script"] || !names["navigate_page"] || !names["take_snapshot"] {
		t.Errorf("--auth none lacks read, write or script: %v", names)
	}

	// And Serve itself runs on a real loopback listener.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(sctx, l2) }()
	r2, err := http.Get("http://" + l2.Addr().String() + "/api/users/local/status")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK {
		t.Errorf("status via Serve: %d", r2.StatusCode)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mcp-browser-proxy test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestSecurityTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, roots := selfSigned(t, dir)

	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct{ cert, key, want string }{
		{certFile, "", "go together"},
		{missing, keyFile, missing},
		{certFile, missing, missing},
		{keyFile, certFile, "--tls-cert " + keyFile},
	} {
		if _, err := LoadTLS(tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadTLS(%s, %s) = %v, want an error naming %q", tc.cert, tc.key, err, tc.want)
		}
	}
	if cfg, err := LoadTLS("", ""); cfg != nil || err != nil {
		t.Errorf("no TLS files: %v, %v", cfg, err)
	}
	tcfg, err := LoadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}

	h := newSecHarness(t, func(c *Config) { c.Security.TLS = tcfg })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ctx, l) }()
	defer func() {
		stop()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return")
		}
	}()
	base := "https://" + l.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()

	resp, err := client.Get(base + "/health")
	if err != nil {
		t.Fatalf("HTTPS /health: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("HTTPS /health: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	// Same-origin over TLS is https://host:port.
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader("{}"))
	req.Header.Set("Origin", base)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("same-origin POST /mcp over TLS without a token: %d, want 401 (not a 403 origin refusal)", resp.StatusCode)
	}
	// Plain HTTP on the TLS port gets no answer from the proxy.
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + l.Addr().String() + "/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served on the TLS port")
		}
	}
}

func TestSecurityNavigationPolicy(t *testing.T) {
	for _, tc := range []struct {
		p   tools.NavPolicy
		url string
		ok  bool
	}{
		{tools.NavPolicy{}, "file:///etc/passwd", false},
		{tools.NavPolicy{AllowFileURLs: true}, "file:///etc/passwd", true},
		{tools.NavPolicy{}, "chrome://settings", false},
		{tools.NavPolicy{}, "devtools://devtools/bundled/inspector.html", false},
		{tools.NavPolicy{}, "chrome-extension://abc/page.html", false},
		{tools.NavPolicy{AllowChromeURLs: true}, "chrome://settings", true},
		{tools.NavPolicy{AllowChromeURLs: true}, "view-source:http://127.0.0.1/", true},
		{tools.NavPolicy{AllowChromeURLs: true}, "view-source:file:///etc/passwd", false},
		{tools.NavPolicy{AllowChromeURLs: true, AllowFileURLs: true}, "javascript:alert(1)", false},
		{tools.NavPolicy{DenyHosts: []string{"*.internal", "example.com"}}, "http://db.corp.internal/x", false},
		{tools.NavPolicy{DenyHosts: []string{"*.internal", "example.com"}}, "https://EXAMPLE.com./", false},
		{tools.NavPolicy{DenyHosts: []string{"*.internal", "example.com"}}, "https://www.example.com/", true},
		{tools.NavPolicy{DenyHosts: []string{"*.internal"}}, "http://example.com@db.internal/", false},
		{tools.NavPolicy{}, "data:text/html,hi", true},
	} {
		err := tc.p.Check(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("%+v Check(%s) = %v, want ok=%v", tc.p, tc.url, err, tc.ok)
		}
	}
	if err := (tools.NavPolicy{DenyHosts: []string{"[bad"}}).Validate(); err == nil {
		t.Error("a malformed glob was accepted")
	}

	// End to end with a real browser: refused by default, allowed with the flag.
	c := testchrome.Start(t)
	pages := testPages(t)
	strict := newSecHarness(t, func(c *Config) {
		c.Tools.Navigation = tools.NavPolicy{DenyHosts: []string{"blocked.test"}}
	})
	open := newSecHarness(t, func(c *Config) { c.Tools.Navigation = tools.NavPolicy{AllowFileURLs: true} })
	for _, hh := range []*harness{strict, open} {
		hh.register(hh.token("alice"), "alice", c.URL)
	}
	sc := strict.connect(viaStreamable, strict.token("alice"), "")
	text, res := call(t, sc, "navigate_page", map[string]any{"url": "file:///etc/passwd"})
	if !res.IsError || !strings.Contains(text, "--allow-file-urls") {
		t.Errorf("file URL by default: %v %q", res.IsError, text)
	}
	text, res = call(t, sc, "new_page", map[string]any{"url": "http://blocked.test/"})
	if !res.IsError || !strings.Contains(text, "blocked.test") {
		t.Errorf("denied host: %v %q", res.IsError, text)
	}
	mustCall(t, sc, "navigate_page", map[string]any{"url": pages})

	oc := open.connect(viaStreamable, open.token("alice"), "")
	text = mustCall(t, oc, "navigate_page", map[string]any{"url": "file:///etc/passwd"})
	if !strings.Contains(text, "file:///etc/passwd") {
		t.Errorf("file URL with --allow-file-urls: %q", text)
	}
}
