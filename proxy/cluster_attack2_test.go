package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// TestClusterForwardedCORSAnswer: a dashboard on another origin (listed in
// --cors-origins) reads the API through any instance. Both instances'
// guards allow the origin; a forwarded answer that carried each one's
// Access-Control-Allow-Origin would list it twice, which the Fetch
// standard (and Chromium) treat as a CORS failure.
func TestClusterForwardedCORSAnswer(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>ui</title>`))
	}))
	t.Cleanup(site.Close)
	rs := testredis.Start(t)
	cors := func(c *Config) {
		c.Security.CORSOrigins = []string{site.URL}
		c.Security.AllowedOrigins = []string{site.URL}
	}
	a := newClusterNodeConfig(t, rs, session.Config{}, cors)
	b := newClusterNodeConfig(t, rs, session.Config{}, cors)
	tok := a.token("jo")
	a.register(tok, "jo", deadURL(t)) // jo's home is A

	req, _ := http.NewRequest(http.MethodGet, b.URL+"/api/users/jo/status", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Origin", site.URL)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jo's status through B: %d", resp.StatusCode)
	}
	if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != site.URL {
		t.Errorf("Access-Control-Allow-Origin of a forwarded answer: %q, want %s once", v, site.URL)
	}

	// An SSE stream opened through B lives at jo's home, A: both guards
	// answer the origin.
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	sreq, _ := http.NewRequestWithContext(sctx, http.MethodGet, b.URL+"/sse", nil)
	sreq.Header.Set("Authorization", "Bearer "+tok)
	sreq.Header.Set("Origin", site.URL)
	sresp, err := http.DefaultClient.Do(sreq)
	if err != nil {
		scancel()
		t.Fatal(err)
	}
	scancel()
	sresp.Body.Close()
	if sresp.StatusCode != http.StatusOK {
		t.Fatalf("an SSE stream through B: %d", sresp.StatusCode)
	}
	if v := sresp.Header.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != site.URL {
		t.Errorf("Access-Control-Allow-Origin of a forwarded stream: %q, want %s once", v, site.URL)
	}
	if v := sresp.Header.Values("Vary"); len(v) != 1 {
		t.Errorf("Vary of a forwarded stream: %q, want it once", v)
	}

	// What a browser makes of it.
	chrome := testchrome.Start(t)
	actx, acancel := remote.NewAllocator(context.Background(), chrome.URL)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	tctx, tcancel := chromedp.NewContext(bctx, chromedp.WithNewWindow(false))
	defer tcancel()
	ctx, cancel := context.WithTimeout(tctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(site.URL+"/")); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch(`+jsString(b.URL+"/api/users/jo/status")+`, {headers: {Authorization: `+jsString("Bearer "+tok)+`}}).then(r => r.json()).then(j => j.userId, e => "fetch failed: " + e)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if got != "jo" {
		t.Errorf("the cross-origin dashboard reading jo's status through B: %q", got)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestClusterForwardBoundOutlastsTheLongestCall: the bound on a forwarded
// answer's head must outlast the longest tool call the tools accept. With
// no MaxCallTimeout configured the tools take their default ceiling
// (tools.DefaultMaxCallTimeout), so a wait_for that long, driven through
// another instance, must not be answered INSTANCE_UNAVAILABLE first.
func TestClusterForwardBoundOutlastsTheLongestCall(t *testing.T) {
	rs := testredis.Start(t)
	a := newClusterNode(t, rs) // its Tools config leaves MaxCallTimeout unset
	tr, ok := a.srv.cl.transport.(*http.Transport)
	if !ok {
		t.Fatalf("the default forward transport is a %T", a.srv.cl.transport)
	}
	if tr.ResponseHeaderTimeout <= tools.DefaultMaxCallTimeout {
		t.Errorf("a forwarded answer's head is awaited %s; a tool call may take %s (the tools' default ceiling)", tr.ResponseHeaderTimeout, tools.DefaultMaxCallTimeout)
	}
}
