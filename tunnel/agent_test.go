package tunnel

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// fakeProxy accepts one agent's tunnel and hands the test its websocket.
func fakeProxy(t *testing.T) (string, <-chan *websocket.Conn) {
	t.Helper()
	conns := make(chan *websocket.Conn, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/tunnel" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, `{"code":"UNAUTHORIZED","message":"no"}`, http.StatusUnauthorized)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		conns <- ws
	}))
	t.Cleanup(srv.Close)
	return srv.URL, conns
}

// frame is any frame the agent sends: a control frame or a CDP message.
type frame struct {
	Tunnel  string          `json:"tunnel"`
	Conn    uint64          `json:"conn"`
	Message string          `json:"message"`
	ID      int64           `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func readFrame(t *testing.T, ws *websocket.Conn) frame {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read from the agent: %v", err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("the agent sent a non-text frame")
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("the agent sent %q: %v", data, err)
	}
	return f
}

// nextResponse reads frames until the response to id (events pass by).
func nextResponse(t *testing.T, ws *websocket.Conn, id int64) frame {
	t.Helper()
	for {
		f := readFrame(t, ws)
		if f.Tunnel == "" && f.ID == id {
			return f
		}
	}
}

func send(t *testing.T, ws *websocket.Conn, typ int, s string) {
	t.Helper()
	if err := ws.WriteMessage(typ, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

// The agent relays CDP requests for its one browser and refuses, without
// passing it on, anything else: binary frames, non-JSON, messages without
// id or method, denied methods, navigations outside --allow-origin, and
// input under --read-only.
func TestAgentRefusesWhatIsNotCDP(t *testing.T) {
	chrome := testchrome.Start(t)
	server, conns := fakeProxy(t)
	ctx, cancel := context.WithCancel(context.Background())
	a := NewAgent(AgentConfig{
		Server: server, Token: "tok", Version: "v-test",
		Locate: func(ctx context.Context) (string, error) {
			ws, _, err := FromBrowserURL(ctx, chrome.URL)
			return ws, err
		},
		Policy: Policy{AllowOrigins: []string{"http://allowed.test"}, ReadOnly: true},
	})
	done := make(chan error, 1)
	go func() { done <- a.RunOnce(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var ws *websocket.Conn
	select {
	case ws = <-conns:
	case <-time.After(15 * time.Second):
		t.Fatal("the agent never dialled")
	}
	defer ws.Close()
	if f := readFrame(t, ws); f.Tunnel != typeHello {
		t.Fatalf("first frame %+v, want hello", f)
	}
	send(t, ws, websocket.TextMessage, `{"tunnel":"open","conn":1}`)
	if f := readFrame(t, ws); f.Tunnel != typeOpened || f.Conn != 1 {
		t.Fatalf("open: %+v", f)
	}

	// Dropped with a refused notice: nothing to answer.
	for _, bad := range []struct {
		typ  int
		data string
	}{
		{websocket.BinaryMessage, `{"id":1,"method":"Browser.getVersion"}`},
		{websocket.TextMessage, `not json`},
		{websocket.TextMessage, `{"method":"Browser.getVersion"}`},
		{websocket.TextMessage, `{"id":1,"method":"Browser.getVersion","extra":true}`},
		{websocket.TextMessage, `[{"id":1,"method":"Browser.getVersion"}]`},
	} {
		send(t, ws, bad.typ, bad.data)
		if f := readFrame(t, ws); f.Tunnel != typeRefused {
			t.Fatalf("%q: %+v, want a refused notice", bad.data, f)
		}
	}
	// Answered with a CDP error by the agent, never reaching the browser.
	for id, c := range map[int64]struct{ req, want string }{
		2:  {`{"id":2}`, "without method"},
		3:  {`{"id":3,"method":"Target.exposeDevToolsProtocol","params":{"targetId":"x"}}`, "never relayed"},
		4:  {`{"id":4,"method":"Tethering.bind","params":{"port":22}}`, "never relayed"},
		5:  {`{"id":5,"method":"DOM.setFileInputFiles","params":{"files":["/etc/passwd"]}}`, "never relayed"},
		6:  {`{"id":6,"method":"Target.createTarget","params":{"url":"https://evil.test/"}}`, "--allow-origin"},
		7:  {`{"id":7,"method":"Target.createTarget","params":{"url":"https://evil.test/","URL":"http://allowed.test/"}}`, "--allow-origin"},
		8:  {`{"id":8,"method":"Input.dispatchKeyEvent","params":{"type":"keyDown","key":"a"}}`, "--read-only"},
		9:  {`{"id":9,"method":"Runtime.evaluate","params":{"expression":"location='https://evil.test'"}}`, "--read-only"},
		10: {`{"id":10,"method":"Page.navigate","params":{"url":"http://allowed.test/"}}`, "--read-only"},
	} {
		send(t, ws, websocket.TextMessage, c.req)
		f := nextResponse(t, ws, id)
		if f.Error == nil || !strings.Contains(f.Error.Message, c.want) || !strings.Contains(f.Error.Message, "agent") {
			t.Fatalf("%s: %+v, want the agent's refusal naming %q", c.req, f, c.want)
		}
	}
	// A real request still goes through, to the browser.
	send(t, ws, websocket.TextMessage, `{"id":11,"method":"Browser.getVersion"}`)
	f := nextResponse(t, ws, 11)
	if f.Error != nil || !strings.Contains(string(f.Result), "product") {
		t.Fatalf("Browser.getVersion through the agent: %+v %s", f, f.Result)
	}
	send(t, ws, websocket.TextMessage, `{"id":12,"method":"Target.createTarget","params":{"url":"about:blank"}}`)
	if f := nextResponse(t, ws, 12); f.Error != nil || !strings.Contains(string(f.Result), "targetId") {
		t.Fatalf("createTarget about:blank: %+v", f)
	}
}

// A refused credential stops the agent for good, with the proxy's words.
func TestAgentStopsOnRefusedToken(t *testing.T) {
	server, _ := fakeProxy(t)
	a := NewAgent(AgentConfig{Server: server, Token: "wrong", Locate: func(context.Context) (string, error) { return "", nil }})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := a.Run(ctx)
	if _, ok := err.(*PermanentError); !ok || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Run with a refused token: %v", err)
	}
}

func TestPolicyOrigins(t *testing.T) {
	list, err := NormalizeOrigins([]string{"https://App.Example.com", "https://*.example.org", "http://127.0.0.1:8080/"})
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{AllowOrigins: list}
	for u, want := range map[string]bool{
		"https://app.example.com/x?y": true, "https://app.example.com:443/": true, "http://app.example.com/": false,
		"https://a.b.example.org/": true, "https://example.org/": false, "https://evilexample.org/": false,
		"http://127.0.0.1:8080/": true, "http://127.0.0.1:8081/": false, "about:blank": true,
		"data:text/html,hi": false, "javascript:alert(1)": false, "file:///etc/passwd": false,
		"https://app.example.com.evil.test/": false, "https://user@app.example.com/": true,
	} {
		if got := p.originAllowed(u); got != want {
			t.Errorf("%s: allowed %v, want %v", u, got, want)
		}
	}
	for _, bad := range []string{"app.example.com", "ftp://x", "https://x/path", "https://x?q"} {
		if _, err := NormalizeOrigins([]string{bad}); err == nil {
			t.Errorf("--allow-origin %q accepted", bad)
		}
	}
}

// DevToolsActivePort discovery against a real Chromium started with
// --user-data-dir: the file's port and browser path are the browser's.
func TestDiscoverDevToolsActivePort(t *testing.T) {
	chrome := testchrome.Start(t)
	ctx := context.Background()
	ws, err := FromProfile(ctx, chrome.Dir())
	if err != nil {
		t.Fatal(err)
	}
	want := chrome.WSURL(t)
	if ws != want {
		t.Fatalf("from DevToolsActivePort: %s, want %s", ws, want)
	}
	missing := Profile{Name: "none", Dir: filepath.Join(t.TempDir(), "nope")}
	stale := t.TempDir()
	if err := os.WriteFile(filepath.Join(stale, "DevToolsActivePort"), []byte("1\n/devtools/browser/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, p, err := Discover(ctx, []Profile{missing, {Name: "stale", Dir: stale}, {Name: "test", Dir: chrome.Dir()}})
	if err != nil || got != want || p.Name != "test" {
		t.Fatalf("Discover: %s %+v %v", got, p, err)
	}
	if _, _, err := Discover(ctx, []Profile{missing, {Name: "stale", Dir: stale}}); err == nil || !strings.Contains(err.Error(), "nothing listens") {
		t.Fatalf("Discover with only a stale file: %v", err)
	}
	if help := NoBrowserHelp([]Profile{missing}, "/x/profile"); !strings.Contains(help, "chrome://inspect/#remote-debugging") || !strings.Contains(help, "--remote-debugging-port=0 --user-data-dir=/x/profile") || !strings.Contains(help, missing.Dir) {
		t.Fatalf("help: %s", help)
	}
}

// --launch starts a real Chromium (headless) with a dedicated profile and
// finds it through its DevToolsActivePort.
func TestLaunch(t *testing.T) {
	bin, err := testchrome.Binary()
	if err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(t.TempDir(), "profile")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Launch(ctx, bin, dir, true, "--no-sandbox", "--disable-gpu")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if !strings.HasPrefix(l.WSURL, "ws://127.0.0.1:") || !strings.Contains(l.WSURL, "/devtools/browser/") {
		t.Fatalf("launched browser at %s", l.WSURL)
	}
	if prod := Product(ctx, l.WSURL); !strings.Contains(prod, "Chrome") {
		t.Fatalf("product of the launched browser: %q", prod)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("profile dir: %v %v", fi.Mode(), err)
	}
	l.Stop()
	if _, err := FromProfile(ctx, dir); err == nil {
		t.Fatal("the stopped browser still answers")
	}
}

func TestDefaultProfiles(t *testing.T) {
	for goos, want := range map[string]string{
		"linux":   filepath.Join("/c", "google-chrome"),
		"darwin":  filepath.Join("/c", "Google", "Chrome"),
		"windows": filepath.Join("/l", "Google", "Chrome", "User Data"),
	} {
		ps := DefaultProfiles(goos, "/c", "/l", "/h")
		if len(ps) < 4 || ps[0].Dir != want {
			t.Errorf("%s: %+v", goos, ps)
		}
		var edge, brave bool
		for _, p := range ps {
			edge = edge || strings.Contains(p.Name, "Edge")
			brave = brave || strings.Contains(p.Name, "Brave")
		}
		if !edge || !brave {
			t.Errorf("%s: no Edge or Brave in %+v", goos, ps)
		}
	}
}
