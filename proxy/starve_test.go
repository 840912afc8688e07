package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// TestLongCallDoesNotStallExpiry checks that one session's endless tool
// call over SSE (wait_for with a huge timeout) neither keeps that session
// alive past its lifetime nor stops the expiry of everyone else's: bob's
// session, opened after alice's call began, expires on time, and alice's
// call ends once her session does.
func TestLongCallDoesNotStallExpiry(t *testing.T) {
	ch := testchrome.Start(t)
	h := newLifeHarness(t, session.Config{Lifetime: 3 * time.Second, IdleTimeout: time.Hour}, func(c *Config) {
		// The ceiling is what refuses such a timeout in production; here
		// it is lifted, so that the call really waits.
		c.Tools.MaxCallTimeout = 1000 * time.Hour
	})
	alice := h.token("alice")
	h.register(alice, "alice", ch.URL)
	ac := h.connect(viaSSE, alice, "")
	mustCall(t, ac, "new_page", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	callDone := make(chan struct{})
	defer func() { cancel(); <-callDone }()
	go func() {
		defer close(callDone)
		var req mcp.CallToolRequest
		req.Params.Name = "wait_for"
		req.Params.Arguments = map[string]any{"text": "never on this page", "timeout": 2000000000}
		_, _ = ac.CallTool(ctx, req) // the stream ends with the session: no answer reaches the client
	}()
	waitUntil(t, 10*time.Second, "alice's wait_for running", func() bool {
		return strings.Contains(h.logs.String(), `"tool":"new_page"`)
	})
	time.Sleep(200 * time.Millisecond) // let the wait_for reach the proxy

	bob := h.connect(viaSSE, h.token("bob"), "")
	_ = bob
	waitUntil(t, 30*time.Second, "every session closed at its lifetime", func() bool { return h.mgr.Count() == 0 })
	waitUntil(t, 10*time.Second, "both lifetime closes audited", func() bool {
		return strings.Count(h.logs.String(), `"event":"session_close"`) == 2 && strings.Count(h.logs.String(), `"reason":"lifetime"`) >= 2
	})
	// Alice's call ended with her session, with the reason, not at its timeout.
	waitUntil(t, 10*time.Second, "alice's wait_for ended", func() bool {
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, `"event":"tool_call"`) && strings.Contains(l, `"tool":"wait_for"`) {
				return strings.Contains(l, `"outcome":"error"`)
			}
		}
		return false
	})
}

// TestTimeoutCeiling checks that a timeout above --max-call-timeout is
// refused up front, with the ceiling named, by every tool that takes one,
// and that the refusal opens no page.
func TestTimeoutCeiling(t *testing.T) {
	ch := testchrome.Start(t)
	h := newHarness(t, "")
	c := h.driving("alice", ch.URL)
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"wait_for", map[string]any{"text": "x", "timeout": 2000000000}},
		{"navigate_page", map[string]any{"url": "about:blank", "timeout": 1e13}}, // would overflow a Duration
		{"new_page", map[string]any{"url": "about:blank", "timeout": 300001}},
	} {
		text, res := call(t, c, tc.tool, tc.args)
		if !res.IsError || !strings.Contains(text, "ceiling of 300000 ms") || !strings.Contains(text, "--max-call-timeout") {
			t.Errorf("%s %v: got %q (error %v), want a refusal naming the 300000 ms ceiling", tc.tool, tc.args, text, res.IsError)
		}
	}
	if list := mustCall(t, c, "list_pages", nil); strings.Contains(list, "about:blank") {
		t.Errorf("a refused call opened a page:\n%s", list)
	}
	// At the ceiling, a timeout is taken.
	if text := mustCall(t, c, "navigate_page", map[string]any{"url": "about:blank", "timeout": 300000}); !strings.Contains(text, "about:blank") {
		t.Errorf("navigate_page at the ceiling: %q", text)
	}
}

