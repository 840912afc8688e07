package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testdns"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testfwd"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// registerRaw posts a registration and returns the status and the body.
func registerRaw(t *testing.T, h *harness, token, user, browserURL string) (int, string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"userId": user, "browserURL": browserURL})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/api/register", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("register %s: %v", user, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// pageIDs lists the ids of the page targets of c, sorted.
func pageIDs(t *testing.T, c *testchrome.Chrome) []string {
	t.Helper()
	var ids []string
	for _, p := range c.Pages(t) {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

// deniedFor counts the audit lines of refusals of user whose reason
// contains what.
func deniedFor(h *harness, user, what string) int {
	n := 0
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, `"audit":true`) && strings.Contains(line, `"event":"denied"`) &&
			strings.Contains(line, `"user":"`+user+`"`) && strings.Contains(line, what) {
			n++
		}
	}
	return n
}

// TestRegisterSameBrowserOtherSpelling: once alice has registered her
// Chrome, no other spelling of the same host and port gets it for bob.
func TestRegisterSameBrowserOtherSpelling(t *testing.T) {
	chrome := testchrome.Start(t)
	pages := testPages(t)
	h := newHarness(t, "")
	alice := h.driving("alice", chrome.URL)
	mustCall(t, alice, "navigate_page", map[string]any{"url": pages + "/"})
	before := pageIDs(t, chrome)

	port := strconv.Itoa(chrome.Port)
	ws := chrome.WSURL(t)
	spellings := []string{
		"http://localhost:" + port,
		"http://[::ffff:127.0.0.1]:" + port,
		"http://127.1:" + port,
		"HTTP://LOCALHOST.:" + port,
		ws,
		"ws://localhost:" + port + "/devtools/browser/other",
		"https://127.0.0.1:" + port,
		"http://[::1]:" + port,
		"http://127.0.0.2:" + port,
	}
	bobTok := h.token("bob")
	for _, u := range spellings {
		status, body := registerRaw(t, h, bobTok, "bob", u)
		if status != http.StatusConflict || !strings.Contains(body, `"code":"CONFLICT"`) {
			t.Errorf("bob registering %s: %d %s; want 409 CONFLICT", u, status, body)
		}
		if strings.Contains(body, "alice") {
			t.Errorf("the 409 for %s names the owner: %s", u, body)
		}
	}
	if _, err := h.store.Get(context.Background(), "bob"); err == nil {
		t.Error("a conflicting registration of bob was stored")
	}
	if _, ok := h.pool.Get("bob"); ok {
		t.Error("the pool holds a browser for bob")
	}
	if n := deniedFor(h, "bob", "another user"); n < len(spellings) {
		t.Errorf("%d refusals of bob audited, want %d:\n%s", n, len(spellings), h.logs.String())
	}
	// alice still drives her browser, and her tabs are as they were.
	if out := mustCall(t, alice, "list_pages", nil); !strings.Contains(out, "Test page") {
		t.Errorf("alice's list_pages after the refusals: %q", out)
	}
	if after := pageIDs(t, chrome); !slices.Equal(before, after) {
		t.Errorf("alice's tabs changed: %v -> %v", before, after)
	}
}

