package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// perfPage has a large image and heading (the LCP), a 120 ms busy loop (a
// long task), an element inserted above the content after the load (a
// layout shift) and a few requests.
const perfPage = `<!doctype html><html><head><title>Perf</title>
<link rel="stylesheet" href="/style.css">
</head><body>
<div id="top"></div>
<h1 id="hero" style="font-size:64px">Big heading for the largest contentful paint</h1>
<img id="pic" src="/big.svg" width="800" height="600">
<p>Some content below that will move.</p>
<script src="/app.js"></script>
<script>
const t0 = performance.now(); while (performance.now() - t0 < 120) {}
fetch('/data.json').then(r => r.json());
addEventListener('load', () => setTimeout(() => {
  const d = document.createElement('div'); d.style.height = '200px'; d.textContent = 'inserted';
  document.getElementById('top').appendChild(d);
}, 100));
</script>
</body></html>`

// perfPages serves the pages of the performance and extension tests.
func perfPages(t testing.TB) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/perf", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, perfPage) })
	mux.HandleFunc("/style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		io.WriteString(w, "body{margin:0}")
	})
	mux.HandleFunc("/app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		io.WriteString(w, "window.padding = '"+strings.Repeat("x", 50000)+"';")
	})
	mux.HandleFunc("/data.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"a":1}`)
	})
	mux.HandleFunc("/big.svg", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		io.WriteString(w, `<svg xmlns="http://www.w3.org/2000/svg" width="800" height="600"><rect width="800" height="600" fill="teal"/>`+
			strings.Repeat("<!-- padding -->", 8000)+`</svg>`)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><html><head><title>Plain</title></head><body><p>Plain page</p></body></html>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func perfNumber(t *testing.T, text, pattern string) float64 {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no %q in:\n%s", pattern, text)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%q: %v", m[1], err)
	}
	return v
}

