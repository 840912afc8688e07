package browserpool

import (
	"context"
	"errors"
	"fmt"

	"github.com/chromedp/chromedp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// TunnelDialer opens a CDP connection through a user's reverse tunnel;
// *tunnel.Registry implements it.
type TunnelDialer interface {
	Dial(ctx context.Context, userID string) (chromedp.Transport, error)
}

// tunnelUser reports whether b is a tunnelled browser (tunnel://<user>)
// and whose tunnel it uses: always its own user's.
func (b *Browser) tunnelUser() (string, bool) {
	u, ok := router.TunnelUser(b.url)
	return u, ok && u == b.userID
}

// connectTunnel is connect for a tunnelled browser: no address to resolve
// or policy to check (the agent dialled the proxy), the CDP connection
// comes from the user's tunnel. The health checks, reconnects and
// generations are those of every browser.
func (b *Browser) connectTunnel(ctx context.Context, user string) (Conn, context.CancelFunc, string, string, error) {
	if b.cfg.Tunnels == nil {
		return Conn{}, nil, "", "", errors.New("this proxy has no tunnel endpoint")
	}
	var id string
	var port int
	alloc := &allocator{
		dial: func(ctx context.Context) (chromedp.Transport, error) {
			conn, err := b.cfg.Tunnels.Dial(ctx, user)
			if c, ok := conn.(identified); ok && err == nil {
				id, port = c.BrowserID(), c.BrowserPort()
			}
			return conn, err
		},
		timeout: b.cfg.DialTimeout, requests: b.cfg.Requests, guard: make(chan *Guard, 1),
	}
	c, cancel, version, err := b.open(ctx, alloc, func(err error) error { return fmt.Errorf("tunnel: %w", err) })
	if err != nil {
		return c, cancel, version, "", err
	}
	// The identity the agent reports makes a direct registration of the
	// same browser, or another user's tunnel to it, a conflict. An agent
	// that reports none is only ever its own browser. (open returned after
	// the dial: id and port are set.)
	if id = chromeIdentity(id); id == "" {
		id = "tunnel:" + user
	}
	if port > 0 && b.tunnelPort.Swap(int32(port)) != int32(port) {
		b.pool.Refresh() // a new port to keep every guarded page off
	}
	return c, cancel, version, id, nil
}

// identified is a transport that knows the identity of its browser and
// the port of its DevTools on the far machine.
type identified interface {
	BrowserID() string
	BrowserPort() int
}

// TunnelStates is States for the tunnelled browsers only.
func (p *Pool) TunnelStates() map[State]int {
	return p.countStates(func(b *Browser) bool { _, ok := b.tunnelUser(); return ok })
}
