package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// oopifServer serves the pages of routes on a port of its own on 127.0.0.1,
// and returns the port; pages reach it as http://127.0.0.1:port/ or
// http://localhost:port/, which are different sites.
func oopifServer(t *testing.T, routes map[string]string) string {
	t.Helper()
	mux := http.NewServeMux()
	for path, body := range routes {
		mux.HandleFunc(path, htmlPage(body))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://127.0.0.1:")
}

// htmlPage serves an HTML page with body.
func htmlPage(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><html><body>"+body+"</body></html>")
	}
}

// iframeTargets lists the URLs of the browser's out-of-process iframe
// targets, straight from /json/list.
func iframeTargets(t *testing.T, browserURL string) []string {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(browserURL + "/json/list")
	if err != nil {
		t.Fatalf("json/list: %v", err)
	}
	defer resp.Body.Close()
	var all []struct{ Type, URL string }
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatalf("json/list: %v", err)
	}
	var urls []string
	for _, tg := range all {
		if tg.Type == "iframe" {
			urls = append(urls, tg.URL)
		}
	}
	return urls
}

// frameWatchers counts the goroutines that keep frame attachments (one per
// attached cross-site frame) or make them.
func frameWatchers() int {
	var dump bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&dump, 2)
	n := 0
	for _, g := range strings.Split(dump.String(), "\n\n") {
		if strings.Contains(g, "tools.(*TabState).watchFrame(") || strings.Contains(g, "tools.(*TabState).attachEager(") {
			n++
		}
	}
	return n
}

