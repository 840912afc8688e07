package proxy

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// cnPNG is a 2x2 PNG, the image the console/network test page loads.
func cnPNG(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 2, 2))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// cnPages serves the pages of the console and network tests on 127.0.0.1:
// "/" logs (log, warn, error with an object, an uncaught exception), loads
// an image, fetches a JSON GET, a JSON POST and a 404, opens and closes a
// WebSocket, then shows "all done"; "/nav/N" logs "navigation N", fetches /api/data?nav=N and
// shows "nav N done".
func cnPages(t *testing.T, pixel []byte) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `<!doctype html><html><head><title>Console and network</title><link rel="icon" href="data:,"></head><body>
<img id="img" src="/pixel.png">
<p id="status">working</p>
<script>
console.log("hello from the page", 42);
console.warn("careful: low disk");
console.error("request failed:", {code: 42, reason: "nope"});
setTimeout(function explode() { throw new Error("boom in timeout"); }, 0);
(async () => {
  const img = document.getElementById("img");
  await new Promise(r => img.complete ? r() : img.addEventListener("load", r));
  const data = await fetch("/api/data").then(r => r.json());
  await fetch("/api/echo", {method: "POST", headers: {"Content-Type": "application/json", "X-Test": "yes"}, body: JSON.stringify({name: "Ada", n: data.items.length})});
  await fetch("/missing");
  await new Promise(r => { const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws"); ws.onopen = () => ws.close(); ws.onclose = r; });
  console.info("all fetches done");
  document.getElementById("status").textContent = "all done";
})();
</script></body></html>`)
	})
	mux.HandleFunc("/nav/{n}", func(w http.ResponseWriter, r *http.Request) {
		n := r.PathValue("n")
		fmt.Fprintf(w, `<!doctype html><html><head><title>Nav %[1]s</title><link rel="icon" href="data:,"></head><body><p id="s">loading</p>
<script>
console.log("navigation %[1]s");
fetch("/api/data?nav=%[1]s").then(r => r.text()).then(() => { document.getElementById("s").textContent = "nav %[1]s done"; });
</script></body></html>`, n)
	})
	mux.HandleFunc("/api/data", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Served-By", "cn-test")
		io.WriteString(w, `{"items":[1,2,3],"ok":true}`)
	})
	mux.HandleFunc("/api/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"received":%s,"method":%q}`, body, r.Method)
	})
	// A WebSocket handshake, then the connection ends at the client's first
	// frame (its close).
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		rw.Flush()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		rw.ReadByte()
	})
	mux.HandleFunc("/pixel.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(pixel)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// cnEventually calls tool until cond accepts its text: the events of the
// page's last steps may still be on their way when wait_for returns.
func cnEventually(t *testing.T, cl *client.Client, tool string, args map[string]any, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		text := mustCall(t, cl, tool, args)
		if cond(text) {
			return text
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s never showed %s; last answer:\n%s", tool, fmt.Sprint(args), what, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cnID returns the id captured by re in text, failing the test without one.
func cnID(t *testing.T, re string, text string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no line matches %s in:\n%s", re, text)
	}
	return m[1]
}

func cnNum(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

// TestConsoleAndNetworkTools drives list/get_console_message and
// list/get_network_request against a page that logs and fetches, then
// navigates three more times and checks what is kept.
func TestConsoleAndNetworkTools(t *testing.T) {
	chrome := testchrome.Start(t)
	pixel := cnPNG(t)
	base := cnPages(t, pixel)
	h := newHarness(t, "")
	cl := h.driving("alice", chrome.URL)

	mustCall(t, cl, "navigate_page", map[string]any{"url": base + "/"})
	mustCall(t, cl, "wait_for", map[string]any{"text": "all done", "timeout": 15000})

	// --- Console ---
	consoleWant := []string{
		`\[log\] hello from the page 42 \(http://127\.0\.0\.1:\d+/:\d+\)`,
		`\[warn\] careful: low disk`,
		`\[error\] request failed: \{code: 42, reason: "nope"\}`,
		`\[error\] Uncaught Error: boom in timeout`,
		`\[error\] Failed to load resource: the server responded with a status of 404`,
		`\[info\] all fetches done`,
	}
	list := cnEventually(t, cl, "list_console_messages", nil, "every message", func(s string) bool {
		for _, re := range consoleWant {
			if !regexp.MustCompile(re).MatchString(s) {
				return false
			}
		}
		return true
	})
	warnID := cnID(t, `msgid=(\d+) \[warn\] careful`, list)
	errID := cnID(t, `msgid=(\d+) \[error\] request failed`, list)
	excID := cnID(t, `msgid=(\d+) \[error\] Uncaught Error`, list)
	if again := mustCall(t, cl, "list_console_messages", nil); cnID(t, `msgid=(\d+) \[warn\] careful`, again) != warnID ||
		cnID(t, `msgid=(\d+) \[error\] request failed`, again) != errID {
		t.Errorf("msgids changed between two lists:\n%s\n---\n%s", list, again)
	}

	warns := mustCall(t, cl, "list_console_messages", map[string]any{"types": []any{"warn"}})
	if !strings.Contains(warns, "careful: low disk") || strings.Contains(warns, "hello from the page") || strings.Contains(warns, "[error]") {
		t.Errorf("types [warn]:\n%s", warns)
	}
	errs := mustCall(t, cl, "list_console_messages", map[string]any{"types": []any{"error"}})
	if !strings.Contains(errs, "request failed") || !strings.Contains(errs, "Uncaught Error") || strings.Contains(errs, "[warn]") {
		t.Errorf("types [error] (uncaught exceptions included):\n%s", errs)
	}
	exc := mustCall(t, cl, "list_console_messages", map[string]any{"types": []any{"exception"}})
	if !strings.Contains(exc, "Uncaught Error: boom in timeout") || strings.Contains(exc, "request failed") {
		t.Errorf("types [exception]:\n%s", exc)
	}
	// log, warn and info: three messages, two pages of two.
	quiet := map[string]any{"types": []any{"log", "warn", "info"}, "pageSize": 2}
	page0 := mustCall(t, cl, "list_console_messages", quiet)
	if strings.Count(page0, "msgid=") != 2 || !strings.Contains(page0, "hello from the page") || !strings.Contains(page0, "careful") ||
		!strings.Contains(page0, "Showing 1-2 of 3 messages.") || !strings.Contains(page0, "pageIdx=1") {
		t.Errorf("page 0 of size 2:\n%s", page0)
	}
	quiet["pageIdx"] = 1
	page1 := mustCall(t, cl, "list_console_messages", quiet)
	if strings.Count(page1, "msgid=") != 1 || !strings.Contains(page1, "all fetches done") || !strings.Contains(page1, "Showing 3-3 of 3 messages.") {
		t.Errorf("page 1 of size 2:\n%s", page1)
	}
	quiet["pageIdx"] = 2
	if text, res := call(t, cl, "list_console_messages", quiet); !res.IsError || !strings.Contains(text, "pageIdx") {
		t.Errorf("a page past the end: %q", text)
	}
	if text, res := call(t, cl, "list_console_messages", map[string]any{"types": []any{"bogus"}}); !res.IsError || !strings.Contains(text, "warn") {
		t.Errorf("an unknown type: %q", text)
	}

	detail := mustCall(t, cl, "get_console_message", map[string]any{"msgid": cnNum(errID)})
	for _, want := range []string{"Type: error", "Source: console API", "request failed:", `"reason": "nope"`, `"code": 42`, "### Stack trace", "Location: " + base + "/:"} {
		if !strings.Contains(detail, want) {
			t.Errorf("get_console_message of the error lacks %q:\n%s", want, detail)
		}
	}
	excDetail := mustCall(t, cl, "get_console_message", map[string]any{"msgid": cnNum(excID)})
	for _, want := range []string{"Source: uncaught exception", "Uncaught Error: boom in timeout", "at explode (" + base + "/:"} {
		if !strings.Contains(excDetail, want) {
			t.Errorf("get_console_message of the exception lacks %q:\n%s", want, excDetail)
		}
	}
	if text, res := call(t, cl, "get_console_message", map[string]any{"msgid": 9999}); !res.IsError || !strings.Contains(text, "list_console_messages") {
		t.Errorf("an unknown msgid: %q", text)
	}

	// --- Network ---
	netWant := map[string]string{
		"doc":     `reqid=(\d+) GET ` + regexp.QuoteMeta(base) + `/ \[200\] document`,
		"data":    `reqid=(\d+) GET ` + regexp.QuoteMeta(base) + `/api/data \[200\] fetch \d+(\.\d)? [KB ]+\d+ ms`,
		"echo":    `reqid=(\d+) POST ` + regexp.QuoteMeta(base) + `/api/echo \[200\] fetch`,
		"missing": `reqid=(\d+) GET ` + regexp.QuoteMeta(base) + `/missing \[404\] fetch`,
		"pixel":   `reqid=(\d+) GET ` + regexp.QuoteMeta(base) + `/pixel.png \[200\] image`,
		"ws":      `reqid=(\d+) GET ws://` + regexp.QuoteMeta(strings.TrimPrefix(base, "http://")) + `/ws \[101, closed\] websocket \d+ ms`,
	}
	nets := cnEventually(t, cl, "list_network_requests", nil, "every request", func(s string) bool {
		for _, re := range netWant {
			if !regexp.MustCompile(re).MatchString(s) {
				return false
			}
		}
		return true
	})
	reqID := map[string]string{}
	for k, re := range netWant {
		reqID[k] = cnID(t, re, nets)
	}
	if again := mustCall(t, cl, "list_network_requests", nil); cnID(t, netWant["echo"], again) != reqID["echo"] {
		t.Errorf("reqids changed between two lists:\n%s\n---\n%s", nets, again)
	}
	fetches := mustCall(t, cl, "list_network_requests", map[string]any{"resourceTypes": []any{"fetch"}})
	if strings.Count(fetches, "reqid=") != 3 || strings.Contains(fetches, "pixel.png") || strings.Contains(fetches, "document") {
		t.Errorf("resourceTypes [fetch]:\n%s", fetches)
	}
	images := mustCall(t, cl, "list_network_requests", map[string]any{"resourceTypes": []any{"image"}})
	if strings.Count(images, "reqid=") != 1 || !strings.Contains(images, "pixel.png") {
		t.Errorf("resourceTypes [image]:\n%s", images)
	}
	sockets := mustCall(t, cl, "list_network_requests", map[string]any{"resourceTypes": []any{"websocket"}})
	if strings.Count(sockets, "reqid=") != 1 || !strings.Contains(sockets, "/ws [101, closed]") {
		t.Errorf("resourceTypes [websocket]:\n%s", sockets)
	}
	if ws := mustCall(t, cl, "get_network_request", map[string]any{"reqid": cnNum(reqID["ws"])}); !strings.Contains(ws, "Status: 101 Switching Protocols") ||
		!strings.Contains(ws, "a WebSocket has no body") || !strings.Contains(strings.ToLower(ws), "upgrade: websocket") {
		t.Errorf("get_network_request of the WebSocket:\n%s", ws)
	}
	lastFetch := mustCall(t, cl, "list_network_requests", map[string]any{"resourceTypes": []any{"fetch"}, "pageSize": 2, "pageIdx": 1})
	if strings.Count(lastFetch, "reqid=") != 1 || !strings.Contains(lastFetch, "/missing [404]") || !strings.Contains(lastFetch, "Showing 3-3 of 3 requests.") {
		t.Errorf("page 1 of the fetches, size 2:\n%s", lastFetch)
	}

	post := mustCall(t, cl, "get_network_request", map[string]any{"reqid": cnNum(reqID["echo"])})
	lower := strings.ToLower(post)
	for _, want := range []string{"POST " + base + "/api/echo", "Status: 200", "Resource type: fetch",
		"### Request body\n{\"name\":\"Ada\",\"n\":3}", "### Response body\n{\"received\":{\"name\":\"Ada\",\"n\":3},\"method\":\"POST\"}"} {
		if !strings.Contains(post, want) {
			t.Errorf("get_network_request of the POST lacks %q:\n%s", want, post)
		}
	}
	for _, want := range []string{"x-test: yes", "content-type: application/json"} {
		if !strings.Contains(lower, want) {
			t.Errorf("get_network_request of the POST lacks the header %q:\n%s", want, post)
		}
	}
	data := mustCall(t, cl, "get_network_request", map[string]any{"reqid": cnNum(reqID["data"])})
	if !strings.Contains(data, `{"items":[1,2,3],"ok":true}`) || !strings.Contains(data, "X-Served-By: cn-test") || !strings.Contains(data, "### Request body\nnone") {
		t.Errorf("get_network_request of the JSON GET:\n%s", data)
	}
	missing := mustCall(t, cl, "get_network_request", map[string]any{"reqid": cnNum(reqID["missing"])})
	if !strings.Contains(missing, "Status: 404 Not Found") || !strings.Contains(missing, "404 page not found") {
		t.Errorf("get_network_request of the 404:\n%s", missing)
	}
	img := mustCall(t, cl, "get_network_request", map[string]any{"reqid": cnNum(reqID["pixel"]), "responseFilePath": "pixel.png"})
	saved := regexp.MustCompile(`Saved (\d+) bytes to (\S+)\.`).FindStringSubmatch(img)
	if saved == nil {
		t.Fatalf("get_network_request with responseFilePath saved nothing:\n%s", img)
	}
	if got, err := os.ReadFile(saved[2]); err != nil || !bytes.Equal(got, pixel) {
		t.Errorf("the saved image differs from the served one (%v)", err)
	}
	imgInline := mustCall(t, cl, "get_network_request", map[string]any{"reqid": cnNum(reqID["pixel"])})
	if !strings.Contains(imgInline, fmt.Sprintf("binary, %d bytes (image/png)", len(pixel))) {
		t.Errorf("get_network_request of the image does not call it binary:\n%s", imgInline)
	}
	if text, res := call(t, cl, "get_network_request", map[string]any{"reqid": 9999}); !res.IsError || !strings.Contains(text, "list_network_requests") {
		t.Errorf("an unknown reqid: %q", text)
	}

	// --- Three more navigations: the first one's entries go ---
	for i := 1; i <= 3; i++ {
		mustCall(t, cl, "navigate_page", map[string]any{"url": fmt.Sprintf("%s/nav/%d", base, i)})
		mustCall(t, cl, "wait_for", map[string]any{"text": fmt.Sprintf("nav %d done", i), "timeout": 15000})
	}
	current := cnEventually(t, cl, "list_console_messages", nil, "navigation 3", func(s string) bool { return strings.Contains(s, "navigation 3") })
	if strings.Contains(current, "navigation 2") || strings.Contains(current, "hello from the page") {
		t.Errorf("the default console view shows more than the current navigation:\n%s", current)
	}
	if n3 := cnID(t, `msgid=(\d+) \[log\] navigation 3`, current); cnNum(n3) <= cnNum(excID) {
		t.Errorf("msgid %s of a new message is not above the old ones", n3)
	}
	preserved := mustCall(t, cl, "list_console_messages", map[string]any{"includePreservedMessages": true})
	for _, want := range []string{"navigation 1", "navigation 2", "navigation 3", "Current navigation: " + base + "/nav/3", "Earlier navigation: " + base + "/nav/1"} {
		if !strings.Contains(preserved, want) {
			t.Errorf("includePreservedMessages lacks %q:\n%s", want, preserved)
		}
	}
	if strings.Contains(preserved, "hello from the page") || strings.Contains(preserved, "careful") {
		t.Errorf("the first navigation's messages are still kept:\n%s", preserved)
	}
	if text, res := call(t, cl, "get_console_message", map[string]any{"msgid": cnNum(warnID)}); !res.IsError || !strings.Contains(text, "no longer kept") {
		t.Errorf("a dropped msgid: %q", text)
	}

	curNet := cnEventually(t, cl, "list_network_requests", nil, "nav=3", func(s string) bool { return strings.Contains(s, "/api/data?nav=3 [200]") })
	if !strings.Contains(curNet, "/nav/3 [200] document") || strings.Contains(curNet, "nav=2") || strings.Contains(curNet, "/nav/2") {
		t.Errorf("the default network view is not the current navigation, its own document included:\n%s", curNet)
	}
	allNet := mustCall(t, cl, "list_network_requests", map[string]any{"includePreservedRequests": true})
	for _, want := range []string{"/nav/1 [200] document", "nav=1 [200]", "nav=2 [200]", "nav=3 [200]"} {
		if !strings.Contains(allNet, want) {
			t.Errorf("includePreservedRequests lacks %q:\n%s", want, allNet)
		}
	}
	if strings.Contains(allNet, "/api/echo") || strings.Contains(allNet, "pixel.png") {
		t.Errorf("the first navigation's requests are still kept:\n%s", allNet)
	}
	if text, res := call(t, cl, "get_network_request", map[string]any{"reqid": cnNum(reqID["echo"])}); !res.IsError || !strings.Contains(text, "no longer kept") {
		t.Errorf("a dropped reqid: %q", text)
	}
}
