package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/tracing"
)

// traceEv builds one trace event.
func traceEv(name string, pid, tid int64, ts, dur float64, args map[string]any) []byte {
	e := map[string]any{"name": name, "ph": "I", "pid": pid, "tid": tid, "ts": ts, "args": args}
	if dur > 0 {
		e["ph"], e["dur"] = "X", dur
	}
	b, _ := json.Marshal(e)
	return b
}

func dataArgs(d map[string]any) map[string]any { return map[string]any{"data": d} }

func frameArgs(frame string, d map[string]any) map[string]any {
	return map[string]any{"frame": frame, "data": d}
}

func syntheticTrace() [][]byte {
	const main, other = "MAIN", "OTHER"
	req := func(id, frame, url string, ts float64, size int64) [][]byte {
		return [][]byte{
			traceEv("ResourceSendRequest", 10, 10, ts, 0, dataArgs(map[string]any{"requestId": id, "frame": frame, "url": url, "requestMethod": "GET", "resourceType": "Other"})),
			traceEv("ResourceReceiveResponse", 10, 10, ts+5000, 0, dataArgs(map[string]any{"requestId": id, "statusCode": 200, "mimeType": "text/plain"})),
			traceEv("ResourceFinish", 10, 10, ts+9000, 0, dataArgs(map[string]any{"requestId": id, "encodedDataLength": size})),
		}
	}
	events := [][]byte{
		traceEv("thread_name", 10, 10, 0, 0, map[string]any{"name": "CrRendererMain"}),
		traceEv("thread_name", 10, 11, 0, 0, map[string]any{"name": "Compositor"}),
		traceEv("thread_name", 20, 20, 0, 0, map[string]any{"name": "CrRendererMain"}),
		traceEv("TracingStartedInBrowser", 1, 1, 900_000, 0, dataArgs(map[string]any{"frames": []any{
			map[string]any{"frame": main, "processId": 10},
			map[string]any{"frame": "SUB", "parent": main, "processId": 10},
			map[string]any{"frame": other, "processId": 20},
		}})),
		traceEv("navigationStart", 20, 20, 990_000, 0, frameArgs(other, map[string]any{"navigationId": "X", "documentLoaderURL": "http://other/", "isLoadingMainFrame": true})),
		traceEv("navigationStart", 10, 10, 1_000_000, 0, frameArgs(main, map[string]any{"navigationId": "N1", "documentLoaderURL": "http://x/", "isLoadingMainFrame": true})),
		traceEv("ResourceSendRequest", 10, 10, 1_000_500, 0, dataArgs(map[string]any{"requestId": "N1", "frame": main, "url": "http://x/", "requestMethod": "GET", "resourceType": "Document"})),
		traceEv("ResourceReceiveResponse", 10, 10, 1_040_000, 0, dataArgs(map[string]any{"requestId": "N1", "statusCode": 200, "mimeType": "text/html",
			"timing": map[string]any{"requestTime": 1.0002, "receiveHeadersStart": 30.0, "receiveHeadersEnd": 31.0}})),
		traceEv("ResourceFinish", 10, 10, 1_050_000, 0, dataArgs(map[string]any{"requestId": "N1", "encodedDataLength": 900, "finishTime": 1.05})),
		traceEv("firstContentfulPaint", 10, 10, 1_100_000, 0, frameArgs(main, nil)),
		traceEv("MarkDOMContent", 10, 10, 1_200_000, 0, dataArgs(map[string]any{"frame": main, "isOutermostMainFrame": true})),
		traceEv("MarkLoad", 20, 20, 1_210_000, 0, dataArgs(map[string]any{"frame": other, "isOutermostMainFrame": true})),
		traceEv("MarkLoad", 10, 10, 1_300_000, 0, dataArgs(map[string]any{"frame": main, "isOutermostMainFrame": true})),
		traceEv("largestContentfulPaint::Candidate", 10, 10, 1_150_000, 0, frameArgs(main, map[string]any{"candidateIndex": 1, "navigationId": "N1", "type": "text", "nodeName": "H1 id='hero'", "nodeId": 5})),
		traceEv("largestContentfulPaint::Candidate", 10, 10, 1_250_000, 0, frameArgs(main, map[string]any{"candidateIndex": 2, "navigationId": "N1", "type": "image", "nodeName": "IMG id='pic'", "nodeId": 7})),
		traceEv("largestContentfulPaint::Candidate", 20, 20, 1_260_000, 0, frameArgs(other, map[string]any{"candidateIndex": 3, "navigationId": "X", "type": "text", "nodeName": "P"})),
		traceEv("LargestImagePaint::Candidate", 10, 10, 1_250_000, 0, frameArgs(main, map[string]any{"DOMNodeId": 7, "imageUrl": "http://x/big.png"})),
		traceEv("LayoutShift", 10, 10, 1_400_000, 0, frameArgs(main, map[string]any{"score": 0.1, "weighted_score_delta": 0.1})),
		traceEv("LayoutShift", 10, 10, 1_500_000, 0, frameArgs(main, map[string]any{"score": 0.05, "weighted_score_delta": 0.05})),
		traceEv("LayoutShift", 10, 10, 1_600_000, 0, frameArgs(main, map[string]any{"score": 0.3, "weighted_score_delta": 0.3, "had_recent_input": true})),
		traceEv("LayoutShift", 10, 10, 3_000_000, 0, frameArgs(main, map[string]any{"score": 0.2, "weighted_score_delta": 0.2})),
		traceEv("LayoutShift", 20, 20, 3_000_000, 0, frameArgs(other, map[string]any{"score": 0.9, "weighted_score_delta": 0.9})),
		traceEv("RunTask", 10, 10, 1_100_000, 120_000, nil),
		traceEv("RunTask", 10, 10, 1_300_000, 30_000, nil),
		traceEv("RunTask", 10, 11, 1_300_000, 90_000, nil),
		traceEv("RunTask", 20, 20, 1_300_000, 200_000, nil),
		[]byte(`{not json`),
	}
	events = append(events, req("r1", main, "http://x/a.js", 1_100_000, 5000)...)
	events = append(events, req("r2", "SUB", "http://x/frame.html", 1_100_000, 70000)...)
	events = append(events, req("r3", main, "http://x/b.css", 1_100_000, 300)...)
	events = append(events, req("r4", main, "http://x/c.json", 1_100_000, 20)...)
	events = append(events, req("r5", main, "http://x/d.png", 1_100_000, 40000)...)
	events = append(events, req("r6", other, "http://other/huge.bin", 1_100_000, 9_000_000)...)
	return events
}

