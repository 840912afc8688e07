package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// inputPages serves the pages of the input tool tests, on 127.0.0.1.
func inputPages(t testing.TB) string {
	t.Helper()
	page := func(title, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<!doctype html><html><head><title>"+title+"</title></head><body>"+body+"</body></html>")
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/form", page("Form", `
<form id="f" onsubmit="event.preventDefault(); document.getElementById('result').textContent = 'Submitted'">
<label>Name <input name="name" id="name"></label>
<label>Bio <textarea name="bio" id="bio"></textarea></label>
<label>Color <select name="color" id="color"><option>Red</option><option value="b">Blue</option></select></label>
<label><input type="checkbox" name="agree" id="agree"> Agree</label>
<label><input type="radio" name="size" value="s" id="small"> Small</label>
<label><input type="radio" name="size" value="l" id="large"> Large</label>
<label>Avatar <input type="file" name="avatar" id="avatar"></label>
<button type="button" onclick="document.getElementById('hidden').click()">Choose documents</button>
<input type="file" id="hidden" style="display:none" multiple>
<div contenteditable="true" id="notes" role="textbox" aria-label="Notes"></div>
<button type="submit">Send</button>
</form>
<p id="result"></p>`))
	mux.HandleFunc("/dialogs", page("Dialogs", `
<button onclick="alert('Hello alert')">Alert</button>
<button onclick="document.getElementById('c').textContent = confirm('Sure?') ? 'confirmed' : 'cancelled'">Confirm</button>
<button onclick="document.getElementById('p').textContent = 'name=' + prompt('Your name?', 'anon')">Prompt</button>
<p id="c">none</p><p id="p">none</p>`))
	mux.HandleFunc("/drag", page("Drag", `
<div role="button" aria-label="Item" draggable="true" ondragstart="event.dataTransfer.setData('text/plain', 'item-1')"
  style="width:80px;height:40px;background:#ccc">Item</div>
<div role="region" aria-label="Drop zone" ondragover="event.preventDefault()"
  ondrop="event.preventDefault(); document.getElementById('dropped').textContent = 'Dropped ' + event.dataTransfer.getData('text/plain')"
  style="width:200px;height:80px;margin-top:30px;border:1px solid #000"></div>
<p id="dropped">nothing dropped</p>
<div id="track" style="position:relative;width:400px;height:30px;background:#eee">
  <div id="knob" role="slider" aria-label="Knob" aria-valuenow="0" style="position:absolute;left:0;top:0;width:30px;height:30px;background:#333"></div>
  <div role="button" aria-label="End mark" style="position:absolute;left:360px;top:0;width:30px;height:30px;background:#a00"></div>
</div>
<p id="moved">not moved</p>
<script>
const knob = document.getElementById('knob');
knob.addEventListener('mousedown', e => {
  const x0 = e.clientX, left0 = knob.offsetLeft;
  const move = e => { knob.style.left = (left0 + e.clientX - x0) + 'px'; };
  const up = e => {
    document.removeEventListener('mousemove', move);
    document.removeEventListener('mouseup', up);
    document.getElementById('moved').textContent = 'Knob at ' + knob.offsetLeft;
  };
  document.addEventListener('mousemove', move);
  document.addEventListener('mouseup', up);
});
</script>`))
	mux.HandleFunc("/nav", page("Nav", `
<a href="/landing">Go by link</a>
<a href="/greet">Go to greeting</a>
<button onclick="location.href = '/landing?by=script'">Go by script</button>`))
	mux.HandleFunc("/keyed", page("Keys", `
<ul id="items"></ul>
<script>
// Registered before the proxy's counter: it takes q from every later listener.
window.addEventListener('keydown', e => { if (e.key === 'q') { e.stopImmediatePropagation(); document.getElementById('items').append(document.createElement('li')); } }, true);
document.addEventListener('keydown', e => { if (e.key === 'Enter') document.getElementById('items').append(document.createElement('li')); });
</script>`))
	mux.HandleFunc("/landing", page("Landing", `<p>Landed</p>`))
	mux.HandleFunc("/greet", page("Greeting", `<script>alert('Welcome')</script><p>Greeted</p>`))
	// React 18 style: the handlers change the page on a later task.
	mux.HandleFunc("/later", page("Later", `
<button id="h">Hover me</button> <button id="c">Click me</button> <p id="out">idle</p>
<script>
const ch = new MessageChannel();
let next = '';
ch.port1.onmessage = () => { document.getElementById('out').textContent = next; };
const later = text => { next = text; ch.port2.postMessage(0); };
document.getElementById('h').addEventListener('mouseover', () => later('hovered later'));
document.getElementById('c').addEventListener('click', () => later('clicked later'));
</script>`))
	mux.HandleFunc("/fetch", page("Fetch", `
<button onclick="fetch('/slow').then(r => r.text()).then(t => { document.getElementById('out').textContent = t; })">Load</button>
<button>Nothing</button>
<button onclick="fetch('/hang')">Hang</button>
<p id="out">empty</p>`))
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
		}
		io.WriteString(w, "Loaded 42 rows")
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(6 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/keys", page("Keys", `
<form onsubmit="event.preventDefault(); document.getElementById('sub').textContent = 'Submitted ' + document.getElementById('q').value">
<label>Query <input id="q" value="hello world"></label>
<label>Other <input id="other"></label>
<button type="submit">Search</button>
</form>
<p id="sub">not submitted</p>`))
	mux.HandleFunc("/todo", page("Todo", `
<h1>todos</h1>
<input id="new" aria-label="New todo" placeholder="What needs to be done?">
<ul id="list"></ul>
<footer id="count">0 items left</footer>
<script>
const input = document.getElementById('new'), list = document.getElementById('list'), count = document.getElementById('count');
function update() {
  const left = list.querySelectorAll('input:not(:checked)').length;
  count.textContent = left + (left === 1 ? ' item' : ' items') + ' left';
}
input.addEventListener('keydown', e => {
  const text = input.value.trim();
  if (e.key !== 'Enter' || !text) return;
  const li = document.createElement('li'), cb = document.createElement('input'), span = document.createElement('span');
  cb.type = 'checkbox';
  cb.setAttribute('aria-label', 'Complete ' + text);
  cb.addEventListener('change', () => { li.classList.toggle('done', cb.checked); update(); });
  span.textContent = text;
  li.append(cb, span);
  list.append(li);
  input.value = '';
  update();
});
</script>`))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// inputClient starts a browser, a proxy whose files directory is filesDir,
// and a session of alice.
func inputClient(t *testing.T, filesDir string) *client.Client {
	t.Helper()
	c := testchrome.Start(t)
	h := newHarnessWith(t, "", session.Config{FilesDir: filesDir})
	tok := h.token("alice")
	h.register(tok, "alice", c.URL)
	return h.connect(viaStreamable, tok, "")
}

// inputUID returns the uid of the snapshot line that has role and name, e.g.
// inputUID(t, snap, `textbox "Name"`).
func inputUID(t *testing.T, snap, line string) string {
	t.Helper()
	m := regexp.MustCompile(`uid=(\d+) ` + regexp.QuoteMeta(line)).FindStringSubmatch(snap)
	if m == nil {
		t.Fatalf("no %s in snapshot:\n%s", line, snap)
	}
	return m[1]
}

// inputEval runs fn in the selected page and returns its JSON result text.
func inputEval(t *testing.T, cl *client.Client, fn string) string {
	t.Helper()
	out := mustCall(t, cl, "evaluate_script", map[string]any{"function": fn})
	_, after, ok := strings.Cut(out, "```json\n")
	if !ok {
		t.Fatalf("evaluate_script output: %q", out)
	}
	res, _, _ := strings.Cut(after, "\n```")
	return res
}

func inputWant(t *testing.T, what, text string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(text, s) {
			t.Errorf("%s: %q lacks %q", what, text, s)
		}
	}
}

