package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Profile is a browser's user-data directory, where a browser with remote
// debugging on writes DevToolsActivePort.
type Profile struct {
	Name string // e.g. "Google Chrome"
	Dir  string
}

// DefaultProfiles lists the default user-data directories of Chrome,
// Chromium, Edge and Brave for goos, given the user's config dir
// (os.UserConfigDir), cache dir (os.UserCacheDir: %LocalAppData% on
// Windows) and home dir.
func DefaultProfiles(goos, configDir, cacheDir, home string) []Profile {
	var p []Profile
	add := func(name string, parts ...string) { p = append(p, Profile{Name: name, Dir: filepath.Join(parts...)}) }
	switch goos {
	case "darwin":
		add("Google Chrome", configDir, "Google", "Chrome")
		add("Google Chrome Beta", configDir, "Google", "Chrome Beta")
		add("Google Chrome Canary", configDir, "Google", "Chrome Canary")
		add("Chromium", configDir, "Chromium")
		add("Microsoft Edge", configDir, "Microsoft Edge")
		add("Brave", configDir, "BraveSoftware", "Brave-Browser")
	case "windows":
		add("Google Chrome", cacheDir, "Google", "Chrome", "User Data")
		add("Google Chrome Beta", cacheDir, "Google", "Chrome Beta", "User Data")
		add("Chromium", cacheDir, "Chromium", "User Data")
		add("Microsoft Edge", cacheDir, "Microsoft", "Edge", "User Data")
		add("Brave", cacheDir, "BraveSoftware", "Brave-Browser", "User Data")
	default:
		add("Google Chrome", configDir, "google-chrome")
		add("Google Chrome Beta", configDir, "google-chrome-beta")
		add("Google Chrome Unstable", configDir, "google-chrome-unstable")
		add("Chromium", configDir, "chromium")
		add("Chromium (snap)", home, "snap", "chromium", "common", "chromium")
		add("Microsoft Edge", configDir, "microsoft-edge")
		add("Brave", configDir, "BraveSoftware", "Brave-Browser")
	}
	return p
}

// ReadActivePort reads dir's DevToolsActivePort: the port on line 1 and
// the browser's websocket path (/devtools/browser/<id>) on line 2.
func ReadActivePort(dir string) (port int, path string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort"))
	if err != nil {
		return 0, "", err
	}
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	port, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || port < 1 || port > 65535 {
		return 0, "", fmt.Errorf("%s: line 1 is not a port", filepath.Join(dir, "DevToolsActivePort"))
	}
	if len(lines) > 1 {
		path = strings.TrimSpace(lines[1])
	}
	if !strings.HasPrefix(path, "/devtools/browser/") {
		return 0, "", fmt.Errorf("%s: line 2 is not a /devtools/browser/ path", filepath.Join(dir, "DevToolsActivePort"))
	}
	return port, path, nil
}

// FromProfile returns the loopback websocket URL named by dir's
// DevToolsActivePort, once its port accepts connections (a browser that
// crashed leaves a stale file). It only opens a TCP connection, never a
// DevTools one: Chrome's real-profile mode asks the user to allow each.
func FromProfile(ctx context.Context, dir string) (string, error) {
	port, path, err := ReadActivePort(dir)
	if err != nil {
		return "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s names port %d, but nothing listens there (a browser that exited?)", filepath.Join(dir, "DevToolsActivePort"), port)
	}
	c.Close()
	return "ws://" + addr + path, nil
}

// NoBrowserHelp says what to start when no browser was found.
func NoBrowserHelp(tried []Profile, launchDir string) string {
	var b strings.Builder
	b.WriteString("no browser with remote debugging was found")
	if len(tried) > 0 {
		b.WriteString(" (looked for DevToolsActivePort in")
		for i, p := range tried {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(" " + p.Dir)
		}
		b.WriteString(")")
	}
	b.WriteString(". Either:\n" +
		"  - in Chrome 144 or later, open chrome://inspect/#remote-debugging and turn remote debugging on (it stays on loopback; Chrome asks you to allow the connection), then run connect again;\n" +
		"  - or start a separate browser yourself: chromium --remote-debugging-port=0 --user-data-dir=" + launchDir + " and run connect --user-data-dir " + launchDir + ";\n" +
		"  - or let the agent start one: mcp-browser-proxy connect --launch (add --headless for no window);\n" +
		"  - or name it: --browser-url http://127.0.0.1:9222 or --ws-url ws://127.0.0.1:9222/devtools/browser/<id>.")
	return b.String()
}

