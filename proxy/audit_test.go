package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// secret returns a recognisable random value for the secret-leak test.
func secret(what string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return what + "-" + hex.EncodeToString(b[:])
}

// transcript collects every answer the proxy gave in a test.
type transcript struct {
	mu sync.Mutex
	b  strings.Builder
}

func (tr *transcript) add(parts ...string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, p := range parts {
		tr.b.WriteString(p)
		tr.b.WriteByte('\n')
	}
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.b.String()
}

// raw sends a request with the given headers and records the answer's
// status line, headers and body.
func (tr *transcript) raw(t *testing.T, h *harness, method, path string, headers map[string]string, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, h.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var hdr strings.Builder
	_ = resp.Header.Write(&hdr)
	tr.add(resp.Status, hdr.String(), string(b))
	return resp.StatusCode
}

var passwordUID = regexp.MustCompile(`uid=(\d+) textbox "Password"`)

// TestNoSecretsInLogsOrAnswers drives the proxy end to end with every kind
// of secret it handles (bearer tokens, an API key, a password typed into a
// page, a cookie value, a browser URL's token, a bad Authorization header)
// and checks that none appears in any log line or any answer.
func TestNoSecretsInLogsOrAnswers(t *testing.T) {
	chrome := testchrome.Start(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><html><head><title>Login</title></head><body>
<form onsubmit="event.preventDefault()"><label>User <input id="user"></label>
<label>Password <input type="password" id="pw"></label><button>Sign in</button></form></body></html>`)
	})
	pages := httptest.NewServer(mux)
	t.Cleanup(pages.Close)
	h := newHarness(t, "")
	var tr transcript

	password, cookie, browserToken, badAuth, queryToken := secret("password"), secret("cookie"), secret("wstoken"), secret("badauth"), secret("query")
	aliceTok := h.token("alice")
	reg := h.register(aliceTok, "alice", chrome.URL)
	if reg.BrowserStatus != "connected" {
		t.Fatalf("register alice: %+v", reg)
	}
	tr.add(reg.BrowserURL, reg.BrowserStatus, reg.Message) // the sessionToken is the one secret an answer may carry
	secrets := map[string]string{
		"bearer token": aliceTok, "password": password, "cookie value": cookie, "browser URL token": browserToken,
		"bad Authorization header": badAuth, "query-string secret": queryToken,
	}
	logOnly := map[string]string{"register's sessionToken": reg.SessionToken}

	// An API key, when the proxy has them.
	key, rec, err := auth.NewAPIKey("carol", nil, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	secrets["API key"] = key
	if code := tr.raw(t, h, http.MethodGet, "/api/users/carol/status", map[string]string{"Authorization": "Bearer " + key}, ""); code != http.StatusNotFound {
		t.Fatalf("status with the API key: %d (want 404: carol has no browser)", code)
	}
	wrongKey := key[:len(key)-4] + "0000"
	if wrongKey == key {
		wrongKey = key[:len(key)-4] + "1111"
	}
	secrets["wrong API key"] = wrongKey
	if code := tr.raw(t, h, http.MethodGet, "/api/users/carol/status", map[string]string{"Authorization": "Bearer " + wrongKey}, ""); code != http.StatusUnauthorized {
		t.Fatalf("status with a wrong API key: %d", code)
	}
	carol := h.connect(viaStreamable, key, "")
	text, _ := call(t, carol, "list_pages", nil)
	tr.add(text)

	// A password typed into a page, over SSE.
	sse := h.connect(viaSSE, aliceTok, "alice")
	tr.add(mustCall(t, sse, "navigate_page", map[string]any{"type": "url", "url": pages.URL + "/login"}))
	snap := mustCall(t, sse, "take_snapshot", nil)
	tr.add(snap)
	m := passwordUID.FindStringSubmatch(snap)
	if m == nil {
		t.Fatalf("no password field in the snapshot:\n%s", snap)
	}
	tr.add(mustCall(t, sse, "fill", map[string]any{"uid": m[1], "value": password}))
	tr.add(mustCall(t, sse, "take_snapshot", nil))

	// A cookie, over streamable HTTP.
	st := h.connect(viaStreamable, aliceTok, "")
	tr.add(mustCall(t, st, "navigate_page", map[string]any{"type": "url", "url": pages.URL + "/login"}))
	tr.add(mustCall(t, st, "set_cookies", map[string]any{"cookies": []any{map[string]any{"name": "sid", "value": cookie}}}))

	// A hosted browser's URL with a token in its query; nothing listens there.
	daveTok := h.token("dave")
	secrets["dave's token"] = daveTok
	wsURL := strings.Replace(deadURL(t), "http://", "ws://", 1) + "/devtools/browser/abc?token=" + browserToken
	headerSecret := secret("header")
	secrets["browser header"] = headerSecret
	body := `{"userId":"dave","browserURL":"` + wsURL + `","headers":{"X-Api-Key":"` + headerSecret + `"}}`
	if code := tr.raw(t, h, http.MethodPost, "/api/register", map[string]string{"Authorization": "Bearer " + daveTok}, body); code != http.StatusCreated {
		t.Fatalf("register dave: %d", code)
	}
	// A browser URL with a password, when the proxy accepts userinfo.
	userinfoURL := strings.Replace(deadURL(t), "http://", "http://erin:"+password+"@", 1)
	if _, err := router.ValidateBrowserURL(userinfoURL); err == nil {
		erinTok := h.token("erin")
		secrets["erin's token"] = erinTok
		tr.raw(t, h, http.MethodPost, "/api/register", map[string]string{"Authorization": "Bearer " + erinTok},
			`{"userId":"erin","browserURL":"`+userinfoURL+`"}`)
		tr.raw(t, h, http.MethodGet, "/api/users/erin/status", map[string]string{"Authorization": "Bearer " + erinTok}, "")
	}
	b, ok := h.pool.Get("dave")
	if !ok {
		t.Fatal("dave's browser is not in the pool")
	}
	// Its connection error reaches the status answer and, with the state
	// change to reconnecting, the log.
	waitFor(t, "a failed attempt on dave's browser", func() bool {
		return b.Status().Attempts > 0 && strings.Contains(h.logs.String(), `"user":"dave","from"`)
	})
	tr.raw(t, h, http.MethodGet, "/api/users/dave/status", map[string]string{"Authorization": "Bearer " + daveTok}, "")
	// The same URL for another user is a conflict, whose answer must not echo it.
	tr.raw(t, h, http.MethodPost, "/api/register", map[string]string{"Authorization": "Bearer " + aliceTok},
		`{"userId":"alice","browserURL":"`+wsURL+`"}`)

	// Bad credentials and secrets in places the proxy does not read them from.
	for _, hdr := range []map[string]string{
		{"Authorization": "Bearer not-a-jwt." + badAuth},
		{"Authorization": "Basic " + badAuth},
		{"Authorization": badAuth},
	} {
		if code := tr.raw(t, h, http.MethodGet, "/api/users/alice/status", hdr, ""); code != http.StatusUnauthorized {
			t.Errorf("bad Authorization header: %d", code)
		}
		tr.raw(t, h, http.MethodGet, "/sse", hdr, "")
		tr.raw(t, h, http.MethodPost, "/mcp", hdr, `{"jsonrpc":"2.0","id":1,"method":"initialize"}`)
	}
	tr.raw(t, h, http.MethodGet, "/api/users/alice/status?token="+queryToken, map[string]string{"Authorization": "Bearer " + aliceTok}, "")
	tr.raw(t, h, http.MethodGet, "/sse?token="+queryToken, nil, "")
	tr.raw(t, h, http.MethodGet, "/metrics?token="+queryToken, nil, "")

	if code := tr.raw(t, h, http.MethodDelete, "/api/users/dave", map[string]string{"Authorization": "Bearer " + daveTok}, ""); code != http.StatusNoContent {
		t.Errorf("unregister dave: %d", code)
	}
	sse.Close()
	st.Close()
	carol.Close()
	waitFor(t, "the closed sessions to be audited", func() bool {
		return strings.Count(h.logs.String(), `"event":"session_close"`) >= 3
	})

	logs, answers := h.logs.String(), tr.String()
	for what, v := range secrets {
		if strings.Contains(logs, v) {
			t.Errorf("the %s appears in the log", what)
		}
		if strings.Contains(answers, v) {
			t.Errorf("the %s appears in an answer", what)
		}
	}
	for what, v := range logOnly {
		if strings.Contains(logs, v) {
			t.Errorf("the %s appears in the log", what)
		}
	}
	// The run was audited: every kind of event, each denial with a reason.
	for _, want := range []string{
		`"event":"register"`, `"event":"unregister"`, `"event":"session_open"`, `"event":"session_close"`,
		`"event":"tool_call"`, `"tool":"fill"`, `"tool":"set_cookies"`, `"outcome":"ok"`, `"duration":`,
		`"reason":"invalid token"`, `"reason":"invalid API key"`, `"reason":"missing or malformed bearer token"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the audit lacks %s", want)
		}
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"event":"tool_call"`) && (strings.Contains(line, `"arguments"`) || strings.Contains(line, `"value"`)) {
			t.Errorf("a tool call's audit line carries its arguments: %s", line)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s\nanswers:\n%s", logs, answers)
	}
}
