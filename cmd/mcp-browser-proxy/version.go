package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// versionOverride replaces the module version when set at build time, for
// a build with no module or VCS information (a source tarball):
// go build -ldflags "-X main.versionOverride=v1.2.3".
var versionOverride string

// version is the version the proxy reports: MCP serverInfo, the start-up
// log line, the first line of `version`.
var version = readBuild().version

// buildInfo is what the binary knows of its own build (Go stamps it:
// `go build` and `go run` inside the repository record the commit).
type buildInfo struct {
	version  string // module version, e.g. v1.2.0, or a pseudo-version with +dirty
	revision string // VCS commit; empty when the build had no VCS information
	time     string // commit time (RFC 3339); Go records no build time, so builds are reproducible
	modified bool   // the work tree had uncommitted changes
	goVer    string
}

// readBuild reads the build information embedded in the binary.
func readBuild() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return parseBuild(bi)
}

// parseBuild picks the version, commit and commit time out of bi (nil: a
// binary without build information).
func parseBuild(bi *debug.BuildInfo) buildInfo {
	b := buildInfo{version: "(devel)", goVer: runtime.Version()}
	if bi != nil {
		if v := bi.Main.Version; v != "" {
			b.version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.revision = s.Value
			case "vcs.time":
				b.time = s.Value
			case "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
	}
	if versionOverride != "" {
		b.version = versionOverride
	}
	return b
}

// String is the text of `version` and `--version`: the version on the
// first line, then the commit, its time, and the Go toolchain.
func (b buildInfo) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "mcp-browser-proxy %s\n", b.version)
	switch {
	case b.revision == "":
		s.WriteString("commit:      unknown (built without VCS information)\n")
	case b.modified:
		fmt.Fprintf(&s, "commit:      %s (with uncommitted changes)\n", b.revision)
	default:
		fmt.Fprintf(&s, "commit:      %s\n", b.revision)
	}
	if b.time != "" {
		fmt.Fprintf(&s, "commit time: %s\n", b.time)
	}
	fmt.Fprintf(&s, "go:          %s %s/%s\n", b.goVer, runtime.GOOS, runtime.GOARCH)
	return s.String()
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and commit time of this build",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprint(cmd.OutOrStdout(), readBuild())
		},
	}
}