// TestInputTools drives every input tool against pages made for it.
func TestInputTools(t *testing.T) {
	files := t.TempDir()
	cl := inputClient(t, files)
	pages := inputPages(t)

	t.Run("form", func(t *testing.T) {
		mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/form"})
		snap := mustCall(t, cl, "take_snapshot", nil)
		name, bio, color := inputUID(t, snap, `textbox "Name"`), inputUID(t, snap, `textbox "Bio"`), inputUID(t, snap, `combobox "Color"`)
		agree, large, notes := inputUID(t, snap, `checkbox "Agree"`), inputUID(t, snap, `radio "Large"`), inputUID(t, snap, `textbox "Notes"`)
		out := mustCall(t, cl, "fill_form", map[string]any{"elements": []any{
			map[string]any{"uid": name, "value": "Ada"},
			map[string]any{"uid": bio, "value": "Line one\nLine two"},
			map[string]any{"uid": color, "value": "Blue"},
			map[string]any{"uid": agree, "value": "true"},
			map[string]any{"uid": large, "value": "true"},
			map[string]any{"uid": notes, "value": "Some notes"},
		}})
		inputWant(t, "fill_form", out, "Filled 6 elements", "The page changed")
		got := inputEval(t, cl, `() => { const v = id => document.getElementById(id); return [v('name').value, v('bio').value, v('color').value, v('agree').checked, v('large').checked, v('small').checked, v('notes').textContent]; }`)
		if want := `["Ada","Line one\nLine two","b",true,true,false,"Some notes"]`; got != want {
			t.Errorf("form after fill_form: %s, want %s", got, want)
		}

		// The first failure stops the form and names the element.
		text, res := call(t, cl, "fill_form", map[string]any{"elements": []any{
			map[string]any{"uid": name, "value": "Grace"},
			map[string]any{"uid": color, "value": "Purple"},
			map[string]any{"uid": bio, "value": "changed"},
		}})
		if !res.IsError {
			t.Fatalf("fill_form with a bad option succeeded: %q", text)
		}
		inputWant(t, "fill_form failure", text, "element 2", "uid="+color, `no option "Purple"`)
		if got := inputEval(t, cl, `() => [document.getElementById('name').value, document.getElementById('bio').value]`); got != `["Grace","Line one\nLine two"]` {
			t.Errorf("fill_form did not stop at the failing element: %s", got)
		}
		text, res = call(t, cl, "fill_form", map[string]any{"elements": []any{
			map[string]any{"uid": name, "value": "x"},
			map[string]any{"uid": "999999", "value": "y"},
		}})
		if !res.IsError {
			t.Fatalf("fill_form with an unknown uid succeeded: %q", text)
		}
		inputWant(t, "fill_form unknown uid", text, "element 2", "take_snapshot")

		// Files: a file input directly, and a button that opens a chooser.
		dir := filepath.Join(files, "alice")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string]string{"a.txt": "alpha file", "b.txt": "beta"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		avatar := regexp.MustCompile(`uid=(\d+) button "Avatar"`).FindStringSubmatch(snap)
		if avatar == nil {
			t.Fatalf("no file input in snapshot:\n%s", snap)
		}
		out = mustCall(t, cl, "upload_file", map[string]any{"uid": avatar[1], "filePaths": []any{"a.txt"}})
		inputWant(t, "upload_file", out, "Chose 1 file")
		if got := inputEval(t, cl, `async () => { const f = document.getElementById('avatar').files[0]; return [f.name, await f.text()]; }`); got != `["a.txt","alpha file"]` {
			t.Errorf("file input after upload_file: %s", got)
		}
		chooser := inputUID(t, snap, `button "Choose documents"`)
		mustCall(t, cl, "upload_file", map[string]any{"uid": chooser, "filePaths": []any{"a.txt", filepath.Join(dir, "b.txt")}})
		if got := inputEval(t, cl, `() => Array.from(document.getElementById('hidden').files).map(f => f.name)`); got != `["a.txt","b.txt"]` {
			t.Errorf("hidden file input after upload_file through its button: %s", got)
		}
		for _, bad := range []string{"/etc/passwd", "../outside.txt", "missing.txt"} {
			text, res := call(t, cl, "upload_file", map[string]any{"uid": avatar[1], "filePaths": []any{bad}})
			if !res.IsError || !strings.Contains(text, "files directory") {
				t.Errorf("upload_file %s: error=%v %q", bad, res.IsError, text)
			}
		}
		text, res = call(t, cl, "upload_file", map[string]any{"uid": name, "filePaths": []any{"a.txt"}})
		if !res.IsError || !strings.Contains(text, "no file chooser") {
			t.Errorf("upload_file on a text box: error=%v %q", res.IsError, text)
		}
	})

	t.Run("dialogs", func(t *testing.T) {
		mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/dialogs"})
		snap := mustCall(t, cl, "take_snapshot", nil)
		alert, confirm, prompt := inputUID(t, snap, `button "Alert"`), inputUID(t, snap, `button "Confirm"`), inputUID(t, snap, `button "Prompt"`)

		text, res := call(t, cl, "handle_dialog", map[string]any{"action": "accept"})
		if !res.IsError || !strings.Contains(text, "no open dialog") {
			t.Errorf("handle_dialog without a dialog: error=%v %q", res.IsError, text)
		}

		out := mustCall(t, cl, "click", map[string]any{"uid": alert})
		inputWant(t, "click opening an alert", out, `An alert dialog is open: "Hello alert"`, "call handle_dialog")
		if n := strings.Count(out, "Hello alert"); n != 1 {
			t.Errorf("click result names the dialog %d times: %q", n, out)
		}
		// Every later result names the dialog, whatever the tool, until it is handled.
		inputWant(t, "list_pages with an alert open", mustCall(t, cl, "list_pages", nil), `alert dialog is open: "Hello alert"`, "handle_dialog")
		text, res = call(t, cl, "click", map[string]any{"uid": confirm})
		if !res.IsError {
			t.Errorf("click while an alert is open succeeded: %q", text)
		}
		inputWant(t, "click while an alert is open", text, "handle_dialog", "Hello alert")
		text, _ = call(t, cl, "click", map[string]any{"uid": "424242"})
		inputWant(t, "failing tool with an alert open", text, "Hello alert")
		inputWant(t, "handle_dialog accept", mustCall(t, cl, "handle_dialog", map[string]any{"action": "accept"}), "Accepted", "Hello alert")
		if out := mustCall(t, cl, "list_pages", nil); strings.Contains(out, "dialog is open") {
			t.Errorf("list_pages after the dialog was handled still names it: %q", out)
		}

		out = mustCall(t, cl, "click", map[string]any{"uid": confirm})
		inputWant(t, "click opening a confirm", out, `A confirm dialog is open: "Sure?"`)
		mustCall(t, cl, "handle_dialog", map[string]any{"action": "dismiss"})
		if got := inputEval(t, cl, `() => document.getElementById('c').textContent`); got != `"cancelled"` {
			t.Errorf("confirm after dismiss: %s", got)
		}

		out = mustCall(t, cl, "click", map[string]any{"uid": prompt})
		inputWant(t, "click opening a prompt", out, `A prompt dialog is open: "Your name?"`, `default answer "anon"`)
		out = mustCall(t, cl, "handle_dialog", map[string]any{"action": "accept", "promptText": "Grace"})
		inputWant(t, "handle_dialog of the prompt", out, `Answered "Grace"`)
		if got := inputEval(t, cl, `() => document.getElementById('p').textContent`); got != `"name=Grace"` {
			t.Errorf("prompt answer did not reach the page: %s", got)
		}
	})

	t.Run("drag", func(t *testing.T) {
		mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/drag"})
		snap := mustCall(t, cl, "take_snapshot", nil)
		out := mustCall(t, cl, "drag", map[string]any{"from_uid": inputUID(t, snap, `button "Item"`), "to_uid": inputUID(t, snap, `region "Drop zone"`)})
		inputWant(t, "drag", out, "Dragged", "The page changed")
		if got := inputEval(t, cl, `() => document.getElementById('dropped').textContent`); got != `"Dropped item-1"` {
			t.Errorf("HTML5 drop: %s", got)
		}
		mustCall(t, cl, "drag", map[string]any{"from_uid": inputUID(t, snap, `slider "Knob"`), "to_uid": inputUID(t, snap, `button "End mark"`)})
		got := inputEval(t, cl, `() => document.getElementById('knob').offsetLeft`)
		if got == "0" || !strings.Contains(inputEval(t, cl, `() => document.getElementById('moved').textContent`), "Knob at") {
			t.Errorf("mouse drag did not move the knob: left=%s", got)
		}
		text, res := call(t, cl, "drag", map[string]any{"from_uid": "9999", "to_uid": inputUID(t, snap, `button "Item"`)})
		if !res.IsError || !strings.Contains(text, "from_uid") || !strings.Contains(text, "take_snapshot") {
			t.Errorf("drag from an unknown uid: error=%v %q", res.IsError, text)
		}
	})

	t.Run("hover", func(t *testing.T) {
		mustCall(t, cl, "navigate_page", map[string]any{"url": "data:text/html," + strings.ReplaceAll(`<button onmouseover="this.textContent='Hovered'">Hover me</button>`, " ", "%20")})
		snap := mustCall(t, cl, "take_snapshot", nil)
		out := mustCall(t, cl, "hover", map[string]any{"uid": inputUID(t, snap, `button "Hover me"`)})
		inputWant(t, "hover", out, "Hovered", "The page changed")
		inputWant(t, "snapshot after hover", mustCall(t, cl, "take_snapshot", nil), `button "Hovered"`)
	})

	// React 18 renders the updates of hover and other continuous events on
	// a later task (its scheduler posts a MessageChannel message), so the
	// handler itself changes nothing. The tool's result must still say that
	// the page changed, and the next snapshot must show the change.
	t.Run("next task", func(t *testing.T) {
		mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/later"})
		snap := mustCall(t, cl, "take_snapshot", nil)
		inputWant(t, "hover", mustCall(t, cl, "hover", map[string]any{"uid": inputUID(t, snap, `button "Hover me"`)}), "The page changed")
		inputWant(t, "snapshot after hover", mustCall(t, cl, "take_snapshot", nil), "hovered later")
		inputWant(t, "click", mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `button "Click me"`)}), "The page changed")
		inputWant(t, "snapshot after click", mustCall(t, cl, "take_snapshot", nil), "clicked later")
		// A hover that sets nothing off says so.
		inputWant(t, "hover that changes nothing", mustCall(t, cl, "hover", map[string]any{"uid": inputUID(t, snap, `button "Click me"`)}), "The page did not change.")
	})

	t.Run("navigation", func(t *testing.T) {
		mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/nav"})
		snap := mustCall(t, cl, "take_snapshot", nil)
		out := mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `link "Go by link"`)})
		inputWant(t, "click on a link", out, "navigated to "+pages+"/landing")
		mustCall(t, cl, "navigate_page", map[string]any{"type": "back"})
		snap = mustCall(t, cl, "take_snapshot", nil)
		out = mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `button "Go by script"`)})
		inputWant(t, "click on a script link", out, "navigated to "+pages+"/landing?by=script")
		inputWant(t, "snapshot after navigation", mustCall(t, cl, "take_snapshot", nil), "Landed")

		// A dialog that the new page opens while it loads ends the wait.
		mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/nav"})
		snap = mustCall(t, cl, "take_snapshot", nil)
		out = mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `link "Go to greeting"`)})
		inputWant(t, "click on a link to a page that alerts", out, "navigating to "+pages+"/greet", `An alert dialog is open: "Welcome"`)
		mustCall(t, cl, "handle_dialog", map[string]any{"action": "accept"})
		inputWant(t, "wait_for after the dialog", mustCall(t, cl, "wait_for", map[string]any{"text": "Greeted", "timeout": 5000}), "Greeted")
	})

	t.Run("fetch", func(t *testing.T) {
		mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/fetch"})
		snap := mustCall(t, cl, "take_snapshot", nil)
		start := time.Now()
		out := mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `button "Nothing"`)})
		t.Logf("a click that changes nothing took %s", time.Since(start))
		inputWant(t, "click that changes nothing", out, "The page did not change.")
		out = mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `button "Load"`)})
		inputWant(t, "click that fetches", out, "The page changed.", "1 network request")
		// The click waited for the response and the DOM update it made.
		inputWant(t, "snapshot right after the fetch", mustCall(t, cl, "take_snapshot", nil), "Loaded 42 rows")
		// A request that does not end holds the wait only up to its cap.
		out = mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `button "Hang"`)})
		inputWant(t, "click that starts an endless request", out, "still busy after 3s", "1 request(s) in flight")
		mustCall(t, cl, "navigate_page", map[string]any{"url": "about:blank"})
	})

	t.Run("keys", func(t *testing.T) {
		mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/keys"})
		snap := mustCall(t, cl, "take_snapshot", nil)
		mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `textbox "Query"`)})
		mustCall(t, cl, "press_key", map[string]any{"key": "Control+A"})
		if got := inputEval(t, cl, `() => { const q = document.getElementById('q'); return [q.selectionStart, q.selectionEnd]; }`); got != "[0,11]" {
			t.Errorf("selection after Control+A: %s, want [0,11]", got)
		}
		mustCall(t, cl, "press_key", map[string]any{"key": "End"})
		mustCall(t, cl, "press_key", map[string]any{"key": "Shift+ArrowLeft"})
		if got := inputEval(t, cl, `() => { const q = document.getElementById('q'); return [q.selectionStart, q.selectionEnd]; }`); got != "[10,11]" {
			t.Errorf("selection after End, Shift+ArrowLeft: %s, want [10,11]", got)
		}
		mustCall(t, cl, "press_key", map[string]any{"key": "Control+A"})
		out := mustCall(t, cl, "type_text", map[string]any{"text": "Straße & co", "submitKey": "Enter"})
		inputWant(t, "type_text", out, "Typed 11 characters and pressed Enter")
		var sub string
		if err := json.Unmarshal([]byte(inputEval(t, cl, `() => document.getElementById('sub').textContent`)), &sub); err != nil || sub != "Submitted Straße & co" {
			t.Errorf("form after type_text + Enter: %q (%v)", sub, err)
		}
		mustCall(t, cl, "press_key", map[string]any{"key": "Tab"})
		if got := inputEval(t, cl, `() => document.activeElement.id`); got != `"other"` {
			t.Errorf("focus after Tab: %s", got)
		}
		mustCall(t, cl, "type_text", map[string]any{"text": "A!"})
		if got := inputEval(t, cl, `() => document.getElementById('other').value`); got != `"A!"` {
			t.Errorf("typed text: %s", got)
		}
		for _, bad := range []string{"Control+Foo", "Hyperspace+A", "Control+"} {
			text, res := call(t, cl, "press_key", map[string]any{"key": bad})
			if !res.IsError || !strings.Contains(text, "Control+A") {
				t.Errorf("press_key %q: error=%v %q", bad, res.IsError, text)
			}
		}
	})
}

