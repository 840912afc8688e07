package tools

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// outputPath resolves a filePath argument to a path inside the session's
// files directory. A relative path is taken from that directory; an absolute
// one must already be inside it. Anything that would leave it, through ".."
// or a symlink, is refused.
func outputPath(ctx context.Context, requested string) (string, error) {
	dir, err := filesDir(ctx)
	if err != nil {
		return "", err
	}
	return resolveUnder(dir, requested)
}

// filesDir returns the calling session's files directory, the only one tools
// read files from or write them to.
func filesDir(ctx context.Context) (string, error) {
	ws, err := workspaceFrom(ctx)
	if err != nil {
		return "", err
	}
	return ws.FilesDir()
}

func resolveUnder(dir, requested string) (string, error) {
	if requested == "" || strings.ContainsRune(requested, 0) {
		return "", fmt.Errorf("filePath is empty or invalid")
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("files directory: %w", err)
	}
	p := requested
	if !filepath.IsAbs(p) {
		p = filepath.Join(root, p)
	}
	p = filepath.Clean(p)
	parent, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return "", fmt.Errorf("filePath %q: its directory does not exist inside %s", requested, root)
	}
	p = filepath.Join(parent, filepath.Base(p))
	if rel, err := filepath.Rel(root, p); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("filePath %q is outside the directory files may be written to (%s); give a name inside it", requested, root)
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return "", fmt.Errorf("filePath %q is a symlink; give a plain file name", requested)
	}
	return p, nil
}

// writeOutput writes data to the filePath argument and returns the path.
func writeOutput(ctx context.Context, requested string, data []byte) (string, error) {
	p, err := outputPath(ctx, requested)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	return p, nil
}