// TestRegisterSameBrowserThroughForward: bob reaches alice's Chrome
// through a port forward on another loopback port. No spelling gives it
// away; the browser's identity does, and bob is refused before any tool
// of his runs there.
func TestRegisterSameBrowserThroughForward(t *testing.T) {
	chrome := testchrome.Start(t)
	pages := testPages(t)
	h := newHarness(t, "")
	alice := h.driving("alice", chrome.URL)
	mustCall(t, alice, "navigate_page", map[string]any{"url": pages + "/"})
	before := pageIDs(t, chrome)

	fwd := testfwd.Start(t, "127.0.0.1:"+strconv.Itoa(chrome.Port))
	bobTok := h.token("bob")
	status, body := registerRaw(t, h, bobTok, "bob", fwd.URL)
	if status != http.StatusConflict || !strings.Contains(body, `"code":"CONFLICT"`) || !strings.Contains(body, "another user") {
		t.Fatalf("bob registering alice's browser through a forward: %d %s; want 409 CONFLICT", status, body)
	}
	if strings.Contains(body, "alice") {
		t.Errorf("the 409 names the owner: %s", body)
	}
	if fwd.Total() == 0 {
		t.Fatal("the proxy never went through the forward: the test proves nothing")
	}
	waitFor(t, "bob's connection through the forward to be dropped", func() bool { return fwd.Active() == 0 })
	if _, err := h.store.Get(context.Background(), "bob"); err == nil {
		t.Error("the refused registration of bob was kept")
	}
	if n := deniedFor(h, "bob", "another user"); n != 1 {
		t.Errorf("%d refusals of bob audited, want 1:\n%s", n, h.logs.String())
	}
	// bob's tools do not reach alice's browser.
	bob := h.connect(viaStreamable, bobTok, "")
	if text, res := call(t, bob, "new_page", map[string]any{"url": pages + "/two"}); !res.IsError {
		t.Errorf("bob's new_page ran: %q", text)
	}
	if after := pageIDs(t, chrome); !slices.Equal(before, after) {
		t.Errorf("alice's tabs changed: %v -> %v", before, after)
	}
	if out := mustCall(t, alice, "list_pages", nil); !strings.Contains(out, "Test page") {
		t.Errorf("alice's list_pages: %q", out)
	}

	// A refused change of registration gives bob back the one he had.
	dead := deadURL(t)
	mine := h.register(bobTok, "bob", dead)
	was, _ := h.store.Get(context.Background(), "bob")
	if status, body := registerRaw(t, h, bobTok, "bob", fwd.URL); status != http.StatusConflict {
		t.Fatalf("bob moving to alice's browser: %d %s", status, body)
	}
	got, err := h.store.Get(context.Background(), "bob")
	if err != nil || got.BrowserURL != mine.BrowserURL || !got.CreatedAt.Equal(was.CreatedAt) {
		t.Errorf("bob's registration after the refused change: %+v, %v; want %s registered at %v", got, err, dead, was.CreatedAt)
	}
	if b, ok := h.pool.Get("bob"); !ok || b.URL() != dead {
		t.Errorf("the pool does not hold bob's previous browser again")
	}
}

