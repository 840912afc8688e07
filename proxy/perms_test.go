package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
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
