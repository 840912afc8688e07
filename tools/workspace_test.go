package tools

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// fakeWorkspace is a page set without a browser: its tabs are records, and
// it answers like session.Session for the calls that need no CDP.
type fakeWorkspace struct {
	mu       sync.Mutex
	tabs     []*fakeTab // in the order they were opened
	selected int
	nextID   int
	others   []BrowserTab // the user's other tabs
	state    WorkspaceState
	closed   []int // the pages CloseTab closed or detached from
}

type fakeTab struct {
	Tab
	title, url string
	opener     int
	cancel     context.CancelFunc
}

var _ Workspace = (*fakeWorkspace)(nil)

// open adds a page and selects it.
func (w *fakeWorkspace) open(title, url string, owned bool, opener int) *Tab {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nextID++
	ctx, cancel := context.WithCancel(context.Background())
	tid := target.ID(fmt.Sprintf("T%d", w.nextID))
	ft := &fakeTab{
		Tab:    Tab{ID: w.nextID, TargetID: tid, Ctx: ctx, State: NewTabState(tid), Owned: owned},
		title:  title,
		url:    url,
		opener: opener,
		cancel: cancel,
	}
	w.tabs = append(w.tabs, ft)
	w.selected = ft.ID
	return &ft.Tab
}

func (w *fakeWorkspace) find(id int) (*fakeTab, error) {
	for _, ft := range w.tabs {
		if ft.ID == id {
			return ft, nil
		}
	}
	return nil, fmt.Errorf("page %d is not one of this session's pages; call list_pages to see them", id)
}

func (w *fakeWorkspace) Tab(_ context.Context, pageID int) (*Tab, error) {
	w.mu.Lock()
	if pageID == 0 {
		pageID = w.selected
	}
	if pageID == 0 {
		w.mu.Unlock()
		return w.open("", "about:blank", true, 0), nil
	}
	defer w.mu.Unlock()
	ft, err := w.find(pageID)
	if err != nil {
		return nil, err
	}
	return &ft.Tab, nil
}

func (w *fakeWorkspace) NewTab(context.Context, bool) (*Tab, error) {
	return w.open("", "about:blank", true, 0), nil
}

func (w *fakeWorkspace) SelectTab(_ context.Context, pageID int) (*Tab, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ft, err := w.find(pageID)
	if err != nil {
		return nil, err
	}
	w.selected = pageID
	return &ft.Tab, nil
}

func (w *fakeWorkspace) CloseTab(_ context.Context, pageID int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	ft, err := w.find(pageID)
	if err != nil {
		return err
	}
	w.tabs = slices.DeleteFunc(w.tabs, func(t *fakeTab) bool { return t == ft })
	if w.selected == pageID {
		w.selected = 0
		if n := len(w.tabs); n > 0 {
			w.selected = w.tabs[n-1].ID
		}
	}
	w.closed = append(w.closed, pageID)
	ft.cancel()
	return nil
}

func (w *fakeWorkspace) BrowserTabs(context.Context) ([]BrowserTab, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.others), nil
}

func (w *fakeWorkspace) AttachTab(_ context.Context, id target.ID) (*Tab, error) {
	w.mu.Lock()
	i := slices.IndexFunc(w.others, func(b BrowserTab) bool { return b.TargetID == id })
	if i < 0 {
		w.mu.Unlock()
		return nil, fmt.Errorf("target %s is not a tab of your browser; call list_pages {all:true} to see them", id)
	}
	b := w.others[i]
	w.others = slices.Delete(w.others, i, i+1)
	w.mu.Unlock()
	return w.open(b.Title, b.URL, false, 0), nil
}

func (w *fakeWorkspace) Tabs(context.Context) ([]TabInfo, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]TabInfo, 0, len(w.tabs))
	for _, ft := range w.tabs {
		out = append(out, TabInfo{ID: ft.ID, Title: ft.title, URL: ft.url, Selected: ft.ID == w.selected, Attached: !ft.Owned, Opener: ft.opener})
	}
	return out, nil
}

