package proxy

import (
	"regexp"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// TestTabsOfOtherSessions checks that a session sees and touches only its own
// pages, and that browser:all-tabs attaches to the user's other tabs without
// ever closing them.
func TestTabsOfOtherSessions(t *testing.T) {
	ch := testchrome.Start(t)
	pages := testPages(t)
	h := newHarness(t, "")
	tok := h.token("alice")
	h.register(tok, "alice", ch.URL)
	userTab := ch.Pages(t)[0]

	a := h.connect(viaSSE, tok, "")
	mustCall(t, a, "navigate_page", map[string]any{"url": pages + "/"})
	b := h.connect(viaStreamable, tok, "")
	if out := mustCall(t, b, "list_pages", nil); !strings.Contains(out, "no pages yet") {
		t.Errorf("session b sees pages it did not open: %q", out)
	}
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"select_page", map[string]any{"pageId": 1}, "not one of this session's pages"},
		{"close_page", map[string]any{"pageId": 1}, "not one of this session's pages"},
		{"list_pages", map[string]any{"all": true}, auth.PermAllTabs},
		{"select_page", map[string]any{"targetId": userTab.ID}, auth.PermAllTabs},
	} {
		if text, res := call(t, b, tc.tool, tc.args); !res.IsError || !strings.Contains(text, tc.want) {
			t.Errorf("%s %v without all-tabs: %q", tc.tool, tc.args, text)
		}
	}
	if n := len(ch.Pages(t)); n != 2 {
		t.Fatalf("browser has %d pages, want the user's and session a's", n)
	}

	c := h.connect(viaStateless, h.token("alice", auth.PermRead, auth.PermWrite, auth.PermScript, auth.PermAllTabs), "")
	out := mustCall(t, c, "list_pages", map[string]any{"all": true})
	if !strings.Contains(out, "targetId="+userTab.ID) || !strings.Contains(out, `"Test page"`) {
		t.Fatalf("list_pages all=true: %q", out)
	}
	out = mustCall(t, c, "select_page", map[string]any{"targetId": userTab.ID})
	id := regexp.MustCompile(`as page (\d+)`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("attach: %q", out)
	}
	if out := mustCall(t, c, "evaluate_script", map[string]any{"function": "() => location.href"}); !strings.Contains(out, "about:blank") {
		t.Errorf("attached page is not the user's tab: %q", out)
	}
	if out := mustCall(t, c, "list_pages", nil); !strings.Contains(out, "[attached]") {
		t.Errorf("attached page not marked: %q", out)
	}
	if out := mustCall(t, c, "close_page", map[string]any{"pageId": id[1]}); !strings.Contains(out, "Detached") {
		t.Errorf("close_page of an attached tab: %q", out)
	}
	// Attach again, then end the session: the user's tab must survive both.
	mustCall(t, c, "select_page", map[string]any{"targetId": userTab.ID})
	h.mgr.CloseUser("alice")
	waitFor(t, "session a's tab closed", func() bool { return len(ch.Pages(t)) == 1 })
	if left := ch.Pages(t); left[0].ID != userTab.ID || left[0].URL != userTab.URL {
		t.Errorf("the user's tab changed: %+v, was %+v", left, userTab)
	}
}
