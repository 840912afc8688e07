package tools

import (
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
		if err := checkURL(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"file:///etc/passwd", "chrome://settings", "devtools://devtools/x", "javascript:alert(1)", "relative/path", "view-source:http://x"} {
		if err := checkURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestUIDs(t *testing.T) {
	s := NewTabState("T1")
	a, b := s.uid(10), s.uid(20)
	if a == b || s.uid(10) != a {
		t.Fatalf("uids not stable: %d %d %d", a, b, s.uid(10))
	}
	if id, err := s.node("uid=1"); err != nil || id != 10 {
		t.Errorf("node(uid=1) = %d, %v", id, err)
	}
	s.resetIfNewDocument(99)
	if _, err := s.node("1"); err == nil || !strings.Contains(err.Error(), "take_snapshot") {
		t.Errorf("stale uid after a new document: %v", err)
	}
	if c := s.uid(10); c == a {
		t.Errorf("uid %d reused after a new document", c)
	}
	if _, err := s.node("abc"); err == nil {
		t.Error("non-numeric uid accepted")
	}
}