func (w *fakeWorkspace) OpenTabs() []*Tab {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*Tab, 0, len(w.tabs))
	for _, ft := range w.tabs {
		out = append(out, &ft.Tab)
	}
	return out
}

func (w *fakeWorkspace) FilesDir() (string, error) { return "", errors.New("no files directory") }

func (w *fakeWorkspace) State() *WorkspaceState { return &w.state }

// close ends every tab, as a closing session does.
func (w *fakeWorkspace) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ft := range w.tabs {
		ft.cancel()
	}
}

// callTool runs the tool name of the full list the way the server does
// (through guard), with ws bound and the caller holding perms.
func callTool(t *testing.T, ws Workspace, perms []string, name string, args map[string]any) (text string, isError bool) {
	t.Helper()
	i := slices.IndexFunc(All(Config{}), func(tl Tool) bool { return tl.Tool.Name == name })
	if i < 0 {
		t.Fatalf("no tool %s", name)
	}
	tl := All(Config{})[i]
	ctx := auth.WithPrincipal(context.Background(), auth.Principal{UserID: "alice", Perms: perms})
	if ws != nil {
		ctx = WithWorkspace(ctx, ws)
	}
	var req mcp.CallToolRequest
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := guard(tl)(ctx, req)
	if err != nil || res == nil {
		t.Fatalf("%s %v: result %v, error %v", name, args, res, err)
	}
	return resultText(res), res.IsError
}

var (
	readWrite = []string{auth.PermRead, auth.PermWrite}
	allTabs   = []string{auth.PermRead, auth.PermWrite, auth.PermAllTabs}
)

func TestPageToolsNeedAWorkspace(t *testing.T) {
	for _, name := range []string{"list_pages", "select_page", "close_page"} {
		text, isErr := callTool(t, nil, allTabs, name, map[string]any{"pageId": 1})
		if !isErr || text != "no browser session is bound to this call" {
			t.Errorf("%s without a workspace: %q (error %v)", name, text, isErr)
		}
	}
}

func TestListPagesWithoutBrowser(t *testing.T) {
	ws := &fakeWorkspace{}
	text, isErr := callTool(t, ws, readWrite, "list_pages", nil)
	if isErr || text != "## Pages\nThis session has no pages yet. new_page opens one; any page tool opens one on first use." {
		t.Errorf("empty session: %q (error %v)", text, isErr)
	}

	ws.open("Shop", "http://127.0.0.1/shop", true, 0)
	ws.open(`Say "hi"`+"\nthere", "http://127.0.0.1/mine", false, 0)
	ws.open("Pay", "http://127.0.0.1/pay", true, 1)
	ws.others = []BrowserTab{{TargetID: "OTHER1", Title: "Mail", URL: "http://127.0.0.1/mail"}}
	want := "## Pages\n" +
		"1: \"Shop\" http://127.0.0.1/shop\n" +
		"2: \"Say \\\"hi\\\"\\nthere\" http://127.0.0.1/mine [attached]\n" +
		"3: \"Pay\" http://127.0.0.1/pay [popup of 1] [selected]\n"
	if text, isErr = callTool(t, ws, readWrite, "list_pages", nil); isErr || text != want {
		t.Errorf("list_pages = %q (error %v), want %q", text, isErr, want)
	}

	// The user's other tabs need browser:all-tabs, and a refusal lists none.
	text, isErr = callTool(t, ws, readWrite, "list_pages", map[string]any{"all": true})
	if !isErr || !strings.HasPrefix(text, "list_pages with all=true needs the browser:all-tabs permission") || strings.Contains(text, "OTHER1") {
		t.Errorf("all=true without browser:all-tabs: %q (error %v)", text, isErr)
	}
	text, isErr = callTool(t, ws, allTabs, "list_pages", map[string]any{"all": true})
	wantAll := want + "## Other tabs of your browser\n" +
		"targetId=OTHER1 \"Mail\" http://127.0.0.1/mail\n" +
		"select_page {targetId} attaches to one; the proxy never closes such a tab, close_page only detaches.\n"
	if isErr || text != wantAll {
		t.Errorf("list_pages all=true = %q (error %v), want %q", text, isErr, wantAll)
	}
	ws.others = nil
	if text, _ = callTool(t, ws, allTabs, "list_pages", map[string]any{"all": true}); !strings.Contains(text, "## Other tabs of your browser\nNone.\n") {
		t.Errorf("no other tabs: %q", text)
	}
}

