// Package testdns is a resolver for tests: every name has one address,
// which the test changes, as the owner of a DNS name re-points it.
package testdns

import (
	"context"
	"net/netip"
	"sync/atomic"
)

// Resolver answers every name with the address last Set; it satisfies
// router.Resolver.
type Resolver struct{ addr atomic.Pointer[netip.Addr] }

// New returns a Resolver answering with addr.
func New(addr string) *Resolver {
	r := &Resolver{}
	r.Set(addr)
	return r
}

// Set makes every name resolve to addr from now on.
func (r *Resolver) Set(addr string) {
	a := netip.MustParseAddr(addr)
	r.addr.Store(&a)
}

// LookupNetIP returns the current address, whatever the name.
func (r *Resolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{*r.addr.Load()}, nil
}
