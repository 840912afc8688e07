package tools

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
)

// The registry of frame attachments is bounded: a frame a snapshot meets
// evicts the one used least recently, and stops its attachment; a frame
// attached for the collectors only takes free room.
func TestFrameRegistryBounds(t *testing.T) {
	var r frameRegistry
	stopped := map[target.ID]bool{}
	entry := func(id target.ID) *frameTarget {
		return &frameTarget{stop: func() { stopped[id] = true }, src: &frameSource{id: id}, ready: make(chan struct{})}
	}
	add := func(id target.ID, evict bool) (*frameTarget, target.ID, bool) {
		f := entry(id)
		_, evicted, ok := r.reserve(id, f, r.generation(), evict)
		if ok {
			if err := r.finish(id, f, context.Background(), nil); err != nil {
				t.Fatalf("finish %s: %v", id, err)
			}
		}
		return f, evicted, ok
	}
	get := func(id target.ID) *frameTarget {
		f, _ := r.lookup(id)
		return f
	}
	ids := make([]target.ID, maxFrames)
	for i := range ids {
		ids[i] = target.ID(fmt.Sprint("F", i))
		if _, evicted, ok := add(ids[i], false); !ok || evicted != "" {
			t.Fatalf("add %s: evicted %q, ok %v", ids[i], evicted, ok)
		}
	}
	if cur, _, ok := r.reserve(ids[3], entry(ids[3]), r.generation(), true); ok || cur == nil || cur != get(ids[3]) {
		t.Error("a frame was reserved twice, or the first reservation was not returned")
	}
	if _, _, ok := add("EAGER", false); ok || len(stopped) != 0 {
		t.Error("a frame without a snapshot made room for itself")
	}
	get(ids[0]) // now the most recent: F1 is the least
	_, evicted, ok := add("NEW", true)
	if !ok || evicted != ids[1] || !stopped[ids[1]] || get(ids[1]) != nil {
		t.Fatalf("eviction: evicted %q (want %s), ok %v, stopped %v", evicted, ids[1], ok, stopped)
	}
	if get(ids[0]) == nil || get("NEW") == nil {
		t.Error("eviction dropped the wrong frame")
	}
	if r.remove(ids[2], entry(ids[2])) {
		t.Error("remove dropped a frame attached again since")
	}
	if f := get(ids[2]); f == nil || !r.remove(ids[2], f) || get(ids[2]) != nil {
		t.Error("remove did not drop the frame")
	}

	// A frame under way is known but not yet usable; the snapshot sets
	// the owner of a frame attached without one.
	pending := entry("PENDING")
	if _, _, ok := r.reserve("PENDING", pending, r.generation(), false); !ok {
		t.Fatal("no room for a frame after a removal")
	}
	if !r.known("PENDING") || get("PENDING") != nil {
		t.Error("a frame being attached is not known, or is usable already")
	}
	if err := r.finish("PENDING", pending, context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if f, owner := r.lookup("PENDING"); f != pending || owner.id != 0 {
		t.Errorf("lookup of a frame without owner: %v %v", f, owner)
	}
	r.setOwner(pending, nodeRef{id: 7})
	if _, owner := r.lookup("PENDING"); owner.id != 7 {
		t.Errorf("owner not set: %v", owner)
	}

	// A new page document ends every attachment, and refuses the ones
	// started for the old document.
	gen := r.generation()
	late := entry("LATE")
	r.stopAll()
	if get(ids[0]) != nil || !stopped[ids[0]] || !stopped["NEW"] || !stopped["PENDING"] {
		t.Errorf("stopAll left frames: stopped %v", stopped)
	}
	if _, _, ok := r.reserve("LATE", late, gen, false); ok {
		t.Error("a frame of an old document was reserved")
	}
	// An attachment stopped while under way fails.
	f := entry("RACE")
	if _, _, ok := r.reserve("RACE", f, r.generation(), false); !ok {
		t.Fatal("reserve after stopAll")
	}
	r.stopAll()
	if err := r.finish("RACE", f, context.Background(), nil); err == nil || get("RACE") != nil {
		t.Errorf("an attachment stopped while under way finished: %v", err)
	}
	select {
	case <-f.ready:
	default:
		t.Error("finish did not release the waiters")
	}
}

// Frames announced before the tab's context is known wait for it, bounded;
// a new document drops them; frames of an older document than the session
// that announces them are ignored.
func TestFrameAppearedBeforeBind(t *testing.T) {
	s := NewTabState("PAGE")
	for i := range maxFrames + 5 {
		s.frameAppeared(&target.Info{TargetID: target.ID(fmt.Sprint("F", i)), Type: "iframe"}, nil)
	}
	s.frameAppeared(&target.Info{TargetID: "F0", Type: "iframe"}, nil)
	s.frameAppeared(&target.Info{TargetID: "W", Type: "worker"}, nil)
	if n := len(s.frames.pending); n != maxFrames {
		t.Errorf("%d frames pending, want %d", n, maxFrames)
	}
	s.Listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: "PAGE", URL: "http://a/"}})
	if n := len(s.frames.pending); n != 0 {
		t.Errorf("%d frames pending after a new document", n)
	}
	s.frameAppeared(&target.Info{TargetID: "OLD", Type: "iframe"}, &frameSource{gen: s.frames.generation() - 1})
	if n := len(s.frames.pending); n != 0 {
		t.Errorf("a nested frame of an old document is pending")
	}
}

