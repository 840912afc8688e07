package tools

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// The tool schemas are a public API: each one is kept in
// testdata/toolsnaps/<name>.json, and a change fails this test until the
// snapshot is updated on purpose with UPDATE_TOOLSNAPS=true.
func TestToolSchemaSnapshots(t *testing.T) {
	dir := filepath.Join("testdata", "toolsnaps")
	update := os.Getenv("UPDATE_TOOLSNAPS") == "true"
	if update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, tl := range All(Config{}) {
		name := tl.Tool.Name
		if seen[name] {
			t.Errorf("tool %s is defined twice", name)
		}
		seen[name] = true
		got, err := json.MarshalIndent(tl.Tool, "", "  ")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got = append(got, '\n')
		path := filepath.Join(dir, name+".json")
		if update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s has no schema snapshot; run UPDATE_TOOLSNAPS=true go test ./tools/ -run TestToolSchemaSnapshots and commit %s", name, path)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("the schema of %s changed; if that is intended, run UPDATE_TOOLSNAPS=true go test ./tools/ -run TestToolSchemaSnapshots and commit %s", name, path)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".json"); !seen[name] {
			if update {
				_ = os.Remove(f)
			} else {
				t.Errorf("snapshot %s names no tool; delete it if the tool was removed on purpose", f)
			}
		}
	}
}

func TestEveryToolIsDescribedAndGuarded(t *testing.T) {
	known := map[string]bool{}
	for _, p := range auth.AllPerms() {
		known[p] = true
	}
	for _, tl := range All(Config{}) {
		a := tl.Tool.Annotations
		if tl.Tool.Description == "" {
			t.Errorf("%s lacks a description", tl.Tool.Name)
		}
		if !known[tl.Perm] || tl.Perm == auth.PermAdmin {
			t.Errorf("%s needs permission %q, not a browser permission", tl.Tool.Name, tl.Perm)
		}
		if a.ReadOnlyHint != nil && *a.ReadOnlyHint && tl.Perm != auth.PermRead {
			t.Errorf("%s is read-only but needs %s", tl.Tool.Name, tl.Perm)
		}
	}
}

// TestTerseAnnotationsKeepMeaning: leaving out the hints the MCP spec
// assumes by default changes no hint's value as a client reads it.
func TestTerseAnnotationsKeepMeaning(t *testing.T) {
	// effective reads a hint as the spec does: absent is the default.
	effective := func(h *bool, def bool) bool {
		if h == nil {
			return def
		}
		return *h
	}
	for _, ro := range []bool{false, true} {
		for _, de := range []bool{false, true} {
			for _, id := range []bool{false, true} {
				for _, ow := range []bool{false, true} {
					in := mcp.ToolAnnotation{ReadOnlyHint: &ro, DestructiveHint: &de, IdempotentHint: &id, OpenWorldHint: &ow}
					out := terseAnnotations(in)
					if effective(out.ReadOnlyHint, false) != ro || effective(out.IdempotentHint, false) != id || effective(out.OpenWorldHint, true) != ow {
						t.Errorf("%+v became %+v", in, out)
					}
					// destructiveHint is meaningful only when readOnlyHint is false.
					if !ro && effective(out.DestructiveHint, true) != de {
						t.Errorf("destructive %v of a writing tool became %v", de, out.DestructiveHint)
					}
				}
			}
		}
	}
}
