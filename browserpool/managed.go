package browserpool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// ManagedConfig turns on managed browsers: a user with no registered
// browser gets a headless Chromium that the pool starts on first use
// (Pool.Use), over --remote-debugging-pipe (no DevTools port at all), with
// its own profile, behind a forward proxy that keeps its pages off the
// proxy host's loopback, private and link-local networks (egress.go).
type ManagedConfig struct {
	// Chromium is the executable; "" finds one with FindChromium.
	Chromium string
	// Dir holds one profile directory per user (<Dir>/<user>).
	Dir string
	// Idle stops a managed browser no tool call used for this long;
	// default 10m.
	Idle time.Duration
	// Max is how many managed browsers run at once; default 4.
	Max int
	// KeepProfile keeps a user's profile (cookies, storage) when the
	// browser stops; otherwise it is wiped then, and before the first start.
	KeepProfile bool
	// AllowCIDRs are denied ranges (loopback, private, link-local) that
	// managed pages may reach all the same.
	AllowCIDRs []netip.Prefix
	// StartTimeout bounds a start: the process, and its first answer;
	// default 30s. A tool call waits at least this long for a managed
	// browser.
	StartTimeout time.Duration
	// Resolver looks up the hosts pages ask for; nil: the system's.
	Resolver router.Resolver
	// NoSpareTab turns off the blank tab each managed browser keeps
	// opened and guarded ahead for the next session's first page tool
	// (Spare): one renderer less, and that tool waits for a new tab's
	// start-up again.
	NoSpareTab bool
}

// managedScheme is the URL of a managed browser, managed://<user>: it is
// never registered, so no other user can name it.
const managedScheme = "managed://"

func (m *ManagedConfig) fill() {
	if m.Idle <= 0 {
		m.Idle = 10 * time.Minute
	}
	if m.Max <= 0 {
		m.Max = 4
	}
	if m.StartTimeout <= 0 {
		m.StartTimeout = 30 * time.Second
	}
}

// FindChromium returns the first of chromium, chromium-browser,
// google-chrome and google-chrome-stable on PATH.
func FindChromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium found on PATH (looked for chromium, chromium-browser, google-chrome, google-chrome-stable): install one (Debian/Ubuntu: apt-get install chromium) or pass --managed-chromium PATH")
}

// ErrNoBrowser is Use's error for a user with no registered browser when
// managed browsers are off.
var ErrNoBrowser = errors.New("no browser is registered")

// ManagedLimitError says that a new managed browser would exceed
// ManagedConfig.Max. Its message starts with LIMIT_EXCEEDED and says when
// to retry and what else to do.
type ManagedLimitError struct {
	UserID     string
	Max        int
	RetryAfter time.Duration // when the first running managed browser may go idle
}

func (e *ManagedLimitError) Error() string {
	return fmt.Sprintf("LIMIT_EXCEEDED: no managed browser for %s: all %d managed browsers of this proxy are in use; retry in %s (a managed browser stops after --managed-idle without use), or use your own browser: run `mcp-browser-proxy connect --server <proxy URL>` on your machine, or POST /api/register",
		e.UserID, e.Max, e.RetryAfter.Round(time.Second))
}

// managedState is what a managed browser has beyond a Browser's fields.
type managedState struct {
	profile string
	lastUse atomic.Int64 // unix nanoseconds of the last Use or Conn

	mu       sync.Mutex
	proc     *chromeProc // the running process; nil when none
	launched bool        // started once: the profile was wiped before, if it is to be
}

func (m *managedState) touch() { m.lastUse.Store(time.Now().UnixNano()) }

func (m *managedState) idleFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, m.lastUse.Load()))
}

// Managed reports whether b is a managed browser, started by the pool.
func (b *Browser) Managed() bool { return b.managed != nil }

// ManagedEnabled reports whether the pool starts managed browsers.
func (p *Pool) ManagedEnabled() bool { return p.cfg.Managed != nil }

// ManagedCount is how many managed browsers the pool holds (starting,
// running or restarting).
func (p *Pool) ManagedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.managedLocked()
}

func (p *Pool) managedLocked() int {
	n := 0
	for _, b := range p.browsers {
		if b.managed != nil {
			n++
		}
	}
	return n
}

