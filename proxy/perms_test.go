package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// TestRegistrationChangesNeedWrite: POST /api/register and DELETE
// /api/users/:userId change what a user's IDE drives, so a read-only
// credential (token or API key) gets 403, audited, and nothing changes.
func TestRegistrationChangesNeedWrite(t *testing.T) {
	h := newHarness(t, "")
	ctx := context.Background()
	readKey, _ := h.apiKey("erin", auth.PermRead)
	readers := map[string]string{
		"read token":        h.token("erin", auth.PermRead),
		"read API key":      readKey,
		"read+script token": h.token("erin", auth.PermRead, auth.PermScript),
		"admin-only token":  h.token("erin", auth.PermAdmin),
	}
	for name, cred := range readers {
		var e APIError
		resp := h.do(http.MethodPost, "/api/register", cred, map[string]string{"userId": "erin", "browserURL": deadURL(t)}, &e)
		if resp.StatusCode != http.StatusForbidden || e.Code != CodeForbidden || !strings.Contains(e.Message, auth.PermWrite) {
			t.Errorf("%s registers: %d %+v, want 403 %s naming %s", name, resp.StatusCode, e, CodeForbidden, auth.PermWrite)
		}
	}
	if n, _ := h.store.Count(ctx); n != 0 || totalBrowsers(h) != 0 {
		t.Fatalf("refused registrations left %d registrations, %d browsers", n, totalBrowsers(h))
	}

	url := deadURL(t)
	h.register(h.token("erin", auth.PermRead, auth.PermWrite), "erin", url)
	for name, cred := range readers {
		var e APIError
		resp := h.do(http.MethodDelete, "/api/users/erin", cred, nil, &e)
		if resp.StatusCode != http.StatusForbidden || e.Code != CodeForbidden || !strings.Contains(e.Message, auth.PermWrite) {
			t.Errorf("%s deletes: %d %+v, want 403 %s naming %s", name, resp.StatusCode, e, CodeForbidden, auth.PermWrite)
		}
	}
	if reg, err := h.store.Get(ctx, "erin"); err != nil || reg.BrowserURL != url {
		t.Errorf("erin's registration after refused deletes: %+v, %v", reg, err)
	}
	if _, ok := h.pool.Get("erin"); !ok {
		t.Error("a refused delete removed erin's browser")
	}
	// Reading stays allowed.
	if code, _ := h.get("/api/users/erin/status", readers["read token"]); code != http.StatusOK {
		t.Errorf("status with a read token: %d", code)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, `"reason":"the credential lacks browser:write"`); n != 2*len(readers) {
		t.Errorf("%d refusals audited, want %d:\n%s", n, 2*len(readers), logs)
	}
}

// TestInitScriptNeedsScript: navigate_page's initScript runs JavaScript in
// the page, so a token without browser:script may navigate but not inject;
// the refusal comes before any page is opened, and is audited.
func TestInitScriptNeedsScript(t *testing.T) {
	ch := testchrome.Start(t)
	pages := corePages(t)
	h := newHarness(t, "")
	h.register(h.token("alice"), "alice", ch.URL)
	c := h.connect(viaStreamable, h.token("alice", auth.PermRead, auth.PermWrite), "")

	for _, args := range []map[string]any{
		{"url": pages + "/init", "initScript": "window.injected = 'yes'"},
		{"type": "reload", "initScript": "window.injected = 'yes'"},
	} {
		text, res := call(t, c, "navigate_page", args)
		if !res.IsError || !strings.Contains(text, "initScript") || !strings.Contains(text, auth.PermScript) {
			t.Errorf("navigate_page %v with a read,write token: %q, want a refusal naming initScript and %s", args, text, auth.PermScript)
		}
	}
	if text := mustCall(t, c, "list_pages", nil); !strings.Contains(text, "no pages yet") {
		t.Errorf("a refused navigate_page opened a page:\n%s", text)
	}
	// Without initScript (or with an empty one) the same token navigates.
	if text := mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/init", "initScript": ""}); !strings.Contains(text, "seen nothing") {
		t.Errorf("navigate_page without initScript: %q", text)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, `"tool":"navigate_page","reason":"permission"`); n != 2 {
		t.Errorf("%d initScript refusals audited, want 2:\n%s", n, logs)
	}
	// A token with browser:script injects.
	s := h.connect(viaStreamable, h.token("alice"), "")
	if text := mustCall(t, s, "navigate_page", map[string]any{"url": pages + "/init", "initScript": "window.injected = 'yes'"}); !strings.Contains(text, "seen yes") {
		t.Errorf("navigate_page with initScript and browser:script: %q", text)
	}
}
