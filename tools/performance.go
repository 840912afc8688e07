package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/tracing"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools/internal/tracesum"
)

// Bounds of the performance tools. A trace or a heap snapshot of a large
// application can be huge; past a cap the collector keeps what it has and
// says so rather than growing without end.
const (
	traceMaxEvents = 200_000
	traceMaxBytes  = 100 << 20
	heapMaxBytes   = 512 << 20

	// traceStopWait bounds Tracing.end and the delivery of the data.
	traceStopWait = 30 * time.Second
	// traceQuiet is the network silence after the load that autoStop waits
	// for, so that late requests, shifts and tasks make it into the trace;
	// traceAfterLoad caps that wait.
	traceQuiet     = time.Second
	traceAfterLoad = 5 * time.Second
	// heapSnapshotWait bounds a heap snapshot: V8 serialises the whole heap.
	heapSnapshotWait = 2 * time.Minute
)

// traceCategories are those of the DevTools performance panel without the
// screenshots, which would make the trace many times larger.
var traceCategories = []string{
	"devtools.timeline",
	"disabled-by-default-devtools.timeline",
	"disabled-by-default-devtools.timeline.frame",
	"v8.execute",
	"loading",
	"blink.user_timing",
}

// performanceTools returns performance_start_trace, performance_stop_trace
// and take_heapsnapshot.
func (t *toolset) performanceTools() []Tool {
	return []Tool{t.performanceStartTrace(), t.performanceStopTrace(), t.takeHeapSnapshot()}
}

var traceFileOption = mcp.WithString("filePath", mcp.Description("For the raw trace JSON"))

type startTraceArgs struct {
	pageArg
	// Reload and AutoStop are pointers because they default to true.
	Reload   *bool  `json:"reload"`
	AutoStop *bool  `json:"autoStop"`
	FilePath string `json:"filePath"`
}

// filePathArgs are the arguments of a tool that writes one file of a page.
type filePathArgs struct {
	pageArg
	FilePath string `json:"filePath"`
}

func (t *toolset) performanceStartTrace() Tool {
	return Tool{
		Perm: auth.PermWrite,
		Tool: mcp.NewTool("performance_start_trace",
			mcp.WithDescription("Trace the page's load (reload, stop when quiet). Returns TTFB, DCL, load, LCP, CLS, long tasks, heaviest requests."),
			mcp.WithBoolean("reload", mcp.Description("Default true")),
			mcp.WithBoolean("autoStop", mcp.Description("Default true; false: stop with performance_stop_trace")),
			traceFileOption,
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a startTraceArgs) (*mcp.CallToolResult, error) {
			reload, autoStop := a.Reload == nil || *a.Reload, a.AutoStop == nil || *a.AutoStop
			filePath := a.FilePath
			if filePath != "" {
				if _, err := outputPath(ctx, filePath); err != nil {
					return mcp.NewToolResultError("performance_start_trace: " + err.Error()), nil
				}
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			if err := t.startTrace(ctx, tab); err != nil {
				return nil, err
			}
			var note string
			if reload {
				if note, err = t.traceReload(ctx, tab); err != nil {
					t.abandonTrace(tab)
					return nil, err
				}
			}
			if !autoStop {
				what := "Recording a performance trace of page %d."
				if reload {
					what = "Recording a performance trace of page %d; the page was reloaded."
				}
				if filePath != "" {
					note += " The filePath applies when the trace stops: give it to performance_stop_trace."
				}
				return textResult(what+"%s Call performance_stop_trace to stop it and get the summary.", tab.ID, note), nil
			}
			tab.State.trace.waitQuiet(ctx, traceQuiet, traceAfterLoad)
			return t.stopTrace(ctx, tab, "performance_start_trace", filePath, note)
		}),
	}
}

func (t *toolset) performanceStopTrace() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("performance_stop_trace",
			mcp.WithDescription("Stop the trace of performance_start_trace. Returns its summary."),
			traceFileOption,
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a filePathArgs) (*mcp.CallToolResult, error) {
			filePath := a.FilePath
			if filePath != "" {
				// Refuse before stopping, so that the trace survives a bad path.
				if _, err := outputPath(ctx, filePath); err != nil {
					return mcp.NewToolResultError("performance_stop_trace: " + err.Error()), nil
				}
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			return t.stopTrace(ctx, tab, "performance_stop_trace", filePath, "")
		}),
	}
}

