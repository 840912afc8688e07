package proxy

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// consoleErrors collects what a page reports as errors: console.error
// calls and uncaught exceptions.
type consoleErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (ce *consoleErrors) listen(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var parts []string
		for _, a := range e.Args {
			parts = append(parts, string(a.Value)+a.Description)
		}
		msg = "console." + string(e.Type) + ": " + strings.Join(parts, " ")
	case *runtime.EventExceptionThrown:
		msg = "exception: " + e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
	default:
		return
	}
	ce.mu.Lock()
	ce.msgs = append(ce.msgs, msg)
	ce.mu.Unlock()
}

func (ce *consoleErrors) list() []string {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	return append([]string(nil), ce.msgs...)
}

// TestDashboardEndToEnd loads the dashboard in a headless Chromium, signs
// in with an admin token, sees a registered user (with a real browser) and
// its open MCP session with a tab, takes the tab's thumbnail, closes the
// session through the page, and checks that it is gone from the API and
// from the page; the page logs no error on the way. With
// MBP_DASHBOARD_SHOTS=dir it saves screenshots at laptop and phone widths.
func TestDashboardEndToEnd(t *testing.T) {
	h := buildHarness(t, harnessSetup{edit: func(c *Config) { c.EventsInterval = 200 * time.Millisecond }})
	userChrome := testchrome.Start(t)
	pages := testPages(t)
	mcp := h.driving("alice", userChrome.URL)
	mustCall(t, mcp, "navigate_page", map[string]any{"url": pages})
	var before []SessionInfo
	h.do(http.MethodGet, "/api/sessions?user=alice", h.token("root", auth.PermAdmin), nil, &before)
	if len(before) != 1 || len(before[0].Tabs) != 1 {
		t.Fatalf("alice's sessions before: %+v, want one with one tab", before)
	}
	sid := before[0].ID

	dash := testchrome.Start(t)
	actx, acancel := remote.NewAllocator(context.Background(), dash.URL)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	var errs consoleErrors
	tctx, tcancel := chromedp.NewContext(bctx, chromedp.WithNewWindow(false), chromedp.WithListener(errs.listen))
	defer tcancel()
	if err := chromedp.Do(tctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(tctx, 60*time.Second)
	defer cancel()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v (page errors: %v)", what, err, errs.list())
		}
	}
	admin := h.token("root", auth.PermRead, auth.PermWrite, auth.PermAdmin)
	sessionSel := fmt.Sprintf(`[data-session=%q]`, sid)
	run("sign in",
		chromedp.EmulateViewport(1366, 768),
		chromedp.Navigate(h.URL+"/"),
		chromedp.WaitVisible(`#token`),
		chromedp.SendKeys(`#token`, admin),
		chromedp.Click(`#signin-form button[type=submit]`),
		chromedp.WaitVisible(`[data-user="alice"]`),
		chromedp.WaitVisible(sessionSel),
	)
	state, err := chromedp.Run(ctx, chromedp.Text(`[data-user="alice"] .badge`))
	if err != nil || state != "connected" {
		t.Errorf("alice's state on the page: %q (%v), want connected", state, err)
	}
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("mbp.token")`))
	if err != nil || stored != admin {
		t.Errorf("sessionStorage mbp.token holds %d bytes (%v), want the admin token", len(stored), err)
	}
	run("thumbnail",
		chromedp.Click(sessionSel+` [data-action=screenshot]`),
		chromedp.WaitVisible(sessionSel+` .tab img`),
	)
	if dir := os.Getenv("MBP_DASHBOARD_SHOTS"); dir != "" {
		shoot(t, ctx, dir, "laptop", 1366, 768)
		shoot(t, ctx, dir, "phone", 390, 844)
		run("laptop width again", chromedp.EmulateViewport(1366, 768))
	}
	run("close the session",
		chromedp.Click(sessionSel+` [data-action=close-session]`), // arms the button
		chromedp.WaitVisible(sessionSel+` [data-action=close-session].armed`),
		chromedp.Click(sessionSel+` [data-action=close-session]`),
		chromedp.WaitNotPresent(sessionSel),
	)
	var after []SessionInfo
	h.do(http.MethodGet, "/api/sessions?user=alice", admin, nil, &after)
	for _, s := range after {
		if s.ID == sid {
			t.Errorf("session %s still open after the page closed it: %+v", sid, after)
		}
	}
	// The next live update (and a fresh render) must not bring it back.
	run("still gone", chromedp.Poll[chromedp.Void](`document.querySelector('#live').textContent === 'live'`, chromedp.WithPollingTimeout(10*time.Second)))
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sessionSel))); err != nil || n != 0 {
		t.Errorf("the closed session is on the page again (%d, %v)", n, err)
	}
	if !strings.Contains(h.logs.String(), `"event":"session_close_api"`) {
		t.Error("closing through the page was not audited")
	}
	if got := errs.list(); len(got) > 0 {
		t.Errorf("the dashboard logged errors: %q", got)
	}
	// The listener hears errors at all: a probe must show up.
	run("probe", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`console.error("probe")`))
		return err
	}))
	deadline := time.Now().Add(10 * time.Second)
	for len(errs.list()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := errs.list(); len(got) != 1 || !strings.Contains(got[0], "probe") {
		t.Errorf("console.error probe: heard %q, want the probe alone", got)
	}
}

// shoot saves a PNG of the dashboard at width x height into dir.
func shoot(t *testing.T, ctx context.Context, dir, name string, width, height int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mobile := width < 600
	var opts []chromedp.EmulateViewportOption
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height, opts...)); err != nil {
		t.Fatalf("viewport %s: %v", name, err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dashboard-"+name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