func TestSelectPageWithoutBrowser(t *testing.T) {
	ws := &fakeWorkspace{}
	ws.open("A", "http://127.0.0.1/a", true, 0)
	ws.open("B", "http://127.0.0.1/b", true, 0)
	ws.others = []BrowserTab{{TargetID: "OTHER1", Title: "Mail", URL: "http://127.0.0.1/mail"}}

	// Bad input is refused and changes nothing.
	for _, tc := range []struct {
		name  string
		perms []string
		args  map[string]any
		want  string
	}{
		{"neither", readWrite, nil, "select_page needs a pageId from list_pages"},
		{"both", allTabs, map[string]any{"pageId": 1, "targetId": "OTHER1"}, "select_page takes a pageId or a targetId, not both"},
		{"targetId without all-tabs", readWrite, map[string]any{"targetId": "OTHER1"}, "select_page with a targetId needs the browser:all-tabs permission, which your token lacks; without it a session sees only the pages it opened"},
		{"unknown page", readWrite, map[string]any{"pageId": 7}, "page 7 is not one of this session's pages; call list_pages to see them"},
		{"negative page", readWrite, map[string]any{"pageId": -1}, "select_page needs a pageId from list_pages"},
		{"unknown target", allTabs, map[string]any{"targetId": "NOPE"}, "target NOPE is not a tab of your browser; call list_pages {all:true} to see them"},
	} {
		text, isErr := callTool(t, ws, tc.perms, "select_page", tc.args)
		if !isErr || text != tc.want {
			t.Errorf("%s: %q (error %v), want %q", tc.name, text, isErr, tc.want)
		}
		if ws.selected != 2 || len(ws.tabs) != 2 || len(ws.others) != 1 {
			t.Fatalf("%s changed the workspace: selected %d, %d tabs, %d other tabs", tc.name, ws.selected, len(ws.tabs), len(ws.others))
		}
	}

	if text, isErr := callTool(t, ws, readWrite, "select_page", map[string]any{"pageId": 1}); isErr || text != "Selected page 1." || ws.selected != 1 {
		t.Errorf("select_page 1: %q (error %v), selected %d", text, isErr, ws.selected)
	}
	text, isErr := callTool(t, ws, allTabs, "select_page", map[string]any{"targetId": "OTHER1"})
	if isErr || text != "Attached to your tab as page 3 and selected it. close_page 3 detaches from it; the tab stays open." || ws.selected != 3 {
		t.Errorf("select_page targetId: %q (error %v), selected %d", text, isErr, ws.selected)
	}
}