// press_key says what its own key changed, also when it sends no call
// before the key (the page's change counter runs already): a change the
// page made before the key is not the key's, and a key that a listener of
// the page took before the counter's still shows its change.
func TestPressKeyReportsItsOwnChanges(t *testing.T) {
	cl := inputClient(t, "")
	pages := inputPages(t)
	for _, round := range []string{"first load", "after another navigation"} {
		mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/keyed"})
		inputWant(t, round+": Enter", mustCall(t, cl, "press_key", map[string]any{"key": "Enter"}), "The page changed")
		inputWant(t, round+": Shift", mustCall(t, cl, "press_key", map[string]any{"key": "Shift"}), "The page did not change")
		// The page changes between two calls; the key after it changes nothing.
		mustCall(t, cl, "evaluate_script", map[string]any{"function": `() => new Promise(r => setTimeout(() => { document.getElementById('items').append(document.createElement('li')); r(1); }, 50))`})
		inputWant(t, round+": Shift after a change of the page", mustCall(t, cl, "press_key", map[string]any{"key": "Shift"}), "The page did not change")
		inputWant(t, round+": q", mustCall(t, cl, "press_key", map[string]any{"key": "q"}), "The page changed")
		inputWant(t, round+": Shift after q", mustCall(t, cl, "press_key", map[string]any{"key": "Shift"}), "The page did not change")
		inputWant(t, round+": Enter after q", mustCall(t, cl, "press_key", map[string]any{"key": "Enter"}), "The page changed")
		if got := inputEval(t, cl, `() => document.querySelectorAll('#items li').length`); got != "4" {
			t.Errorf("%s: %s items, want 4", round, got)
		}
	}
}

