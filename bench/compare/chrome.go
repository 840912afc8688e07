package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// chrome is the one headless Chromium every server under comparison drives.
// internal/testchrome needs a testing.TB, so this is its small twin for a
// command.
type chrome struct {
	URL     string // http DevTools endpoint, e.g. http://127.0.0.1:38211
	Version string // the "Browser" field of /json/version
	dir     string
	cmd     *exec.Cmd
	done    chan struct{}
}

// chromeBinary is $MBP_TEST_CHROMIUM, or /usr/bin/chromium, or the first
// Chromium on PATH.
func chromeBinary() (string, error) {
	if b := os.Getenv("MBP_TEST_CHROMIUM"); b != "" {
		return b, nil
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Chromium: install Debian's chromium (make deps) or set MBP_TEST_CHROMIUM")
}

// startChrome launches Chromium with a fresh profile and a DevTools port of
// its own choosing, read back from the profile's DevToolsActivePort.
func startChrome() (*chrome, error) {
	bin, err := chromeBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mbp-compare-chrome-")
	if err != nil {
		return nil, err
	}
	c := &chrome{dir: dir, done: make(chan struct{})}
	c.cmd = exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--user-data-dir="+dir,
		"--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--no-first-run", "--disable-quic",
		"about:blank",
	)
	// Its own process group, so stop takes the renderers and helpers too.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()

	deadline := time.Now().Add(30 * time.Second)
	portFile := filepath.Join(dir, "DevToolsActivePort")
	for c.URL == "" {
		if b, err := os.ReadFile(portFile); err == nil {
			line, _, _ := strings.Cut(string(b), "\n")
			if p, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && p > 0 {
				c.URL = "http://127.0.0.1:" + strconv.Itoa(p)
				break
			}
		}
		select {
		case <-c.done:
			c.stop()
			return nil, fmt.Errorf("chromium exited before it listened")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("chromium did not write %s within 30s", portFile)
		}
	}
	// The port file appears slightly before /json/version answers.
	for time.Now().Before(deadline) {
		if v, err := c.version(); err == nil {
			c.Version = v
			return c, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.stop()
	return nil, fmt.Errorf("chromium at %s never answered /json/version", c.URL)
}

func (c *chrome) version() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/json/version", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct {
		Browser string `json:"Browser"`
		WS      string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "", err
	}
	if v.WS == "" {
		return "", fmt.Errorf("no webSocketDebuggerUrl yet")
	}
	return v.Browser, nil
}

// stop kills the whole process group and removes the profile.
func (c *chrome) stop() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
	}
	_ = os.RemoveAll(c.dir)
}
