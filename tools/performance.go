package tools

// performanceTools returns performance_start_trace, performance_stop_trace
// and take_heapsnapshot.
func (t *toolset) performanceTools() []Tool { return nil }
