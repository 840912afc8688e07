package browserpool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// maxVersionBody caps the /json/version answer; a real one is under 1 KiB.
const maxVersionBody = 64 << 10

// NewHTTPClient returns the client used for /json/version: it follows no
// redirects, so a browser URL cannot bounce the proxy somewhere else.
func NewHTTPClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// resolveWebSocket turns a registered browser URL into the websocket URL to
// dial. A ws(s) URL is used as given. For http(s) the host is resolved to an
// IP first (Chrome refuses non-IP Host headers), /json/version is fetched
// from that IP, and the host of the returned webSocketDebuggerUrl is replaced
// by the dialled address: a browser cannot point the proxy elsewhere.
func resolveWebSocket(ctx context.Context, client *http.Client, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse browser URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
		return raw, nil
	case "http", "https":
	default:
		return "", fmt.Errorf("unsupported browser URL scheme %q", u.Scheme)
	}
	host, port := u.Hostname(), u.Port()
	ip := net.ParseIP(host)
	if ip == nil {
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return "", fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(addrs) == 0 {
			return "", fmt.Errorf("resolve %s: no addresses", host)
		}
		ip = addrs[0].IP
	}
	hostPort := net.JoinHostPort(ip.String(), port)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.Scheme+"://"+hostPort+"/json/version", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return "", fmt.Errorf("GET %s/json/version: %w", hostPort, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s/json/version: HTTP %d (is this a Chrome DevTools port?)", hostPort, resp.StatusCode)
	}
	var v struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxVersionBody)).Decode(&v); err != nil {
		return "", fmt.Errorf("GET %s/json/version: not a DevTools answer: %w", hostPort, err)
	}
	ws, err := url.Parse(v.WS)
	if err != nil || v.WS == "" || !strings.HasPrefix(ws.Path, "/devtools/browser/") {
		return "", fmt.Errorf("GET %s/json/version: no browser webSocketDebuggerUrl in the answer", hostPort)
	}
	scheme := "ws"
	if u.Scheme == "https" {
		scheme = "wss"
	}
	return (&url.URL{Scheme: scheme, Host: hostPort, Path: ws.Path}).String(), nil
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
