package proxy

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

var openedHandle = regexp.MustCompile(`Opened page (\d+)`)

// TestStatelessAgentsKeepToTheirPages: two agents of one user on the
// stateless protocol share the user's default workspace, but each keeps to
// its own page by passing the handle new_page gave it, whatever the other
// selects. A handle is bound to its user: another user's call with it is
// answered like an unknown page and audited.
func TestStatelessAgentsKeepToTheirPages(t *testing.T) {
	chA, chB := testchrome.Start(t), testchrome.Start(t)
	pages := testPages(t)
	h := newHarness(t, "")
	alice, bob := h.token("alice"), h.token("bob")
	h.register(alice, "alice", chA.URL)
	h.register(bob, "bob", chB.URL)
	one, two := h.connect(viaStateless, alice, ""), h.connect(viaStateless, alice, "")

	handle := func(text string) int {
		t.Helper()
		m := openedHandle.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("new_page said %q; want Opened page <handle>", text)
		}
		n, _ := strconv.Atoi(m[1])
		if n < 100000 {
			t.Errorf("handle %d is a small counter, not a random handle", n)
		}
		if !strings.Contains(text, "pass pageId "+m[1]) {
			t.Errorf("new_page on the stateless protocol does not tell to pass the handle: %q", text)
		}
		return n
	}
	h1 := handle(mustCall(t, one, "new_page", map[string]any{"url": pages + "/"}))
	h2 := handle(mustCall(t, two, "new_page", map[string]any{"url": pages + "/two"})) // selects h2
	if h1 == h2 {
		t.Fatalf("both agents got handle %d", h1)
	}
	// Agent one navigates and reads its own page by handle, although
	// agent two's page is the selected one.
	if out := mustCall(t, one, "navigate_page", map[string]any{"url": pages + "/two", "pageId": h1}); !strings.Contains(out, "Page "+strconv.Itoa(h1)+" is at "+pages+"/two") {
		t.Errorf("navigate_page by handle: %q", out)
	}
	if out := mustCall(t, two, "navigate_page", map[string]any{"url": pages + "/", "pageId": h2}); !strings.Contains(out, `"Test page"`) {
		t.Errorf("agent two's navigate_page: %q", out)
	}
	if snap := mustCall(t, one, "take_snapshot", map[string]any{"pageId": h1}); !strings.Contains(snap, "Second page") || strings.Contains(snap, "Press me") {
		t.Errorf("agent one's page shows another page:\n%s", snap)
	}
	// A call without a handle keeps today's default: the selected page.
	if snap := mustCall(t, one, "take_snapshot", nil); !strings.Contains(snap, "Press me") {
		t.Errorf("a call without pageId did not get the selected page:\n%s", snap)
	}

	// Bob cannot use alice's handle: the same answer as an unknown page.
	b := h.connect(viaStateless, bob, "")
	text, res := call(t, b, "take_snapshot", map[string]any{"pageId": h1})
	unknown, res2 := call(t, b, "take_snapshot", map[string]any{"pageId": 99})
	if !res.IsError || !res2.IsError || strings.ReplaceAll(text, strconv.Itoa(h1), "N") != strings.ReplaceAll(unknown, "99", "N") {
		t.Errorf("bob with alice's handle: %q; with an unknown page: %q; want the same not-found answer", text, unknown)
	}
	if !strings.Contains(text, "not one of this session's pages") {
		t.Errorf("bob with alice's handle: %q", text)
	}
	if out := mustCall(t, b, "list_pages", nil); strings.Contains(out, strconv.Itoa(h1)) || strings.Contains(out, strconv.Itoa(h2)) {
		t.Errorf("bob lists alice's pages:\n%s", out)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, `"reason":"page_handle"`); n != 1 || !strings.Contains(logs, `"user":"bob"`) {
		t.Errorf("%d page_handle refusals audited, want 1 (bob's):\n%s", n, logs)
	}
	// Closing a page frees its handle: it is unknown from then on.
	mustCall(t, one, "close_page", map[string]any{"pageId": h1})
	if text, res := call(t, two, "take_snapshot", map[string]any{"pageId": h1}); !res.IsError || !strings.Contains(text, "not one of") {
		t.Errorf("a closed handle still works: %q", text)
	}
}