// Discover returns the websocket URL of the first browser among profiles
// whose DevToolsActivePort names a live port.
func Discover(ctx context.Context, profiles []Profile) (string, Profile, error) {
	var errs []error
	for _, p := range profiles {
		ws, err := FromProfile(ctx, p.Dir)
		if err == nil {
			return ws, p, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return "", Profile{}, errors.Join(errs...)
}

// FromBrowserURL turns --browser-url (http://host:port) into the browser's
// websocket URL through /json/version, keeping host and port as given, and
// returns the product too. A ws(s) URL is returned as is.
func FromBrowserURL(ctx context.Context, raw string) (ws, product string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", "", fmt.Errorf("%q is not a URL like http://127.0.0.1:9222", raw)
	}
	switch u.Scheme {
	case "ws", "wss":
		return raw, "", nil
	case "http", "https":
	default:
		return "", "", fmt.Errorf("%q: use http://host:port or ws://host:port/devtools/browser/<id>", raw)
	}
	v, err := jsonVersion(ctx, u.Scheme+"://"+u.Host)
	if err != nil {
		return "", "", err
	}
	wu, err := url.Parse(v.WebSocketDebuggerURL)
	if err != nil || wu.Path == "" {
		return "", "", fmt.Errorf("%s/json/version names no websocket URL", u.Host)
	}
	wu.Host = u.Host
	if u.Scheme == "https" {
		wu.Scheme = "wss"
	}
	return wu.String(), v.Browser, nil
}

type versionInfo struct {
	Browser              string `json:"Browser"`
	WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
}

// jsonVersion reads base/json/version; Chrome's real-profile mode answers 404.
func jsonVersion(ctx context.Context, base string) (versionInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/json/version", nil)
	if err != nil {
		return versionInfo{}, err
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return versionInfo{}, fmt.Errorf("GET %s/json/version: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return versionInfo{}, fmt.Errorf("GET %s/json/version: HTTP %d", base, resp.StatusCode)
	}
	var v versionInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&v); err != nil {
		return versionInfo{}, fmt.Errorf("GET %s/json/version: %w", base, err)
	}
	return v, nil
}

// Product returns the browser product of the websocket URL's host from
// /json/version, or "" when it does not answer (real-profile mode).
func Product(ctx context.Context, wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return ""
	}
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	v, err := jsonVersion(ctx, scheme+"://"+u.Host)
	if err != nil {
		return ""
	}
	return v.Browser
}

// ChromeCandidates lists browser executables to try for --launch on goos.
func ChromeCandidates(goos string) []string {
	switch goos {
	case "darwin":
		return []string{
			"/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
			"/Applications/Chromium.app/Contents/MacOS/Chromium",
			"/Applications/Microsoft Edge.app/Contents/MacOS/Microsoft Edge",
			"/Applications/Brave Browser.app/Contents/MacOS/Brave Browser",
		}
	case "windows":
		return []string{"chrome", "msedge", "brave",
			`C:\Program Files\Google\Chrome\Application\chrome.exe`,
			`C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe`}
	default:
		return []string{"google-chrome", "google-chrome-stable", "chromium", "chromium-browser", "microsoft-edge", "brave-browser"}
	}
}

// FindChrome returns the first of candidates that exists (a path) or is on PATH.
func FindChrome(candidates []string) (string, error) {
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Chrome, Chromium, Edge or Brave found (tried %s); install one or pass --chrome PATH", strings.Join(candidates, ", "))
}

// Launched is a browser the agent started for --launch.
type Launched struct {
	Cmd   *exec.Cmd
	WSURL string
	done  chan struct{}
}

// Launch starts binary with a dedicated profile in dir, DevTools on a
// loopback port of its choosing, and waits (bounded by ctx) until it has
// written DevToolsActivePort and listens.
func Launch(ctx context.Context, binary, dir string, headless bool, extra ...string) (*Launched, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the profile dir: %w", err)
	}
	_ = os.Remove(filepath.Join(dir, "DevToolsActivePort")) // a stale one would mislead the wait
	args := []string{
		"--user-data-dir=" + dir, "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
		"--no-first-run", "--no-default-browser-check",
	}
	if headless {
		args = append(args, "--headless")
	}
	args = append(args, extra...)
	cmd := exec.Command(binary, append(args, "about:blank")...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	l := &Launched{Cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(l.done) }()
	for {
		if ws, err := FromProfile(ctx, dir); err == nil {
			l.WSURL = ws
			return l, nil
		}
		select {
		case <-l.done:
			return nil, fmt.Errorf("%s exited before it opened DevTools (is another instance using %s?)", binary, dir)
		case <-ctx.Done():
			l.Stop()
			return nil, fmt.Errorf("%s did not write %s in time", binary, filepath.Join(dir, "DevToolsActivePort"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends the launched browser and waits for it.
func (l *Launched) Stop() {
	_ = l.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-l.done:
	case <-time.After(5 * time.Second):
		_ = l.Cmd.Process.Kill()
		<-l.done
	}
}
