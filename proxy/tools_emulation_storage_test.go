package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// emuPages serves the pages of the emulation and cookie tests on 127.0.0.1:
// "/" a plain page, "/echo" the request's headers as JSON, "/setcookie" a
// page that sets the cookie named in its query.
func emuPages(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><html><head><title>Emu</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head><body><p>Emulation page</p></body></html>`)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		h := map[string]string{}
		for k := range r.Header {
			h[strings.ToLower(k)] = r.Header.Get(k)
		}
		json.NewEncoder(w).Encode(h)
	})
	mux.HandleFunc("/setcookie", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: r.URL.Query().Get("name"), Value: "1", Path: "/"})
		io.WriteString(w, `<!doctype html><title>Cookie set</title><p>set</p>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

var emuScriptResult = regexp.MustCompile("(?s)```json\n(.*)\n```")

// emuEval runs fn in the selected page through evaluate_script and decodes
// its result into out.
func emuEval(t *testing.T, cl *client.Client, fn string, out any) {
	t.Helper()
	text := mustCall(t, cl, "evaluate_script", map[string]any{"function": fn})
	m := emuScriptResult.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("evaluate_script %s: no JSON in %q", fn, text)
	}
	if err := json.Unmarshal([]byte(m[1]), out); err != nil {
		t.Fatalf("evaluate_script %s: decode %q: %v", fn, m[1], err)
	}
}

// emuPageLook is what the emulation tests read back from the page.
type emuPageLook struct {
	UA     string  `json:"ua"`
	Dark   bool    `json:"dark"`
	Width  int     `json:"width"`
	Height int     `json:"height"`
	DPR    float64 `json:"dpr"`
	Touch  int     `json:"touch"`
	Online bool    `json:"online"`
}

const emuLookJS = `() => ({ua: navigator.userAgent, dark: matchMedia('(prefers-color-scheme: dark)').matches,
  width: innerWidth, height: innerHeight, dpr: devicePixelRatio, touch: navigator.maxTouchPoints, online: navigator.onLine})`

func emuLook(t *testing.T, cl *client.Client) emuPageLook {
	t.Helper()
	var l emuPageLook
	emuEval(t, cl, emuLookJS, &l)
	return l
}

// emuEchoHeaders fetches /echo from the page and returns the headers the
// server saw, or the error text when the fetch failed.
func emuEchoHeaders(t *testing.T, cl *client.Client) (map[string]string, string) {
	t.Helper()
	var out struct {
		Headers map[string]string `json:"headers"`
		Err     string            `json:"err"`
	}
	emuEval(t, cl, `async () => { try { const r = await fetch('/echo', {cache: 'no-store'}); return {headers: await r.json()}; } catch (e) { return {err: String(e)}; } }`, &out)
	return out.Headers, out.Err
}

func emuClient(t *testing.T, scfg session.Config) *client.Client {
	t.Helper()
	c := testchrome.Start(t)
	h := newHarnessWith(t, "", scfg)
	tok := h.token("alice")
	h.register(tok, "alice", c.URL)
	return h.connect(viaStreamable, tok, "")
}

