package main

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
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/spf13/cobra"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tunnel"
)

// skewLimit is the clock difference the proxy tolerates on JWT exp and nbf
// (auth's verify leeway); beyond it a fresh token can be refused as not
// yet valid, or an expired one accepted.
const skewLimit = 30 * time.Second

type doctorFlags struct {
	server, token, browserURL, wsURL, userDataDir, config string
	handshake                                             bool
}

func newDoctor() *cobra.Command {
	var f doctorFlags
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check each step between your browser and the proxy, and say what to fix",
		Long: `doctor checks, one line each: the browser is found (as connect finds it), its
DevTools port answers, the DevTools handshake (only with --handshake), the
proxy answers, the token is valid and when it expires, your registration,
your tunnel, and the clock difference to the proxy. Server and token come
from the flags or connect's config file. It exits non-zero when a check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			failed, err := runDoctor(cmd.Context(), cmd.OutOrStdout(), f, time.Now)
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d check(s) failed; fix the FAIL lines above and run doctor again", failed)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "", "base URL of the proxy (default: the one connect saved)")
	fl.StringVar(&f.token, "token", "", "your bearer token or API key (default: the one connect saved)")
	fl.StringVar(&f.browserURL, "browser-url", "", "DevTools HTTP URL of the browser, e.g. http://127.0.0.1:9222")
	fl.StringVar(&f.wsURL, "ws-url", "", "DevTools websocket URL of the browser, ws://127.0.0.1:PORT/devtools/browser/ID")
	fl.StringVar(&f.userDataDir, "user-data-dir", "", "the browser profile dir whose DevToolsActivePort to check")
	fl.BoolVar(&f.handshake, "handshake", false, "also open a DevTools connection (Chrome 144's real-profile mode asks you to allow it)")
	fl.StringVar(&f.config, "config", defaultConfigPath(), "connect's config file, where server and token are remembered")
	return withEnv(cmd)
}

// Check outcomes.
const (
	checkOK   = "ok"
	checkFail = "FAIL"
	checkWarn = "WARN"
	checkSkip = "skip"
)

// doctor runs the checks in order; later checks use what earlier ones found.
type doctor struct {
	out    io.Writer
	f      doctorFlags
	now    func() time.Time
	client *http.Client
	failed int

	// found by the browser checks
	hostPort string // the DevTools port's host:port
	wsURL    string // "" when only the HTTP URL is known

	// found by the proxy checks
	proxyUp bool
	skew    time.Duration
	hasDate bool
	user    string
	status  *statusAnswer // nil: unknown; see registered
	known   bool          // the registration state is known (status is set, or the user has none)
}

// statusAnswer is the part of GET /api/users/:id/status doctor reads.
type statusAnswer struct {
	BrowserURL    string `json:"browserURL"`
	BrowserStatus string `json:"browserStatus"`
	BrowserError  string `json:"browserError"`
	Tunnel        *struct {
		Connected    bool       `json:"connected"`
		AgentVersion string     `json:"agentVersion"`
		Since        *time.Time `json:"since"`
	} `json:"tunnel"`
}

// runDoctor prints one line per check to out and returns how many failed.
// now is the local clock, compared with the proxy's.
func runDoctor(ctx context.Context, out io.Writer, f doctorFlags, now func() time.Time) (int, error) {
	saved, err := loadAgentConfig(f.config)
	if err != nil {
		return 0, err
	}
	if f.server == "" {
		f.server = saved.Server
	}
	if f.token == "" {
		f.token = saved.Token
	}
	d := &doctor{out: out, f: f, now: now, client: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment},
	}}
	d.browserChecks(ctx)
	d.proxyChecks(ctx)
	return d.failed, nil
}

// line prints one check: outcome, name, what was seen and, for a failure
// or warning, what to do.
func (d *doctor) line(outcome, name, detail, fix string) {
	if outcome == checkFail {
		d.failed++
	}
	s := fmt.Sprintf("%-4s  %s: %s", outcome, name, oneLine(detail))
	if fix != "" {
		s += "; fix: " + oneLine(fix)
	}
	fmt.Fprintln(d.out, s)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

const (
	nameBrowser   = "browser found"
	namePort      = "port answering"
	nameHandshake = "DevTools handshake"
	nameProxy     = "proxy reachable"
	nameToken     = "token valid"
	nameReg       = "registration"
	nameTunnel    = "tunnel"
	nameClock     = "clock skew"
)

const noBrowserFix = "in Chrome 144+ open chrome://inspect/#remote-debugging and turn remote debugging on; " +
	"or run `mcp-browser-proxy connect --launch`; or start chromium --remote-debugging-port=0 --user-data-dir=DIR and pass --user-data-dir DIR; " +
	"or pass --browser-url http://127.0.0.1:9222 / --ws-url"

func (d *doctor) browserChecks(ctx context.Context) {
	if !d.findBrowser() {
		d.line(checkSkip, namePort, "no browser to check", "")
		d.line(checkSkip, nameHandshake, "no browser to check", "")
		return
	}
	var dl net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	c, err := dl.DialContext(dctx, "tcp", d.hostPort)
	cancel()
	if err != nil {
		d.line(checkFail, namePort, "nothing answers on "+d.hostPort+" ("+shortErr(err)+")",
			"the browser has exited or turned remote debugging off: start it again (a stale DevToolsActivePort is rewritten when it starts)")
		d.line(checkSkip, nameHandshake, "the port does not answer", "")
		return
	}
	c.Close()
	d.line(checkOK, namePort, d.hostPort+" accepts connections", "")
	d.handshake(ctx)
}

// findBrowser is connect's discovery without starting anything, and
// reports the "browser found" line.
func (d *doctor) findBrowser() bool {
	f := d.f
	switch {
	case f.wsURL != "":
		u, err := url.Parse(f.wsURL)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			d.line(checkFail, nameBrowser, fmt.Sprintf("--ws-url %q is not a ws:// URL", f.wsURL), "pass ws://127.0.0.1:PORT/devtools/browser/ID")
			return false
		}
		d.hostPort, d.wsURL = hostPort(u), f.wsURL
		d.line(checkOK, nameBrowser, "--ws-url "+f.wsURL, "")
	case f.browserURL != "":
		u, err := url.Parse(f.browserURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			d.line(checkFail, nameBrowser, fmt.Sprintf("--browser-url %q is not a URL like http://127.0.0.1:9222", f.browserURL), "pass the browser's --remote-debugging-port URL")
			return false
		}
		d.hostPort = hostPort(u)
		d.line(checkOK, nameBrowser, "--browser-url "+f.browserURL, "")
	case f.userDataDir != "":
		return d.fromProfiles([]tunnel.Profile{{Name: "--user-data-dir", Dir: f.userDataDir}})
	default:
		cfg, _ := os.UserConfigDir()
		cache, _ := os.UserCacheDir()
		home, _ := os.UserHomeDir()
		profiles := tunnel.DefaultProfiles(runtime.GOOS, cfg, cache, home)
		if cfg != "" {
			// connect --launch's dedicated profile
			profiles = append(profiles, tunnel.Profile{Name: "connect --launch", Dir: filepath.Join(cfg, "mcp-browser-proxy", "profile")})
		}
		return d.fromProfiles(profiles)
	}
	return true
}

// fromProfiles picks, as connect does, the first profile whose
// DevToolsActivePort names a live port; failing that the first with a
// DevToolsActivePort at all, so the port check says it is stale.
func (d *doctor) fromProfiles(profiles []tunnel.Profile) bool {
	type cand struct {
		p    tunnel.Profile
		port int
		path string
	}
	var cands []cand
	var bad []string
	for _, p := range profiles {
		port, path, err := tunnel.ReadActivePort(p.Dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		cands = append(cands, cand{p, port, path})
	}
	if len(cands) == 0 {
		dirs := make([]string, len(profiles))
		for i, p := range profiles {
			dirs[i] = p.Dir
		}
		detail := "no DevToolsActivePort in " + strings.Join(dirs, ", ")
		if len(bad) > 0 {
			detail += " (" + strings.Join(bad, "; ") + ")"
		}
		d.line(checkFail, nameBrowser, detail, noBrowserFix)
		return false
	}
	pick := cands[0]
	for _, c := range cands {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)), time.Second)
		if err == nil {
			conn.Close()
			pick = c
			break
		}
	}
	d.hostPort = net.JoinHostPort("127.0.0.1", strconv.Itoa(pick.port))
	d.wsURL = "ws://" + d.hostPort + pick.path
	name := pick.p.Name
	if name == "--user-data-dir" {
		name = "profile"
	}
	d.line(checkOK, nameBrowser, fmt.Sprintf("%s %s (DevToolsActivePort: port %d)", name, pick.p.Dir, pick.port), "")
	return true
}

// hostPort returns u's host:port, with the scheme's default port.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" || u.Scheme == "wss" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// handshake opens one DevTools connection and asks the browser's version,
// only when asked to: Chrome 144's real-profile mode prompts the user to
// allow every new connection.
func (d *doctor) handshake(ctx context.Context) {
	if !d.f.handshake {
		d.line(checkSkip, nameHandshake, "not tried: Chrome 144's real-profile mode asks you to allow every new DevTools connection; run doctor --handshake to try it (and allow the prompt)", "")
		return
	}
	ws := d.wsURL
	if ws == "" {
		var err error
		if ws, _, err = tunnel.FromBrowserURL(ctx, d.f.browserURL); err != nil {
			d.line(checkFail, nameHandshake, shortErr(err), "start the browser with --remote-debugging-port, or pass --ws-url")
			return
		}
	}
	// Long enough for the user to answer Chrome's prompt.
	hctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	product, err := cdpVersion(hctx, ws)
	if err != nil {
		d.line(checkFail, nameHandshake, shortErr(err),
			"allow the connection in Chrome's prompt; a browser started by hand needs --remote-debugging-port and must not be given --remote-allow-origins that exclude tools")
		return
	}
	d.line(checkOK, nameHandshake, product, "")
}

// cdpVersion opens a DevTools websocket and returns Browser.getVersion's product.
func cdpVersion(ctx context.Context, wsURL string) (string, error) {
	dl := websocket.Dialer{HandshakeTimeout: 60 * time.Second}
	ws, resp, err := dl.DialContext(ctx, wsURL, nil)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
			return "", fmt.Errorf("the browser refused the DevTools connection: HTTP %d", resp.StatusCode)
		}
		return "", fmt.Errorf("DevTools connection: %w", err)
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	defer stop()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"method":"Browser.getVersion"}`)); err != nil {
		return "", fmt.Errorf("DevTools connection: %w", err)
	}
	for {
		var msg struct {
			ID     int64 `json:"id"`
			Result struct {
				Product string `json:"product"`
			} `json:"result"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := ws.ReadJSON(&msg); err != nil {
			return "", fmt.Errorf("DevTools connection: no answer to Browser.getVersion: %w", err)
		}
		if msg.ID != 1 {
			continue // an event
		}
		if msg.Error != nil {
			return "", fmt.Errorf("Browser.getVersion: %s", msg.Error.Message)
		}
		return msg.Result.Product, nil
	}
}

func (d *doctor) proxyChecks(ctx context.Context) {
	d.checkProxy(ctx)
	d.checkToken(ctx)
	d.checkRegistration()
	d.checkTunnel()
	d.checkClock()
}

func (d *doctor) checkProxy(ctx context.Context) {
	if d.f.server == "" {
		d.line(checkFail, nameProxy, "no server given or saved in "+d.f.config, "pass --server https://your-proxy, or run `mcp-browser-proxy connect --server URL --token TOKEN` once")
		return
	}
	if _, err := tunnel.TunnelURL(d.f.server); err != nil {
		d.line(checkFail, nameProxy, err.Error(), "pass the proxy's base URL, e.g. https://browser-proxy.example.com")
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.api("/health"), nil)
	if err != nil {
		d.line(checkFail, nameProxy, err.Error(), "check --server")
		return
	}
	sent := d.now()
	resp, err := d.client.Do(req)
	if err != nil {
		d.line(checkFail, nameProxy, "GET "+d.api("/health")+": "+shortErr(err),
			"check --server (and HTTPS_PROXY), that the proxy is running and that this machine can reach it")
		return
	}
	got := d.now()
	defer resp.Body.Close()
	if date, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		// Date has whole seconds: the proxy's clock read somewhere in [date, date+1s).
		local := sent.Add(got.Sub(sent) / 2)
		d.skew, d.hasDate = date.Add(500*time.Millisecond).Sub(local), true
	}
	var h struct {
		Status  *string `json:"status"`
		Tunnels *int    `json:"tunnels"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h) != nil || h.Status == nil {
		d.line(checkFail, nameProxy, fmt.Sprintf("GET %s answered HTTP %d, not mcp-browser-proxy's health", d.api("/health"), resp.StatusCode),
			"check that --server is the proxy's base URL (not its /mcp URL, nor another service)")
		return
	}
	d.proxyUp = true
	detail := d.f.server + " answers (status " + *h.Status + ")"
	if *h.Status != "ok" {
		d.line(checkWarn, nameProxy, detail, "the proxy's store is unreachable; tell the proxy's admin")
		return
	}
	d.line(checkOK, nameProxy, detail, "")
}

