package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// floodFor is how long BenchmarkFloodingPageHeap lets the page flood.
const floodFor = 10 * time.Second

// BenchmarkFloodingPageHeap measures how much one page that floods the
// console (10 kB strings) and the network (8 kB URLs with 4 kB headers)
// without pause grows the proxy's heap (after a GC), with the default log
// bounds. The goal is under 64 MB, whatever the page logs. It floods once
// per run, for floodFor, whatever b.N is.
func BenchmarkFloodingPageHeap(b *testing.B) {
	ch := testchrome.Start(b)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>Flood</title><script>
const big = 'x'.repeat(10240), url = 'y'.repeat(8192), hdr = 'z'.repeat(4096);
let i = 0;
setInterval(() => { for (let j = 0; j < 200; j++) console.log(i++ + ':' + big, big, {big}); }, 10);
(async () => { for (;;) await fetch('/r/' + i + '?' + url, {headers: {'X-Big': hdr}}).catch(() => {}); })();
</script>`)
	})
	mux.HandleFunc("/r/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", r.Header.Get("X-Big"))
		io.WriteString(w, strings.Repeat("r", 1024))
	})
	pages := httptest.NewServer(mux)
	defer pages.Close()

	h := newHarness(b, "")
	c := h.driving("alice", ch.URL)
	mustCall(b, c, "new_page", nil)
	before := heapAfterGC()
	b.ResetTimer()
	mustCall(b, c, "navigate_page", map[string]any{"url": pages.URL, "timeout": 5000})
	time.Sleep(floodFor)
	b.StopTimer()
	mustCall(b, c, "list_console_messages", map[string]any{"pageSize": 1})
	mustCall(b, c, "list_network_requests", map[string]any{"pageSize": 1})
	after := heapAfterGC()
	growth := float64(int64(after)-int64(before)) / (1 << 20)
	b.ReportMetric(growth, "heap-growth-MB")
	b.ReportMetric(0, "ns/op")
	for range b.N {
	}
	mustCall(b, c, "navigate_page", map[string]any{"url": "about:blank"}) // stop the flood before the harness ends
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