func TestClosePageWithoutBrowser(t *testing.T) {
	ws := &fakeWorkspace{}
	ws.open("A", "http://127.0.0.1/a", true, 0)
	ws.open("Mine", "http://127.0.0.1/mine", false, 0)

	for _, args := range []map[string]any{nil, {"pageId": 0}, {"pageId": -2}} {
		if text, isErr := callTool(t, ws, readWrite, "close_page", args); !isErr || text != "close_page needs a pageId from list_pages" {
			t.Errorf("close_page %v: %q (error %v)", args, text, isErr)
		}
	}
	if text, isErr := callTool(t, ws, readWrite, "close_page", map[string]any{"pageId": 9}); !isErr || text != "page 9 is not one of this session's pages; call list_pages to see them" {
		t.Errorf("close_page 9: %q (error %v)", text, isErr)
	}
	if len(ws.closed) != 0 {
		t.Fatalf("refused calls closed pages %v", ws.closed)
	}

	// A tab of the user's is only detached from, and the answer says so.
	text, isErr := callTool(t, ws, readWrite, "close_page", map[string]any{"pageId": 2})
	if want := "Detached from (the tab stays open) page 2.\n## Pages\n1: \"A\" http://127.0.0.1/a [selected]\n"; isErr || text != want {
		t.Errorf("close_page 2 = %q (error %v), want %q", text, isErr, want)
	}
	text, isErr = callTool(t, ws, readWrite, "close_page", map[string]any{"pageId": 1})
	if want := "Closed page 1.\n## Pages\nThis session has no pages yet. new_page opens one; any page tool opens one on first use."; isErr || text != want {
		t.Errorf("close_page 1 = %q (error %v), want %q", text, isErr, want)
	}
	if !slices.Equal(ws.closed, []int{2, 1}) {
		t.Errorf("closed %v, want [2 1]", ws.closed)
	}
}

