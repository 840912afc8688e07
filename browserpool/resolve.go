package browserpool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// maxVersionBody caps the /json/version answer; a real one is under 1 KiB.
const maxVersionBody = 64 << 10

// target is what resolveWebSocket found: the websocket URL to dial (never
// with userinfo) and the headers for its handshake.
type target struct {
	wsURL  string
	header http.Header
}

// resolveWebSocket turns a registered endpoint into the websocket to dial. A
// ws(s) URL is used as given, less its userinfo, which becomes Basic
// authentication. For http the host is resolved to an IP first (Chrome
// refuses non-IP Host headers), every address checked against p;
// /json/version is fetched from that IP with the endpoint's headers, and the
// host of the returned webSocketDebuggerUrl is replaced by the dialled
// address: a browser cannot point the proxy elsewhere. For https the host
// name is kept, for TLS. client must enforce p on its connections
// (NewHTTPClient does); the websocket dial does too.
func resolveWebSocket(ctx context.Context, client *http.Client, p DialPolicy, ep Endpoint) (target, error) {
	u, err := url.Parse(ep.URL)
	if err != nil {
		return target{}, errors.New("cannot parse the browser URL")
	}
	header := handshakeHeader(ep, u.User)
	u.User = nil
	switch u.Scheme {
	case "ws", "wss":
		return target{wsURL: u.String(), header: header}, nil
	case "http", "https":
	default:
		return target{}, fmt.Errorf("unsupported browser URL scheme %q", u.Scheme)
	}
	host, port := u.Hostname(), u.Port()
	if err := p.CheckHost(host); err != nil {
		return target{}, err
	}
	hostPort := u.Host
	if u.Scheme == "http" {
		ip := net.ParseIP(host)
		if ip == nil {
			addrs, err := lookupHost(ctx, p, host)
			if err != nil {
				return target{}, err
			}
			ip = net.IP(addrs[0].Unmap().AsSlice())
		}
		hostPort = net.JoinHostPort(ip.String(), port)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.Scheme+"://"+hostPort+"/json/version", nil)
	if err != nil {
		return target{}, err
	}
	req.Header = header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return target{}, fmt.Errorf("GET %s/json/version: %w", hostPort, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		hint := "is this a Chrome DevTools port?"
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			hint = "check the credentials of the registration"
		}
		return target{}, fmt.Errorf("GET %s/json/version: HTTP %d (%s)", hostPort, resp.StatusCode, hint)
	}
	var v struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxVersionBody)).Decode(&v); err != nil {
		return target{}, fmt.Errorf("GET %s/json/version: not a DevTools answer: %w", hostPort, err)
	}
	ws, err := url.Parse(v.WS)
	if err != nil || v.WS == "" || !strings.HasPrefix(ws.Path, "/devtools/browser/") {
		return target{}, fmt.Errorf("GET %s/json/version: no browser webSocketDebuggerUrl in the answer", hostPort)
	}
	scheme := "ws"
	if u.Scheme == "https" {
		scheme = "wss"
	}
	return target{wsURL: (&url.URL{Scheme: scheme, Host: hostPort, Path: ws.Path}).String(), header: header}, nil
}

// lookupHost resolves host with p's own resolver when it has one (the one
// registrations were resolved with), else the system's, and checks every
// address against p. It returns at least one address.
func lookupHost(ctx context.Context, p DialPolicy, host string) ([]netip.Addr, error) {
	if r, ok := p.(hostResolver); ok {
		addrs, err := r.Resolve(ctx, host)
		if err == nil && len(addrs) == 0 {
			err = fmt.Errorf("resolve %s: no addresses", host)
		}
		return addrs, err
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			return nil, fmt.Errorf("%s resolves to a refused address: %w", host, err)
		}
	}
	return addrs, nil
}

// unwrapURLError drops the *url.Error around an HTTP or websocket dial
// error: its message repeats the whole URL, whose query may hold a token.
// Callers name the host themselves.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactErr renders err without the websocket URL's query (it may carry a
// token), replacing any occurrence of wsURL by its redacted form.
func redactErr(err error, wsURL string) string {
	msg := err.Error()
	u, perr := url.Parse(wsURL)
	if perr != nil {
		return strings.ReplaceAll(msg, wsURL, "<browser URL>")
	}
	safe := *u
	safe.RawQuery = ""
	safe.User = nil
	return strings.ReplaceAll(msg, wsURL, safe.String())
}
