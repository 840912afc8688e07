// Package testchrome starts and stops headless Chromium for tests and for
// the bench commands.
//
// Every browser gets its own profile directory and a DevTools port chosen by
// Chromium itself (--remote-debugging-port=0); the port is read back from the
// profile's DevToolsActivePort file, so tests never assume 9222 is free.
package testchrome

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
	"sync"
	"syscall"
	"testing"
	"time"
)

// Chrome is one headless Chromium process started for a test.
type Chrome struct {
	// URL is the http DevTools endpoint, e.g. http://127.0.0.1:38211.
	URL string
	// Port is the DevTools port.
	Port int

	dir   string
	extra []string // more command-line flags, from StartWith
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
}

// Binary returns the Chromium executable to use: $MBP_TEST_CHROMIUM, or the
// first of chromium, chromium-browser, google-chrome found on PATH.
func Binary() (string, error) {
	if b := os.Getenv("MBP_TEST_CHROMIUM"); b != "" {
		return b, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Chromium found on PATH: run `make test` (it installs Debian's chromium) or set MBP_TEST_CHROMIUM")
}

// Start launches a headless Chromium and registers its cleanup with t.
func Start(t testing.TB) *Chrome {
	t.Helper()
	return StartWith(t)
}

// StartWith is Start with extra Chromium command-line flags, e.g.
// --load-extension=DIR.
func StartWith(t testing.TB, extraArgs ...string) *Chrome {
	t.Helper()
	c, err := Launch(t, extraArgs...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Launch is StartWith that returns the error instead of failing the test,
// so that several browsers can start at once from goroutines. The cleanup
// is registered with t either way.
func Launch(t testing.TB, extraArgs ...string) (*Chrome, error) {
	c := &Chrome{dir: t.TempDir(), extra: extraArgs}
	t.Cleanup(c.Kill)
	if err := c.start(0); err != nil {
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	return c, nil
}

// Run starts Chromium outside a test, for a command such as bench/compare,
// with its profile in dir. The caller stops it with Kill and owns dir.
func Run(dir string, extraArgs ...string) (*Chrome, error) {
	c := &Chrome{dir: dir, extra: extraArgs}
	if err := c.start(0); err != nil {
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	return c, nil
}

// Restart starts Chromium again on the same port and profile after Kill.
func (c *Chrome) Restart(t testing.TB) {
	t.Helper()
	if err := c.start(c.Port); err != nil {
		t.Fatalf("restart chromium: %v", err)
	}
}

func (c *Chrome) start(port int) error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	portFile := filepath.Join(c.dir, "DevToolsActivePort")
	_ = os.Remove(portFile)
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu",
		"--remote-debugging-address=127.0.0.1",
		"--remote-debugging-port=" + strconv.Itoa(port),
		"--user-data-dir=" + c.dir,
		"--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--no-first-run", "--disable-quic",
		"--disable-default-apps", "--no-default-browser-check",
	}, c.extra...)
	cmd := exec.Command(bin, append(args, "about:blank")...)
	// Its own process group, so Kill takes the renderers and helpers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	// Chromium writes DevToolsActivePort only when it picks the port itself.
	for port == 0 {
		if b, err := os.ReadFile(portFile); err == nil {
			line, _, _ := strings.Cut(string(b), "\n")
			if p, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && p > 0 {
				c.Port = p
				c.URL = "http://127.0.0.1:" + strconv.Itoa(p)
				break
			}
		}
		select {
		case <-done:
			return fmt.Errorf("chromium exited before it listened")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Kill()
			return fmt.Errorf("chromium did not write %s within 30s", portFile)
		}
	}
	// The port file appears slightly before /json/version answers.
	for time.Now().Before(deadline) {
		if _, _, err := c.version(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Kill()
	return fmt.Errorf("chromium on port %d never answered /json/version", c.Port)
}

// Dir returns the profile (user-data) directory, where Chromium writes
// DevToolsActivePort.
func (c *Chrome) Dir() string { return c.dir }

// Kill stops the process (SIGKILL) and waits for it to exit. It is safe to
// call more than once.
func (c *Chrome) Kill() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// Freeze stops the browser process (SIGSTOP), so that its DevTools
// connections stay open and answer nothing: a hung browser. The returned
// func resumes it (SIGCONT); Kill works on a frozen browser too.
func (c *Chrome) Freeze() (thaw func()) {
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	if cmd == nil {
		return func() {}
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGSTOP)
	return func() { _ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT) }
}

// WSURL returns the browser's current websocket debugger URL.
func (c *Chrome) WSURL(t testing.TB) string {
	t.Helper()
	ws, _, err := c.version()
	if err != nil {
		t.Fatalf("json/version: %v", err)
	}
	return ws
}

// Version returns the "Browser" field of /json/version, e.g.
// "Chrome/156.0.8078.73".
func (c *Chrome) Version() (string, error) {
	_, v, err := c.version()
	return v, err
}

// version returns the websocket debugger URL and the browser's version.
func (c *Chrome) version() (ws, browser string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/json/version", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var v struct {
		Browser string `json:"Browser"`
		WS      string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "", "", err
	}
	if v.WS == "" {
		return "", "", fmt.Errorf("no webSocketDebuggerUrl")
	}
	return v.WS, v.Browser, nil
}

// Target is one entry of /json/list.
type Target struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	URL  string `json:"url"`
}

// Pages lists the browser's page targets, straight from /json/list, without
// going through the proxy.
func (c *Chrome) Pages(t testing.TB) []Target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/json/list", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("json/list: %v", err)
	}
	defer resp.Body.Close()
	var all []Target
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatalf("json/list: %v", err)
	}
	var pages []Target
	for _, tg := range all {
		if tg.Type == "page" {
			pages = append(pages, tg)
		}
	}
	return pages
}

// CPU returns the CPU time (user and system) that the browser's processes
// still running have used: Chromium and the renderer, GPU and utility
// processes it started, all in its process group. Linux only (/proc).
func (c *Chrome) CPU() (time.Duration, error) {
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0, fmt.Errorf("chrome is not running")
	}
	pgrp := strconv.Itoa(cmd.Process.Pid) // Setpgid: the group is Chromium's PID
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// After the command name, in parentheses: state, ppid, pgrp, ...;
		// utime and stime are the 12th and 13th fields from there.
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 || f[2] != pgrp {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += ut + st
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil // USER_HZ is 100 on Linux
}