func TestListPagingTable(t *testing.T) {
	for _, tc := range []struct {
		n        int
		args     map[string]any
		from, to int
		err      string
		footer   string
	}{
		{n: 0, from: 0, to: 0, footer: ""},
		{n: 3, from: 0, to: 3, footer: "Showing 1-3 of 3 items."},
		{n: 25, args: map[string]any{"pageSize": 10}, from: 0, to: 10, footer: "Showing 1-10 of 25 items. Next page: pageIdx=1."},
		{n: 25, args: map[string]any{"pageSize": 10, "pageIdx": 1}, from: 10, to: 20, footer: "Showing 11-20 of 25 items. Next page: pageIdx=2. Previous page: pageIdx=0."},
		{n: 25, args: map[string]any{"pageSize": 10, "pageIdx": 2}, from: 20, to: 25, footer: "Showing 21-25 of 25 items. Previous page: pageIdx=1."},
		{n: 20, args: map[string]any{"pageSize": 10, "pageIdx": 2}, err: "pageIdx 2 is past the last page; with pageSize 10 there are 2 page(s), pageIdx 0 to 1"},
		{n: 0, args: map[string]any{"pageIdx": 1}, err: "pageIdx 1 is past the last page; with pageSize 100 there are 1 page(s), pageIdx 0 to 0"},
		{n: 5, args: map[string]any{"pageSize": 0}, err: "pageSize must be a positive integer"},
		{n: 5, args: map[string]any{"pageSize": -3}, err: "pageSize must be a positive integer"},
		{n: 5, args: map[string]any{"pageIdx": -1}, err: "pageIdx must be 0 or more (0 is the first page)"},
	} {
		req := pagingOf(t, tc.args)
		from, to, err := listPaging(req, tc.n)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("n=%d %v: error %v, want %q", tc.n, tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || from != tc.from || to != tc.to {
			t.Errorf("n=%d %v: %d-%d, %v; want %d-%d", tc.n, tc.args, from, to, err, tc.from, tc.to)
			continue
		}
		if got := pagingFooter(from, to, tc.n, req, "items"); got != tc.footer {
			t.Errorf("n=%d %v: footer %q, want %q", tc.n, tc.args, got, tc.footer)
		}
	}
	if defaultListPageSize != 100 {
		t.Errorf("defaultListPageSize = %d; the past-the-end case above assumes 100", defaultListPageSize)
	}
}

// The collectors of extension consoles belong to the session: another
// session sees none of them, and they go with the page they attached
// through.
func TestExtensionConsolesAreTheSessions(t *testing.T) {
	alice, bob := &fakeWorkspace{}, &fakeWorkspace{}
	defer alice.close()
	defer bob.close()
	at, bt := alice.open("", "about:blank", true, 0), bob.open("", "about:blank", true, 0)
	const ext = "abcdefghijklmnopabcdefghijklmnop"

	a, err := extConsoleFor(alice, ext, at, true)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := extConsoleFor(alice, ext, at, false); err != nil || again != a {
		t.Errorf("alice's second call got %p, %v; want her collector %p", again, err, a)
	}
	if _, err := extConsoleFor(bob, ext, bt, false); err == nil || !strings.Contains(err.Error(), "runs no service worker or background page now") {
		t.Errorf("bob sees alice's collector: %v", err)
	}
	b, err := extConsoleFor(bob, ext, bt, true)
	if err != nil || b == a {
		t.Fatalf("bob's collector %p, %v; alice's %p", b, err, a)
	}

	// A session collects from at most extConsolesPerSession extensions.
	for i := 1; i < extConsolesPerSession; i++ {
		if _, err := extConsoleFor(alice, fmt.Sprintf("%s%d", ext[:31], i), at, true); err != nil {
			t.Fatalf("extension %d: %v", i, err)
		}
	}
	_, err = extConsoleFor(alice, "ponmlkjihgfedcbaponmlkjihgfedcba", at, true)
	if want := fmt.Sprintf("list_extension_console_messages: this session already collects the consoles of %d extensions, the limit; open a new session for more", extConsolesPerSession); err == nil || err.Error() != want {
		t.Errorf("past the limit: %v, want %q", err, want)
	}
	if _, err := extConsoleFor(bob, "ponmlkjihgfedcbaponmlkjihgfedcba", bt, true); err != nil {
		t.Errorf("alice's limit stopped bob: %v", err)
	}

	// When the page closes, the collector goes with it.
	if err := alice.CloseTab(context.Background(), at.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := extConsoleFor(alice, ext, at, false); err == nil {
		t.Error("a collector outlived the page it attached through")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		alice.state.mu.Lock()
		n := len(alice.state.extConsoles)
		alice.state.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d collectors stayed after their page closed", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c, err := extConsoleFor(bob, ext, bt, false); err != nil || c != b {
		t.Errorf("closing alice's page dropped bob's collector: %p, %v", c, err)
	}
}

func TestExtensionConsolePaging(t *testing.T) {
	c := &extConsole{since: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), target: "W1"}
	for i := 1; i <= 3; i++ {
		c.listen("W1", &log.EventEntryAdded{Entry: &log.Entry{Level: "info", Text: fmt.Sprintf("m%d", i), Timestamp: runtime.Timestamp(i)}})
	}
	c.listen("W0", &log.EventEntryAdded{Entry: &log.Entry{Level: "info", Text: "from an older worker"}})
	const ext = "abcdefghijklmnopabcdefghijklmnop"
	head := "## Console messages of extension " + ext + "\nCollected since 2025-01-02T03:04:05Z.\n"
	for _, tc := range []struct {
		size, idx int
		want      string
	}{
		{50, 0, head + "Showing 1-3 of 3 messages.\nmsgid=1 [info] m1\nmsgid=2 [info] m2\nmsgid=3 [info] m3\n"},
		{2, 0, head + "Showing 1-2 of 3 messages.\nmsgid=1 [info] m1\nmsgid=2 [info] m2\nMore with pageIdx 1.\n"},
		{2, 1, head + "Showing 3-3 of 3 messages.\nmsgid=3 [info] m3\n"},
		{2, 2, head + "Page 2 is past the end: 3 messages make 2 pages of 2.\n"},
	} {
		if got := c.format(ext, "", tc.size, tc.idx); got != tc.want {
			t.Errorf("size %d idx %d:\n%s\nwant\n%s", tc.size, tc.idx, got, tc.want)
		}
	}
	empty := &extConsole{since: c.since}
	if got := empty.format(ext, "A note.", 50, 0); got != "## Console messages of extension "+ext+"\nA note.\nCollected since 2025-01-02T03:04:05Z.\nNo messages yet.\n" {
		t.Errorf("no messages: %q", got)
	}
}
