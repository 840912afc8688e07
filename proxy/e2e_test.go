package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

var buttonUID = regexp.MustCompile(`uid=(\d+) button "Press me"`)
var nameUID = regexp.MustCompile(`uid=(\d+) textbox "Name"`)
var colorUID = regexp.MustCompile(`uid=(\d+) combobox "Color"`)

// TestEndToEnd registers two browsers for two users, drives alice's over
// every transport, and checks bob's browser is never touched.
func TestEndToEnd(t *testing.T) {
	aliceChrome, bobChrome := testchrome.Start(t), testchrome.Start(t)
	pages := testPages(t)
	h := newHarness(t, "")

	aliceTok, bobTok := h.token("alice"), h.token("bob")
	reg := h.register(aliceTok, "alice", aliceChrome.URL)
	if reg.BrowserStatus != "connected" || reg.SessionToken == "" || !reg.Success {
		t.Fatalf("register alice: %+v", reg)
	}
	// The sessionToken works as alice's bearer token.
	if p, err := h.authn.Verify(reg.SessionToken); err != nil || p.UserID != "alice" {
		t.Fatalf("sessionToken: %v %+v", err, p)
	}
	if r := h.register(bobTok, "bob", bobChrome.WSURL(t)); r.BrowserStatus != "connected" {
		t.Fatalf("register bob: %+v", r)
	}

	bobBefore := bobChrome.Pages(t)
	aliceBefore := aliceChrome.Pages(t)

	for _, kind := range []transportKind{viaSSE, viaStreamable, viaStateless} {
		t.Run(string(kind), func(t *testing.T) {
			c := h.connect(kind, reg.SessionToken, "alice")
			drive(t, c, pages)
			// Closing the session closes the tabs it opened, and only those.
			if kind == viaStateless {
				h.mgr.CloseUser("alice")
			} else {
				c.Close()
			}
			waitFor(t, "alice's proxy tabs closed", func() bool { return len(aliceChrome.Pages(t)) == len(aliceBefore) })
		})
	}

	// alice's own tab was never navigated or closed.
	aliceAfter := aliceChrome.Pages(t)
	if len(aliceAfter) != 1 || aliceAfter[0].ID != aliceBefore[0].ID || aliceAfter[0].URL != aliceBefore[0].URL {
		t.Errorf("alice's own tab changed: before %+v after %+v", aliceBefore, aliceAfter)
	}
	// bob's browser saw no new tab and no navigation.
	bobAfter := bobChrome.Pages(t)
	if len(bobAfter) != len(bobBefore) || bobAfter[0].URL != bobBefore[0].URL {
		t.Errorf("bob's browser changed: before %+v after %+v", bobBefore, bobAfter)
	}

	var st UserStatus
	if resp := h.do(http.MethodGet, "/api/users/alice/status", aliceTok, nil, &st); resp.StatusCode != 200 {
		t.Fatalf("status: %d", resp.StatusCode)
	}
	if st.BrowserStatus != "connected" || st.UserID != "alice" || st.BrowserURL != aliceChrome.URL {
		t.Errorf("status: %+v", st)
	}
	var health Health
	h.do(http.MethodGet, "/health", "", nil, &health)
	if health.Status != "ok" || health.RegisteredUsers != 2 || health.BrowserConnections != 2 {
		t.Errorf("health: %+v", health)
	}
}

