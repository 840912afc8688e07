package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// TestVersionText: the version, commit, modified flag and commit time come
// from the build information; without it the text says so.
func TestVersionText(t *testing.T) {
	b := parseBuild(&debug.BuildInfo{
		Main: debug.Module{Path: "github.com/mcp-browser-proxy/mcp-browser-proxy", Version: "v1.2.3-0.20260101120000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-01-01T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	})
	text := b.String()
	for _, want := range []string{
		"mcp-browser-proxy v1.2.3-0.20260101120000-0123456789ab+dirty\n",
		"commit:      0123456789abcdef0123456789abcdef01234567 (with uncommitted changes)\n",
		"commit time: 2026-01-01T12:00:00Z\n",
		"go:          go",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("version text %q does not say %q", text, want)
		}
	}
	if b.version != "v1.2.3-0.20260101120000-0123456789ab+dirty" {
		t.Errorf("reported version %q", b.version)
	}

	none := parseBuild(nil).String()
	if !strings.HasPrefix(none, "mcp-browser-proxy (devel)\n") || !strings.Contains(none, "unknown (built without VCS information)") || strings.Contains(none, "commit time") {
		t.Errorf("without build information: %q", none)
	}

	versionOverride = "v9.9.9"
	defer func() { versionOverride = "" }()
	if v := parseBuild(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}).version; v != "v9.9.9" {
		t.Errorf("with -X main.versionOverride=v9.9.9: %q", v)
	}
}

// TestProcessVersion: the built binary's `version` and `--version` print
// what Go stamped into it (read back with `go version -m`), not "dev"; in
// a git checkout Go can stamp, the commit is HEAD and "uncommitted
// changes" matches git status.
func TestProcessVersion(t *testing.T) {
	bin := buildBinary(t)
	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
		}
		return string(out)
	}
	text := run(bin, "version")
	t.Logf("version:\n%s", text)
	if flag := run(bin, "--version"); flag != text {
		t.Errorf("--version printed %q, version %q", flag, text)
	}

	// What the go command reads from the binary.
	modVersion, settings := "", map[string]string{}
	for line := range strings.Lines(run("go", "version", "-m", bin)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			modVersion = f[2]
		case len(f) >= 2 && f[0] == "build":
			if k, v, ok := strings.Cut(f[1], "="); ok {
				settings[k] = v
			}
		}
	}
	if modVersion == "" {
		t.Fatal("go version -m shows no main module version")
	}
	if first, _, _ := strings.Cut(text, "\n"); first != "mcp-browser-proxy "+modVersion {
		t.Errorf("first line %q, want the module version %q", first, modVersion)
	}
	rev := settings["vcs.revision"]
	switch {
	case rev == "":
		if !strings.Contains(text, "commit:      unknown (built without VCS information)") {
			t.Errorf("a build without VCS information: %q", text)
		}
		t.Log("this build has no VCS information (a git worktree, whose .git is a file, or no git): only the fallback is checked")
	case settings["vcs.modified"] == "true":
		if !strings.Contains(text, "commit:      "+rev+" (with uncommitted changes)\n") {
			t.Errorf("version %q, want commit %s with uncommitted changes", text, rev)
		}
	default:
		if !strings.Contains(text, "commit:      "+rev+"\n") {
			t.Errorf("version %q, want commit %s", text, rev)
		}
	}
	if ct := settings["vcs.time"]; ct != "" && !strings.Contains(text, "commit time: "+ct+"\n") {
		t.Errorf("version %q, want commit time %s", text, ct)
	}

	// Where Go can stamp (a checkout with a .git directory) it must have:
	// the commit is HEAD.
	if root := gitDir(t); root != "" && rev == "" {
		t.Errorf("built in the git checkout %s, yet no commit in the binary", root)
	} else if root != "" {
		head := strings.TrimSpace(run("git", "-C", root, "rev-parse", "HEAD"))
		if rev != head {
			t.Errorf("commit %s in the binary, HEAD is %s", rev, head)
		}
		dirty := strings.TrimSpace(run("git", "-C", root, "status", "--porcelain")) != ""
		if dirty != strings.Contains(text, "(with uncommitted changes)") {
			t.Errorf("version %q; git status shows uncommitted changes: %v", text, dirty)
		}
	}
}

// gitDir returns the checkout above the working directory whose .git is a
// directory (the only kind Go stamps), or "" when there is none or no git.
func gitDir(t *testing.T) string {
	if _, err := exec.LookPath("git"); err != nil {
		return ""
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
			if fi.IsDir() {
				return dir
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