// TestPerformanceTools traces a page load, saves a trace and a heap
// snapshot, and checks the errors of misuse.
func TestPerformanceTools(t *testing.T) {
	c := testchrome.Start(t)
	site := perfPages(t)
	h := newHarness(t, "")
	cl := h.driving("alice", c.URL)
	mustCall(t, cl, "navigate_page", map[string]any{"url": site + "/perf"})

	if text, res := call(t, cl, "performance_stop_trace", nil); !res.IsError || !strings.Contains(text, "performance_start_trace") {
		t.Errorf("stop without a trace: error=%v %q", res.IsError, text)
	}

	// Defaults: reload, then stop by itself once the page is quiet.
	sum := mustCall(t, cl, "performance_start_trace", nil)
	t.Logf("summary:\n%s", sum)
	if lcp := perfNumber(t, sum, `LCP: (\d+) ms`); lcp <= 0 {
		t.Errorf("LCP %v ms", lcp)
	}
	if !strings.Contains(sum, "IMG id='pic'") && !strings.Contains(sum, "H1 id='hero'") {
		t.Errorf("LCP element not named:\n%s", sum)
	}
	if cls := perfNumber(t, sum, `CLS: ([0-9.]+)`); cls <= 0 {
		t.Errorf("CLS %v, want > 0", cls)
	}
	if n := perfNumber(t, sum, `(\d+) long tasks?,`); n < 1 {
		t.Errorf("%v long tasks, want at least 1", n)
	}
	for _, want := range []string{"TTFB: ", "DOMContentLoaded: ", "Load: ", "/big.svg", "/app.js", site + "/perf"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if strings.Contains(sum, "DOMContentLoaded: n/a") || strings.Contains(sum, "Load: n/a") {
		t.Errorf("load timings missing:\n%s", sum)
	}

	// A manual trace, saved to a file.
	if text := mustCall(t, cl, "performance_start_trace", map[string]any{"autoStop": false, "reload": false}); !strings.Contains(text, "performance_stop_trace") {
		t.Errorf("start without autoStop: %q", text)
	}
	if text, res := call(t, cl, "performance_start_trace", map[string]any{"autoStop": false}); !res.IsError || !strings.Contains(text, "already running") {
		t.Errorf("second start: error=%v %q", res.IsError, text)
	}
	mustCall(t, cl, "evaluate_script", map[string]any{"function": "async () => (await fetch('/data.json')).status"})
	// A path outside the files directory is refused, and the trace survives.
	if text, res := call(t, cl, "performance_stop_trace", map[string]any{"filePath": "../outside.json"}); !res.IsError || !strings.Contains(text, "outside") {
		t.Errorf("stop with a path outside: error=%v %q", res.IsError, text)
	}
	out := mustCall(t, cl, "performance_stop_trace", map[string]any{"filePath": "trace.json"})
	t.Logf("manual trace:\n%s", out)
	m := regexp.MustCompile(`saved to (/\S+?)\.\s`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no saved path in:\n%s", out)
	}
	if filepath.Base(m[1]) != "trace.json" {
		t.Errorf("saved to %s", m[1])
	}
	if !strings.Contains(out, "The trace has no page load") {
		t.Errorf("a trace without reload should say it has no page load:\n%s", out)
	}
	raw, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	var trace struct {
		TraceEvents []map[string]any `json:"traceEvents"`
	}
	if err := json.Unmarshal(raw, &trace); err != nil {
		t.Fatalf("trace file is not JSON: %v", err)
	}
	if len(trace.TraceEvents) == 0 {
		t.Error("trace file has no traceEvents")
	}
	if _, res := call(t, cl, "performance_stop_trace", nil); !res.IsError {
		t.Error("a second stop did not fail")
	}

	// Heap snapshots.
	if text, res := call(t, cl, "take_heapsnapshot", map[string]any{"filePath": "/tmp/mbp-outside.heapsnapshot"}); !res.IsError || !strings.Contains(text, "outside") {
		t.Errorf("heap snapshot outside the files dir: error=%v %q", res.IsError, text)
	}
	if _, err := os.Stat("/tmp/mbp-outside.heapsnapshot"); err == nil {
		t.Error("a refused heap snapshot was written")
	}
	out = mustCall(t, cl, "take_heapsnapshot", nil)
	m = regexp.MustCompile(`saved to (/\S+) \(`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no saved path in %q", out)
	}
	if filepath.Base(m[1]) != "heap-1.heapsnapshot" {
		t.Errorf("default heap snapshot name: %s", m[1])
	}
	raw, err = os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]json.RawMessage
	if err := json.Unmarshal(raw, &snap); err != nil {
		t.Fatalf("heap snapshot is not JSON: %v", err)
	}
	if _, ok := snap["snapshot"]; !ok {
		t.Errorf("heap snapshot has no \"snapshot\" key; keys: %v", snapshotKeys(snap))
	}
	if !regexp.MustCompile(`\d+ nodes\)`).MatchString(out) {
		t.Errorf("no node count in %q", out)
	}
}

