package tools

// performanceTools returns performance_start_trace, performance_stop_trace
// and take_heapsnapshot.
func (t *toolset) performanceTools() []Tool { return nil }

// traceCollector gathers a tab's tracing and heap-snapshot event data.
type traceCollector struct{}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (c *traceCollector) listen(ev any) {}
