package proxy

import (
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// attackPages serves pages on 127.0.0.1 that try to reach a URL: by
// redirect, iframe, link (target=_blank with open=1) and window.open.
func attackPages(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/redir", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	mux.HandleFunc("/frame", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<html><body><iframe src="%s"></iframe></body></html>`, html.EscapeString(r.URL.Query().Get("src")))
	})
	mux.HandleFunc("/link", func(w http.ResponseWriter, r *http.Request) {
		tgt := ""
		if r.URL.Query().Get("blank") != "" {
			tgt = ` target="_blank"`
		}
		fmt.Fprintf(w, `<html><head><title>Links</title></head><body><a href="%s"%s>Go there</a></body></html>`, html.EscapeString(r.URL.Query().Get("href")), tgt)
	})
	mux.HandleFunc("/open", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<html><body><button onclick="window.open(%s)">Open it</button></body></html>`, html.EscapeString(strconv.Quote(r.URL.Query().Get("url"))))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<html><head><title>Plain</title></head><body><h1>Plain page</h1></body></html>`)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

var linkUID = regexp.MustCompile(`uid=(\d+) link "Go there"`)
var openUID = regexp.MustCompile(`uid=(\d+) button "Open it"`)

// clickFirst snapshots the selected page and clicks the element re finds.
func clickFirst(t *testing.T, c *client.Client, re *regexp.Regexp) string {
	t.Helper()
	snap := mustCall(t, c, "take_snapshot", nil)
	m := re.FindStringSubmatch(snap)
	if m == nil {
		t.Fatalf("no %s in snapshot: %q", re, snap)
	}
	return mustCall(t, c, "click", map[string]any{"uid": m[1]})
}

// refusedInBrowser waits until the audit log shows a page_policy refusal of
// a URL containing what.
func refusedInBrowser(t *testing.T, h *harness, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(line, `"reason":"page_policy"`) && strings.Contains(line, what) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("no page_policy refusal of %s in the audit log", what)
}

// TestPagesCannotReachDevTools checks that no page of a session reaches a
// registered browser's DevTools endpoint (its own or another user's on the
// same host) or the proxy itself, however it tries: navigate_page and
// new_page refuse up front; in the browser redirects, iframes, links,
// popups, fetch() and websockets (of the page and of a worker) fail.
func TestPagesCannotReachDevTools(t *testing.T) {
	// With --remote-allow-origins=* the browser itself would accept a
	// websocket from any page: only the proxy's guard stands in the way.
	alice := testchrome.StartWith(t, "--remote-allow-origins=*")
	bob := testchrome.Start(t)
	pages := attackPages(t)
	h := newHarness(t, "")
	ta, tb := h.token("alice"), h.token("bob")
	h.register(ta, "alice", alice.URL)
	h.register(tb, "bob", bob.URL)
	c := h.connect(viaSSE, ta, "")
	dev := alice.URL + "/json/version"
	port := alice.Port

	for _, u := range []string{
		dev,
		fmt.Sprintf("http://localhost:%d/json/list", port),
		fmt.Sprintf("http://0x7f.1:%d/", port),
		fmt.Sprintf("http://2130706433:%d/", port),
		fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", port),
		fmt.Sprintf("http:/127.0.0.1:%d/", port),
		fmt.Sprintf(`http:\\127.1:%d/`, port),
		fmt.Sprintf("http://127。0。0。1:%d/", port),
		bob.URL + "/json/version",
		h.URL + "/health",
	} {
		for _, tool := range []string{"navigate_page", "new_page"} {
			text, res := call(t, c, tool, map[string]any{"url": u})
			if !res.IsError || !strings.Contains(text, "never reach") {
				t.Errorf("%s %s: %q", tool, u, text)
			}
		}
	}

	ws := alice.WSURL(t)
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/"})
	for name, js := range map[string]string{
		"fetch own":        `() => fetch("` + dev + `", {mode: "no-cors"}).then(() => "reached").catch(() => "refused")`,
		"fetch bob":        `() => fetch("` + bob.URL + `/json/version", {mode: "no-cors"}).then(() => "reached").catch(() => "refused")`,
		"fetch proxy":      `() => fetch("` + h.URL + `/health", {mode: "no-cors"}).then(() => "reached").catch(() => "refused")`,
		"websocket":        `() => new Promise(r => { const s = new WebSocket("` + ws + `"); s.onopen = () => r("reached"); s.onerror = () => r("refused"); })`,
		"worker websocket": `() => new Promise(r => { const w = new Worker(URL.createObjectURL(new Blob(["const s = new WebSocket('` + ws + `'); s.onopen = () => postMessage('reached'); s.onerror = () => postMessage('refused');"]))); w.onmessage = e => r(e.data); })`,
		"worker fetch":     `() => new Promise(r => { const w = new Worker(URL.createObjectURL(new Blob(["fetch('` + dev + `', {mode: 'no-cors'}).then(() => postMessage('reached'), () => postMessage('refused'))"]))); w.onmessage = e => r(e.data); })`,
	} {
		out := mustCall(t, c, "evaluate_script", map[string]any{"function": js})
		if !strings.Contains(out, "refused") {
			t.Errorf("%s from a page: %q", name, out)
		}
	}

	// A redirect from an allowed page.
	out, _ := call(t, c, "navigate_page", map[string]any{"url": pages + "/redir?to=" + url.QueryEscape(fmt.Sprintf("http://127.0.0.1:%d/json/list?redir=1", port))})
	if strings.Contains(out, "/json/list") && !strings.Contains(out, "BLOCKED") {
		t.Errorf("redirect to DevTools: %q", out)
	}
	refusedInBrowser(t, h, "json/list?redir=redacted")
	// Iframes, same-site and cross-site.
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/frame?src=" + url.QueryEscape(dev+"?iframe=1")})
	refusedInBrowser(t, h, "json/version?iframe=redacted")
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/frame?src=" + url.QueryEscape(fmt.Sprintf("http://localhost:%d/json/version?xsite=1", port))})
	refusedInBrowser(t, h, "json/version?xsite=redacted")
	// A page's own tricks with spellings the tools never see.
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/"})
	mustCall(t, c, "evaluate_script", map[string]any{"function": fmt.Sprintf(`() => { location = "http://0x7f.1:%d/json/version?hex=1"; return 1 }`, port)})
	refusedInBrowser(t, h, "json/version?hex=redacted")
	// A link clicked, in the page and in a new tab.
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/link?href=" + url.QueryEscape(dev+"?link=1")})
	clickFirst(t, c, linkUID)
	refusedInBrowser(t, h, "json/version?link=redacted")
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/link?blank=1&href=" + url.QueryEscape(dev+"?blank=1")})
	clickFirst(t, c, linkUID)
	refusedInBrowser(t, h, "json/version?blank=redacted")
	// window.open.
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/open?url=" + url.QueryEscape(dev+"?open=1")})
	clickFirst(t, c, openUID)
	refusedInBrowser(t, h, "json/version?open=redacted")
}