func (d *doctor) api(path string) string { return strings.TrimRight(d.f.server, "/") + path }

// tokenInfo is what the token says about itself, decoded without checking
// its signature: for display, never for a decision the proxy makes.
type tokenInfo struct {
	apiKey  bool
	keyID   string
	user    string
	exp     time.Time
	nbf     time.Time
	perms   []string
	hasPerm bool // perms is known (a JWT's perms claim, an API key's record)
}

func decodeToken(tok string) (tokenInfo, error) {
	if auth.IsAPIKey(tok) {
		id, _, err := auth.ParseAPIKey(tok)
		if err != nil {
			return tokenInfo{}, errors.New("it starts like an API key but is not one (mbp_<id>_<secret>); copy it again")
		}
		return tokenInfo{apiKey: true, keyID: id}, nil
	}
	var c struct {
		jwt.RegisteredClaims
		Perms *[]string `json:"perms"`
	}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		return tokenInfo{}, errors.New("it is neither a JWT nor an API key (mbp_...); copy it again")
	}
	ti := tokenInfo{user: c.Subject}
	if c.ExpiresAt != nil {
		ti.exp = c.ExpiresAt.Time
	}
	if c.NotBefore != nil {
		ti.nbf = c.NotBefore.Time
	}
	if c.Perms != nil {
		ti.perms, ti.hasPerm = *c.Perms, true
	} else {
		ti.perms, ti.hasPerm = auth.DefaultPerms(), true
	}
	return ti, nil
}