func TestSummarizeTrace(t *testing.T) {
	s := summarizeTrace(syntheticTrace(), "MAIN")
	var b bytes.Buffer
	s.write(&b)
	out := b.String()
	for _, want := range []string{
		"Navigation to http://x/",
		"- TTFB: 30 ms",
		"- First Contentful Paint: 100 ms",
		"- DOMContentLoaded: 200 ms",
		"- Load: 300 ms",
		"- LCP: 250 ms — image <IMG id='pic'> http://x/big.png",
		"- CLS: 0.2000 (4 layout shifts, 1 after recent input not counted)",
		"1 long task, 120 ms in total, the longest 120 ms.",
		"- 120 ms at 100 ms after navigation start",
		"6 requests,",
		"1. GET http://x/frame.html — 68.4 kB, 200 text/plain, 9 ms",
		"2. GET http://x/d.png — 39.1 kB",
		"3. GET http://x/a.js — 4.9 kB",
		"4. GET http://x/ — 900 B, 200 text/html, 50 ms",
		"5. GET http://x/b.css — 300 B",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "huge.bin") || strings.Contains(out, "c.json") {
		t.Errorf("summary lists another page's request or more than 5:\n%s", out)
	}
}

func TestSummarizeEmptyTrace(t *testing.T) {
	s := summarizeTrace(nil, "MAIN")
	var b bytes.Buffer
	s.write(&b)
	out := b.String()
	for _, want := range []string{"TTFB: n/a", "LCP: n/a", "CLS: n/a", "Long tasks (main thread, over 50 ms)\nn/a", "no request of the page"} {
		if !strings.Contains(out, want) {
			t.Errorf("empty summary lacks %q:\n%s", want, out)
		}
	}
}

func TestRawTraceIsJSON(t *testing.T) {
	var v struct{ TraceEvents []map[string]any }
	if err := json.Unmarshal(rawTrace(syntheticTrace()[:3]), &v); err != nil || len(v.TraceEvents) != 3 {
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