// TestEmulate sets every part of emulate, reads each back from the page,
// checks that a bad argument changes nothing, and resets everything.
func TestEmulate(t *testing.T) {
	pages := emuPages(t)
	cl := emuClient(t, session.Config{})
	mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/"})
	base := emuLook(t, cl)
	if base.Dark || !base.Online || base.Width <= 0 {
		t.Fatalf("unexpected page before emulation: %+v", base)
	}

	// Each bad part comes with good ones: the whole call must change nothing.
	for _, bad := range []map[string]any{
		{"cpuThrottlingRate": 0},
		{"cpuThrottlingRate": 50},
		{"networkConditions": "Warp 9"},
		{"viewport": map[string]any{"width": -1, "height": 300}},
		{"viewport": map[string]any{"width": 300}},
		{"geolocation": map[string]any{"latitude": 91, "longitude": 0}},
		{"colorScheme": "purple"},
		{"extraHttpHeaders": map[string]any{"Bad Header": "x"}},
		{"extraHttpHeaders": map[string]any{"X-Ok": "a\r\nInjected: 1"}},
	} {
		args := map[string]any{"userAgent": "ShouldNotApply/1", "colorScheme": "dark", "extraHttpHeaders": map[string]any{"X-Nope": "1"}}
		for k, v := range bad {
			args[k] = v
		}
		text, res := call(t, cl, "emulate", args)
		if !res.IsError || !strings.Contains(text, "nothing was changed") {
			t.Errorf("emulate(%v) should fail and change nothing; got error=%v %q", bad, res.IsError, text)
		}
	}
	if got := emuLook(t, cl); got != base {
		t.Errorf("a refused emulate changed the page: before %+v after %+v", base, got)
	}
	if h, errText := emuEchoHeaders(t, cl); errText != "" || h["x-nope"] != "" {
		t.Errorf("a refused emulate set a header: %v %q", h, errText)
	}

	text := mustCall(t, cl, "emulate", map[string]any{
		"userAgent":         "EmuTest/1.0",
		"colorScheme":       "dark",
		"viewport":          map[string]any{"width": 412, "height": 700, "deviceScaleFactor": 2, "hasTouch": true},
		"extraHttpHeaders":  map[string]any{"X-Emu-Test": "hello"},
		"cpuThrottlingRate": 2,
		"networkConditions": "Fast 4G",
	})
	for _, want := range []string{`user agent: "EmuTest/1.0"`, "color scheme: dark", "viewport: 412x700 CSS px, deviceScaleFactor 2, touch", `X-Emu-Test: "hello"`, "CPU: 2x slowdown", "network: Fast 4G"} {
		if !strings.Contains(text, want) {
			t.Errorf("emulate answer lacks %q:\n%s", want, text)
		}
	}
	got := emuLook(t, cl)
	if got.UA != "EmuTest/1.0" || !got.Dark || got.Width != 412 || got.Height != 700 || got.DPR != 2 || got.Touch < 1 {
		t.Errorf("page does not show the emulation: %+v", got)
	}
	h, errText := emuEchoHeaders(t, cl)
	if errText != "" || h["x-emu-test"] != "hello" || h["user-agent"] != "EmuTest/1.0" {
		t.Errorf("request headers under emulation: %v %q", h, errText)
	}

	// Geolocation: the override and the permission it needs.
	text = mustCall(t, cl, "emulate", map[string]any{"geolocation": map[string]any{"latitude": 48.8584, "longitude": 2.2945, "accuracy": 10}})
	if !strings.Contains(text, "latitude 48.8584, longitude 2.2945, accuracy 10 m") || !strings.Contains(text, "Granted the geolocation permission to "+pages) {
		t.Errorf("emulate geolocation answer:\n%s", text)
	}
	var pos []float64
	emuEval(t, cl, `() => new Promise((ok, fail) => navigator.geolocation.getCurrentPosition(
	  p => ok([p.coords.latitude, p.coords.longitude, p.coords.accuracy]), e => fail(new Error('geolocation error ' + e.code + ': ' + e.message)), {timeout: 5000}))`, &pos)
	if len(pos) != 3 || pos[0] != 48.8584 || pos[1] != 2.2945 || pos[2] != 10 {
		t.Errorf("navigator.geolocation reports %v", pos)
	}

	// Offline: navigator.onLine and real requests both fail.
	mustCall(t, cl, "emulate", map[string]any{"networkConditions": "Offline"})
	if l := emuLook(t, cl); l.Online {
		t.Errorf("navigator.onLine is true under Offline")
	}
	if _, errText := emuEchoHeaders(t, cl); errText == "" {
		t.Errorf("fetch succeeded under Offline")
	}
	mustCall(t, cl, "emulate", map[string]any{"networkConditions": "No emulation"})
	if l := emuLook(t, cl); !l.Online {
		t.Errorf("navigator.onLine is false after No emulation")
	}
	if _, errText := emuEchoHeaders(t, cl); errText != "" {
		t.Errorf("fetch fails after No emulation: %s", errText)
	}

	// An empty call reports the whole current emulation.
	text = mustCall(t, cl, "emulate", map[string]any{})
	for _, want := range []string{"Nothing to change", `"EmuTest/1.0"`, "color scheme: dark", "412x700", "latitude 48.8584", "network: no emulation"} {
		if !strings.Contains(text, want) {
			t.Errorf("emulate summary lacks %q:\n%s", want, text)
		}
	}

	// resize_page keeps the emulated scale factor and changes only the size.
	text = mustCall(t, cl, "resize_page", map[string]any{"width": 500, "height": 400})
	if !strings.Contains(text, "setDeviceMetricsOverride") || !strings.Contains(text, "[500,400]") {
		t.Errorf("resize_page answer: %q", text)
	}
	if l := emuLook(t, cl); l.Width != 500 || l.Height != 400 || l.DPR != 2 {
		t.Errorf("after resize_page: %+v", l)
	}
	for _, bad := range []map[string]any{{"width": 0, "height": 400}, {"width": 500}, {"width": 20000, "height": 400}, {"width": 10.5, "height": 400}} {
		if _, res := call(t, cl, "resize_page", bad); !res.IsError {
			t.Errorf("resize_page(%v) should fail", bad)
		}
	}
	if l := emuLook(t, cl); l.Width != 500 {
		t.Errorf("a refused resize_page changed the width to %d", l.Width)
	}

	// Reset every part.
	text = mustCall(t, cl, "emulate", map[string]any{
		"userAgent": "", "colorScheme": "auto", "viewport": nil, "extraHttpHeaders": map[string]any{},
		"geolocation": nil, "cpuThrottlingRate": 1,
	})
	for _, want := range []string{"user agent: the browser's own", "color scheme: auto", "viewport: the window's", "extra HTTP headers: none", "geolocation: the browser's own", "CPU: no throttling", "Geolocation permission put back for " + pages + " (prompt)"} {
		if !strings.Contains(text, want) {
			t.Errorf("emulate reset answer lacks %q:\n%s", want, text)
		}
	}
	// The window size comes back asynchronously after the override is cleared.
	waitFor(t, "the viewport reset", func() bool { l := emuLook(t, cl); return l.Width == base.Width && l.DPR == base.DPR })
	if l := emuLook(t, cl); l.UA != base.UA || l.Dark {
		t.Errorf("after reset: %+v, want %+v", l, base)
	}
	if h, errText := emuEchoHeaders(t, cl); errText != "" || h["x-emu-test"] != "" || h["user-agent"] != base.UA {
		t.Errorf("request headers after reset: %v %q", h, errText)
	}
	var perm string
	emuEval(t, cl, `() => navigator.permissions.query({name: 'geolocation'}).then(p => p.state)`, &perm)
	if perm != "prompt" {
		t.Errorf("geolocation permission after reset: %q, want prompt", perm)
	}

	// The string forms of chrome-devtools-mcp work too.
	mustCall(t, cl, "emulate", map[string]any{"viewport": "390x600x3,touch", "extraHttpHeaders": `{"X-Str": "s"}`})
	if l := emuLook(t, cl); l.Width != 390 || l.Height != 600 || l.DPR != 3 || l.Touch < 1 {
		t.Errorf("after viewport \"390x600x3,touch\": %+v", l)
	}
	if h, errText := emuEchoHeaders(t, cl); errText != "" || h["x-str"] != "s" {
		t.Errorf("headers from a JSON string: %v %q", h, errText)
	}
}