const newTokenFix = "get a new token (`mcp-browser-proxy token issue --user <you>` where the proxy's secret is, or from your admin; an API key from `mcp-browser-proxy apikey create`) and run `mcp-browser-proxy connect --token NEW` to save it"

func (d *doctor) checkToken(ctx context.Context) {
	if d.f.token == "" {
		d.line(checkFail, nameToken, "no token given or saved in "+d.f.config, newTokenFix)
		return
	}
	ti, err := decodeToken(d.f.token)
	if err != nil {
		d.line(checkFail, nameToken, "the token is malformed: "+err.Error(), newTokenFix)
		return
	}
	if !d.proxyUp {
		d.line(checkSkip, nameToken, "needs the proxy", "")
		return
	}
	expiry := d.expiry(ti)
	if ti.apiKey {
		var keys []struct {
			ID     string   `json:"id"`
			UserID string   `json:"userId"`
			Perms  []string `json:"perms"`
		}
		code, msg, err := d.get(ctx, "/api/apikeys", &keys)
		if err != nil || code != http.StatusOK {
			d.tokenRefused(code, msg, err, expiry)
			return
		}
		for _, k := range keys {
			if k.ID == ti.keyID {
				ti.user, ti.perms, ti.hasPerm = k.UserID, k.Perms, true
			}
		}
		if ti.user == "" {
			d.line(checkFail, nameToken, "the proxy accepts the API key but does not list it", "ask the proxy's admin")
			return
		}
	}
	var st statusAnswer
	code, msg, err := d.get(ctx, "/api/users/"+url.PathEscape(ti.user)+"/status", &st)
	switch {
	case err != nil:
		d.line(checkFail, nameToken, "GET status: "+shortErr(err), "run doctor again; if it lasts, check the proxy")
		return
	case code == http.StatusOK:
		d.status, d.known = &st, true
	case code == http.StatusNotFound:
		d.known = true
	default:
		d.tokenRefused(code, msg, nil, expiry)
		return
	}
	d.user = ti.user
	detail := "user " + ti.user + ", " + expiry
	if ti.hasPerm && !slices.Contains(ti.perms, auth.PermWrite) {
		d.line(checkFail, nameToken, detail+", but without "+auth.PermWrite+" (perms: "+strings.Join(ti.perms, ",")+")",
			"connect needs "+auth.PermWrite+": get a token or API key that has it")
		return
	}
	if !ti.exp.IsZero() && ti.exp.Sub(d.now()) < 10*time.Minute {
		d.line(checkWarn, nameToken, detail, "the tunnel closes when the token expires: get a longer-lived token or an API key before then")
		return
	}
	d.line(checkOK, nameToken, detail, "")
}

