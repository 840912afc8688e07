package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// doctorLines runs doctor in-process and returns its lines by check name,
// and whether it failed.
func doctorLines(t *testing.T, args ...string) (map[string]string, string, error) {
	t.Helper()
	out, _, err := run(t, append([]string{"doctor"}, args...)...)
	t.Log("\n" + out)
	lines := map[string]string{}
	for l := range strings.SplitSeq(strings.TrimRight(out, "\n"), "\n") {
		name, _, ok := strings.Cut(l[6:], ":")
		if !ok {
			t.Fatalf("doctor line %q has no check name:\n%s", l, out)
		}
		lines[name] = l
	}
	for _, n := range []string{nameBrowser, namePort, nameHandshake, nameProxy, nameToken, nameReg, nameTunnel, nameClock} {
		if lines[n] == "" {
			t.Fatalf("doctor printed no %q line:\n%s", n, out)
		}
	}
	if len(lines) != 8 {
		t.Fatalf("doctor printed %d lines, want one per check:\n%s", len(lines), out)
	}
	return lines, out, err
}

// wantLine fails unless check's line has outcome and every one of subs.
func wantLine(t *testing.T, lines map[string]string, out, check, outcome string, subs ...string) {
	t.Helper()
	l := lines[check]
	if !strings.HasPrefix(l, outcome+" ") {
		t.Fatalf("%s: want %s, got %q\n%s", check, outcome, l, out)
	}
	for _, s := range subs {
		if !strings.Contains(l, s) {
			t.Fatalf("%s line lacks %q: %q", check, s, l)
		}
	}
}

