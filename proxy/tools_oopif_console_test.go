package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// oopifConsoleServer serves a top page and the cross-site frame it embeds,
// on one port of 127.0.0.1: the top page is loaded as 127.0.0.1, the frame
// as localhost, a different site, so Chromium runs it out of process.
func oopifConsoleServer(t *testing.T) (top, frame string) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	port := strings.TrimPrefix(srv.URL, "http://127.0.0.1:")
	top, frame = "http://127.0.0.1:"+port, "http://localhost:"+port
	mux.HandleFunc("/", htmlPage(`<h1>Shop</h1><script>console.log("top loaded")</script>
<iframe src="`+frame+`/frame" title="Pay" width="400" height="200"></iframe>`))
	mux.HandleFunc("/other", htmlPage(`<p>Other page</p>`))
	mux.HandleFunc("/frame", htmlPage(`<button onclick="console.log('frame clicked')">Frame button</button>
<a href="/next">Next</a>
<script>
console.log("frame loaded", {n: 1, card: "visa"});
console.error("frame failed at load");
setTimeout(() => { throw new Error("frame boom") }, 0);
addEventListener("message", async e => {
	if (e.data !== "pay") return;
	const d = await (await fetch("/data.json")).json();
	console.log("fetched", d.secret);
	await fetch("/submit", {method: "POST", headers: {"Content-Type": "text/plain"}, body: "card=4242"});
});
</script>`))
	mux.HandleFunc("/next", htmlPage(`<p>Next</p><script>console.log("frame next page")</script>`))
	mux.HandleFunc("/data.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"secret":"frame-json-body"}`)
	})
	mux.HandleFunc("/submit", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "received "+string(body))
	})
	mux.HandleFunc("/poll", htmlPage(`<button onclick="window.n = (window.n || 0) + 1">Nothing</button>
<iframe src="`+frame+`/poller" title="Ad" width="200" height="100"></iframe>`))
	mux.HandleFunc("/poller", htmlPage(`<p>Ad</p><script>setInterval(() => fetch("/data.json"), 20)</script>`))
	mux.HandleFunc("/many", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><html><body><h1>Many</h1>")
		for i := range 20 {
			fmt.Fprintf(w, `<iframe src="%s/one?n=%d" width="60" height="40"></iframe>`, frame, i)
		}
		io.WriteString(w, "</body></html>")
	})
	mux.HandleFunc("/one", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><body><p>One %[1]s</p><script>console.log("one %[1]s loaded")</script></body></html>`, r.URL.Query().Get("n"))
	})
	return top, frame
}

// lineWith returns the first line of list that has all of subs, or "".
func lineWith(list string, subs ...string) string {
	for _, line := range strings.Split(list, "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			return line
		}
	}
	return ""
}

// lineID returns the id (msgid=N or reqid=N) of the first line of list
// that has all of subs, or "".
func lineID(list, key string, subs ...string) string {
	if m := regexp.MustCompile(key + `=(\d+) `).FindStringSubmatch(lineWith(list, subs...)); m != nil {
		return m[1]
	}
	return ""
}

// TestOOPIFConsoleAndNetwork: what a cross-site iframe logs and fetches is
// listed with the page's, from the frame's first moments, without any
// snapshot first.
func TestOOPIFConsoleAndNetwork(t *testing.T) {
	chrome := testchrome.Start(t)
	cl := newHarness(t, "").driving("alice", chrome.URL)
	top, frame := oopifConsoleServer(t)

	mustCall(t, cl, "navigate_page", map[string]any{"url": top + "/"})
	waitFor(t, "the cross-site frame's target", func() bool {
		urls := iframeTargets(t, chrome.URL)
		return len(urls) == 1 && strings.HasPrefix(urls[0], frame+"/frame")
	})

	// The frame's messages, also those logged before the tab attached to
	// it, each once, marked with the frame.
	mark := "(frame " + frame + ")"
	var list string
	waitFor(t, "the frame's messages", func() bool {
		list = mustCall(t, cl, "list_console_messages", nil)
		return strings.Contains(list, "frame boom")
	})
	for _, want := range [][]string{
		{"[log] frame loaded", mark}, {"[error] frame failed at load", mark}, {"[error] Uncaught Error: frame boom", mark},
	} {
		if lineID(list, "msgid", want...) == "" {
			t.Errorf("no line with %q in:\n%s", want, list)
		}
	}
	if line := lineWith(list, "msgid=", "top loaded"); line == "" || strings.Contains(line, "(frame") {
		t.Errorf("the page's own message is missing or marked as a frame's:\n%s", list)
	}
	for _, s := range []string{"frame loaded", "frame failed at load", "frame boom"} {
		if n := strings.Count(list, s); n != 1 {
			t.Errorf("%q is listed %d times:\n%s", s, n, list)
		}
	}
	exc := mustCall(t, cl, "list_console_messages", map[string]any{"types": []any{"exception"}})
	if lineID(exc, "msgid", "frame boom", mark) == "" {
		t.Errorf("the frame's uncaught error is not an exception:\n%s", exc)
	}

	// A message of the frame in full: the frame, and its object argument
	// asked from the frame's session (JSON, not the preview).
	msg := mustCall(t, cl, "get_console_message", map[string]any{"msgid": lineID(list, "msgid", "frame loaded")})
	inputWant(t, "get_console_message of the frame's message", msg, "Frame: "+frame, "(a cross-site iframe)", `"card": "visa"`, "frame loaded")

	// The frame's requests, with bodies from the frame's session. (What a
	// frame fetches before the tab is attached to it, at its very start, is
	// not seen: the browser only reports a frame's requests on the frame's
	// own session, and does not replay them.) Once the attachment is made,
	// the page asks the frame to fetch.
	waitFor(t, "the frame attachment", func() bool { return frameWatchers() == 1 })
	mustCall(t, cl, "evaluate_script", map[string]any{"function": `() => document.querySelector("iframe").contentWindow.postMessage("pay", "*")`})
	var reqs string
	waitFor(t, "the frame's requests", func() bool {
		reqs = mustCall(t, cl, "list_network_requests", nil)
		return lineID(reqs, "reqid", frame+"/data.json", "[200]") != "" && lineID(reqs, "reqid", "POST "+frame+"/submit", "[200]") != ""
	})
	if lineID(reqs, "reqid", top+"/", "document") == "" {
		t.Errorf("the page's own document is not listed:\n%s", reqs)
	}
	got := mustCall(t, cl, "get_network_request", map[string]any{"reqid": lineID(reqs, "reqid", frame+"/data.json")})
	inputWant(t, "get_network_request of the frame's fetch", got,
		"Frame: "+frame+"/frame (a cross-site iframe)", "Status: 200", `{"secret":"frame-json-body"}`)
	got = mustCall(t, cl, "get_network_request", map[string]any{"reqid": lineID(reqs, "reqid", "POST "+frame+"/submit")})
	inputWant(t, "get_network_request of the frame's POST", got, "### Request body\ncard=4242", "### Response body\nreceived card=4242")
	waitFor(t, "the message after the frame's fetch", func() bool {
		return lineID(mustCall(t, cl, "list_console_messages", nil), "msgid", "[log] fetched frame-json-body", mark) != ""
	})

	// A click in the frame: the snapshot meets the frame attached already
	// and gives it its place in the page.
	snap := mustCall(t, cl, "take_snapshot", nil)
	mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `button "Frame button"`)})
	waitFor(t, "the message of the click in the frame", func() bool {
		return lineID(mustCall(t, cl, "list_console_messages", nil), "msgid", "frame clicked", mark) != ""
	})

	// The frame navigates: its new page's messages join the page's
	// current navigation, and the earlier ones stay in it.
	mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `link "Next"`)})
	waitFor(t, "the message of the frame's next page", func() bool {
		list = mustCall(t, cl, "list_console_messages", nil)
		return lineID(list, "msgid", "frame next page", mark) != ""
	})
	for _, s := range []string{"top loaded", "frame loaded", "frame clicked"} {
		if n := strings.Count(list, s); n != 1 {
			t.Errorf("after the frame navigated, %q is listed %d times in the current navigation:\n%s", s, n, list)
		}
	}
	if strings.Contains(list, "###") {
		t.Errorf("a frame's navigation started a navigation of the page:\n%s", list)
	}
	if reqs = mustCall(t, cl, "list_network_requests", nil); lineID(reqs, "reqid", frame+"/data.json") == "" || lineID(reqs, "reqid", frame+"/next", "document") == "" {
		t.Errorf("after the frame navigated, its requests are not all in the current navigation:\n%s", reqs)
	}

	// A new top document starts a navigation, as before.
	mustCall(t, cl, "navigate_page", map[string]any{"url": top + "/other"})
	list = mustCall(t, cl, "list_console_messages", nil)
	if strings.Contains(list, "frame") || !strings.Contains(list, "No console messages since the last navigation.") {
		t.Errorf("messages of the old document after a top navigation:\n%s", list)
	}
	all := mustCall(t, cl, "list_console_messages", map[string]any{"includePreservedMessages": true})
	if lineID(all, "msgid", "frame loaded", mark) == "" || !strings.Contains(all, "### Earlier navigation: "+top+"/") {
		t.Errorf("the frame's messages are not kept with the earlier navigation:\n%s", all)
	}

	// The attachments, and those under way, end with the tab.
	mustCall(t, cl, "navigate_page", map[string]any{"url": top + "/"})
	waitFor(t, "the frame attachment of the new document", func() bool { return frameWatchers() > 0 })
	mustCall(t, cl, "close_page", map[string]any{"pageId": 1})
	waitFor(t, "the frame attachments to end with the tab", func() bool { return frameWatchers() == 0 })
}

// TestOOPIFConsoleReattach: past the bound of attached frames, a frame is
// attached when a snapshot meets it, evicting another; a frame attached
// again replays what it logged, which is not listed twice.
func TestOOPIFConsoleReattach(t *testing.T) {
	chrome := testchrome.Start(t)
	cl := newHarness(t, "").driving("alice", chrome.URL)
	top, frame := oopifConsoleServer(t)

	// As many frames as a tab attaches to (tools.maxFrames)...
	mustCall(t, cl, "navigate_page", map[string]any{"url": top + "/many"})
	var list string
	waitFor(t, "the messages of every frame", func() bool {
		list = mustCall(t, cl, "list_console_messages", nil)
		return strings.Count(list, "(frame "+frame+")") == 20
	})
	// ... and one more, first in the page: not attached to until a
	// snapshot meets it, which makes room for it.
	mustCall(t, cl, "evaluate_script", map[string]any{"function": `() => new Promise(resolve => {
		const f = document.createElement("iframe");
		f.src = "` + frame + `/one?n=first";
		f.onload = () => resolve(true);
		document.body.prepend(f);
	})`})
	waitFor(t, "the new frame's target", func() bool { return len(iframeTargets(t, chrome.URL)) == 21 })
	if list = mustCall(t, cl, "list_console_messages", nil); strings.Contains(list, "one first loaded") {
		t.Fatalf("a frame past the bound was attached to without a snapshot:\n%s", list)
	}
	// The snapshot descends into the new frame first, then the others
	// in the order of the page, each evicting the one used least recently:
	// the others are attached again.
	mustCall(t, cl, "take_snapshot", nil)
	mustCall(t, cl, "take_snapshot", nil)
	waitFor(t, "the new frame's message", func() bool {
		list = mustCall(t, cl, "list_console_messages", nil)
		return lineID(list, "msgid", "one first loaded", "(frame "+frame+")") != ""
	})
	for i := range 20 {
		if n := strings.Count(list, fmt.Sprintf("one %d loaded", i)); n != 1 {
			t.Errorf("the message of frame %d is listed %d times:\n%s", i, n, list)
		}
	}
	waitFor(t, "the evicted attachments to end", func() bool { return frameWatchers() <= 20 })
}

// TestOOPIFBusyFrameDoesNotHoldClicks: the requests of a cross-site frame
// that polls (an ad, a widget) are collected, but they are not what a click
// on the page set off: the click says nothing changed and no request was
// made. Only an action inside a frame counts that frame's requests.
func TestOOPIFBusyFrameDoesNotHoldClicks(t *testing.T) {
	chrome := testchrome.Start(t)
	cl := newHarness(t, "").driving("alice", chrome.URL)
	top, frame := oopifConsoleServer(t)

	mustCall(t, cl, "navigate_page", map[string]any{"url": top + "/poll"})
	waitFor(t, "the polling frame's requests to be collected", func() bool {
		return strings.Count(mustCall(t, cl, "list_network_requests", nil), frame+"/data.json") >= 3
	})
	btn := inputUID(t, mustCall(t, cl, "take_snapshot", nil), `button "Nothing"`)
	for range 3 {
		out := mustCall(t, cl, "click", map[string]any{"uid": btn})
		if !strings.Contains(out, "The page did not change.") || strings.Contains(out, "network request") {
			t.Errorf("a click that changes nothing, next to a polling frame: %q", out)
		}
	}
	if got := inputEval(t, cl, "() => window.n"); got != "3" {
		t.Errorf("the button was clicked %s times, want 3", got)
	}
}
