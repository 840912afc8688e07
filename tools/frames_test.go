package tools

import (
	"fmt"
	"testing"

	"github.com/chromedp/cdproto/target"
)

// The registry of frame attachments is bounded: a new frame evicts the one
// used least recently, and stops its attachment.
func TestFrameRegistryBounds(t *testing.T) {
	var r frameRegistry
	stopped := map[target.ID]bool{}
	entry := func(id target.ID) *frameTarget {
		return &frameTarget{stop: func() { stopped[id] = true }}
	}
	ids := make([]target.ID, maxFrames)
	for i := range ids {
		ids[i] = target.ID(fmt.Sprint("F", i))
		if evicted, ok := r.add(ids[i], entry(ids[i])); !ok || evicted != "" {
			t.Fatalf("add %s: evicted %q, ok %v", ids[i], evicted, ok)
		}
	}
	if _, ok := r.add(ids[3], entry(ids[3])); ok {
		t.Error("a frame was added twice")
	}
	r.get(ids[0]) // now the most recent: F1 is the least
	evicted, ok := r.add("NEW", entry("NEW"))
	if !ok || evicted != ids[1] || !stopped[ids[1]] || r.get(ids[1]) != nil {
		t.Fatalf("eviction: evicted %q (want %s), ok %v, stopped %v", evicted, ids[1], ok, stopped)
	}
	if r.get(ids[0]) == nil || r.get("NEW") == nil {
		t.Error("eviction dropped the wrong frame")
	}
	if r.remove(ids[2], entry(ids[2])) {
		t.Error("remove dropped a frame attached again since")
	}
	if f := r.get(ids[2]); f == nil || !r.remove(ids[2], f) || r.get(ids[2]) != nil {
		t.Error("remove did not drop the frame")
	}
	r.stopAll()
	if r.get(ids[0]) != nil || !stopped[ids[0]] || !stopped["NEW"] {
		t.Errorf("stopAll left frames: stopped %v", stopped)
	}
}
