package session

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUserDirStaysUnderBase(t *testing.T) {
	base := filepath.Join(t.TempDir(), "files")
	if got, err := userDir(base, "alice@example.com"); err != nil || got != filepath.Join(base, "alice@example.com") {
		t.Fatalf("userDir(alice@example.com) = %q, %v", got, err)
	}
	for _, id := range []string{"", ".", "..", "...", "../x", "a/../..", "a/b", `a\b`, "/abs", "a\x00b"} {
		if got, err := userDir(base, id); err == nil {
			t.Errorf("userDir(%q) = %q, want an error", id, got)
		} else if !strings.Contains(err.Error(), "user ID") {
			t.Errorf("userDir(%q): error %q does not say the user ID is the problem", id, err)
		}
	}
}

// TestFilesDirOfAnEscapingUserID: a session whose user ID would escape
// --files-dir (it never passed validation, e.g. restored from an old store)
// gets no files directory, and nothing is made outside --files-dir.
func TestFilesDirOfAnEscapingUserID(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(root, "files")
	if err := os.Mkdir(base, 0o700); err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, Config{FilesDir: base})
	for _, id := range []string{"..", ".", "../escaped"} {
		s := m.Open(m.NewID(id), id)
		if dir, err := s.FilesDir(); err == nil {
			t.Errorf("FilesDir of user %q = %q, want an error", id, dir)
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil || len(entries) != 1 || entries[0].Name() != "files" {
		t.Errorf("the parent of --files-dir holds %v (%v), want only files", entries, err)
	}
	if entries, _ := os.ReadDir(base); len(entries) != 0 {
		t.Errorf("--files-dir holds %v, want nothing", entries)
	}
	good := m.Open(m.NewID("bob"), "bob")
	if dir, err := good.FilesDir(); err != nil || dir != filepath.Join(base, "bob") {
		t.Errorf("FilesDir of bob = %q, %v", dir, err)
	}
}
