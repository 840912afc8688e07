package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// publicClient makes mockoidc act as an identity provider does for a
// browser app: its endpoints answer CORS, and its token endpoint takes the
// public client without a secret (mockoidc insists on one, so it is filled
// in here, never by the page).
func publicClient(m *mockoidc.MockOIDC) {
	_ = m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			if r.Method == http.MethodOptions {
				w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Accept")
				w.WriteHeader(http.StatusNoContent)
				return
			}
			if r.URL.Path == mockoidc.TokenEndpoint && r.ParseForm() == nil && r.Form.Get("client_secret") == "" {
				r.Form.Set("client_secret", m.ClientSecret)
			}
			next.ServeHTTP(w, r)
		})
	})
}

// TestDashboardOAuthSignIn loads web/static/oauth.js in headless Chromium
// on a page like the dashboard's, clicks "Sign in with ...", and follows the
// authorization code flow with PKCE through mockoidc (which checks the S256
// challenge) back to the page; the script stores an access token in
// sessionStorage that the proxy accepts, cleans the URL and calls
// window.mbpSignedIn.
func TestDashboardOAuthSignIn(t *testing.T) {
	js, err := os.ReadFile("../web/static/oauth.js")
	if err != nil {
		t.Fatal(err)
	}
	// mockoidc refuses scopes it does not list; a real provider has them.
	saved := mockoidc.ScopesSupported
	mockoidc.ScopesSupported = append(append([]string(nil), saved...), OAuthScopes()...)
	t.Cleanup(func() { mockoidc.ScopesSupported = saved })
	// mockoidc puts its one client ID in aud: the dashboard's client ID is
	// then the proxy's resource URL.
	o := newOAuthHarness(t, oauthResource, publicClient)
	o.idp.QueueUser(&mockoidc.MockUser{Subject: "dana"})

	proxy := o.srv.Handler()
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(`<!doctype html><html><head><title>dashboard</title></head><body>
<div id="signin-oauth"></div>
<script src="/static/oauth.js"></script>
<script src="/static/test-app.js"></script>
</body></html>`))
		case "/static/oauth.js":
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(js)
		case "/static/test-app.js":
			w.Header().Set("Content-Type", "text/javascript")
			w.Write([]byte(`window.mbpSignedIn = function (tok) { window.signedInWith = tok; };`))
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(site.Close)

	chrome := testchrome.Start(t)
	actx, acancel := remote.NewAllocator(context.Background(), chrome.URL)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	tctx, tcancel := chromedp.NewContext(bctx, chromedp.WithNewWindow(false))
	defer tcancel()
	ctx, cancel := context.WithTimeout(tctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		problems []string // exceptions and console errors: the page must have none
	)
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				problems = append(problems, "console.error")
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(site.URL+"/")); err != nil {
		t.Fatal(err)
	}
	label := waitEval(t, ctx, `(document.querySelector("#signin-oauth button")||{}).textContent||""`)
	if want := "Sign in with " + strings.TrimPrefix(strings.TrimSuffix(o.idp.Issuer(), "/oidc"), "http://"); label != want {
		t.Fatalf("button %q, want %q", label, want)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#signin-oauth button").click(), true`)); err != nil {
		t.Fatal(err)
	}
	tok := waitEval(t, ctx, `sessionStorage.getItem("mbp.token")||""`)
	if got := waitEval(t, ctx, `window.signedInWith||""`); got != tok {
		t.Errorf("mbpSignedIn got %q, sessionStorage has %q", got, tok)
	}
	search, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.search + location.hash`))
	if err != nil || search != "" {
		t.Errorf("the URL keeps %q (%v) after sign-in", search, err)
	}
	pending, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(sessionStorage.getItem("mbp.oauth.pending"))`))
	if err != nil || pending != "null" {
		t.Errorf("the PKCE verifier stays in sessionStorage: %q %v", pending, err)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("#signin-oauth .oauth-status")||{}).textContent||""`))
	if err != nil || status != "Signed in." {
		t.Errorf("status line %q %v", status, err)
	}
	var list []SessionInfo
	if resp := o.do(http.MethodGet, "/api/sessions", tok, nil, &list); resp.StatusCode != http.StatusOK {
		t.Errorf("the dashboard's token at /api/sessions: %d", resp.StatusCode)
	}

	// An answer whose state is not the pending sign-in's is not exchanged.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`sessionStorage.setItem("mbp.oauth.pending", JSON.stringify({state: "mine", verifier: "v", redirectURI: location.origin + "/", tokenEndpoint: "`+o.idp.TokenEndpoint()+`", clientId: "c"})), true`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(site.URL+"/?code=stolen&state=theirs")); err != nil {
		t.Fatal(err)
	}
	if status := waitEval(t, ctx, `(document.querySelector("#signin-oauth .oauth-status")||{}).textContent||""`); !strings.Contains(status, "state mismatch") {
		t.Errorf("state mismatch: status %q", status)
	}
	if after, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("mbp.token") + "|" + location.search`)); err != nil || after != tok+"|" {
		t.Errorf("after a foreign answer: %q %v", after, err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("page errors: %v", problems)
	}
}

// waitEval polls expr until it yields a non-empty string, bounded by ctx.
func waitEval(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	for {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err == nil && v != "" {
			return v
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error %v)", expr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