// startTrace starts tracing the tab, or says why it cannot.
func (t *toolset) startTrace(ctx context.Context, tab *Tab) error {
	if !tab.State.trace.begin() {
		return fmt.Errorf("performance_start_trace: a trace is already running on page %d; call performance_stop_trace to end it first", tab.ID)
	}
	cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
	defer cancel()
	// A hidden tab gets no frames: there would be no paints to measure.
	err := ensureVisible(cctx)
	if err == nil {
		_, err = chromedp.Call(cctx, tracing.Start, tracing.StartParams{
			TransferMode: tracing.StartTransferModeReportEvents,
			TraceConfig: &tracing.TraceConfig{
				IncludedCategories: traceCategories,
				ExcludedCategories: []string{"*"},
			},
		})
	}
	if err != nil {
		tab.State.trace.reset()
		if cerr := cdpErrorMessage(err); cerr != "" {
			return fmt.Errorf("performance_start_trace: the browser refused to start tracing (%s); another client (DevTools, or another session on this browser) may be recording a trace: stop it and retry", cerr)
		}
		return cdpError("performance_start_trace", cctx, tab, t.cfg.CallTimeout, err)
	}
	return nil
}

// traceReload reloads the tab and waits for the load, bounded by the
// navigation timeout. It returns a note when the load did not finish.
func (t *toolset) traceReload(ctx context.Context, tab *Tab) (string, error) {
	cctx, cancel := callCtx(ctx, tab, t.cfg.NavigationTimeout)
	defer cancel()
	mark := tab.State.mark()
	if _, err := chromedp.Call(cctx, page.Reload, page.ReloadParams{}); err != nil {
		return "", cdpError("performance_start_trace: reload", cctx, tab, t.cfg.NavigationTimeout, err)
	}
	// The browser may answer the reload before it announces the navigation.
	awaitNavStart(cctx, tab, mark, 2*time.Second)
	if _, finished := tab.State.settle(cctx, mark, t.cfg.NavigationTimeout); !finished {
		if ctx.Err() != nil {
			return "", errors.New("performance_start_trace: the call was cancelled while the page reloaded")
		}
		return fmt.Sprintf(" The page had not finished loading after %s.", t.cfg.NavigationTimeout), nil
	}
	return "", nil
}

// awaitNavStart waits until a main-frame navigation has started on tab after
// m, at most d, or until ctx ends.
func awaitNavStart(ctx context.Context, tab *Tab, m navMark, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		// The channel is taken before the check, so that a start between
		// the two still wakes the wait.
		changed := tab.State.navChanged()
		if tab.State.mark() != m {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// abandonTrace ends a trace that a failed call leaves behind, so that the
// browser does not record until the tab closes.
func (t *toolset) abandonTrace(tab *Tab) {
	ctx, cancel := context.WithTimeout(tab.Ctx, t.cfg.CallTimeout)
	defer cancel()
	_, _ = chromedp.Call(ctx, tracing.End, cdp.Empty{})
	tab.State.trace.reset()
}

// stopTrace ends the tab's trace, waits for its data and summarises it.
func (t *toolset) stopTrace(ctx context.Context, tab *Tab, tool, filePath, note string) (*mcp.CallToolResult, error) {
	done, ok := tab.State.trace.end()
	if !ok {
		return mcp.NewToolResultErrorf("%s: no performance trace is running on page %d; call performance_start_trace first", tool, tab.ID), nil
	}
	wait := max(traceStopWait, t.cfg.CallTimeout)
	cctx, cancel := callCtx(ctx, tab, wait)
	defer cancel()
	if _, err := chromedp.Call(cctx, tracing.End, cdp.Empty{}); err != nil {
		t.abandonTrace(tab)
		return nil, cdpError(tool, cctx, tab, wait, err)
	}
	select {
	case <-done:
	case <-cctx.Done():
		tab.State.trace.reset()
		return nil, cdpError(tool+": waiting for the trace data", cctx, tab, wait, cctx.Err())
	}
	data := tab.State.trace.take()
	sum := tracesum.Summarize(data.events, string(tab.TargetID))
	if !sum.Nav.Found() {
		sum.Nav = pageNavTiming(cctx)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "The performance trace of page %d has been stopped.%s\n", tab.ID, note)
	sum.Write(&b)
	if data.full {
		fmt.Fprintf(&b, "\nNote: the trace hit the collection limit (%d events or %d MB); events after that were dropped, so late figures may be missing.\n", traceMaxEvents, traceMaxBytes>>20)
	}
	if data.dataLoss {
		b.WriteString("\nNote: the browser reported that some trace data was lost (its trace buffer filled up).\n")
	}
	if filePath != "" {
		p, err := writeOutput(ctx, filePath, rawTrace(data.events))
		if err != nil {
			fmt.Fprintf(&b, "\nThe raw trace could not be saved: %v\n", err)
			return mcp.NewToolResultError(b.String()), nil
		}
		fmt.Fprintf(&b, "\nThe raw trace (%d events) was saved to %s.\n", len(data.events), p)
	}
	return mcp.NewToolResultText(b.String()), nil
}

// rawTrace encodes events in the JSON trace format that DevTools and
// Perfetto open.
func rawTrace(events [][]byte) []byte {
	n := 32
	for _, e := range events {
		n += len(e) + 2
	}
	b := bytes.NewBuffer(make([]byte, 0, n))
	b.WriteString(`{"traceEvents":[`)
	for i, e := range events {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.Write(e)
	}
	b.WriteString("]}\n")
	return b.Bytes()
}

func (t *toolset) takeHeapSnapshot() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("take_heapsnapshot",
			mcp.WithDescription("Save the page's JS heap to a .heapsnapshot file (the page pauses). Returns its path."),
			mcp.WithString("filePath", mcp.Description("Default heap-ID.heapsnapshot")),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a filePathArgs) (*mcp.CallToolResult, error) {
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			filePath := a.FilePath
			if filePath == "" {
				filePath = fmt.Sprintf("heap-%d.heapsnapshot", tab.ID)
			}
			if _, err := outputPath(ctx, filePath); err != nil {
				return mcp.NewToolResultError("take_heapsnapshot: " + err.Error()), nil
			}
			data, err := t.heapSnapshot(ctx, tab)
			if err != nil {
				return nil, err
			}
			p, err := writeOutput(ctx, filePath, data)
			if err != nil {
				return mcp.NewToolResultError("take_heapsnapshot: " + err.Error()), nil
			}
			nodes := ""
			if n := heapNodeCount(data); n != "" {
				nodes = ", " + n + " nodes"
			}
			return textResult("Heap snapshot of page %d saved to %s (%s%s).", tab.ID, p, tracesum.Size(int64(len(data))), nodes), nil
		}),
	}
}