// Use returns userID's browser: the registered one, or, with managed
// browsers on, a managed one, started now if none runs. The error is
// ErrNoBrowser (managed browsers off), a *ManagedLimitError (at
// ManagedConfig.Max), or why the user cannot have a profile directory.
func (p *Pool) Use(userID string) (*Browser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.browsers[userID]; ok {
		if b.managed != nil {
			b.managed.touch()
		}
		return b, nil
	}
	mc := p.cfg.Managed
	if mc == nil {
		return nil, ErrNoBrowser
	}
	if p.ctx.Err() != nil {
		return nil, errors.New("the proxy is shutting down")
	}
	if n := p.managedLocked(); n >= mc.Max {
		return nil, &ManagedLimitError{UserID: userID, Max: mc.Max, RetryAfter: p.nextIdleLocked()}
	}
	dir, err := managedDir(mc.Dir, userID)
	if err != nil {
		return nil, err
	}
	b := p.newBrowserLocked(userID, Endpoint{URL: managedScheme + userID}, p.gens[userID])
	b.managed = &managedState{profile: dir}
	b.managed.touch()
	p.browsers[userID] = b
	p.join(b)
	go b.run(b.ctx)
	b.log.Info().Bool("audit", true).Str("event", "managed_start").Msg("starting a managed browser")
	return b, nil
}

// nextIdleLocked estimates when the first managed browser may stop:
// between a second and ManagedConfig.Idle from now.
func (p *Pool) nextIdleLocked() time.Duration {
	idle := p.cfg.Managed.Idle
	next := idle
	now := time.Now()
	for _, b := range p.browsers {
		if b.managed != nil {
			next = min(next, idle-b.managed.idleFor(now))
		}
	}
	return max(next, time.Second)
}

// managedDir returns the profile directory of userID under dir. The ID
// must be a valid user ID and one local path element (as session's
// userDir), so no profile path leaves dir.
func managedDir(dir, userID string) (string, error) {
	if err := auth.ValidateUserID(userID); err != nil {
		return "", err
	}
	if !filepath.IsLocal(userID) || filepath.Base(userID) != userID {
		return "", fmt.Errorf("invalid user ID %q: not a single path element", userID)
	}
	if dir == "" {
		return "", errors.New("managed browsers have no profile directory configured")
	}
	return filepath.Join(dir, userID), nil
}

// reapIdle stops the managed browsers that went unused for
// ManagedConfig.Idle, until the pool closes.
func (p *Pool) reapIdle() {
	idle := p.cfg.Managed.Idle
	tick := time.NewTicker(min(max(idle/4, 50*time.Millisecond), 30*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		p.mu.Lock()
		var list []*Browser
		for _, b := range p.browsers {
			if b.managed != nil && b.managed.idleFor(now) >= idle && !b.waitedFor() {
				list = append(list, b)
			}
		}
		p.mu.Unlock()
		for _, b := range list {
			p.removeIf(b, func() bool { return b.managed.idleFor(time.Now()) >= idle })
		}
	}
}

// removeIf is Remove for b, if it is still its user's browser and ok
// says so, checked under the pool's lock (Use touches under it).
func (p *Pool) removeIf(b *Browser, ok func() bool) {
	p.mu.Lock()
	if p.browsers[b.userID] != b || !ok() {
		p.mu.Unlock()
		return
	}
	delete(p.browsers, b.userID)
	p.stopping[b.userID] = b.done
	p.gens[b.userID] = max(p.gens[b.userID], b.Status().Generation)
	p.mu.Unlock()
	b.log.Info().Bool("audit", true).Str("event", "managed_stop").Str("reason", "idle").Msg("stopping an idle managed browser")
	b.stop()
	<-b.done
	p.remember(b)
}

// remember keeps the last generation of a browser that left the pool, so
// that the user's next browser continues after it and sessions notice the
// change (a session's tabs belong to one generation).
func (p *Pool) remember(b *Browser) {
	g := b.Status().Generation
	p.mu.Lock()
	p.gens[b.userID] = max(p.gens[b.userID], g)
	if p.stopping[b.userID] == b.done {
		delete(p.stopping, b.userID)
	}
	p.mu.Unlock()
}

// chromeProc is one running managed Chromium.
type chromeProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returned: reaped
	egress *egress
	stderr *tailWriter
	once   sync.Once
}

// managedStopGrace is how long a managed Chromium gets to exit after
// SIGTERM before its process group is killed.
const managedStopGrace = 3 * time.Second

