package proxy

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// MBP_SCALE_MEMRATE=1 makes the heap profiles of the child count every
// allocation (runtime.MemProfileRate 1), not a sample.
func init() {
	if os.Getenv("MBP_SCALE_MEMRATE") != "" {
		runtime.MemProfileRate = 1
	}
}

// BenchmarkScaleSSEConnectProfile: b.N bare-client SSE connects against the
// child, with its CPU time and allocations per connect; MBP_SCALE_PROFILES
// gets its CPU and heap profiles (sseconnect-proxy.cpu, heap before and
// after). make bench-scale skips it: it needs -benchtime 3000x or so
// (the child's CPU time counts in 10 ms ticks).
func BenchmarkScaleSSEConnectProfile(b *testing.B) {
	px := startScaleChild(b, "proxy")
	tok := scaleUsers(b, px, 1)[0]
	floor := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer floor.CloseIdleConnections()
	for range 50 {
		sseFloorConnect(b, floor, px.url(), tok)
	}
	dir := os.Getenv(scaleProfileDirEnv)
	prof := func(cmd string) {
		if dir != "" {
			fmt.Fprintln(px.in, cmd)
			px.expect(b, "PROFILED")
		}
	}
	prof("heap " + filepath.Join(dir, "sseconnect-heap0.pb"))
	prof("cpu " + filepath.Join(dir, "sseconnect-proxy.cpu"))
	cpu0, self0 := px.cpu(b), selfCPU(b)
	b.ResetTimer()
	for range b.N {
		sseFloorConnect(b, floor, px.url(), tok)
	}
	b.StopTimer()
	proxy, client := px.cpu(b)-cpu0, selfCPU(b)-self0
	b.ReportMetric(float64(proxy.Microseconds())/float64(b.N), "proxy-cpu-µs/connect")
	b.ReportMetric(float64(client.Microseconds())/float64(b.N), "client-cpu-µs/connect")
	// The machine's speed moves with its neighbours; the client's CPU
	// moves with it, so the ratio is steadier than either.
	b.ReportMetric(float64(proxy)/float64(client), "proxy/client-cpu")
	prof("cpu -")
	prof("heap " + filepath.Join(dir, "sseconnect-heap1.pb"))
}
