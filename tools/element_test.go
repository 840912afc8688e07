package tools

import (
	"fmt"
	"slices"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/runtime"
)

// The object cache keeps one remote object per node, hands back what it
// lets go (a replaced object, or all of them when full) for release, and
// forgets a gone object only when it is still the one kept.
func TestObjectCacheKeepsAndReleases(t *testing.T) {
	var c objectCache
	a := nodeRef{id: 1}
	if drop := c.put(a, "o1"); len(drop) != 0 {
		t.Fatalf("first put released %v", drop)
	}
	if id, ok := c.get(a); !ok || id != "o1" {
		t.Fatalf("get = %q, %v", id, ok)
	}
	if drop := c.put(a, "o1"); len(drop) != 0 {
		t.Errorf("putting the same object again released %v", drop)
	}
	if drop := c.put(a, "o2"); !slices.Equal(drop, []runtime.RemoteObjectID{"o1"}) {
		t.Errorf("replacing released %v, want o1", drop)
	}
	c.forget(a, "o1") // not the kept one any more
	if id, _ := c.get(a); id != "o2" {
		t.Errorf("a stale forget dropped the kept object: %q", id)
	}
	c.forget(a, "o2")
	if _, ok := c.get(a); ok {
		t.Error("forget kept the object")
	}
	for i := range maxKeptObjects {
		c.put(nodeRef{id: cdp.BackendNodeID(100 + i)}, runtime.RemoteObjectID(fmt.Sprint("k", i)))
	}
	if drop := c.put(nodeRef{id: 999}, "last"); len(drop) != maxKeptObjects {
		t.Errorf("a full cache released %d objects, want %d", len(drop), maxKeptObjects)
	}
	if id, ok := c.get(nodeRef{id: 999}); !ok || id != "last" {
		t.Errorf("after making room: %q, %v", id, ok)
	}
	c.clear()
	if _, ok := c.get(nodeRef{id: 999}); ok {
		t.Error("clear kept an object")
	}
	// A node of a frame has no cache: its object is released at once.
	var none *objectCache
	if drop := none.put(a, "f1"); !slices.Equal(drop, []runtime.RemoteObjectID{"f1"}) {
		t.Errorf("no cache: put released %v, want f1", drop)
	}
}