// drive runs the core tools against the test pages through c.
func drive(t *testing.T, c *client.Client, pages string) {
	if text := mustCall(t, c, "list_pages", nil); !strings.Contains(text, "no pages yet") {
		t.Errorf("list_pages on a new session: %q", text)
	}
	if text := mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/"}); !strings.Contains(text, `"Test page"`) {
		t.Errorf("navigate_page: %q", text)
	}
	snap := mustCall(t, c, "take_snapshot", nil)
	m := buttonUID.FindStringSubmatch(snap)
	if m == nil {
		t.Fatalf("no button in snapshot:\n%s", snap)
	}
	if !strings.Contains(snap, `heading "Hello"`) || !strings.Contains(snap, `"Not yet"`) {
		t.Errorf("snapshot lacks content:\n%s", snap)
	}
	mustCall(t, c, "click", map[string]any{"uid": m[1]})
	snap2 := mustCall(t, c, "take_snapshot", nil)
	if !strings.Contains(snap2, "Clicked!") {
		t.Errorf("page did not change after click:\n%s", snap2)
	}
	if m2 := buttonUID.FindStringSubmatch(snap2); m2 == nil || m2[1] != m[1] {
		t.Errorf("button uid changed between snapshots of one document: %v then %v", m, m2)
	}

	name, color := nameUID.FindStringSubmatch(snap2), colorUID.FindStringSubmatch(snap2)
	if name == nil || color == nil {
		t.Fatalf("no textbox/combobox in snapshot:\n%s", snap2)
	}
	mustCall(t, c, "fill", map[string]any{"uid": name[1], "value": "Ada"})
	mustCall(t, c, "fill", map[string]any{"uid": color[1], "value": "Blue"})
	out := mustCall(t, c, "evaluate_script", map[string]any{"function": `() => [document.getElementById('name').value, document.getElementById('color').value]`})
	if !strings.Contains(out, `["Ada","Blue"]`) {
		t.Errorf("evaluate_script after fill: %q", out)
	}
	if out := mustCall(t, c, "wait_for", map[string]any{"text": []any{"never there", "Clicked!"}, "timeout": 5000}); !strings.Contains(out, `"Clicked!"`) {
		t.Errorf("wait_for: %q", out)
	}
	if _, res := call(t, c, "wait_for", map[string]any{"text": "absent text", "timeout": 200}); !res.IsError {
		t.Error("wait_for of absent text did not fail")
	}

	_, res := call(t, c, "take_screenshot", nil)
	if res.IsError || len(res.Content) == 0 {
		t.Fatalf("take_screenshot: %+v", res)
	}
	var png []byte
	for _, ct := range res.Content {
		if img, ok := ct.(mcp.ImageContent); ok {
			png, _ = base64.StdEncoding.DecodeString(img.Data)
		}
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Errorf("take_screenshot did not return a PNG (%d bytes)", len(png))
	}

	link := regexp.MustCompile(`uid=(\d+) link "Go to two"`).FindStringSubmatch(snap2)
	if link == nil {
		t.Fatalf("no link in snapshot:\n%s", snap2)
	}
	if out := mustCall(t, c, "click", map[string]any{"uid": link[1]}); !strings.Contains(out, "navigated to") {
		t.Errorf("click on a link did not report the navigation: %q", out)
	}
	if text, res := call(t, c, "click", map[string]any{"uid": m[1]}); !res.IsError || !strings.Contains(text, "take_snapshot") {
		t.Errorf("stale uid: error=%v %q", res.IsError, text)
	}
	if out := mustCall(t, c, "navigate_page", map[string]any{"type": "back"}); !strings.Contains(out, `"Test page"`) {
		t.Errorf("navigate back: %q", out)
	}

	// A second page, selection, and closing.
	mustCall(t, c, "new_page", map[string]any{"url": pages + "/two"})
	list := mustCall(t, c, "list_pages", nil)
	// Page ids count from 1 in a session; the stateless protocol's default
	// workspace hands out random page handles instead.
	first := regexp.MustCompile(`(?m)^(\d+): "Test page"`).FindStringSubmatch(list)
	second := regexp.MustCompile(`(?m)^(\d+): "Two"`).FindStringSubmatch(list)
	if first == nil || second == nil || !strings.Contains(list, "/two [selected]") {
		t.Fatalf("list_pages: %q", list)
	}
	p1, _ := strconv.Atoi(first[1])
	p2, _ := strconv.Atoi(second[1])
	mustCall(t, c, "select_page", map[string]any{"pageId": p1})
	// Page 1 is now hidden behind page 2; input must still work at once.
	snap3 := mustCall(t, c, "take_snapshot", nil)
	if m3 := buttonUID.FindStringSubmatch(snap3); m3 == nil {
		t.Errorf("no button after going back:\n%s", snap3)
	} else {
		mustCall(t, c, "click", map[string]any{"uid": m3[1]})
	}
	if out := mustCall(t, c, "evaluate_script", map[string]any{"function": "() => document.title"}); !strings.Contains(out, `"Test page"`) {
		t.Errorf("selected page: %q", out)
	}
	mustCall(t, c, "close_page", map[string]any{"pageId": p2})
	if text, res := call(t, c, "evaluate_script", map[string]any{"function": "() => 1", "pageId": p2}); !res.IsError || !strings.Contains(text, "list_pages") {
		t.Errorf("closed page still usable: %q", text)
	}
	if text, res := call(t, c, "evaluate_script", map[string]any{"function": "() => { throw new Error('boom') }"}); !res.IsError || !strings.Contains(text, "boom") {
		t.Errorf("throwing script: %q", text)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sseSessionID opens a raw SSE stream and returns the session ID of its
// endpoint event, and a func that closes the stream.
func sseSessionID(t *testing.T, h *harness, token string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("GET /sse: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.Contains(data, "sessionId=") {
			_, id, _ := strings.Cut(data, "sessionId=")
			return id, func() { cancel(); resp.Body.Close() }
		}
	}
	cancel()
	t.Fatal("no endpoint event")
	return "", nil
}