// heapSnapshot takes a snapshot of the tab's heap; its chunks arrive as
// events, all of them before the command's answer.
func (t *toolset) heapSnapshot(ctx context.Context, tab *Tab) ([]byte, error) {
	if !tab.State.trace.beginHeap() {
		return nil, fmt.Errorf("take_heapsnapshot: a heap snapshot of page %d is already being taken; wait for it", tab.ID)
	}
	wait := max(heapSnapshotWait, t.cfg.CallTimeout)
	cctx, cancel := callCtx(ctx, tab, wait)
	defer cancel()
	_, err := chromedp.Call(cctx, heapprofiler.Enable, cdp.Empty{})
	if err == nil {
		_, err = chromedp.Call(cctx, heapprofiler.TakeHeapSnapshot, heapprofiler.TakeHeapSnapshotParams{ReportProgress: ptr(false)})
		// Leave the page as it was: the profiler slows allocation down.
		dctx, dcancel := context.WithTimeout(tab.Ctx, t.cfg.CallTimeout)
		_, _ = chromedp.Call(dctx, heapprofiler.Disable, cdp.Empty{})
		dcancel()
	}
	data, full := tab.State.trace.endHeap()
	if err != nil {
		return nil, cdpError("take_heapsnapshot", cctx, tab, wait, err)
	}
	if full {
		return nil, fmt.Errorf("take_heapsnapshot: the heap snapshot of page %d is larger than %s, the limit, and was not saved", tab.ID, tracesum.Size(heapMaxBytes))
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("take_heapsnapshot: the browser sent no snapshot data for page %d; retry", tab.ID)
	}
	return data, nil
}

var nodeCountRE = regexp.MustCompile(`"node_count"\s*:\s*(\d+)`)

// heapNodeCount reads the node count from the snapshot's header, which
// comes first in the file.
func heapNodeCount(data []byte) string {
	m := nodeCountRE.FindSubmatch(data[:min(len(data), 64<<10)])
	if m == nil {
		return ""
	}
	return string(m[1])
}

// cdpErrorMessage returns the browser's message when err is a protocol error.
func cdpErrorMessage(err error) string {
	var cerr *cdproto.Error
	if errors.As(err, &cerr) {
		return cerr.Message
	}
	return ""
}

// traceCollector gathers a tab's tracing and heap-snapshot event data.
type traceCollector struct {
	mu       sync.Mutex
	state    traceState
	events   [][]byte
	size     int
	full     bool          // a cap was hit; later events were dropped
	dataLoss bool          // the browser lost data
	done     chan struct{} // closed on Tracing.tracingComplete
	lastNet  time.Time     // last request start or end while tracing

	heapOn   bool
	heap     []byte
	heapFull bool
}

type traceState int

const (
	traceIdle    traceState = iota
	traceRunning            // Tracing.start sent
	traceEnding             // Tracing.end sent, data arriving
)