// TestPopupsAreTheSessions checks that a popup a session's page opens is
// listed with its opener, drivable by pageId, guarded, and closed with the
// session; and that a popup beyond the page limit is closed with a notice.
func TestPopupsAreTheSessions(t *testing.T) {
	ch := testchrome.Start(t)
	pages := attackPages(t)
	h := newHarnessWith(t, "", session.Config{MaxTabsPerSession: 3})
	tok := h.token("alice")
	h.register(tok, "alice", ch.URL)
	c := h.connect(viaSSE, tok, "")

	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/link?blank=1&href=" + url.QueryEscape(pages+"/plain")})
	out := clickFirst(t, c, linkUID)
	if !strings.Contains(out, "opened a popup: page 2") {
		t.Errorf("click result does not tell of the popup: %q", out)
	}
	list := mustCall(t, c, "list_pages", nil)
	if !strings.Contains(list, `2: "Plain"`) || !strings.Contains(list, "[popup of 1]") {
		t.Fatalf("list_pages: %q", list)
	}
	if snap := mustCall(t, c, "take_snapshot", map[string]any{"pageId": 2}); !strings.Contains(snap, "Plain page") {
		t.Errorf("snapshot of the popup: %q", snap)
	}
	// A popup of the popup, and the popup's own navigation to DevTools.
	mustCall(t, c, "select_page", map[string]any{"pageId": 2})
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/link?blank=1&href=" + url.QueryEscape(pages+"/plain2")})
	if out := clickFirst(t, c, linkUID); !strings.Contains(out, "opened a popup: page 3") {
		t.Errorf("popup of a popup: %q", out)
	}
	mustCall(t, c, "evaluate_script", map[string]any{"pageId": 3, "function": fmt.Sprintf(`() => { location = "http://127.0.0.1:%d/json/version?popup=1"; return 1 }`, ch.Port)})
	refusedInBrowser(t, h, "json/version?popup=redacted")
	// Beyond the limit (3 pages): closed, and said so.
	before := len(ch.Pages(t))
	out = clickFirst(t, c, linkUID) // page 2's link again
	if !strings.Contains(out, "was closed") || !strings.Contains(out, "limit") {
		t.Errorf("popup beyond the limit: %q", out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(ch.Pages(t)) > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(ch.Pages(t)); n > before {
		t.Errorf("the popup beyond the limit is still open: %d pages, want %d", n, before)
	}
	// Closed with the session.
	_ = c.Close()
	deadline = time.Now().Add(10 * time.Second)
	for len(ch.Pages(t)) > 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if ps := ch.Pages(t); len(ps) != 1 {
		t.Errorf("after the session closed the browser has %d pages, want the user's one: %v", len(ps), ps)
	}
}

var popupID = regexp.MustCompile(`opened a popup: page (\d+)`)
var openedID = regexp.MustCompile(`Opened page (\d+)`)

// TestBlockedNavigationsLeaveTheTabUsable checks that after the browser
// refuses a navigation (to a DevTools endpoint or a --deny-hosts host; by
// redirect, iframe, location=, link, popup), the tab that got the refusal
// answers the next tool calls as any tab: it navigates to an allowed page
// and says so, lists at its URL and runs scripts. Each refusal is still
// audited. Each case has a tab of its own, so that one case's failure does
// not carry over to the next.
func TestBlockedNavigationsLeaveTheTabUsable(t *testing.T) {
	ch := testchrome.Start(t)
	pages := attackPages(t)
	h := newSecHarness(t, func(c *Config) {
		// localhost is the attack pages' own server under another name, so
		// a refusal that did not happen would show, and nothing leaves the
		// machine either way.
		c.Tools.Navigation = tools.NavPolicy{DenyHosts: []string{"localhost"}}
	})
	tok := h.token("alice")
	h.register(tok, "alice", ch.URL)
	c := h.connect(viaSSE, tok, "")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(pages, "http://"))
	dev := ch.URL + "/json/version"
	denied := "http://localhost:" + port
	navigate := func(u string) { _, _ = call(t, c, "navigate_page", map[string]any{"url": u}) }
	locate := func(u string) {
		mustCall(t, c, "evaluate_script", map[string]any{"function": `() => { location = ` + strconv.Quote(u) + `; return 1 }`})
	}

	for i, tc := range []struct {
		name, what string
		// block makes the page refused what; it returns the popup that got
		// the refusal, 0 for the page itself.
		block func(what string) (popup int)
	}{
		{"redirect", dev + "?redir=1", func(u string) int {
			navigate(pages + "/redir?to=" + url.QueryEscape(u))
			return 0
		}},
		{"iframe", dev + "?iframe=1", func(u string) int {
			navigate(pages + "/frame?src=" + url.QueryEscape(u))
			return 0
		}},
		{"location", dev + "?loc=1", func(u string) int { locate(u); return 0 }},
		{"location to a denied host", denied + "/denied-loc", func(u string) int { locate(u); return 0 }},
		{"link", dev + "?link=1", func(u string) int {
			navigate(pages + "/link?href=" + url.QueryEscape(u))
			clickFirst(t, c, linkUID)
			return 0
		}},
		{"link to a new tab", dev + "?blank=1", func(u string) int {
			navigate(pages + "/link?blank=1&href=" + url.QueryEscape(u))
			return popupOf(t, c, clickFirst(t, c, linkUID))
		}},
		{"window.open", denied + "/denied-open", func(u string) int {
			navigate(pages + "/open?url=" + url.QueryEscape(u))
			return popupOf(t, c, clickFirst(t, c, openUID))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := openedID.FindStringSubmatch(mustCall(t, c, "new_page", map[string]any{"url": pages + "/"}))
			if m == nil {
				t.Fatal("new_page did not say which page it opened")
			}
			id, _ := strconv.Atoi(m[1])
			defer func() { _, _ = call(t, c, "close_page", map[string]any{"pageId": id}) }()
			if popup := tc.block(tc.what); popup != 0 {
				defer func() { _, _ = call(t, c, "close_page", map[string]any{"pageId": popup}) }()
				id = popup
			}
			audited := strings.TrimPrefix(strings.TrimPrefix(tc.what, dev), denied)
			refusedInBrowser(t, h, strings.ReplaceAll(audited, "=1", "=redacted"))

			allowed := fmt.Sprintf("%s/?after=%d", pages, i)
			if out := mustCall(t, c, "navigate_page", map[string]any{"pageId": id, "url": allowed}); !strings.Contains(out, " is at "+allowed+` (title "Plain")`) {
				t.Errorf("navigate_page after the refusal: %q", out)
			}
			if out := mustCall(t, c, "list_pages", nil); !strings.Contains(out, fmt.Sprintf(`%d: "Plain" %s`, id, allowed)) {
				t.Errorf("list_pages after the refusal: %q", out)
			}
			if out := mustCall(t, c, "evaluate_script", map[string]any{"pageId": id, "function": "() => location.href + ' ' + document.title"}); !strings.Contains(out, allowed+" Plain") {
				t.Errorf("evaluate_script after the refusal: %q", out)
			}
		})
	}
}

// popupOf returns the page id of the popup a click result tells of.
func popupOf(t *testing.T, c *client.Client, out string) int {
	t.Helper()
	if m := popupID.FindStringSubmatch(out); m != nil {
		id, _ := strconv.Atoi(m[1])
		return id
	}
	// On a loaded machine the popup's target can appear after the click's
	// settle ended: the session still adopts it.
	id := 0
	deadline := time.Now().Add(10 * time.Second)
	for id == 0 && time.Now().Before(deadline) {
		for _, m := range listedPopup.FindAllStringSubmatch(mustCall(t, c, "list_pages", nil), -1) {
			id, _ = strconv.Atoi(m[1])
		}
		if id == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if id == 0 {
		t.Fatalf("the click opened no popup: %q, and list_pages shows none", out)
	}
	return id
}

// listedPopup is a popup's line in list_pages.
var listedPopup = regexp.MustCompile(`(?m)^\D*(\d+): .*\[popup of \d+\]`)

// The first page tool of a session opens its tab and navigates it in one
// call: the guard is on before that navigation's first request, so a
// redirect from an allowed page to DevTools is refused in the browser
// there too (guards any attempt to start that navigation earlier).
func TestFirstNavigationOfASessionIsGuarded(t *testing.T) {
	alice := testchrome.Start(t)
	pages := attackPages(t)
	h := newHarness(t, "")
	ta := h.token("alice")
	h.register(ta, "alice", alice.URL)
	for _, tool := range []string{"navigate_page", "new_page"} {
		marker := "first" + strings.TrimSuffix(tool, "_page")
		c := h.connect(viaStreamable, ta, "")
		to := fmt.Sprintf("http://127.0.0.1:%d/json/version?%s=1", alice.Port, marker)
		out, _ := call(t, c, tool, map[string]any{"url": pages + "/redir?to=" + url.QueryEscape(to)})
		if strings.Contains(out, "webSocketDebuggerUrl") || strings.Contains(out, "Browser") && !strings.Contains(out, "BLOCKED") {
			t.Errorf("%s as a session's first call, redirected to DevTools: %q", tool, out)
		}
		refusedInBrowser(t, h, "json/version?"+marker+"=redacted")
		if got := mustCall(t, c, "evaluate_script", map[string]any{"function": "() => document.body ? document.body.innerText : ''"}); strings.Contains(got, "webSocketDebuggerUrl") {
			t.Errorf("%s: the page shows DevTools: %q", tool, got)
		}
	}
}

// TestSiblingDetachKeepsTheGuard: a session that attaches to a tab another
// session of the same user opened (select_page targetId, with all-tabs)
// and then detaches from it (close_page) must not take the page guard off
// that tab: the guard was released for the target as a whole, so the
// other session's page could then reach a DevTools port.
func TestSiblingDetachKeepsTheGuard(t *testing.T) {
	alice := testchrome.Start(t)
	pages := testPages(t)
	h := newHarness(t, "")
	ta := h.token("alice")
	h.register(ta, "alice", alice.URL)
	a := h.connect(viaStreamable, ta, "")
	mustCall(t, a, "navigate_page", map[string]any{"url": pages + "/?sibling=1"})
	var opened string
	for _, p := range alice.Pages(t) {
		if strings.Contains(p.URL, "sibling=1") {
			opened = p.ID
		}
	}
	if opened == "" {
		t.Fatal("session a's tab is not in the browser")
	}
	b := h.connect(viaStreamable, h.token("alice", auth.PermRead, auth.PermWrite, auth.PermAllTabs), "")
	out := mustCall(t, b, "select_page", map[string]any{"targetId": opened})
	if !strings.Contains(out, "Attached") {
		t.Fatalf("select_page of session a's tab: %q", out)
	}
	if out := mustCall(t, b, "close_page", map[string]any{"pageId": 1}); !strings.Contains(out, "Detached") {
		t.Fatalf("close_page of the attached tab: %q", out)
	}
	reach := fmt.Sprintf(`() => fetch("http://127.0.0.1:%d/json/version?sibling=1", {mode: "no-cors"}).then(() => "reached", () => "blocked")`, alice.Port)
	if got := mustCall(t, a, "evaluate_script", map[string]any{"function": reach}); !strings.Contains(got, "blocked") {
		t.Errorf("after a sibling session detached, session a's page reached DevTools: %q", got)
	}
	refusedInBrowser(t, h, "json/version?sibling=redacted")
}