// expiry describes the token's exp (and nbf) for display.
func (d *doctor) expiry(ti tokenInfo) string {
	if ti.apiKey {
		return "API key (no expiry; valid until revoked)"
	}
	if ti.exp.IsZero() {
		return "no exp claim (the proxy refuses such tokens)"
	}
	now := d.now()
	at := ti.exp.UTC().Format("2006-01-02 15:04:05 UTC")
	s := "expires " + at + " (in " + ti.exp.Sub(now).Round(time.Second).String() + ")"
	if !ti.exp.After(now) {
		s = "expired " + at + " (" + now.Sub(ti.exp).Round(time.Second).String() + " ago)"
	}
	if ti.nbf.After(now) {
		s += ", not valid before " + ti.nbf.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	return s
}

func (d *doctor) tokenRefused(code int, msg string, err error, expiry string) {
	switch {
	case err != nil:
		d.line(checkFail, nameToken, shortErr(err), "run doctor again; if it lasts, check the proxy")
	case code == http.StatusUnauthorized:
		d.line(checkFail, nameToken, "the proxy refuses the token ("+msg+"); the token says: "+expiry, newTokenFix)
	case code == http.StatusForbidden:
		d.line(checkFail, nameToken, "the proxy refuses the token here ("+msg+")", "use a token of your own user")
	default:
		d.line(checkFail, nameToken, fmt.Sprintf("HTTP %d %s", code, msg), "run doctor again; if it lasts, tell the proxy's admin")
	}
}

// get GETs an authenticated API path and decodes a 200 into out; for any
// other status it returns the error body's message.
func (d *doctor) get(ctx context.Context, path string, out any) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.api(path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+d.f.token)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Code, Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return resp.StatusCode, e.Code + ": " + e.Message, nil
		}
		return resp.StatusCode, http.StatusText(resp.StatusCode), nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return resp.StatusCode, "", fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.StatusCode, "", nil
}

