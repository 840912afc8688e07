package proxy

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// corePages serves a page with a same-origin iframe and a long list.
func corePages(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/frames", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Frames</title><h1>Outer</h1>
<iframe src="/inner" title="inner frame" width="300" height="120"></iframe>
<div id="box" style="width:40px;height:30px;background:red">box</div>`)
	})
	mux.HandleFunc("/inner", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Inner</title><button onclick="this.textContent='Inner clicked'">Inner button</button>`)
	})
	mux.HandleFunc("/long", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Long</title><ul>`)
		for i := range 500 {
			io.WriteString(w, "<li><button>Item number "+strings.Repeat("x", i%7)+"</button></li>")
		}
		io.WriteString(w, `</ul>`)
	})
	mux.HandleFunc("/init", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Init</title><script>document.title = 'seen ' + (window.injected || 'nothing')</script>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestSnapshotFramesTruncationAndFiles(t *testing.T) {
	ch := testchrome.Start(t)
	pages := corePages(t)
	h := newHarness(t, "")
	c := h.driving("alice", ch.URL)

	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/frames"})
	snap := mustCall(t, c, "take_snapshot", nil)
	m := regexp.MustCompile(`uid=(\d+) button "Inner button"`).FindStringSubmatch(snap)
	if m == nil {
		t.Fatalf("iframe content missing from snapshot:\n%s", snap)
	}
	mustCall(t, c, "click", map[string]any{"uid": m[1]})
	if snap := mustCall(t, c, "take_snapshot", nil); !strings.Contains(snap, `button "Inner clicked"`) {
		t.Errorf("click inside the iframe had no effect:\n%s", snap)
	}

	// An element screenshot is the element's size; filePath writes a file
	// inside the files directory only.
	box := regexp.MustCompile(`uid=(\d+) "box"`).FindStringSubmatch(snap)
	if box == nil {
		t.Fatalf("no box text in snapshot:\n%s", snap)
	}
	// The text node's parent div is 40x30; the text node itself is smaller.
	_, res := call(t, c, "take_screenshot", map[string]any{"uid": box[1]})
	png := imageOf(t, res)
	if w, hgt := pngSize(png); w == 0 || w > 40 || hgt == 0 || hgt > 30 {
		t.Errorf("element screenshot is %dx%d, want within 40x30", w, hgt)
	}
	out := mustCall(t, c, "take_screenshot", map[string]any{"filePath": "shot.png"})
	path := regexp.MustCompile(`to (\S+)\.$`).FindStringSubmatch(out)
	if path == nil {
		t.Fatalf("no path in %q", out)
	}
	if data, err := os.ReadFile(path[1]); err != nil || string(data[1:4]) != "PNG" || filepath.Base(path[1]) != "shot.png" {
		t.Errorf("screenshot file: %v", err)
	}
	for _, bad := range []string{"../escape.png", "/etc/escape.png", "sub/../../escape.png"} {
		if text, res := call(t, c, "take_screenshot", map[string]any{"filePath": bad}); !res.IsError || !strings.Contains(text, "outside") && !strings.Contains(text, "does not exist") {
			t.Errorf("filePath %q accepted: %q", bad, text)
		}
	}
	out = mustCall(t, c, "take_snapshot", map[string]any{"filePath": "snap.txt"})
	if !strings.Contains(out, "snap.txt") {
		t.Errorf("snapshot to file: %q", out)
	}

	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/long"})
	full := mustCall(t, c, "take_snapshot", map[string]any{"maxLength": 1_000_000})
	cut := mustCall(t, c, "take_snapshot", map[string]any{"maxLength": 2000})
	if len(full) < 5000 || len(cut) > 2200 || !strings.Contains(cut, "snapshot truncated") {
		t.Errorf("truncation: full %d bytes, cut %d bytes", len(full), len(cut))
	}
}

func TestEvaluateArgsInitScriptBackground(t *testing.T) {
	ch := testchrome.Start(t)
	pages := corePages(t)
	h := newHarness(t, "")
	tok := h.token("alice")
	h.register(tok, "alice", ch.URL)
	c := h.connect(viaSSE, tok, "")

	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/frames"})
	snap := mustCall(t, c, "take_snapshot", nil)
	heading := regexp.MustCompile(`uid=(\d+) heading "Outer"`).FindStringSubmatch(snap)
	if heading == nil {
		t.Fatalf("no heading:\n%s", snap)
	}
	out := mustCall(t, c, "evaluate_script", map[string]any{
		"function": "(h) => h.tagName + ':' + h.textContent",
		"args":     []any{map[string]any{"uid": heading[1]}},
	})
	if !strings.Contains(out, `"H1:Outer"`) {
		t.Errorf("evaluate_script with args: %q", out)
	}
	if text, res := call(t, c, "evaluate_script", map[string]any{"function": "(x) => x", "args": []any{map[string]any{"uid": "9999"}}}); !res.IsError || !strings.Contains(text, "take_snapshot") {
		t.Errorf("unknown uid arg: %q", text)
	}

	out = mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/init", "initScript": "window.injected = 'early'"})
	if !strings.Contains(out, `"seen early"`) {
		t.Errorf("initScript did not run before the page's scripts: %q", out)
	}
	// Only for that navigation.
	if out := mustCall(t, c, "navigate_page", map[string]any{"type": "reload"}); !strings.Contains(out, `"seen nothing"`) {
		t.Errorf("initScript outlived its navigation: %q", out)
	}

	mustCall(t, c, "new_page", map[string]any{"url": pages + "/frames", "background": true})
	if out := mustCall(t, c, "list_pages", nil); !strings.Contains(out, `2: "Frames"`) || !strings.Contains(out, "[selected]") {
		t.Errorf("background page: %q", out)
	}
}

func imageOf(t *testing.T, res *mcp.CallToolResult) []byte {
	t.Helper()
	for _, ct := range res.Content {
		if img, ok := ct.(mcp.ImageContent); ok {
			b, err := base64.StdEncoding.DecodeString(img.Data)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("no image in result: %+v", res)
	return nil
}

// pngSize reads the width and height from a PNG's IHDR chunk.
func pngSize(b []byte) (int, int) {
	if len(b) < 24 {
		return 0, 0
	}
	be := func(p []byte) int { return int(p[0])<<24 | int(p[1])<<16 | int(p[2])<<8 | int(p[3]) }
	return be(b[16:20]), be(b[20:24])
}