// snapLine returns the line of snap with uid.
func snapLine(t *testing.T, snap, uid string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^.*uid=` + uid + ` .*$`).FindString(snap)
	if m == "" {
		t.Fatalf("no uid=%s in snapshot:\n%s", uid, snap)
	}
	return m
}

func indentOf(line string) int { return len(line) - len(strings.TrimLeft(line, " ")) }

// TestOOPIFSnapshotAndInput drives cross-site iframes, which Chromium runs in
// processes of their own, through the snapshot and the uid-taking tools.
func TestOOPIFSnapshotAndInput(t *testing.T) {
	files := t.TempDir()
	chrome := testchrome.Start(t)
	h := newHarnessWith(t, "", session.Config{FilesDir: files})
	cl := h.driving("alice", chrome.URL)
	deep := oopifServer(t, map[string]string{"/": `<p>Deep frame</p>
<button onclick="this.textContent = 'Deep clicked'">Deep button</button>`})
	frame := oopifServer(t, map[string]string{
		"/": `<h2>Payment</h2>
<button style="background:#f0f;color:#f0f;border:0;width:120px;height:40px" onclick="document.getElementById('st').textContent = 'Frame clicked ' + (++window.n || (window.n = 1))">Frame button</button>
<p id="st">Frame idle</p>
<label>Card <input id="card"></label>
<button onmouseenter="this.textContent = 'Hovered'">Hover me</button>
<button onclick="this.textContent = confirm('Pay now?') ? 'Paid' : 'Not paid'">Pay</button>
<div role="button" aria-label="Drag source" onmousedown="window.dragging = true" style="width:60px;height:30px;background:#0f0"></div>
<div role="region" aria-label="Drop target" onmouseup="if (window.dragging) this.setAttribute('aria-label', 'Dropped here')" style="width:120px;height:40px;margin-top:20px;background:#00f"></div>
<label>Doc <input type="file" id="doc"></label>
<div style="height:700px"></div>
<button onclick="this.textContent = 'Far clicked'">Far button</button>`,
		"/nested": `<p>Middle frame</p>
<iframe src="http://127.0.0.1:` + deep + `/" width="300" height="120" style="margin:15px;border:4px solid #000"></iframe>`,
	})
	top := oopifServer(t, map[string]string{
		"/": `<h1>Shop</h1><label>Top input <input id="top"></label>
<div style="height:1200px"></div>
<iframe src="http://localhost:` + frame + `/" title="Pay" width="500" height="300" style="margin:40px;border:7px solid #333;padding:5px"></iframe>`,
		"/nested": `<h1>Nest</h1>
<iframe src="http://localhost:` + frame + `/nested" title="Middle" width="450" height="250" style="margin:25px;border:3px solid #333"></iframe>`,
		"/other": `<p>Other page</p>`,
	})
	topURL := "http://127.0.0.1:" + top

	mustCall(t, cl, "navigate_page", map[string]any{"url": topURL + "/"})
	// The frame is out of process: Chromium lists it as a target of its own.
	browser := chrome.URL
	waitFor(t, "the cross-site frame's target", func() bool {
		urls := iframeTargets(t, browser)
		return len(urls) == 1 && strings.HasPrefix(urls[0], "http://localhost:"+frame+"/")
	})

	snap := mustCall(t, cl, "take_snapshot", nil)
	if strings.Contains(snap, "not available") {
		t.Fatalf("the cross-site frame was left out:\n%s", snap)
	}
	iframe := inputUID(t, snap, `Iframe "Pay"`)
	btn, card := inputUID(t, snap, `button "Frame button"`), inputUID(t, snap, `textbox "Card"`)
	hover, doc, far := inputUID(t, snap, `button "Hover me"`), inputUID(t, snap, `button "Doc"`), inputUID(t, snap, `button "Far button"`)
	topInput := inputUID(t, snap, `textbox "Top input"`)
	for _, uid := range []string{btn, card, hover} {
		if line := snapLine(t, snap, uid); indentOf(line) <= indentOf(snapLine(t, snap, iframe)) ||
			strings.Index(snap, line) < strings.Index(snap, snapLine(t, snap, iframe)) {
			t.Errorf("%q is not under the iframe's line in:\n%s", line, snap)
		}
	}
	if frameWatchers() == 0 {
		t.Error("no frame attachment after a snapshot of a cross-site frame")
	}

	// A click lands inside the frame, below the fold of the page.
	inputWant(t, "click", mustCall(t, cl, "click", map[string]any{"uid": btn}), "Clicked uid="+btn, "The page changed")
	snap2 := mustCall(t, cl, "take_snapshot", nil)
	inputWant(t, "snapshot after click", snap2, `"Frame clicked 1"`)
	if got := inputUID(t, snap2, `button "Frame button"`); got != btn {
		t.Errorf("the frame's button changed uid across snapshots: %s then %s", btn, got)
	}
	if got := inputUID(t, snap2, `textbox "Top input"`); got != topInput {
		t.Errorf("the page's input changed uid across snapshots: %s then %s", topInput, got)
	}
	mustCall(t, cl, "click", map[string]any{"uid": btn, "dblClick": true})
	inputWant(t, "snapshot after double click", mustCall(t, cl, "take_snapshot", nil), `"Frame clicked 3"`)

	// A node below the fold of the frame itself.
	mustCall(t, cl, "click", map[string]any{"uid": far})
	inputWant(t, "snapshot after far click", mustCall(t, cl, "take_snapshot", nil), `button "Far clicked"`)

	// Focus starts in the page; fill moves it into the frame, where typed
	// text then lands.
	mustCall(t, cl, "click", map[string]any{"uid": topInput})
	mustCall(t, cl, "fill", map[string]any{"uid": card, "value": "4242"})
	mustCall(t, cl, "type_text", map[string]any{"text": " 42"})
	inputWant(t, "snapshot after fill and type_text", mustCall(t, cl, "take_snapshot", nil), `textbox "Card" value="4242 42"`)
	if got := inputEval(t, cl, `() => document.getElementById('top').value`); got != `""` {
		t.Errorf("typing meant for the frame reached the page's input: %s", got)
	}
	out := mustCall(t, cl, "evaluate_script", map[string]any{"function": "(el) => [el.value, location.host]", "args": []any{map[string]any{"uid": card}}})
	inputWant(t, "evaluate_script in the frame", out, `["4242 42","localhost:`+frame+`"]`)
	text, res := call(t, cl, "evaluate_script", map[string]any{"function": "(a, b) => 1", "args": []any{map[string]any{"uid": topInput}, map[string]any{"uid": card}}})
	if !res.IsError || !strings.Contains(text, "different frames") {
		t.Errorf("evaluate_script with args in two frames: error=%v %q", res.IsError, text)
	}
	mustCall(t, cl, "fill_form", map[string]any{"elements": []any{
		map[string]any{"uid": topInput, "value": "page"}, map[string]any{"uid": card, "value": "frame"},
	}})
	if got := inputEval(t, cl, `() => document.getElementById('top').value`); got != `"page"` {
		t.Errorf("fill_form across frames: the page's input is %s", got)
	}
	inputWant(t, "snapshot after fill_form", mustCall(t, cl, "take_snapshot", nil), `textbox "Card" value="frame"`)
	// A click focuses too: keys go to the frame's input.
	mustCall(t, cl, "click", map[string]any{"uid": topInput})
	mustCall(t, cl, "click", map[string]any{"uid": card})
	mustCall(t, cl, "press_key", map[string]any{"key": "End"})
	mustCall(t, cl, "type_text", map[string]any{"text": "!"})
	inputWant(t, "snapshot after click and type_text", mustCall(t, cl, "take_snapshot", nil), `textbox "Card" value="frame!"`)

	inputWant(t, "hover", mustCall(t, cl, "hover", map[string]any{"uid": hover}), "The page changed")
	inputWant(t, "hover again", mustCall(t, cl, "hover", map[string]any{"uid": hover}), "The page did not change")
	inputWant(t, "snapshot after hover", mustCall(t, cl, "take_snapshot", nil), `button "Hovered"`)

	// A dialog of the frame is the page's to handle.
	inputWant(t, "click that opens a dialog", mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `button "Pay"`)}),
		`confirm dialog is open: "Pay now?"`, "handle_dialog")
	mustCall(t, cl, "handle_dialog", map[string]any{"action": "accept"})
	snap = mustCall(t, cl, "take_snapshot", nil)
	inputWant(t, "snapshot after the frame's dialog", snap, `button "Paid"`)
	mustCall(t, cl, "drag", map[string]any{"from_uid": inputUID(t, snap, `button "Drag source"`), "to_uid": inputUID(t, snap, `region "Drop target"`)})
	inputWant(t, "snapshot after drag", mustCall(t, cl, "take_snapshot", nil), `region "Dropped here"`)

	// The screenshot of the frame's button is the button: all magenta.
	_, res = call(t, cl, "take_screenshot", map[string]any{"uid": btn})
	if res.IsError {
		t.Fatalf("take_screenshot of a frame's element failed: %+v", res.Content)
	}
	var img mcp.ImageContent
	for _, c := range res.Content {
		if i, ok := c.(mcp.ImageContent); ok {
			img = i
		}
	}
	if img.Data == "" {
		t.Fatalf("take_screenshot returned no image: %+v", res.Content)
	}
	raw, _ := base64.StdEncoding.DecodeString(img.Data)
	pic, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	b := pic.Bounds()
	if b.Dx() < 100 || b.Dx() > 140 || b.Dy() < 30 || b.Dy() > 50 {
		t.Errorf("screenshot of a 120x40 button is %dx%d", b.Dx(), b.Dy())
	}
	for _, p := range [][2]int{{b.Dx() / 2, b.Dy() / 2}, {b.Dx() / 4, b.Dy() / 4}, {3 * b.Dx() / 4, 3 * b.Dy() / 4}} {
		r, g, bl, _ := pic.At(b.Min.X+p[0], b.Min.Y+p[1]).RGBA()
		if r>>8 < 230 || g>>8 > 30 || bl>>8 < 230 {
			t.Errorf("screenshot pixel %v is %d,%d,%d, not the button's magenta", p, r>>8, g>>8, bl>>8)
		}
	}
	inputWant(t, "get_css_styles", mustCall(t, cl, "get_css_styles", map[string]any{"uid": btn, "properties": []any{"background-color"}}),
		"background-color: rgb(255, 0, 255)")

	dir := filepath.Join(files, "alice")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "card.txt"), []byte("card"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCall(t, cl, "upload_file", map[string]any{"uid": doc, "filePaths": []any{"card.txt"}})
	out = mustCall(t, cl, "evaluate_script", map[string]any{"function": "(el) => el.files[0].name", "args": []any{map[string]any{"uid": doc}}})
	inputWant(t, "file input in the frame", out, `"card.txt"`)

	// A new top document makes every uid stale, the frame's too, and ends
	// the frame's attachment (the old document may stay in the back-forward
	// cache, its frame with it).
	mustCall(t, cl, "navigate_page", map[string]any{"url": topURL + "/other"})
	for _, uid := range []string{btn, topInput} {
		text, res := call(t, cl, "click", map[string]any{"uid": uid})
		if !res.IsError || !strings.Contains(text, "take_snapshot") {
			t.Errorf("click on uid %s from before a navigation: error=%v %q", uid, res.IsError, text)
		}
	}
	waitFor(t, "the frame attachment to end with the page's document", func() bool { return frameWatchers() == 0 })

	// A frame removed from the page takes its uids and its attachment along.
	mustCall(t, cl, "navigate_page", map[string]any{"url": topURL + "/"})
	btn = inputUID(t, mustCall(t, cl, "take_snapshot", nil), `button "Frame button"`)
	mustCall(t, cl, "evaluate_script", map[string]any{"function": "() => document.querySelector('iframe').remove()"})
	text, res = call(t, cl, "click", map[string]any{"uid": btn})
	if !res.IsError || !strings.Contains(text, "take_snapshot") {
		t.Errorf("click on a removed frame's button: error=%v %q", res.IsError, text)
	}
	waitFor(t, "the frame attachment to end with its frame", func() bool { return frameWatchers() == 0 })

	// A cross-site frame inside a cross-site frame.
	mustCall(t, cl, "navigate_page", map[string]any{"url": topURL + "/nested"})
	waitFor(t, "both frames' targets", func() bool { return len(iframeTargets(t, browser)) == 2 })
	snap = mustCall(t, cl, "take_snapshot", nil)
	deepBtn := inputUID(t, snap, `button "Deep button"`)
	middle := snapLine(t, snap, inputUID(t, snap, `Iframe "Middle"`))
	if d, m := snapLine(t, snap, deepBtn), snapLine(t, snap, inputUID(t, snap, `"Middle frame"`)); indentOf(d) <= indentOf(m) || indentOf(m) <= indentOf(middle) {
		t.Errorf("nested frames are not indented under their iframes:\n%s", snap)
	}
	mustCall(t, cl, "click", map[string]any{"uid": deepBtn})
	inputWant(t, "snapshot after a click in the nested frame", mustCall(t, cl, "take_snapshot", nil), `button "Deep clicked"`)

	// The attachments end with the tab.
	mustCall(t, cl, "close_page", map[string]any{"pageId": 1})
	waitFor(t, "the frame attachments to end with the tab", func() bool { return frameWatchers() == 0 })
}
