package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// readyPages serves apps that render after their load, and pages that
// never stop: a long poll with an event stream, and a DOM that changes
// forever.
func readyPages(t *testing.T) string {
	t.Helper()
	done := make(chan struct{})
	mux := http.NewServeMux()
	// The view arrives well after the load, and the app builds the DOM
	// from it on a later task.
	mux.HandleFunc("/view.json", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"title": "Inbox of %s", "items": ["First mail", "Second mail", "Third mail"]}`, r.URL.Query().Get("route"))
	})
	const render = `
function render(v) {
  setTimeout(() => {
    const app = document.getElementById('app');
    app.textContent = '';
    const h = document.createElement('h1'); h.textContent = v.title; app.append(h);
    const ul = document.createElement('ul');
    for (const it of v.items) { const li = document.createElement('li'); li.textContent = it; ul.append(li); }
    app.append(ul);
    const b = document.createElement('button'); b.textContent = 'Archive all'; app.append(b);
  }, 0);
}`
	mux.HandleFunc("/app", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>App</title><div id="app">Loading</div><script>`+render+`
addEventListener('load', () => fetch('/view.json?route=app').then(r => r.json()).then(render));
</script>`)
	})
	// A client-side router: the route is chosen after the load, its view
	// fetched, then rendered.
	mux.HandleFunc("/router/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Router</title><nav><a href="/router/inbox">Inbox</a></nav><main id="app"></main><script>`+render+`
function route() {
  const name = location.pathname.split('/')[2] || 'home';
  fetch('/view.json?route=' + name).then(r => r.json()).then(v => requestAnimationFrame(() => render(v)));
}
addEventListener('load', () => { setTimeout(() => { history.pushState({}, '', '/router/inbox'); route(); }, 0); });
</script>`)
	})
	// A long poll that never answers and an event stream that never ends.
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-done:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-done:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Stream</title><p id="s">Streaming</p><script>
addEventListener('load', () => {
  fetch('/poll');
  const es = new EventSource('/events');
  es.onmessage = e => { document.getElementById('s').textContent = 'Got ' + e.data; };
});
</script>`)
	})
	// No request: the app mounts on the task after the load.
	mux.HandleFunc("/late", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Late</title><div id="app"></div><script>`+render+`
addEventListener('load', () => setTimeout(() => render({title: 'Inbox of late', items: ['First mail', 'Second mail', 'Third mail']}), 0));
</script>`)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Hang</title><img src="/poll" alt="never">`)
	})
	mux.HandleFunc("/forever", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Forever</title><p id="t">0</p><script>
let n = 0; const ch = new MessageChannel(); // not throttled in a hidden tab, as timers are
ch.port1.onmessage = () => { document.getElementById('t').textContent = ++n; ch.port2.postMessage(0); };
ch.port2.postMessage(0);
</script>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // runs first: the hanging handlers return
	return srv.URL
}

// An app that renders after its load is whole in the first snapshot after
// navigate_page and after new_page; a page with a long poll and an event
// stream still returns before the cap; a page whose DOM never stops
// changing returns at the cap and says so.
func TestNavigationReturnsWhenThePageIsReady(t *testing.T) {
	ch := testchrome.Start(t)
	pages := readyPages(t)
	h := newHarness(t, "")
	c := h.driving("alice", ch.URL)

	wantApp := func(what, route string) {
		t.Helper()
		snap := mustCall(t, c, "take_snapshot", nil)
		for _, want := range []string{`heading "Inbox of ` + route + `"`, `"Third mail"`, `button "Archive all"`} {
			if !strings.Contains(snap, want) {
				t.Errorf("%s: the first snapshot lacks %s:\n%s", what, want, snap)
			}
		}
	}
	out := mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/app"})
	if strings.Contains(out, "cap") {
		t.Errorf("navigate_page to the app ended at the cap: %s", out)
	}
	wantApp("navigate_page /app", "app")

	out = mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/router/"})
	if !strings.Contains(out, pages+"/router/inbox") {
		t.Errorf("navigate_page to the router does not say where it went: %s", out)
	}
	wantApp("navigate_page /router/", "inbox")

	mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/late"})
	wantApp("navigate_page /late", "late")

	out = mustCall(t, c, "new_page", map[string]any{"url": pages + "/app"})
	if strings.Contains(out, "cap") {
		t.Errorf("new_page with the app ended at the cap: %s", out)
	}
	wantApp("new_page /app", "app")

	out = mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/stream"})
	if strings.Contains(out, "cap") || !strings.Contains(out, `title "Stream"`) {
		t.Errorf("a page with a long poll and an event stream ended at the cap, or elsewhere: %s", out)
	}

	out = mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/forever"})
	if !strings.Contains(out, "ended at its cap") || !strings.Contains(out, "DOM kept changing") || !strings.Contains(out, pages+"/forever") {
		t.Errorf("a page that changes forever: want the cap note and its URL, got %s", out)
	}

	// A load that does not finish in time still says where the page is.
	out = mustCall(t, c, "navigate_page", map[string]any{"url": pages + "/hang", "timeout": 1000})
	if !strings.Contains(out, "is at "+pages+"/hang but had not finished loading") {
		t.Errorf("a load that timed out: want the page's URL, got %s", out)
	}
}