// stop ends the process and its helpers (its process group), reaps it,
// and closes its network proxy. It is idempotent.
func (c *chromeProc) stop() {
	c.once.Do(func() {
		pid := c.cmd.Process.Pid
		signalGroup(pid, false)
		select {
		case <-c.exited:
		case <-time.After(managedStopGrace):
		}
		// Helpers (renderers, the zygote) share the group: kill what is
		// left of it either way.
		signalGroup(pid, true)
		<-c.exited
		if !groupGone(pid, managedStopGrace) {
			signalGroup(pid, true) // a helper forked meanwhile
		}
		c.egress.close()
	})
}

// running reports whether the process has not exited.
func (c *chromeProc) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// PID returns the process ID of userID's managed Chromium, 0 when none
// runs: for tests and diagnostics.
func (p *Pool) PID(userID string) int {
	b, ok := p.Get(userID)
	if !ok || b.managed == nil {
		return 0
	}
	b.managed.mu.Lock()
	defer b.managed.mu.Unlock()
	if c := b.managed.proc; c != nil && c.running() {
		return c.cmd.Process.Pid
	}
	return 0
}

// stopProc takes the running process, if any, and stops it.
func (m *managedState) stopProc() {
	m.mu.Lock()
	proc := m.proc
	m.proc = nil
	m.mu.Unlock()
	if proc != nil {
		proc.stop()
	}
}

// stopManaged stops b's process, if any, and wipes its profile unless it
// is kept: b's run loop calls it on its way out.
func (b *Browser) stopManaged() {
	m := b.managed
	if m == nil {
		return
	}
	m.stopProc()
	if !b.cfg.Managed.KeepProfile {
		if err := os.RemoveAll(m.profile); err != nil {
			b.log.Warn().Err(err).Msg("managed browser profile not wiped")
		}
	}
}

// connectManaged is connect for a managed browser: every attempt starts a
// new process (after stopping the last one: a pipe connection cannot be
// dialled again), so the pool's reconnect with backoff is the restart
// after a crash.
func (b *Browser) connectManaged(ctx context.Context) (Conn, context.CancelFunc, string, string, error) {
	m := b.managed
	m.stopProc()
	alloc := &allocator{
		dial:    b.launch,
		timeout: b.cfg.Managed.StartTimeout, requests: b.cfg.Requests, guard: make(chan *Guard, 1),
	}
	c, cancel, version, err := b.open(ctx, alloc, func(err error) error {
		m.mu.Lock()
		proc := m.proc
		m.mu.Unlock()
		if proc != nil && !proc.running() {
			return fmt.Errorf("managed browser exited at start (%s): %s", proc.cmd.ProcessState, proc.stderr.last())
		}
		return fmt.Errorf("managed browser: %w", err)
	})
	if err != nil {
		m.stopProc()
		return c, cancel, version, "", err
	}
	// Chromium answers before its first page has a renderer; a session's
	// first tab opened meanwhile would wait for the start-up within its
	// call's timeout. The connection is handed out once the page is there.
	waitFirstPage(ctx, c.Ctx, b.cfg.Managed.StartTimeout)
	// A page may not write files on the proxy host: downloads are refused
	// (headless Chromium saves them to $HOME/Downloads unasked, outside
	// the profile, shared and unbounded).
	dctx, dcancel := context.WithTimeout(c.Ctx, b.cfg.Managed.StartTimeout)
	_, err = chromedp.CallBrowser(dctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorDeny})
	dcancel()
	if err != nil {
		cancel()
		return Conn{}, nil, "", "", fmt.Errorf("managed browser: refusing downloads: %w", err)
	}
	if !b.cfg.Managed.NoSpareTab {
		c.Spare = newSpare(c.Ctx, c.Guard)
	}
	return c, cancel, version, "managed:" + b.userID, nil
}

