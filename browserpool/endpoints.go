package browserpool

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// endpointCache remembers the resolved addresses of registered browser
// hosts, so that the page policy does not look them up on every request.
type endpointCache struct {
	mu    sync.Mutex
	addrs map[string]cachedAddrs // by host
}

type cachedAddrs struct {
	addrs []netip.Addr
	at    time.Time
}

// endpointTTL is how long a resolved browser host is trusted.
const endpointTTL = time.Minute

func (c *endpointCache) lookup(host string) []netip.Addr {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap().WithZone("")}
	}
	c.mu.Lock()
	e, ok := c.addrs[host]
	c.mu.Unlock()
	if ok && time.Since(e.at) < endpointTTL {
		return e.addrs
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	for i := range list {
		list[i] = list[i].Unmap().WithZone("")
	}
	c.mu.Lock()
	if c.addrs == nil {
		c.addrs = map[string]cachedAddrs{}
	}
	c.addrs[host] = cachedAddrs{addrs: list, at: time.Now()}
	c.mu.Unlock()
	return list
}

// ProtectedEndpoints lists the DevTools endpoint of every registered
// browser, whoever owns it: a page of one user's session must not reach
// another user's browser on the same host either.
func (p *Pool) ProtectedEndpoints() []router.ProtectedEndpoint {
	p.mu.Lock()
	urls := make([]string, 0, len(p.browsers))
	var out []router.ProtectedEndpoint
	for _, b := range p.browsers {
		if _, ok := b.tunnelUser(); ok {
			// A tunnelled browser's DevTools port is on its own machine's
			// loopback, as the agent reported it.
			if port := int(b.tunnelPort.Load()); port > 0 {
				out = append(out, router.ProtectedEndpoint{Port: port, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}})
			}
			continue
		}
		urls = append(urls, b.url)
	}
	p.mu.Unlock()
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = map[string]int{"http": 80, "ws": 80, "https": 443, "wss": 443}[u.Scheme]
		}
		if port == 0 {
			continue
		}
		out = append(out, router.ProtectedEndpoint{Port: port, Addrs: p.endpoints.lookup(router.NormHost(u.Hostname()))})
	}
	return out
}