// TestSameBrowserFoundLater: bob registers a forward to alice's Chrome
// while the forward is down (201, not connected). When it comes up, the
// identity check keeps bob off alice's browser: his status says the
// browser belongs to another user, his tools fail clearly, and the order
// holds after a proxy restart.
func TestSameBrowserFoundLater(t *testing.T) {
	chrome := testchrome.Start(t)
	pages := testPages(t)
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.driving("alice", chrome.URL)
	fwd := testfwd.Start(t, "127.0.0.1:"+strconv.Itoa(chrome.Port))
	fwd.SetEnabled(false)
	bobTok := h.token("bob")
	if reg := h.register(bobTok, "bob", fwd.URL); reg.BrowserStatus == "connected" {
		t.Fatalf("bob connected through a closed forward: %+v", reg)
	}
	before := pageIDs(t, chrome)
	fwd.SetEnabled(true)
	b, _ := h.pool.Get("bob")
	b.Retry()
	waitFor(t, "bob's browser to be found to be alice's", func() bool { return b.Status().State == "conflict" })
	var st UserStatus
	if resp := h.do(http.MethodGet, "/api/users/bob/status", bobTok, nil, &st); resp.StatusCode != 200 ||
		st.BrowserStatus != "conflict" || !strings.Contains(st.BrowserError, "another user") || strings.Contains(st.BrowserError, "alice") {
		t.Errorf("bob's status: %d %+v", resp.StatusCode, st)
	}
	waitFor(t, "bob's connection through the forward to be dropped", func() bool { return fwd.Active() == 0 })
	waitFor(t, "the conflict to be audited", func() bool {
		return strings.Contains(h.logs.String(), `"event":"browser_conflict"`)
	})
	bob := h.connect(viaStreamable, bobTok, "")
	text, res := call(t, bob, "new_page", map[string]any{"url": pages + "/two"})
	if !res.IsError || !strings.Contains(text, "another user") || strings.Contains(text, "alice") {
		t.Errorf("bob's new_page on alice's browser: %v %q", res.IsError, text)
	}
	if after := pageIDs(t, chrome); !slices.Equal(before, after) {
		t.Errorf("alice's tabs changed: %v -> %v", before, after)
	}

	// After a restart, alice (registered first) still has it, whoever
	// connects first.
	h.mgr.CloseAll()
	h.pool.Close()
	h.store.Close()
	h2 := newHarness(t, dir)
	a2, _ := h2.pool.Get("alice")
	b2, _ := h2.pool.Get("bob")
	waitFor(t, "bob's browser to be found to be alice's after the restart", func() bool { return b2.Status().State == "conflict" })
	if st := a2.WaitSettled(context.Background(), 10*time.Second); st.State != "connected" {
		t.Errorf("alice after the restart: %+v", st)
	}
	if st := b2.Status(); st.State != "conflict" || st.Generation != 0 {
		t.Errorf("bob after the restart: %+v (he must never have connected)", st)
	}
}

// TestRebindAcrossRestartCannotTakeAHeldBrowser: bob registers a name of
// his own first, while it points at another host (10.255.255.1: stored
// directly, never dialled), alice her browser later; bob then re-points
// his name at alice's browser and waits for the proxy to restart.
// Restored, his senior registration must still not reach alice's browser
// through an address his name did not have when he registered: alice
// keeps it, bob never connects.
func TestRebindAcrossRestartCannotTakeAHeldBrowser(t *testing.T) {
	chrome := testchrome.Start(t)
	dir := t.TempDir()
	res := testdns.New("127.0.0.1")
	withResolver := func(c *Config) {
		pol, err := router.NewPolicy(router.DefaultAllowCIDRs(), router.DefaultDenyCIDRs(), nil, res)
		if err != nil {
			t.Fatal(err)
		}
		c.Security.BrowserPolicy = pol
	}
	h := buildHarness(t, harnessSetup{dataDir: dir, edit: withResolver})
	bobURL := "http://bob.test:" + strconv.Itoa(chrome.Port)
	if _, err := h.store.Put(context.Background(), router.Registration{UserID: "bob", BrowserURL: bobURL,
		Addrs: []netip.Addr{netip.MustParseAddr("10.255.255.1")}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // alice registers strictly later
	h.driving("alice", chrome.URL)
	before := pageIDs(t, chrome)

	h.mgr.CloseAll()
	h.pool.Close()
	h.store.Close()
	h2 := buildHarness(t, harnessSetup{dataDir: dir, edit: withResolver})
	a2, _ := h2.pool.Get("alice")
	b2, ok := h2.pool.Get("bob")
	if !ok {
		t.Fatal("bob's registration was not restored")
	}
	if st := a2.WaitSettled(context.Background(), 10*time.Second); st.State != "connected" {
		t.Errorf("alice after the restart: %+v", st)
	}
	if st := b2.WaitSettled(context.Background(), 10*time.Second); st.State == "connected" || st.Generation != 0 {
		t.Errorf("bob after the restart: %+v (he must never have connected)", st)
	}
	if st := a2.Status(); st.State != "connected" {
		t.Errorf("alice lost her browser to bob's re-pointed name: %+v", st)
	}
	if after := pageIDs(t, chrome); !slices.Equal(before, after) {
		t.Errorf("alice's tabs changed: %v -> %v", before, after)
	}
}