// managedEnv is the environment of a managed Chromium: its home and XDG
// dirs inside its profile (nothing it writes lands in the proxy user's
// home), and none of the proxy's own variables (MBP_JWT_SECRET...).
func managedEnv(profile string) []string {
	env := []string{
		"HOME=" + profile,
		"XDG_CONFIG_HOME=" + filepath.Join(profile, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(profile, ".cache"),
		"XDG_DATA_HOME=" + filepath.Join(profile, ".local", "share"),
	}
	for _, k := range []string{"PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "FONTCONFIG_PATH", "FONTCONFIG_FILE"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// waitFirstPage waits, up to d, until the browser of bctx lists a page
// target whose renderer loaded (its URL is set).
func waitFirstPage(ctx, bctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil && bctx.Err() == nil {
		tctx, cancel := context.WithTimeout(bctx, time.Second)
		infos, err := chromedp.Targets(tctx)
		cancel()
		if err == nil {
			for _, in := range infos {
				if in.Type == "page" && in.URL != "" {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// managedArgs are the flags of a managed Chromium.
func managedArgs(profile, proxyURL string) []string {
	args := []string{
		"--headless",
		"--remote-debugging-pipe",
		"--user-data-dir=" + profile,
		// Every request goes through the forward proxy, loopback
		// included (<-loopback> removes Chrome's implicit bypass), and
		// nothing leaves by another way: no QUIC, no WebRTC UDP that does
		// not go through the proxy.
		"--proxy-server=" + proxyURL,
		"--proxy-bypass-list=<-loopback>",
		"--disable-quic",
		"--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
		"--webrtc-ip-handling-policy=disable_non_proxied_udp",
		"--no-first-run", "--no-default-browser-check", "--disable-default-apps",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
	}
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox on.
		args = append(args, "--no-sandbox")
	}
	return append(args, "about:blank")
}

// launch starts b's Chromium and returns the pipe connection to it.
func (b *Browser) launch(ctx context.Context) (chromedp.Transport, error) {
	m, mc := b.managed, b.cfg.Managed
	// The user's last browser may still be stopping, on the same profile:
	// a second Chromium on it would hand its command line to the first
	// and exit.
	b.pool.mu.Lock()
	prev := b.pool.stopping[b.userID]
	b.pool.mu.Unlock()
	if prev != nil && prev != b.done {
		select {
		case <-prev:
		case <-ctx.Done():
			return nil, fmt.Errorf("the last managed browser of %s is still stopping: %w", b.userID, ctx.Err())
		}
	}
	m.mu.Lock()
	first := !m.launched
	m.launched = true
	m.mu.Unlock()
	if first && !mc.KeepProfile {
		// Left over from a proxy that did not stop cleanly.
		_ = os.RemoveAll(m.profile)
	}
	if err := os.MkdirAll(m.profile, 0o700); err != nil {
		return nil, fmt.Errorf("managed browser profile: %w", err)
	}
	eg, err := startEgress(b.userID, egressPolicy{allow: mc.AllowCIDRs}, mc.Resolver, b.cfg.Audit)
	if err != nil {
		return nil, err
	}
	// Chromium reads fd 3 and writes fd 4.
	cr, pw, err := os.Pipe()
	if err != nil {
		eg.close()
		return nil, err
	}
	pr, cw, err := os.Pipe()
	if err != nil {
		eg.close()
		cr.Close()
		pw.Close()
		return nil, err
	}
	if os.Geteuid() == 0 {
		b.log.Warn().Msg("managed browser runs without Chromium's sandbox: the proxy runs as root; run it as another user to keep the sandbox")
	}
	tail := &tailWriter{}
	cmd := exec.Command(mc.Chromium, managedArgs(m.profile, eg.URL())...)
	cmd.ExtraFiles = []*os.File{cr, cw}
	cmd.Env = managedEnv(m.profile)
	cmd.Stdout, cmd.Stderr = nil, tail
	cmd.SysProcAttr = managedProcAttr()
	err = cmd.Start()
	cr.Close()
	cw.Close()
	if err != nil {
		eg.close()
		pw.Close()
		pr.Close()
		return nil, fmt.Errorf("start managed browser %s: %w", mc.Chromium, err)
	}
	proc := &chromeProc{cmd: cmd, exited: make(chan struct{}), egress: eg, stderr: tail}
	go func() { _ = cmd.Wait(); close(proc.exited) }()
	m.mu.Lock()
	m.proc = proc
	m.mu.Unlock()
	b.log.Info().Int("pid", cmd.Process.Pid).Str("profile", m.profile).Msg("managed browser started")
	return &pipeConn{r: bufio.NewReaderSize(pr, 1<<20), w: pw, rf: pr, onClose: proc.stop}, nil
}

// tailWriter keeps the last few KiB written to it: a managed Chromium's
// stderr, for the error of a start that failed.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

// last returns the last non-empty line written.
func (t *tailWriter) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if s := strings.TrimSpace(lines[len(lines)-1]); s != "" {
		return s
	}
	return "no output"
}