// TestInputTodoAgent plays an agent's task through the MCP client: add three
// todos, complete one, and check the counter.
func TestInputTodoAgent(t *testing.T) {
	cl := inputClient(t, "")
	pages := inputPages(t)

	mustCall(t, cl, "navigate_page", map[string]any{"url": pages + "/todo"})
	snap := mustCall(t, cl, "take_snapshot", nil)
	input := inputUID(t, snap, `textbox "New todo"`)
	for _, item := range []string{"Buy milk", "Write report", "Call mom"} {
		mustCall(t, cl, "fill", map[string]any{"uid": input, "value": item})
		out := mustCall(t, cl, "press_key", map[string]any{"key": "Enter"})
		inputWant(t, "press_key Enter", out, "The page changed")
	}
	inputWant(t, "wait_for 3 items", mustCall(t, cl, "wait_for", map[string]any{"text": "3 items left", "timeout": 5000}), "3 items left")
	snap = mustCall(t, cl, "take_snapshot", nil)
	inputWant(t, "snapshot with three todos", snap, "Buy milk", "Write report", "Call mom")
	out := mustCall(t, cl, "click", map[string]any{"uid": inputUID(t, snap, `checkbox "Complete Write report"`)})
	inputWant(t, "click on a todo checkbox", out, "The page changed")
	inputWant(t, "wait_for 2 items", mustCall(t, cl, "wait_for", map[string]any{"text": "2 items left", "timeout": 5000}), "2 items left")
	snap = mustCall(t, cl, "take_snapshot", nil)
	inputWant(t, "final snapshot", snap, "2 items left")
	for _, line := range strings.Split(snap, "\n") {
		if strings.Contains(line, "checkbox") && strings.HasSuffix(line, " checked") != strings.Contains(line, "Write report") {
			t.Errorf("wrong completion state: %q", line)
		}
	}
	if !regexp.MustCompile(`checkbox "Complete Write report".* checked`).MatchString(snap) {
		t.Errorf("the todo is not completed in the snapshot:\n%s", snap)
	}
}
