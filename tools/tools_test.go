package tools

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveUnder(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.EvalSymlinks(dir)
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"a.png", filepath.Join(root, "a.png"), true},
		{"sub/a.png", filepath.Join(root, "sub", "a.png"), true},
		{filepath.Join(dir, "b.png"), filepath.Join(root, "b.png"), true},
		{"../a.png", "", false},
		{"sub/../../a.png", "", false},
		{"/etc/passwd", "", false},
		{"link/a.png", "", false},
		{"missing/a.png", "", false},
		{"", "", false},
		{".", "", false},
	} {
		got, err := resolveUnder(dir, tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("resolveUnder(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestStringOrList(t *testing.T) {
	if got, err := stringOrList("a"); err != nil || len(got) != 1 {
		t.Errorf("string: %v %v", got, err)
	}
	if got, err := stringOrList([]any{"a", "b"}); err != nil || len(got) != 2 {
		t.Errorf("list: %v %v", got, err)
	}
	for _, bad := range []any{nil, 3, "", []any{}, []any{"a", 1}, []any{""}} {
		if _, err := stringOrList(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080/", "https://example.test/x", "about:blank", "data:text/html,hi"} {
		if err := (NavPolicy{}).Check(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"file:///etc/passwd", "chrome://settings", "devtools://devtools/x", "javascript:alert(1)", "relative/path", "view-source:http://x"} {
		if err := (NavPolicy{}).Check(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestUIDs(t *testing.T) {
	s := NewTabState("T1")
	n10, n20 := nodeRef{id: 10}, nodeRef{id: 20}
	a, b := s.uid(n10), s.uid(n20)
	if a == b || s.uid(n10) != a {
		t.Fatalf("uids not stable: %d %d %d", a, b, s.uid(n10))
	}
	if ref, err := s.node("uid=1"); err != nil || ref != n10 {
		t.Errorf("node(uid=1) = %v, %v", ref, err)
	}
	// Backend node ids repeat across processes: the frame tells them apart.
	inFrame := nodeRef{frame: "F1", id: 10}
	f := s.uid(inFrame)
	if f == a {
		t.Errorf("node 10 of frame F1 got the uid of node 10 of the page")
	}
	s.forgetFrame("F1")
	if _, err := s.node(fmt.Sprint(f)); err == nil {
		t.Errorf("uid %d of a forgotten frame still resolves", f)
	}
	if ref, err := s.node(fmt.Sprint(a)); err != nil || ref != n10 {
		t.Errorf("forgetting a frame dropped a uid of the page: %v, %v", ref, err)
	}
	s.resetIfNewDocument(99)
	if _, err := s.node("1"); err == nil || !strings.Contains(err.Error(), "take_snapshot") {
		t.Errorf("stale uid after a new document: %v", err)
	}
	if c := s.uid(n10); c == a {
		t.Errorf("uid %d reused after a new document", c)
	}
	if _, err := s.node("abc"); err == nil {
		t.Error("non-numeric uid accepted")
	}
}
