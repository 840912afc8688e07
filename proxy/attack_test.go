package proxy

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testfwd"
)

// TestEarlierUserMovingToAnotherBrowser: bob registered some browser
// before alice registered hers. Moving his registration to alice's
// Chrome (through a forward, so no spelling gives it away) must not make
// him its first registrant: the browser is alice's, she registered it
// before bob pointed at it.
func TestEarlierUserMovingToAnotherBrowser(t *testing.T) {
	chrome := testchrome.Start(t)
	pages := testPages(t)
	h := newHarness(t, "")
	bobTok := h.token("bob")
	h.register(bobTok, "bob", deadURL(t))
	alice := h.driving("alice", chrome.URL)
	mustCall(t, alice, "navigate_page", map[string]any{"url": pages + "/"})
	before := pageIDs(t, chrome)

	fwd := testfwd.Start(t, "127.0.0.1:"+strconv.Itoa(chrome.Port))
	status, body := registerRaw(t, h, bobTok, "bob", fwd.URL)
	if status != http.StatusConflict {
		t.Errorf("bob moving his older registration to alice's browser: %d %s; want 409", status, body)
	}
	if got, err := h.store.Get(context.Background(), "bob"); err == nil && got.BrowserURL == fwd.URL {
		t.Error("bob's registration of alice's browser was kept")
	}
	if out, res := call(t, alice, "list_pages", nil); res.IsError || !strings.Contains(out, "Test page") {
		t.Errorf("alice lost her browser to bob: %q", out)
	}
	if after := pageIDs(t, chrome); !slices.Equal(before, after) {
		t.Errorf("alice's tabs changed: %v -> %v", before, after)
	}
}

// TestSessionTokenCannotMintAPIKey: a sessionToken is capped at its
// parent's exp; an API key it created would never expire. Neither bob's
// own sessionToken nor the one an admin registered for him makes a key.
func TestSessionTokenCannotMintAPIKey(t *testing.T) {
	h := newHarness(t, "")
	own := h.register(h.token("bob"), "bob", deadURL(t)).SessionToken
	forBob := h.register(h.token("admin", auth.PermAdmin, auth.PermRead, auth.PermWrite, auth.PermScript), "bob", deadURL(t)).SessionToken
	for name, tok := range map[string]string{"bob's own sessionToken": own, "the sessionToken an admin minted for bob": forBob} {
		var e APIError
		if resp := h.do(http.MethodPost, "/api/apikeys", tok, map[string]any{"perms": []string{auth.PermRead}}, &e); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: POST /api/apikeys %d %+v, want 403", name, resp.StatusCode, e)
		}
	}
	if keys, err := h.store.ListAPIKeys(context.Background(), "bob"); err != nil || len(keys) != 0 {
		t.Errorf("bob's keys: %v %v, want none", keys, err)
	}
	if n := deniedFor(h, "bob", "sessionToken"); n != 2 {
		t.Errorf("%d refusals audited, want 2:\n%s", n, h.logs.String())
	}
	// A user's own token still makes one.
	var k CreatedAPIKey
	if resp := h.do(http.MethodPost, "/api/apikeys", h.token("bob"), map[string]any{"perms": []string{auth.PermRead}}, &k); resp.StatusCode != http.StatusCreated {
		t.Errorf("bob's user token: %d, want 201", resp.StatusCode)
	}
}