// floodPages serves /console, a page that logs count strings of 10 kB, each
// starting with its index, and /network, a page that loads count URLs of
// 8 kB with 4 kB headers.
func floodPages(t testing.TB, count int) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/console", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>Flood</title><script>
const big = 'x'.repeat(10240);
for (let i = 0; i < %d; i++) console.log(i + ':' + big, big);
</script>`, count)
	})
	mux.HandleFunc("/network", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>Flood</title><script>
const big = 'y'.repeat(8192), hdr = 'z'.repeat(4096);
(async () => { for (let i = 0; i < %d; i++) await fetch('/r/' + i + '?' + big, {headers: {'X-Big': hdr}}).catch(() => {}); document.title = 'done'; })();
</script>`, count)
	})
	mux.HandleFunc("/r/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", r.Header.Get("X-Big"))
		io.WriteString(w, "ok")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestConsoleFloodIsBoundedInBytes checks that a page logging 10 kB strings
// keeps the tab's console under its byte bound (half of the 4 MiB default
// per tab), not 1000 messages of 20 kB, and that a cut value says how much
// was cut.
func TestConsoleFloodIsBoundedInBytes(t *testing.T) {
	const count = 1500
	ch := testchrome.Start(t)
	pages := floodPages(t, count)
	h := newHarness(t, "")
	c := h.driving("alice", ch.URL)
	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/console"})
	var list string
	waitUntil(t, 30*time.Second, "the last message collected", func() bool {
		list = mustCall(t, c, "list_console_messages", map[string]any{"pageSize": 5000})
		return strings.Contains(list, fmt.Sprintf("] %d:x", count-1))
	})
	ids := regexp.MustCompile(`msgid=(\d+) \[log\]`).FindAllStringSubmatch(list, -1)
	// Each message keeps at least its text and its argument, each cut to
	// 4 kB: the count bounds the bytes from below.
	if kept := len(ids) * 2 * 4096; kept > 2<<20 {
		t.Errorf("the tab keeps %d messages of over 8 kB each (%d bytes), over its 2 MiB console bound", len(ids), kept)
	}
	if len(ids) < 10 {
		t.Fatalf("only %d messages kept", len(ids))
	}
	last := ids[len(ids)-1][1]
	msg := mustCall(t, c, "get_console_message", map[string]any{"msgid": last})
	if !regexp.MustCompile(`…\[cut [0-9,]+ bytes\]`).MatchString(msg) || !strings.Contains(msg, "[cut 6,") {
		t.Errorf("get_console_message of a 10 kB message has no cut marker saying how much was cut:\n%s", regexp.MustCompile(`x{20,}`).ReplaceAllString(msg, "xx…"))
	}
}

// TestHungBrowserDoesNotStallClosing: closing sessions (here all of them,
// at shutdown; the expiry sweep and DELETE /api/users end sessions the same
// way) closes the tabs each session opened, and a browser that answers
// nothing bounds each tab's close at 5 s. Alice's browser hangs with two
// sessions of two tabs each; the closing must take one such bound, not one
// per tab or per session, and bob's tab on his own browser is still closed.
func TestHungBrowserDoesNotStallClosing(t *testing.T) {
	ac, bc := testchrome.Start(t), testchrome.Start(t)
	h := newHarness(t, "")
	alice, bob := h.token("alice"), h.token("bob")
	h.register(alice, "alice", ac.URL)
	h.register(bob, "bob", bc.URL)
	for range 2 {
		c := h.connect(viaStreamable, alice, "")
		mustCall(t, c, "new_page", nil)
		mustCall(t, c, "new_page", nil)
	}
	bobBefore := pageIDs(t, bc)
	mustCall(t, h.connect(viaStreamable, bob, ""), "new_page", nil)
	if n := len(pageIDs(t, bc)); n != len(bobBefore)+1 {
		t.Fatalf("bob's browser has %d pages, want %d", n, len(bobBefore)+1)
	}

	thaw := ac.Freeze()
	defer thaw()
	start := time.Now()
	h.mgr.CloseAll()
	// One close bound (5 s) plus slack for a loaded machine; closing tab
	// after tab, or session after session, takes 10 s or more.
	if d := time.Since(start); d > 9*time.Second {
		t.Errorf("closing the sessions took %v with one hung browser; want about one 5 s bound", d.Round(time.Millisecond))
	}
	if after := pageIDs(t, bc); !slices.Equal(after, bobBefore) {
		t.Errorf("bob's pages after closing: %v, want %v", after, bobBefore)
	}
}