var emuPDFSaved = regexp.MustCompile(`as PDF: (.+) \((\d+) bytes\)`)

// TestCookiesAndPDF round-trips cookies through set/get/clear, checks that
// a cookie of another site is never listed or deleted, and prints a PDF into
// the files directory and nowhere else.
func TestCookiesAndPDF(t *testing.T) {
	pages := emuPages(t)
	// The second site: another server, reached by another host name, since
	// cookies are scoped by host, not by port.
	otherSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "foreign", Value: "keep", Path: "/"})
		io.WriteString(w, `<!doctype html><title>Other</title><p>other site</p>`)
	}))
	t.Cleanup(otherSrv.Close)
	ou, _ := url.Parse(otherSrv.URL)
	other := "http://localhost:" + ou.Port()
	files := t.TempDir()
	cl := emuClient(t, session.Config{FilesDir: files})

	mustCall(t, cl, "navigate_page", map[string]any{"url": other + "/"})
	if text := mustCall(t, cl, "get_cookies", nil); !strings.Contains(text, "foreign=keep;") {
		t.Fatalf("the other site's own cookie is not listed on it:\n%s", text)
	}

	mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/"})
	if text := mustCall(t, cl, "get_cookies", nil); strings.Contains(text, "foreign") || !strings.Contains(text, "No cookies") {
		t.Errorf("get_cookies on a fresh site:\n%s", text)
	}
	expires := time.Now().Add(time.Hour).Unix()
	mustCall(t, cl, "set_cookies", map[string]any{"cookies": []any{
		map[string]any{"name": "a", "value": "1"},
		map[string]any{"name": "b", "value": "two", "httpOnly": true, "sameSite": "Strict", "expires": expires},
		map[string]any{"name": "c", "value": "3", "domain": "127.0.0.1", "path": "/"},
	}})
	text := mustCall(t, cl, "get_cookies", nil)
	wantB := fmt.Sprintf("b=two; domain=127.0.0.1; path=/; expires=%s; httpOnly=true; secure=false; sameSite=Strict", time.Unix(expires, 0).UTC().Format(time.RFC3339))
	for _, want := range []string{"a=1; domain=127.0.0.1; path=/; expires=session; httpOnly=false", wantB, "c=3;", ": 3\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("get_cookies lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "foreign") {
		t.Errorf("get_cookies lists another site's cookie:\n%s", text)
	}
	var docCookie string
	emuEval(t, cl, `() => document.cookie`, &docCookie)
	if !strings.Contains(docCookie, "a=1") || strings.Contains(docCookie, "b=two") {
		t.Errorf("document.cookie = %q: want a, and not the httpOnly b", docCookie)
	}
	if text := mustCall(t, cl, "get_cookies", map[string]any{"names": []any{"b", "zzz"}}); strings.Contains(text, "a=1") || !strings.Contains(text, "b=two") || !strings.Contains(text, "Not set for this URL: zzz") {
		t.Errorf("get_cookies names [b zzz]:\n%s", text)
	}

	// A cookie for another site is refused, and so is the whole call.
	for _, bad := range [][]any{
		{map[string]any{"name": "d", "value": "4"}, map[string]any{"name": "e", "value": "5", "domain": "example.com"}},
		{map[string]any{"name": "d", "value": "4"}, map[string]any{"name": "e", "value": "5", "domain": "localhost"}},
		{map[string]any{"name": "d", "value": "4"}, map[string]any{"name": "bad name", "value": "5"}},
		{map[string]any{"name": "d", "value": "4"}, map[string]any{"name": "e", "value": "5", "sameSite": "Sometimes"}},
		{},
	} {
		if text, res := call(t, cl, "set_cookies", map[string]any{"cookies": bad}); !res.IsError {
			t.Errorf("set_cookies(%v) should fail: %q", bad, text)
		}
	}
	if text := mustCall(t, cl, "get_cookies", nil); strings.Contains(text, "d=4") || strings.Contains(text, "e=5") {
		t.Errorf("a refused set_cookies set a cookie:\n%s", text)
	}

	text = mustCall(t, cl, "clear_cookies", map[string]any{"names": []any{"a"}})
	if !strings.Contains(text, "Deleted 1 cookie(s)") {
		t.Errorf("clear_cookies a: %q", text)
	}
	if text := mustCall(t, cl, "get_cookies", nil); strings.Contains(text, "a=1") || !strings.Contains(text, "b=two") {
		t.Errorf("after clearing a:\n%s", text)
	}
	if text := mustCall(t, cl, "clear_cookies", nil); !strings.Contains(text, "Deleted 2 cookie(s)") {
		t.Errorf("clear_cookies: %q", text)
	}
	if text := mustCall(t, cl, "get_cookies", nil); !strings.Contains(text, "No cookies") {
		t.Errorf("cookies left after clear_cookies:\n%s", text)
	}

	// The other site's cookie survived.
	mustCall(t, cl, "navigate_page", map[string]any{"url": other + "/"})
	if text := mustCall(t, cl, "get_cookies", nil); !strings.Contains(text, "foreign=keep;") || strings.Contains(text, "b=two") {
		t.Errorf("the other site's cookies after clearing the first:\n%s", text)
	}

	// Pages without an http(s) URL have no cookies.
	mustCall(t, cl, "navigate_page", map[string]any{"url": "about:blank"})
	if text := mustCall(t, cl, "get_cookies", nil); !strings.Contains(text, "about:blank, which has no cookies") {
		t.Errorf("get_cookies on about:blank: %q", text)
	}
	if text, res := call(t, cl, "set_cookies", map[string]any{"cookies": []any{map[string]any{"name": "x", "value": "1"}}}); !res.IsError || !strings.Contains(text, "has no cookies") {
		t.Errorf("set_cookies on about:blank: %v %q", res.IsError, text)
	}
	if text := mustCall(t, cl, "clear_cookies", nil); !strings.Contains(text, "Nothing was deleted") {
		t.Errorf("clear_cookies on about:blank: %q", text)
	}

	// pdf_page writes into the files directory only.
	mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/"})
	text = mustCall(t, cl, "pdf_page", map[string]any{"printBackground": true})
	m := emuPDFSaved.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("pdf_page answer: %q", text)
	}
	root, _ := filepath.EvalSymlinks(files)
	if rel, err := filepath.Rel(root, m[1]); err != nil || strings.HasPrefix(rel, "..") || filepath.Base(m[1]) != "page-1.pdf" {
		t.Errorf("pdf_page wrote %s, not page-1.pdf inside %s", m[1], root)
	}
	data, err := os.ReadFile(m[1])
	if err != nil || !strings.HasPrefix(string(data), "%PDF") || fmt.Sprint(len(data)) != m[2] {
		t.Errorf("pdf file: err %v, %d bytes (answer said %s), starts %q", err, len(data), m[2], data[:min(8, len(data))])
	}
	if text := mustCall(t, cl, "pdf_page", map[string]any{"filePath": "sub.pdf", "landscape": true}); !strings.Contains(text, filepath.Join(root, "alice", "sub.pdf")) {
		t.Errorf("pdf_page filePath sub.pdf: %q", text)
	}
	for _, bad := range []string{"../x.pdf", "/etc/x.pdf", "../../x.pdf"} {
		if text, res := call(t, cl, "pdf_page", map[string]any{"filePath": bad}); !res.IsError || !strings.Contains(text, "outside") {
			t.Errorf("pdf_page filePath %q should be refused: %q", bad, text)
		}
	}
	for _, p := range []string{filepath.Join(root, "x.pdf"), filepath.Join(filepath.Dir(root), "x.pdf"), "/etc/x.pdf"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("pdf_page wrote %s outside the files directory", p)
		}
	}
}