// A frame's messages are the tab's, tagged with the frame; what a new
// attachment replays is not kept twice; the frame's navigations start no
// navigation of the tab.
func TestConsoleLogFrames(t *testing.T) {
	s := NewTabState("PAGE")
	s.Listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: "PAGE", URL: "http://top/"}})
	logAt := func(text string, ts float64) *runtime.EventConsoleAPICalled {
		return &runtime.EventConsoleAPICalled{Type: runtime.ConsoleAPICalledTypeLog, Timestamp: runtime.Timestamp(ts),
			Args: []*runtime.RemoteObject{{Type: runtime.RemoteObjectTypeString, Value: jsonValue(text)}}}
	}
	attach := func() *frameSource {
		src := &frameSource{id: "FRAME", before: s.console.frameMark("FRAME")}
		src.replaying.Store(true)
		src.sawContext(&runtime.EventExecutionContextCreated{Context: &runtime.ExecutionContextDescription{
			Origin: "http://frame:1", AuxData: jsonValue(map[string]any{"isDefault": true, "frameId": "FRAME"})}})
		return src
	}
	texts := func() string {
		es, _, _ := s.console.list(false, cnAll[*consoleMsg])
		var out []string
		for _, e := range es {
			out = append(out, e.v.text)
		}
		return strings.Join(out, ",")
	}

	s.Listen(logAt("page", 1000))
	src := attach()
	if src.URL() != "http://frame:1" {
		t.Errorf("frame URL from its main world: %q", src.URL())
	}
	s.listenFrame(src, logAt("at load", 1001))
	s.listenFrame(src, &log.EventEntryAdded{Entry: &log.Entry{Source: log.EntrySourceNetwork, Level: log.EntryLevelError, Text: "failed load", Timestamp: 999}})
	src.replaying.Store(false)
	s.listenFrame(src, logAt("later", 1002))
	s.listenFrame(src, &page.EventFrameNavigated{Frame: &cdp.Frame{ID: "FRAME", ParentID: "PAGE", URL: "http://frame:1/next"}})
	s.listenFrame(src, logAt("after frame nav", 1003))
	if got := texts(); got != "page,at load,failed load,later,after frame nav" {
		t.Errorf("messages after the first attachment: %s", got)
	}

	// Attached again: the replay of what was kept is dropped, a message
	// logged since is kept.
	src2 := attach()
	s.listenFrame(src2, logAt("after frame nav", 1003))
	s.listenFrame(src2, logAt("while detached", 1004))
	src2.replaying.Store(false)
	s.listenFrame(src2, logAt("live", 1005))
	if got := texts(); got != "page,at load,failed load,later,after frame nav,while detached,live" {
		t.Errorf("messages after the second attachment: %s", got)
	}

	es, _, _ := s.console.list(false, cnAll[*consoleMsg])
	if line := consoleLine(es[1].id, es[1].v); !strings.HasSuffix(line, "(frame http://frame:1)") {
		t.Errorf("a frame's message does not say its frame: %q", line)
	}
	if line := consoleLine(es[0].id, es[0].v); strings.Contains(line, "frame") {
		t.Errorf("a page's message says a frame: %q", line)
	}
	if es[4].v.frame != "http://frame:1/next" {
		t.Errorf("a message after the frame navigated has frame %q", es[4].v.frame)
	}

	// Only the top frame's navigations start a new navigation.
	s.Listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: "PAGE", URL: "http://top/2"}})
	if got := texts(); got != "" {
		t.Errorf("messages after a top navigation: %s", got)
	}
}

// A frame's requests are the tab's, tagged with the frame's session; a
// request that the page's session started may finish on the frame's.
func TestNetworkLogFrames(t *testing.T) {
	s := NewTabState("PAGE")
	s.Listen(&page.EventFrameNavigated{Frame: &cdp.Frame{ID: "PAGE", LoaderID: "L0", URL: "http://top/"}})
	src := &frameSource{id: "FRAME"}
	sent := func(id network.RequestID, u string) *network.EventRequestWillBeSent {
		return &network.EventRequestWillBeSent{RequestID: id, LoaderID: "LF", DocumentURL: "http://frame:1/",
			Request: &network.Request{URL: u, Method: "GET"}, Type: network.ResourceTypeFetch}
	}
	// The frame's document request comes on the page's session, and may
	// end on the frame's.
	s.Listen(&network.EventRequestWillBeSent{RequestID: "DOC", LoaderID: "DOC", FrameID: "FRAME",
		Request: &network.Request{URL: "http://frame:1/", Method: "GET"}, Type: network.ResourceTypeDocument})
	s.listenFrame(src, &network.EventLoadingFinished{RequestID: "DOC", EncodedDataLength: 10})
	s.listenFrame(src, sent("1.1", "http://frame:1/data.json"))
	s.listenFrame(src, sent("DOC", "http://frame:1/")) // told again, by the frame's session
	s.listenFrame(src, &page.EventFrameNavigated{Frame: &cdp.Frame{ID: "FRAME", ParentID: "PAGE", URL: "http://frame:1/next"}})
	reqs, _, _ := s.network.list(false, func(*netRequest) bool { return true })
	if len(reqs) != 2 {
		t.Fatalf("%d requests after the frame navigated, want 2: %+v", len(reqs), reqs)
	}
	if !reqs[0].done || reqs[0].src != nil {
		t.Errorf("the frame's document request: done %v, src %v", reqs[0].done, reqs[0].src)
	}
	if reqs[1].src != src || reqs[1].frame != "http://frame:1/" {
		t.Errorf("the frame's fetch: src %v, frame %q", reqs[1].src, reqs[1].frame)
	}
	out := formatNetworkRequest(1, reqs[1], bodyResult{note: "none"}, responseBody(t.Context(), netSnapshot{netRequest: netRequest{done: true, status: 200}}, 0, false))
	if !strings.Contains(out, "Frame: http://frame:1/ (a cross-site iframe)") || !strings.Contains(out, "attachment to the cross-site frame") {
		t.Errorf("a frame's request in full:\n%s", out)
	}
}