func (d *doctor) checkRegistration() {
	if !d.known {
		d.line(checkSkip, nameReg, "needs a valid token", "")
		return
	}
	if d.status == nil {
		d.line(checkFail, nameReg, d.user+" has no registered browser",
			"run `mcp-browser-proxy connect` on the machine with your browser (it registers it) and keep it running")
		return
	}
	st := d.status
	_, tunnelled := strings.CutPrefix(st.BrowserURL, "tunnel://")
	detail := d.user + ": " + st.BrowserURL + ", browser " + st.BrowserStatus
	if st.BrowserError != "" {
		detail += " (" + st.BrowserError + ")"
	}
	switch {
	case st.BrowserStatus == "connected":
		d.line(checkOK, nameReg, detail, "")
	case st.BrowserStatus == "conflict":
		d.line(checkFail, nameReg, detail, "another user's registration reaches the same browser: use your own browser profile (e.g. `connect --launch`), or have theirs deleted")
	case tunnelled:
		d.line(checkFail, nameReg, detail, "start `mcp-browser-proxy connect` on the machine with your browser and keep it running")
	default:
		d.line(checkFail, nameReg, detail, "the proxy cannot reach the registered URL: start Chrome with --remote-debugging-port, or tunnel it with `mcp-browser-proxy connect`")
	}
}

func (d *doctor) checkTunnel() {
	switch {
	case !d.known:
		d.line(checkSkip, nameTunnel, "needs a valid token", "")
	case d.status == nil:
		d.line(checkSkip, nameTunnel, "no registration", "")
	case d.status.Tunnel == nil:
		d.line(checkSkip, nameTunnel, "not used: the browser is registered directly ("+d.status.BrowserURL+"); `mcp-browser-proxy connect` would replace that with a tunnel", "")
	case d.status.Tunnel.Connected:
		detail := "agent " + d.status.Tunnel.AgentVersion + " connected"
		if s := d.status.Tunnel.Since; s != nil {
			detail += " since " + s.UTC().Format("2006-01-02 15:04:05 UTC")
		}
		d.line(checkOK, nameTunnel, detail, "")
	default:
		d.line(checkFail, nameTunnel, "no agent is connected for "+d.user,
			"run `mcp-browser-proxy connect` on the machine with your browser and keep it running; it reconnects by itself")
	}
}

func (d *doctor) checkClock() {
	if !d.proxyUp {
		d.line(checkSkip, nameClock, "needs the proxy", "")
		return
	}
	if !d.hasDate {
		d.line(checkSkip, nameClock, "the proxy's answer has no Date header to compare with", "")
		return
	}
	// Date has whole seconds: under a second of difference is none.
	skew := d.skew.Round(time.Second)
	abs := max(skew, -skew)
	detail := "in step with the proxy (within 1s)"
	if abs >= time.Second {
		dir := "ahead of"
		if skew < 0 {
			dir = "behind"
		}
		detail = "the proxy's clock is " + abs.String() + " " + dir + " this machine's"
	}
	if abs > skewLimit {
		d.line(checkWarn, nameClock, detail+"; the proxy allows "+skewLimit.String()+" on token times, so tokens issued here may be refused as not yet valid or expired",
			"sync this machine's clock (NTP), or ask the proxy's admin to sync the proxy's")
		return
	}
	d.line(checkOK, nameClock, detail, "")
}

// shortErr is err's text on one line.
func shortErr(err error) string { return oneLine(err.Error()) }
