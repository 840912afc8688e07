package tools

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	jsonv2 "github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/tracing"
)

func TestRawTraceIsJSON(t *testing.T) {
	threeEvents := [][]byte{
		[]byte(`{"name":"thread_name","ph":"M","pid":1,"tid":1,"args":{"name":"CrRendererMain"}}`),
		[]byte(`{"name":"RunTask","ph":"X","pid":1,"tid":1,"ts":10,"dur":5}`),
		[]byte(`{"name":"MarkLoad","ph":"I","pid":1,"tid":1,"ts":20,"args":{"data":{"frame":"MAIN"}}}`),
	}
	var v struct{ TraceEvents []map[string]any }
	if err := json.Unmarshal(rawTrace(threeEvents), &v); err != nil || len(v.TraceEvents) != 3 {
		t.Fatalf("rawTrace: %v, %d events", err, len(v.TraceEvents))
	}
	if err := json.Unmarshal(rawTrace(nil), &v); err != nil || len(v.TraceEvents) != 0 {
		t.Fatalf("empty rawTrace: %v", err)
	}
}

func TestTraceCollector(t *testing.T) {
	var c traceCollector
	if _, ok := c.end(); ok {
		t.Fatal("end without a trace")
	}
	c.listen(&tracing.EventDataCollected{Value: []jsonv2.Value{[]byte(`{}`)}})
	if !c.begin() || c.begin() {
		t.Fatal("begin: want one trace at a time")
	}
	chunk := make([]jsonv2.Value, 1000)
	for i := range chunk {
		chunk[i] = []byte(`{"name":"x"}`)
	}
	for i := 0; i <= traceMaxEvents/len(chunk); i++ {
		c.listen(&tracing.EventDataCollected{Value: chunk})
	}
	done, ok := c.end()
	if !ok {
		t.Fatal("end of a running trace")
	}
	c.listen(&tracing.EventTracingComplete{DataLossOccurred: true})
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("tracingComplete did not close done")
	}
	d := c.take()
	if len(d.events) != traceMaxEvents || !d.full || !d.dataLoss {
		t.Errorf("collected %d events, full %v, data loss %v", len(d.events), d.full, d.dataLoss)
	}
	if !c.begin() {
		t.Error("no new trace after take")
	}
	c.reset()

	if !c.beginHeap() || c.beginHeap() {
		t.Fatal("beginHeap: want one snapshot at a time")
	}
	for _, s := range []string{`{"snapshot":{"meta":{},"node_count":`, `42,"edge_count":7}`, `,"nodes":[]}`} {
		c.listen(&heapprofiler.EventAddHeapSnapshotChunk{Chunk: s})
	}
	heap, full := c.endHeap()
	if full || heapNodeCount(heap) != "42" || !json.Valid(heap) {
		t.Errorf("heap %q full %v", heap, full)
	}
	c.listen(&heapprofiler.EventAddHeapSnapshotChunk{Chunk: "late"})
	if heap, _ := c.endHeap(); len(heap) != 0 {
		t.Errorf("chunk kept outside a snapshot: %q", heap)
	}
}

func TestWaitQuiet(t *testing.T) {
	var c traceCollector
	c.begin()
	start := time.Now()
	c.waitQuiet(t.Context(), 50*time.Millisecond, time.Second)
	if time.Since(start) < 40*time.Millisecond {
		t.Error("waitQuiet did not wait for the quiet period")
	}
	// Activity that never stops: the cap ends the wait.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				c.mu.Lock()
				c.lastNet = time.Now()
				c.mu.Unlock()
			}
		}
	}()
	done := make(chan struct{})
	go func() { c.waitQuiet(t.Context(), 50*time.Millisecond, 200*time.Millisecond); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("waitQuiet ignored its cap")
	}
}

// TestAwaitNavStart: the wait for the announcement of a reload ends when
// the navigation starts, and at once when the call ends, never spinning to
// its bound.
func TestAwaitNavStart(t *testing.T) {
	tab := &Tab{ID: 1, State: NewTabState("T1")}
	m := tab.State.mark()
	go func() {
		time.Sleep(50 * time.Millisecond)
		tab.State.Listen(&page.EventFrameStartedNavigating{FrameID: "T1", URL: "http://127.0.0.1/next",
			NavigationType: page.FrameStartedNavigatingNavigationTypeDifferentDocument})
	}()
	start := time.Now()
	awaitNavStart(context.Background(), tab, m, 5*time.Second)
	if tab.State.mark() == m {
		t.Fatal("returned before the navigation started")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s to see the navigation start", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	awaitNavStart(ctx, tab, tab.State.mark(), 5*time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a cancelled call waited %s", d)
	}
	start = time.Now()
	awaitNavStart(context.Background(), tab, tab.State.mark(), 100*time.Millisecond)
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("the bound of 100ms took %s", d)
	}
}
