package browserpool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
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
	alloc := &tunnelAllocator{tunnels: b.cfg.Tunnels, user: user, timeout: b.cfg.DialTimeout, requests: b.cfg.Requests, guard: make(chan *Guard, 1)}
	allocCtx, allocCancel := chromedp.NewAllocatorContext(ctx, alloc)
	bctx, bcancel := chromedp.NewContext(allocCtx)
	cancel := func() { bcancel(); allocCancel() }
	type result struct {
		version string
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		// The first call binds the connection to bctx: use bctx itself.
		v, err := chromedp.CallBrowser(bctx, browser.GetVersion, cdp.Empty{})
		ch <- result{v.Product, err}
	}()
	timer := time.NewTimer(b.cfg.DialTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			cancel()
			return Conn{}, nil, "", "", fmt.Errorf("tunnel: %w", r.err)
		}
		// The identity the agent reports makes a direct registration of the
		// same browser, or another user's tunnel to it, a conflict. An agent
		// that reports none is only ever its own browser.
		id := "tunnel:" + user
		if p := alloc.browserID.Load(); p != nil && *p != "" {
			id = *p
		}
		if port := alloc.port.Load(); port > 0 && b.tunnelPort.Swap(port) != port {
			b.pool.Refresh() // a new port to keep every guarded page off
		}
		c := Conn{Ctx: bctx, Generation: b.Status().Generation + 1}
		if b.cfg.Requests != nil {
			c.Guard = startGuard(bctx, alloc.guard, b.cfg.DialTimeout)
		}
		return c, cancel, r.version, id, nil
	case <-timer.C:
		cancel()
		return Conn{}, nil, "", "", errors.New("tunnel: the browser did not answer within " + b.cfg.DialTimeout.String())
	case <-ctx.Done():
		cancel()
		return Conn{}, nil, "", "", ctx.Err()
	}
}

// tunnelAllocator is a chromedp.Allocator whose browser connection comes
// through a tunnel.
type tunnelAllocator struct {
	tunnels  TunnelDialer
	user     string
	timeout  time.Duration
	wg       sync.WaitGroup
	requests RequestPolicy
	guard    chan *Guard
	// browserID is the identity of the browser the last Allocate reached,
	// when its transport tells it (a tunnel.Conn does: see identified).
	browserID atomic.Pointer[string]
	port      atomic.Int32
}

// identified is a transport that knows the identity of its browser and
// the port of its DevTools on the far machine.
type identified interface {
	BrowserID() string
	BrowserPort() int
}

var (
	_ chromedp.Allocator = (*tunnelAllocator)(nil)
	_ chromedp.Attacher  = (*tunnelAllocator)(nil)
)

// Allocate implements chromedp.Allocator.
func (a *tunnelAllocator) Allocate(ctx context.Context, opts ...chromedp.BrowserOption) (*chromedp.Browser, error) {
	if chromedp.FromContext(ctx) == nil {
		return nil, chromedp.ErrInvalidContext
	}
	wctx, cancel := context.WithCancel(context.Background())
	a.wg.Go(func() {
		<-ctx.Done()
		chromedp.Cancel(ctx)
		cancel()
	})
	dctx, dcancel := context.WithTimeout(wctx, a.timeout)
	defer dcancel()
	stop := context.AfterFunc(ctx, dcancel)
	defer stop()
	conn, err := a.tunnels.Dial(dctx, a.user)
	if err != nil {
		return nil, err
	}
	if c, ok := conn.(identified); ok {
		id := c.BrowserID()
		a.browserID.Store(&id)
		a.port.Store(int32(c.BrowserPort()))
	}
	return chromedp.NewBrowserTransport(wctx, guardConn(wctx, conn, a.requests, &a.wg, a.guard), opts...)
}

// Wait implements chromedp.Allocator.
func (a *tunnelAllocator) Wait() { a.wg.Wait() }

// Attaches implements chromedp.Attacher: the browser runs already, and is
// never closed by the pool.
func (a *tunnelAllocator) Attaches() bool { return true }

// TunnelStates is States for the tunnelled browsers only.
func (p *Pool) TunnelStates() map[State]int {
	p.mu.Lock()
	list := make([]*Browser, 0, len(p.browsers))
	for _, b := range p.browsers {
		if _, ok := b.tunnelUser(); ok {
			list = append(list, b)
		}
	}
	p.mu.Unlock()
	out := make(map[State]int, len(allStates))
	for _, st := range allStates {
		out[st] = 0
	}
	for _, b := range list {
		out[b.Status().State]++
	}
	return out
}