// signJWT signs claims as the proxy's tokens are signed.
func signJWT(t *testing.T, secret string, user string, iat, exp time.Time) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: user, IssuedAt: jwt.NewNumericDate(iat), ExpiresAt: jwt.NewNumericDate(exp), ID: "doctor-test",
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// doctor against the real proxy and a real Chromium tunnelled by the real
// agent: a healthy setup is all ok, and each broken one shows the FAIL line
// and advice of its broken step, with a non-zero exit.
func TestDoctor(t *testing.T) {
	bin := buildBinary(t)
	dataDir := t.TempDir()
	keyOut, _, err := run(t, "apikey", "create", "--user", "carol", "--data-dir", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	apiKey := strings.TrimSpace(keyOut)
	p := startProxy(t, bin, dataDir, "--browser-deny-cidrs", "127.0.0.0/8,::1/128,169.254.0.0/16")
	chrome := testchrome.Start(t)
	tok := procToken(t, "alice")
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := saveAgentConfig(cfg, agentConfig{Server: p.base, Token: tok}); err != nil {
		t.Fatal(err)
	}
	a := startConnect(t, bin, "--user-data-dir", chrome.Dir(), "--config", cfg)
	waitTunnel(t, p, tok, "alice", a)

	t.Run("healthy", func(t *testing.T) {
		// Server and token come from connect's config file.
		lines, out, err := doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg, "--handshake")
		if err != nil {
			t.Fatalf("doctor on a healthy setup: %v\n%s", err, out)
		}
		for name, l := range lines {
			if !strings.HasPrefix(l, "ok ") {
				t.Fatalf("%s is not ok on a healthy setup:\n%s", name, out)
			}
		}
		wantLine(t, lines, out, nameHandshake, "ok", "Chrome")
		wantLine(t, lines, out, nameToken, "ok", "user alice", "expires ")
		wantLine(t, lines, out, nameReg, "ok", "tunnel://alice", "connected")
		wantLine(t, lines, out, nameTunnel, "ok", "connected since")
		if strings.Contains(out, tok) {
			t.Fatal("doctor printed the token")
		}

		// Without --handshake no DevTools connection is opened.
		lines, out, err = doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg)
		if err != nil {
			t.Fatalf("doctor without --handshake: %v\n%s", err, out)
		}
		wantLine(t, lines, out, nameHandshake, "skip", "Chrome 144", "--handshake")

		// --browser-url and --ws-url name the browser as for connect.
		for _, flag := range [][]string{{"--browser-url", chrome.URL}, {"--ws-url", chrome.WSURL(t)}} {
			lines, out, err = doctorLines(t, flag[0], flag[1], "--config", cfg, "--handshake")
			if err != nil {
				t.Fatalf("doctor %s: %v\n%s", flag[0], err, out)
			}
			wantLine(t, lines, out, nameBrowser, "ok", flag[0]+" "+flag[1])
			wantLine(t, lines, out, nameHandshake, "ok", "Chrome")
		}

		// The built binary exits 0.
		cmd := exec.Command(bin, "doctor", "--user-data-dir", chrome.Dir(), "--config", cfg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("doctor process on a healthy setup: %v\n%s", err, b)
		}
	})

	t.Run("no browser", func(t *testing.T) {
		lines, out, err := doctorLines(t, "--user-data-dir", t.TempDir(), "--config", cfg)
		if err == nil {
			t.Fatal("doctor without a browser succeeded")
		}
		wantLine(t, lines, out, nameBrowser, "FAIL", "no DevToolsActivePort", "chrome://inspect/#remote-debugging", "connect --launch")
		wantLine(t, lines, out, namePort, "skip")
		wantLine(t, lines, out, nameProxy, "ok")

		// The built binary exits non-zero.
		cmd := exec.Command(bin, "doctor", "--user-data-dir", t.TempDir(), "--config", cfg)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		var ee *exec.ExitError
		if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("doctor process without a browser: %v", err)
		}
		if !strings.HasPrefix(stdout.String(), "FAIL  browser found:") {
			t.Fatalf("doctor process stdout: %s", stdout.String())
		}
	})

	t.Run("stale port", func(t *testing.T) {
		dir := t.TempDir()
		dead := freeAddr(t)
		port := dead[strings.LastIndex(dead, ":")+1:]
		if err := os.WriteFile(filepath.Join(dir, "DevToolsActivePort"), []byte(port+"\n/devtools/browser/gone\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		lines, out, err := doctorLines(t, "--user-data-dir", dir, "--config", cfg)
		if err == nil {
			t.Fatal("doctor with a dead port succeeded")
		}
		wantLine(t, lines, out, nameBrowser, "ok", "port "+port)
		wantLine(t, lines, out, namePort, "FAIL", "nothing answers", "start it again")
	})

	t.Run("proxy down", func(t *testing.T) {
		lines, out, err := doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg, "--server", "http://"+freeAddr(t))
		if err == nil {
			t.Fatal("doctor with the proxy down succeeded")
		}
		wantLine(t, lines, out, nameBrowser, "ok")
		wantLine(t, lines, out, nameProxy, "FAIL", "/health", "that the proxy is running")
		wantLine(t, lines, out, nameToken, "skip", "needs the proxy")
		wantLine(t, lines, out, nameClock, "skip")
	})

	t.Run("bad token", func(t *testing.T) {
		other := signJWT(t, strings.Repeat("x", 40), "alice", time.Now(), time.Now().Add(time.Hour))
		lines, out, err := doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg, "--token", other)
		if err == nil {
			t.Fatal("doctor with a foreign token succeeded")
		}
		wantLine(t, lines, out, nameToken, "FAIL", "refuses the token", "not valid for this proxy", "token issue")
		wantLine(t, lines, out, nameReg, "skip")

		lines, out, _ = doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg, "--token", "not-a-token")
		wantLine(t, lines, out, nameToken, "FAIL", "malformed", "neither a JWT nor an API key")
	})

	t.Run("expired token", func(t *testing.T) {
		old := signJWT(t, procSecret, "alice", time.Now().Add(-3*time.Hour), time.Now().Add(-2*time.Hour))
		lines, out, err := doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg, "--token", old)
		if err == nil {
			t.Fatal("doctor with an expired token succeeded")
		}
		wantLine(t, lines, out, nameToken, "FAIL", "has expired", "expired ", " ago", "connect --token NEW")
	})

	t.Run("not registered", func(t *testing.T) {
		lines, out, err := doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg, "--token", procToken(t, "bob"))
		if err == nil {
			t.Fatal("doctor of an unregistered user succeeded")
		}
		wantLine(t, lines, out, nameToken, "ok", "user bob")
		wantLine(t, lines, out, nameReg, "FAIL", "bob has no registered browser", "mcp-browser-proxy connect")
		wantLine(t, lines, out, nameTunnel, "skip")
	})

	t.Run("read-only token", func(t *testing.T) {
		secret, _ := auth.SecretFromString(procSecret)
		authn, _ := auth.NewAuthenticator(secret)
		ro, err := authn.Issue("alice", []string{auth.PermRead}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		lines, out, err := doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg, "--token", ro)
		if err == nil {
			t.Fatal("doctor with a token connect cannot use succeeded")
		}
		wantLine(t, lines, out, nameToken, "FAIL", "without browser:write", "connect needs browser:write")
	})

	t.Run("api key", func(t *testing.T) {
		lines, out, err := doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg, "--token", apiKey)
		if err == nil {
			t.Fatal("doctor of carol, never registered, succeeded")
		}
		wantLine(t, lines, out, nameToken, "ok", "user carol", "API key (no expiry")
		wantLine(t, lines, out, nameReg, "FAIL", "carol has no registered browser")
		if strings.Contains(out, apiKey) {
			t.Fatal("doctor printed the API key")
		}
	})

	t.Run("clock skew", func(t *testing.T) {
		var out bytes.Buffer
		f := doctorFlags{userDataDir: chrome.Dir(), config: cfg}
		failed, err := runDoctor(context.Background(), &out, f, func() time.Time { return time.Now().Add(-2 * time.Minute) })
		if err != nil || failed != 0 {
			t.Fatalf("doctor with a slow clock: %d failed, %v\n%s", failed, err, out.String())
		}
		// Date has whole seconds: the skew is known to a second.
		if !regexp.MustCompile(`WARN  clock skew: the proxy's clock is (1m59|2m0|2m1)s ahead of this machine's.*NTP`).MatchString(out.String()) {
			t.Fatalf("no skew warning:\n%s", out.String())
		}
	})

	// Last: the agent stops, so the tunnel is down.
	t.Run("tunnel down", func(t *testing.T) {
		a.stop(t)
		deadline := time.Now().Add(20 * time.Second)
		for {
			lines, out, err := doctorLines(t, "--user-data-dir", chrome.Dir(), "--config", cfg)
			if strings.HasPrefix(lines[nameTunnel], "FAIL ") {
				if err == nil {
					t.Fatal("doctor with the tunnel down succeeded")
				}
				wantLine(t, lines, out, nameTunnel, "FAIL", "no agent is connected for alice", "mcp-browser-proxy connect")
				wantLine(t, lines, out, nameReg, "FAIL", "tunnel://alice", "connect")
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("doctor never saw the tunnel down:\n%s", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