func snapshotKeys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// testExtension writes a Manifest V3 extension whose service worker logs
// when it starts and when a page sends it a message.
func testExtension(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"manifest.json": `{"manifest_version": 3, "name": "MBP Test Extension", "version": "1.2.3",
  "background": {"service_worker": "sw.js"},
  "externally_connectable": {"matches": ["http://127.0.0.1/*"]}}`,
		"sw.js": `console.log("mbp-ext started");
chrome.runtime.onMessageExternal.addListener((msg, sender, reply) => {
  console.log("mbp-ext message", JSON.stringify(msg));
  reply({ok: true});
});`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pollExtTool calls a tool until its text satisfies ok, for at most 10 s.
func pollExtTool(t *testing.T, cl *client.Client, name string, args map[string]any, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		text := mustCall(t, cl, name, args)
		if ok(text) || time.Now().After(deadline) {
			return text
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestExtensionTools loads an unpacked extension into the test browser and
// lists, reloads and reads the console of it.
func TestExtensionTools(t *testing.T) {
	dir := testExtension(t)
	c := testchrome.StartWith(t, "--load-extension="+dir, "--disable-extensions-except="+dir)
	site := perfPages(t)
	h := newHarness(t, "")
	cl := h.driving("alice", c.URL)

	list := pollExtTool(t, cl, "list_extensions", nil, func(s string) bool { return strings.Contains(s, "service_worker") })
	m := regexp.MustCompile(`"MBP Test Extension" id=([a-p]{32}) version 1\.2\.3, enabled, unpacked from (\S+)`).FindStringSubmatch(list)
	if m == nil {
		t.Fatalf("test extension not listed:\n%s", list)
	}
	id := m[1]
	if !strings.Contains(list, "service_worker") || !strings.Contains(list, "chrome-extension://"+id+"/sw.js") {
		t.Errorf("no service worker listed:\n%s", list)
	}

	workers := mustCall(t, cl, "list_extension_service_workers", map[string]any{"extensionId": id})
	if !strings.Contains(workers, "extension="+id) || !strings.Contains(workers, "/sw.js") {
		t.Errorf("list_extension_service_workers:\n%s", workers)
	}
	if text, res := call(t, cl, "list_extension_service_workers", map[string]any{"extensionId": "not-an-id"}); !res.IsError || !strings.Contains(text, "list_extensions") {
		t.Errorf("bad extension id: error=%v %q", res.IsError, text)
	}

	// The first call attaches and shows what the worker logged at its start.
	msgs := mustCall(t, cl, "list_extension_console_messages", map[string]any{"extensionId": id})
	if !strings.Contains(msgs, "mbp-ext started") {
		t.Errorf("no start message:\n%s", msgs)
	}
	if w := mustCall(t, cl, "list_extension_service_workers", nil); !strings.Contains(w, "attached=yes (this session collects its console)") {
		t.Errorf("collected worker not marked:\n%s", w)
	}

	// Messages logged later are collected.
	mustCall(t, cl, "navigate_page", map[string]any{"url": site + "/"})
	mustCall(t, cl, "evaluate_script", map[string]any{"function": `() => new Promise(resolve =>
  chrome.runtime.sendMessage(` + strconv.Quote(id) + `, {hello: "from the page"}, reply => resolve(reply || null)))`})
	msgs = pollExtTool(t, cl, "list_extension_console_messages", map[string]any{"extensionId": id}, func(s string) bool {
		return strings.Contains(s, "mbp-ext message")
	})
	if !strings.Contains(msgs, `mbp-ext message {"hello":"from the page"}`) {
		t.Errorf("message log not collected:\n%s", msgs)
	}
	if paged := mustCall(t, cl, "list_extension_console_messages", map[string]any{"extensionId": id, "pageSize": 1, "pageIdx": 1}); !strings.Contains(paged, "Showing 2-2 of") || strings.Contains(paged, "mbp-ext started") {
		t.Errorf("paging:\n%s", paged)
	}

	// A reload restarts the worker: its start message shows again.
	out := mustCall(t, cl, "reload_extension", map[string]any{"extensionId": id})
	if !strings.Contains(out, "Reloaded extension") || !strings.Contains(out, "restarted as target") {
		t.Errorf("reload_extension: %q", out)
	}
	msgs = pollExtTool(t, cl, "list_extension_console_messages", map[string]any{"extensionId": id}, func(s string) bool {
		return strings.Count(s, "mbp-ext started") >= 2
	})
	t.Logf("list_extensions:\n%s\nreload_extension: %s\nconsole:\n%s", list, out, msgs)
	if n := strings.Count(msgs, "mbp-ext started"); n != 2 {
		t.Errorf("start message %d times after the reload, want 2:\n%s", n, msgs)
	}
	if !strings.Contains(msgs, "mbp-ext message") {
		t.Errorf("messages from before the reload were lost:\n%s", msgs)
	}
	if list := mustCall(t, cl, "list_extensions", nil); !strings.Contains(list, "id="+id+" version 1.2.3, enabled") {
		t.Errorf("extension not enabled after the reload:\n%s", list)
	}

	if text, res := call(t, cl, "reload_extension", map[string]any{"extensionId": strings.Repeat("a", 32)}); !res.IsError || !strings.Contains(text, "list_extensions") {
		t.Errorf("reload of an unknown extension: error=%v %q", res.IsError, text)
	}
}
