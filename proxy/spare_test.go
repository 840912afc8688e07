package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
)

// spareAttackPage serves, on 127.0.0.1, a page whose first inline script
// and first subresources try to reach target (the proxy) and its port by
// fetch, websocket and image, and write what happened to window.res.
func spareAttackPage(t testing.TB, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/attack", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><html><head><title>Attack</title><script>
window.res = {};
fetch(%[1]q + "/health?sparefetch=1", {mode: "no-cors"}).then(() => res.fetch = "reached", () => res.fetch = "refused");
const s = new WebSocket("ws://%[2]s/"); s.onopen = () => res.ws = "reached"; s.onerror = () => res.ws = "refused";
</script></head><body><img src="%[1]s/health?spareimg=1" onload="res.img = 'reached'" onerror="res.img = 'refused'">
<button onclick="window.open('/plain')">Open it</button></body></html>`, target, u.Host)
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<html><head><title>Plain</title></head><body>Plain page</body></html>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestManagedSpareTab checks the blank tab a managed browser keeps guarded
// ahead: the session's first page tool gets it; it is guarded for that
// session (the first inline script and the first subresources of its first
// document cannot reach the proxy, and the refusals are audited as the
// user's; its popup is the session's page); it is never listed or
// attachable; and the next session gets a fresh one, while the browser
// holds no more than one spare.
func TestManagedSpareTab(t *testing.T) {
	h := managedHarness(t, browserpool.ManagedConfig{Max: 1, Idle: time.Hour, AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	pages := spareAttackPage(t, h.URL)
	tok := h.token("alice", auth.PermRead, auth.PermWrite, auth.PermScript, auth.PermAllTabs)

	for round := range 2 {
		c := h.connect(viaStreamable, tok, "")
		var spare target.ID
		var conn browserpool.Conn
		if round > 0 {
			// The managed browser runs: its spare is made while no session asks.
			b, ok := h.pool.Get("alice")
			if !ok {
				t.Fatal("no managed browser for alice")
			}
			var err error
			if conn, err = b.Conn(context.Background(), 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if !eventually(10*time.Second, func() bool { return conn.Spare.Ready() != "" }) {
				t.Fatal("no spare tab made for the next session")
			}
			spare = conn.Spare.Ready()
		}
		mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/attack"})
		// In front, as a tab the session opened itself.
		if v := mustCall(t, c, "evaluate_script", map[string]any{"function": "() => document.visibilityState"}); !strings.Contains(v, "visible") {
			t.Errorf("round %d: the session's first tab is %q, want visible", round, v)
		}
		if round > 0 {
			infos, err := chromedp.Targets(conn.Ctx)
			if err != nil {
				t.Fatal(err)
			}
			used := slices.ContainsFunc(infos, func(in *target.Info) bool { return in.TargetID == spare && strings.HasSuffix(in.URL, "/attack") })
			if !used {
				t.Errorf("the session's first page tool did not get the spare tab %s: %v", spare, infos)
			}
			if !eventually(10*time.Second, func() bool { r := conn.Spare.Ready(); return r != "" && r != spare }) {
				t.Error("no new spare tab after the last was taken")
			}
			// Made in the background: the session's tab stays in front.
			if v := mustCall(t, c, "evaluate_script", map[string]any{"function": "() => document.visibilityState"}); !strings.Contains(v, "visible") {
				t.Errorf("the session's tab after the next spare was made: %q, want visible", v)
			}
			blanks := 0
			for _, in := range infos {
				if in.Type == "page" && in.URL == "about:blank" {
					blanks++
				}
			}
			// The start-up tab and at most one spare.
			if blanks > 2 {
				t.Errorf("%d blank tabs in the managed browser, want at most the start-up tab and one spare: %v", blanks, infos)
			}
		}
		var got string
		if !eventually(10*time.Second, func() bool {
			got = mustCall(t, c, "evaluate_script", map[string]any{"function": "() => JSON.stringify(window.res)"})
			return strings.Contains(got, "fetch") && strings.Contains(got, "ws") && strings.Contains(got, "img")
		}) {
			t.Fatalf("round %d: the page's attempts did not all end: %s", round, got)
		}
		if strings.Contains(got, "reached") {
			t.Errorf("round %d: the first document of the spare tab reached the proxy: %s", round, got)
		}
		refusedInBrowser(t, h, "health?sparefetch=redacted")
		refusedInBrowser(t, h, "health?spareimg=redacted")

		// The spare waiting for the next session is nobody's to see.
		all := mustCall(t, c, "list_pages", map[string]any{"all": true})
		blankLines := 0
		for _, l := range strings.Split(all, "\n") {
			if strings.Contains(l, "about:blank") {
				blankLines++
			}
		}
		if blankLines > 1 {
			// The browser's start-up tab is listed, as before; the spare is not.
			t.Errorf("round %d: list_pages all=true shows the spare tab: %q", round, all)
		}

		// A popup of the adopted tab is the session's.
		out := clickFirst(t, c, openUID)
		if !strings.Contains(out, "opened a popup: page 2") {
			t.Errorf("round %d: click result does not tell of the popup: %q", round, out)
		}
		if list := mustCall(t, c, "list_pages", nil); !strings.Contains(list, "[popup of 1]") {
			t.Errorf("round %d: list_pages: %q", round, list)
		}
		_ = c.Close()
	}
}

// BenchmarkManagedFirstPageTool times a session's first page tool
// (navigate_page, which opens its tab) in a managed browser, with the
// spare tab and without: go test -run '^$' -bench ManagedFirstPageTool
// -benchtime 15x ./proxy/. Each call is a new session, after a pause of
// 300 ms (Chromium's own spare renderer) and, with the spare tab, until
// the browser has made it.
func BenchmarkManagedFirstPageTool(b *testing.B) {
	for _, spare := range []bool{true, false} {
		name := "spare"
		if !spare {
			name = "nospare"
		}
		b.Run(name, func(b *testing.B) {
			h := managedHarness(b, browserpool.ManagedConfig{Max: 1, Idle: time.Hour, NoSpareTab: !spare,
				AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
			pages := testPages(b)
			tok := h.token("alice")
			warm := h.connect(viaStreamable, tok, "")
			mustCall(b, warm, "navigate_page", map[string]any{"url": pages + "/"})
			_ = warm.Close()
			var durs []time.Duration
			b.ResetTimer()
			b.StopTimer()
			for range b.N {
				c := h.connect(viaStreamable, tok, "")
				time.Sleep(300 * time.Millisecond)
				if spare {
					// As when sessions start seconds apart: the next
					// spare is made a second after the last was taken.
					br, ok := h.pool.Get("alice")
					if !ok {
						b.Fatal("no managed browser")
					}
					conn, err := br.Conn(context.Background(), 10*time.Second)
					if err != nil {
						b.Fatal(err)
					}
					if !eventually(10*time.Second, func() bool { return conn.Spare.Ready() != "" }) {
						b.Fatal("no spare tab")
					}
				}
				t0 := time.Now()
				b.StartTimer()
				mustCall(b, c, "navigate_page", map[string]any{"url": pages + "/"})
				b.StopTimer()
				durs = append(durs, time.Since(t0))
				_ = c.Close()
			}
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(durs[0].Microseconds())/1000, "min-ms")
		})
	}
}