// traceData is what one trace collected.
type traceData struct {
	events   [][]byte
	full     bool
	dataLoss bool
}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (c *traceCollector) listen(ev any) {
	switch e := ev.(type) {
	case *tracing.EventDataCollected:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.state == traceIdle {
			return
		}
		for _, v := range e.Value {
			if c.full || len(c.events) >= traceMaxEvents || c.size+len(v) > traceMaxBytes {
				c.full = true
				return
			}
			c.events = append(c.events, v)
			c.size += len(v)
		}
	case *tracing.EventTracingComplete:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.state != traceIdle && c.done != nil {
			c.dataLoss = e.DataLossOccurred
			close(c.done)
			c.done = nil
		}
	case *network.EventRequestWillBeSent, *network.EventLoadingFinished, *network.EventLoadingFailed:
		c.mu.Lock()
		if c.state == traceRunning {
			c.lastNet = time.Now()
		}
		c.mu.Unlock()
	case *heapprofiler.EventAddHeapSnapshotChunk:
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.heapOn || c.heapFull {
			return
		}
		if len(c.heap)+len(e.Chunk) > heapMaxBytes {
			c.heapFull, c.heap = true, nil
			return
		}
		c.heap = append(c.heap, e.Chunk...)
	}
}

// begin readies the collector for a new trace; false when one is running.
func (c *traceCollector) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != traceIdle {
		return false
	}
	c.state, c.events, c.size, c.full, c.dataLoss = traceRunning, nil, 0, false, false
	c.done = make(chan struct{})
	c.lastNet = time.Now()
	return true
}

// end marks the trace as ending and returns the channel that closes when
// all its data arrived; false when no trace is running.
func (c *traceCollector) end() (<-chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != traceRunning {
		return nil, false
	}
	c.state = traceEnding
	return c.done, true
}

// take returns the collected trace and makes the collector idle.
func (c *traceCollector) take() traceData {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := traceData{events: c.events, full: c.full, dataLoss: c.dataLoss}
	c.state, c.events, c.size, c.done = traceIdle, nil, 0, nil
	return d
}

// reset drops a trace that failed.
func (c *traceCollector) reset() { c.take() }

// waitQuiet waits until the tab has started or finished no request for
// quiet, at most max.
func (c *traceCollector) waitQuiet(ctx context.Context, quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	for {
		c.mu.Lock()
		last := c.lastNet
		c.mu.Unlock()
		wait := min(time.Until(last.Add(quiet)), time.Until(deadline))
		if wait <= 0 {
			return
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}

func (c *traceCollector) beginHeap() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.heapOn {
		return false
	}
	c.heapOn, c.heap, c.heapFull = true, nil, false
	return true
}

// endHeap returns the snapshot data and whether it overflowed the cap.
func (c *traceCollector) endHeap() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, full := c.heap, c.heapFull
	c.heapOn, c.heap, c.heapFull = false, nil, false
	return data, full
}

// pageNavJS reads the page's own load timings and LCP, for a trace that
// holds no page load.
const pageNavJS = `(async () => {
  const n = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  const lcp = await new Promise(resolve => {
    setTimeout(() => resolve(null), 200);
    try {
      new PerformanceObserver((list, obs) => { const es = list.getEntries(); obs.disconnect(); resolve(es[es.length - 1]); })
        .observe({type: 'largest-contentful-paint', buffered: true});
    } catch (e) { resolve(null); }
  });
  const el = lcp && lcp.element ? lcp.element.tagName + (lcp.element.id ? " id='" + lcp.element.id + "'" : '') : '';
  const v = x => (typeof x === 'number' && x > 0) ? x : -1;
  return {url: location.href, ttfb: n ? v(n.responseStart) : -1, fcp: paint ? v(paint.startTime) : -1,
    dcl: n ? v(n.domContentLoadedEventEnd) : -1, load: n ? v(n.loadEventEnd) : -1,
    lcp: lcp ? v(lcp.startTime) : -1, lcpWhat: el ? '<' + el + '>' + (lcp.url ? ' ' + lcp.url : '') : ''};
})()`

// pageNavTiming reads the timings of the page's current document.
func pageNavTiming(ctx context.Context) tracesum.NavTiming {
	none := tracesum.NoNav()
	res, err := chromedp.Call(ctx, runtime.Evaluate, runtime.EvaluateParams{
		Expression: pageNavJS, AwaitPromise: ptr(true), ReturnByValue: ptr(true),
	})
	if err != nil || res.ExceptionDetails != nil || res.Result == nil {
		return none
	}
	var v struct {
		URL                       string
		TTFB, FCP, DCL, Load, LCP float64
		LCPWhat                   string `json:"lcpWhat"`
	}
	if json.Unmarshal(res.Result.Value, &v) != nil || v.URL == "" {
		return none
	}
	return tracesum.NavTiming{FromPage: true, URL: v.URL, TTFB: v.TTFB, FCP: v.FCP, DCL: v.DCL, Load: v.Load, LCP: v.LCP, LCPWhat: v.LCPWhat}
}
