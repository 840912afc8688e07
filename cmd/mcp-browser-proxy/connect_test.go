package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testlog"
)

// agentProc is a running `connect`.
type agentProc struct {
	cmd            *exec.Cmd
	stdout, stderr *testlog.Buffer
	exited         chan struct{}
}

func startConnect(t *testing.T, bin string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{stdout: &testlog.Buffer{}, stderr: &testlog.Buffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(bin, append([]string{"connect"}, args...)...)
	a.cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "HTTP_PROXY=", "https_proxy=", "http_proxy=")
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() { a.stop(t) })
	return a
}

func (a *agentProc) stop(t *testing.T) {
	select {
	case <-a.exited:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
		t.Error("connect did not stop on SIGTERM")
	}
}

// waitTunnel waits until user's browser is connected through a tunnel.
func waitTunnel(t *testing.T, p *proc, tok, user string, a *agentProc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, p.base+"/api/users/"+user+"/status", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		var st struct {
			BrowserURL, BrowserStatus string
			Tunnel                    *struct{ Connected bool }
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.BrowserStatus == "connected" && st.Tunnel != nil && st.Tunnel.Connected && st.BrowserURL == "tunnel://"+user {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tunnel for %s: %+v\nagent: %s\nproxy: %s", user, st, a.stderr.String(), p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The built binary: connect tunnels a Chromium found by its
// DevToolsActivePort to a proxy that may not dial loopback, prints MCP
// client configuration, remembers server and token in a 0600 file, and a
// second run with no flags but the profile reuses them.
func TestConnectProcess(t *testing.T) {
	bin := buildBinary(t)
	p := startProxy(t, bin, "", "--browser-deny-cidrs", "127.0.0.0/8,::1/128,169.254.0.0/16")
	chrome := testchrome.Start(t)
	tok := procToken(t, "alice")
	cfg := filepath.Join(t.TempDir(), "conf", "config.json")

	a := startConnect(t, bin, "--server", p.base, "--token", tok, "--user-data-dir", chrome.Dir(), "--config", cfg)
	waitTunnel(t, p, tok, "alice", a)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.stdout.String(), "VS Code (.vscode/mcp.json)") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := a.stdout.String()
	for _, want := range []string{
		"claude mcp add --transport http browser " + p.base + "/mcp --header \"Authorization: Bearer " + tok + "\"",
		"Cursor (.cursor/mcp.json)", `"mcpServers"`, `"servers"`, `"type": "http"`,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("connect's output lacks %q:\n%s", want, out)
		}
	}
	a.stop(t)

	fi, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode %v, want 0600", fi.Mode().Perm())
	}
	var saved agentConfig
	b, _ := os.ReadFile(cfg)
	if err := json.Unmarshal(b, &saved); err != nil || saved.Server != p.base || saved.Token != tok {
		t.Fatalf("saved config %s: %v", b, err)
	}

	// The second run needs neither --server nor --token.
	a2 := startConnect(t, bin, "--user-data-dir", chrome.Dir(), "--config", cfg)
	waitTunnel(t, p, tok, "alice", a2)
}

// With no browser to find, connect says what to start.
func TestConnectNoBrowser(t *testing.T) {
	empty := t.TempDir()
	_, _, err := run(t, "connect", "--server", "http://127.0.0.1:1", "--token", "x", "--user-data-dir", empty, "--config", filepath.Join(empty, "c.json"))
	if err == nil || !strings.Contains(err.Error(), "--remote-debugging-port=0 --user-data-dir="+empty) || !strings.Contains(err.Error(), "chrome://inspect/#remote-debugging") {
		t.Fatalf("connect without a browser: %v", err)
	}
	_, _, err = run(t, "connect", "--config", filepath.Join(empty, "c.json"))
	if err == nil || !strings.Contains(err.Error(), "--server and --token") {
		t.Fatalf("connect without server or token: %v", err)
	}
}
