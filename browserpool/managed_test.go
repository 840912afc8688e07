package browserpool

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// managedPool is a pool with managed browsers in a temp dir.
func managedPool(t *testing.T, mc ManagedConfig) (*Pool, string) {
	t.Helper()
	bin, err := testchrome.Binary()
	if err != nil {
		t.Skip(err)
	}
	if mc.Dir == "" {
		mc.Dir = t.TempDir()
	}
	mc.Chromium = bin
	cfg := testConfig()
	cfg.Managed = &mc
	p := New(cfg)
	t.Cleanup(p.Close)
	return p, mc.Dir
}

// gone reports whether no process of pid's process group is left, the
// leader reaped (a zombie would still answer signal 0).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) && errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH)
}

// waitFor polls cond every 20 ms for at most d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// evalIn opens a tab on conn, evaluates expr in it, closes the tab.
func evalIn(t *testing.T, conn Conn, expr string) string {
	t.Helper()
	tctx, cancel := chromedp.NewContext(conn.Ctx)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(tctx, 20*time.Second)
	defer cancel2()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return out
}

func useConn(t *testing.T, p *Pool, user string) (*Browser, Conn) {
	t.Helper()
	b, err := p.Use(user)
	if err != nil {
		t.Fatalf("use %s: %v", user, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	conn, err := b.Conn(ctx, 40*time.Second)
	if err != nil {
		t.Fatalf("conn %s: %v", user, err)
	}
	return b, conn
}

// TestManagedStartCapCrashRestart: a user with no browser gets a managed
// one over pipes (no DevTools port), usable like any; the cap refuses a
// second user with a retry time; kill -9 of the process is followed by a
// restart (new generation) and the dead process is reaped; Close leaves no
// process of the group behind.
func TestManagedStartCapCrashRestart(t *testing.T) {
	p, dir := managedPool(t, ManagedConfig{Max: 1, Idle: time.Hour, KeepProfile: true})
	b, conn := useConn(t, p, "alice")
	if !b.Managed() || !strings.Contains(b.Status().Version, "Chrome") {
		t.Fatalf("managed %v, status %+v", b.Managed(), b.Status())
	}
	if got := evalIn(t, conn, `"" + (6*7)`); got != "42" {
		t.Fatalf("evaluate: %q", got)
	}
	pid := p.PID("alice")
	if pid == 0 {
		t.Fatal("no managed process")
	}
	// Pipes, not a port: Chromium writes DevToolsActivePort only for a port.
	if _, err := os.Stat(filepath.Join(dir, "alice", "DevToolsActivePort")); !os.IsNotExist(err) {
		t.Errorf("DevToolsActivePort in the profile (%v): a DevTools port is open", err)
	}

	_, err := p.Use("bob")
	var le *ManagedLimitError
	if !errors.As(err, &le) || le.Max != 1 || le.RetryAfter <= 0 || !strings.HasPrefix(err.Error(), "LIMIT_EXCEEDED") || !strings.Contains(err.Error(), "retry in") {
		t.Fatalf("second managed browser: %v, want a ManagedLimitError", err)
	}
	if _, ok := p.Get("bob"); ok {
		t.Error("the refused user has a browser in the pool")
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var conn2 Conn
	if !waitFor(40*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := b.Conn(ctx, 5*time.Second)
		if err == nil && c.Generation > conn.Generation {
			conn2 = c
			return true
		}
		return false
	}) {
		t.Fatalf("no new connection after kill -9: %+v", b.Status())
	}
	if got := evalIn(t, conn2, `"" + (1+1)`); got != "2" {
		t.Fatalf("evaluate after restart: %q", got)
	}
	if !waitFor(10*time.Second, func() bool { return gone(pid) }) {
		t.Errorf("killed process %d (or its group) is still there: not reaped", pid)
	}
	pid2 := p.PID("alice")
	if pid2 == 0 || pid2 == pid {
		t.Fatalf("pid after restart %d (before %d)", pid2, pid)
	}
	p.Close()
	if !gone(pid2) {
		t.Errorf("process %d (or its group) survived Close", pid2)
	}
	// Kept profile.
	if _, err := os.Stat(filepath.Join(dir, "alice", "Default")); err != nil {
		t.Errorf("kept profile: %v", err)
	}
}

// TestManagedIdleWipesProfile: a managed browser nobody uses stops after
// Idle: the process is gone, the pool forgets it, the profile is wiped;
// the next use starts a new one whose generation continues.
func TestManagedIdleWipesProfile(t *testing.T) {
	p, dir := managedPool(t, ManagedConfig{Max: 1, Idle: 10 * time.Second})
	t0 := time.Now()
	b, conn := useConn(t, p, "alice")
	t.Logf("conn after %s", time.Since(t0))
	evalIn(t, conn, `"x"`)
	t.Logf("eval after %s", time.Since(t0))
	pid := p.PID("alice")
	profile := filepath.Join(dir, "alice")
	if _, err := os.Stat(profile); err != nil {
		t.Fatalf("profile: %v", err)
	}
	if !waitFor(30*time.Second, func() bool { return b.Status().State == StateDisconnected }) {
		t.Fatalf("not stopped after idling: %+v", b.Status())
	}
	if _, ok := p.Get("alice"); ok {
		t.Error("still in the pool after the idle stop")
	}
	if !gone(pid) {
		t.Errorf("process %d survived the idle stop", pid)
	}
	if st := b.Status(); st.State != StateDisconnected {
		t.Errorf("state after idle stop: %s", st.State)
	}
	if p.ManagedCount() != 0 {
		t.Errorf("managed count %d after idle stop", p.ManagedCount())
	}
	if _, err := os.Stat(profile); !os.IsNotExist(err) {
		t.Errorf("profile not wiped: %v", err)
	}
	_, conn2 := useConn(t, p, "alice")
	if conn2.Generation <= conn.Generation {
		t.Errorf("generation %d after restart from idle, want more than %d", conn2.Generation, conn.Generation)
	}
}

// TestManagedProfileDirStaysInside: a user ID that is not one path
// element gets no managed browser.
func TestManagedProfileDirStaysInside(t *testing.T) {
	p, dir := managedPool(t, ManagedConfig{Max: 4})
	for _, u := range []string{"..", "../x", "a/b", "", "."} {
		if b, err := p.Use(u); err == nil {
			t.Errorf("Use(%q) started a browser at %s", u, b.managed.profile)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) == 0 {
		t.Fatal("temp dir vanished")
	}
}

func TestEgressPolicy(t *testing.T) {
	p := egressPolicy{allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		local: func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("192.0.2.2")} }}
	for addr, ok := range map[string]bool{
		"93.184.215.14": true, "2606:4700::1": true, "127.0.0.1": true, "::ffff:127.0.0.1": true,
		"127.0.0.2": false, "::1": false, "0.0.0.0": false, "0.1.2.3": false, "::": false,
		"10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false, "100.64.0.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00::1": false, "fc00::1": false,
		"::ffff:10.0.0.1": false, "64:ff9b::a00:1": false, "64:ff9b::5db8:d70e": true,
		"224.0.0.1": false, "255.255.255.255": false, "240.0.0.1": false, "198.18.0.1": false,
		"64:ff9b:1::1": false,
		"192.0.2.2":    false, // the host's own (public-looking) address, below
	} {
		err := p.check(netip.MustParseAddr(addr))
		if (err == nil) != ok {
			t.Errorf("%s: err %v, want allowed %v", addr, err, ok)
		}
	}
	// By default the host's real interface addresses are refused too,
	// whatever range they are in.
	for _, a := range hostAddrs() {
		if err := (egressPolicy{}).check(a); err == nil {
			t.Errorf("the host's own address %s is allowed", a)
		}
	}
}
