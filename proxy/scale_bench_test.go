package proxy

// One instance at scale (issue 12). The proxy runs in a child process (this
// test binary again, as TestScaleChild), so that the resident memory and CPU
// time measured are the proxy's own, not those of the load generator or the
// MCP clients, which run here in the parent. BENCHMARKS.md has the figures
// and the commands; `make bench` runs them (-benchtime 1x: each benchmark
// is one timed run of its own length, whatever b.N).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// scaleChildEnv selects the child's role: "proxy", "minimal" (a bare
// net/http server answering scaleBodyEnv's JSON on every path) or "floor"
// or "floor-mcp" (the least servers answering evaluate_script, without and
// with mcp-go's dispatch, scale_floor_bench_test.go).
const (
	scaleChildEnv = "MBP_SCALE_CHILD"
	scaleBodyEnv  = "MBP_SCALE_BODY"
	// scaleCPUProfileEnv names a file for the child's CPU profile, and
	// scaleProfileDirEnv a directory where BenchmarkScaleIdleSSE leaves
	// the heap and goroutine profiles of 5,000 sessions: to look, not
	// measured.
	scaleCPUProfileEnv = "MBP_SCALE_CPUPROFILE"
	scaleProfileDirEnv = "MBP_SCALE_PROFILES"
	// scaleMemRateEnv sets the child's runtime.MemProfileRate (1: every
	// allocation is in the heap profiles, to count them; slows the child).
	scaleMemRateEnv = "MBP_SCALE_MEMRATE"
	// scaleMutexRateEnv sets the child's mutex profile fraction (1: every
	// contended lock is in evaluate-mutex.pprof).
	scaleMutexRateEnv = "MBP_SCALE_MUTEXRATE"
	// scaleFloorProfileEnv names a file for the floor child's CPU profile.
	scaleFloorProfileEnv    = "MBP_SCALE_FLOOR_CPUPROFILE"
	scaleFloorMCPProfileEnv = "MBP_SCALE_FLOORMCP_CPUPROFILE"
)

// TestScaleChild is the server side of the scale benchmarks; it skips
// unless a benchmark started it. It prints "LISTEN <addr>", then answers
// each "gc" line on stdin with "MEM <heap in use> <stacks in use>
// <goroutines>" after a collection, and stops when stdin closes.
func TestScaleChild(t *testing.T) {
	mode := os.Getenv(scaleChildEnv)
	if mode == "" {
		t.Skip("the server side of the scale benchmarks (scale_bench_test.go)")
	}
	if n, err := strconv.Atoi(os.Getenv(scaleMemRateEnv)); err == nil && n > 0 {
		runtime.MemProfileRate = n
	}
	if n, err := strconv.Atoi(os.Getenv(scaleMutexRateEnv)); err == nil && n > 0 {
		runtime.SetMutexProfileFraction(n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	stopServing := cancel // the proxy's Serve ends with its context
	if mode == "minimal" || strings.HasPrefix(mode, "floor") {
		var h http.Handler = newFloorServer(mode == "floor-mcp")
		if mode == "minimal" {
			body := []byte(os.Getenv(scaleBodyEnv))
			h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(body)
			})
		}
		srv := &http.Server{Handler: h}
		go func() { served <- srv.Serve(ln) }()
		stopServing = func() { _ = srv.Close() }
	} else {
		srv, stop := scaleProxy(t)
		defer stop()
		go func() { served <- srv.Serve(ctx, ln) }()
	}
	path := map[string]string{"proxy": os.Getenv(scaleCPUProfileEnv), "floor": os.Getenv(scaleFloorProfileEnv),
		"floor-mcp": os.Getenv(scaleFloorMCPProfileEnv)}[mode]
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("LISTEN %s\n", ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if name, path, ok := strings.Cut(in.Text(), " "); ok && name == "cpu" {
			// "cpu PATH" starts a CPU profile, "cpu -" stops it.
			if path == "-" {
				pprof.StopCPUProfile()
			} else if f, err := os.Create(path); err == nil {
				_ = pprof.StartCPUProfile(f)
				defer f.Close()
			}
			fmt.Println("PROFILED")
		} else if ok && name != "gc" {
			// "heap PATH", "goroutine PATH": write that profile.
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup(name).WriteTo(f, 0)
				f.Close()
			}
			fmt.Println("PROFILED")
		}
		if in.Text() == "allocs" {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("ALLOCS %d %d\n", ms.Mallocs, ms.TotalAlloc)
		}
		if in.Text() == "gc" {
			runtime.GC()
			debug.FreeOSMemory()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("MEM %d %d %d\n", ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine())
		}
	}
	stopServing()
	<-served
}

// scaleProxy is the proxy of the child: the harness's parts, as serve
// wires them (Prometheus metrics included), with limits raised to 5,000
// sessions over 100 users and the log at info level to nowhere (production
// writes it to stderr).
func scaleProxy(t testing.TB) (*Server, func()) {
	log := zerolog.New(io.Discard).Level(zerolog.InfoLevel)
	reg := prometheus.NewRegistry()
	poolMetrics, err := browserpool.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sessionMetrics, err := session.NewMetricsWith(reg, session.MetricsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	proxyMetrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.NewAuthenticator([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	store, err := router.OpenBolt(filepath.Join(t.TempDir(), "registrations.db"))
	if err != nil {
		t.Fatal(err)
	}
	page := &router.PagePolicy{}
	pool := browserpool.New(browserpool.Config{HealthInterval: 5 * time.Second, DialTimeout: 5 * time.Second,
		InitialBackoff: time.Second, MaxBackoff: 30 * time.Second, Logger: log, Audit: log, Requests: page, Metrics: poolMetrics})
	page.Endpoints = pool.ProtectedEndpoints
	mgr := session.NewManager(session.Config{MaxSessionsPerUser: 60, MaxSessions: 20000, Log: log, Audit: log, Metrics: sessionMetrics}, pool)
	cfg := Config{
		Version: "bench", Auth: authn, Store: store, Pool: pool, Sessions: mgr,
		Tools: tools.Config{CallTimeout: 10 * time.Second, NavigationTimeout: 10 * time.Second, Navigation: tools.NavPolicy{Page: page}},
		Log:   log, Audit: log, RegisterWait: 5 * time.Second,
		Conns: ConnLimits{MaxPerIP: 100000}, MaxStreams: 60,
		Metrics: proxyMetrics, Gatherer: reg,
	}
	srv := New(cfg)
	return srv, func() {
		mgr.CloseAll()
		pool.Close()
		store.Close()
	}
}

// scaleChild is a running child process.
type scaleChild struct {
	cmd   *exec.Cmd
	addr  string
	in    io.WriteCloser
	lines chan string
}

func startScaleChild(b *testing.B, mode string, env ...string) *scaleChild {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestScaleChild$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), scaleChildEnv+"="+mode), env...)
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &scaleChild{cmd: cmd, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	b.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line := c.expect(b, "LISTEN ")
	c.addr = strings.TrimPrefix(line, "LISTEN ")
	return c
}

func (c *scaleChild) expect(b *testing.B, prefix string) string {
	b.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				b.Fatalf("child ended before %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			b.Fatalf("no %q from the child in 60 s", prefix)
		}
	}
}

func (c *scaleChild) url() string { return "http://" + c.addr }

// ask sends the child command cmd and returns the fields of its answer,
// the line that starts with prefix.
func (c *scaleChild) ask(b *testing.B, cmd, prefix string) []string {
	b.Helper()
	fmt.Fprintln(c.in, cmd)
	return strings.Fields(c.expect(b, prefix))
}

// childMem is the child's memory after a collection.
type childMem struct {
	rss, heap, stacks uint64 // bytes
	goroutines        int
}

func (c *scaleChild) mem(b *testing.B) childMem {
	b.Helper()
	f := c.ask(b, "gc", "MEM ")
	var m childMem
	m.heap, _ = strconv.ParseUint(f[1], 10, 64)
	m.stacks, _ = strconv.ParseUint(f[2], 10, 64)
	m.goroutines, _ = strconv.Atoi(f[3])
	status, err := procStatus(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	kb, _ := strconv.ParseUint(strings.TrimSuffix(status["VmRSS"], " kB"), 10, 64)
	m.rss = kb << 10
	return m
}

// procStatus reads a /proc status file: its values by key, trimmed.
func procStatus(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

// childWork is what the child has done so far: its heap allocations
// (count and bytes) and its threads' context switches (voluntary and not),
// which count the hand-offs between goroutines that put a thread to sleep.
type childWork struct {
	mallocs, bytes, switches uint64
	syscalls                 uint64 // read and write system calls (/proc/PID/io syscr + syscw)
}

// add adds what was done between from and to.
func (w *childWork) add(from, to childWork) {
	w.mallocs += to.mallocs - from.mallocs
	w.bytes += to.bytes - from.bytes
	w.switches += to.switches - from.switches
	w.syscalls += to.syscalls - from.syscalls
}

func (c *scaleChild) work(b *testing.B) childWork {
	b.Helper()
	f := c.ask(b, "allocs", "ALLOCS ")
	var w childWork
	w.mallocs, _ = strconv.ParseUint(f[1], 10, 64)
	w.bytes, _ = strconv.ParseUint(f[2], 10, 64)
	if io, err := procStatus(fmt.Sprintf("/proc/%d/io", c.cmd.Process.Pid)); err == nil {
		r, _ := strconv.ParseUint(io["syscr"], 10, 64)
		w2, _ := strconv.ParseUint(io["syscw"], 10, 64)
		w.syscalls = r + w2
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range tasks {
		status, err := procStatus(fmt.Sprintf("/proc/%d/task/%s/status", c.cmd.Process.Pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		for _, k := range []string{"voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"} {
			n, _ := strconv.ParseUint(status[k], 10, 64)
			w.switches += n
		}
	}
	return w
}

// cpu returns the child's user+system CPU time (clock ticks of 10 ms).
func (c *scaleChild) cpu(b *testing.B) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (in parentheses): utime is the 14th
	// field of the line, stime the 15th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// scaleToken signs a token the child accepts (same testSecret).
func scaleToken(b *testing.B, user string) string {
	b.Helper()
	a, err := auth.NewAuthenticator([]byte(testSecret))
	if err != nil {
		b.Fatal(err)
	}
	tok, err := a.Issue(user, nil, 12*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// scaleRegister registers user with browserURL on the child.
func scaleRegister(b *testing.B, c *scaleChild, tok, user, browserURL string) {
	b.Helper()
	body, _ := json.Marshal(map[string]string{"userId": user, "browserURL": browserURL})
	req, _ := http.NewRequest(http.MethodPost, c.url()+"/api/register", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("register %s: %d %s", user, resp.StatusCode, data)
	}
}

// deadBrowserURL is deadURL for a benchmark.
func deadBrowserURL(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return "http://" + l.Addr().String()
}

// scaleUsers registers n users (u0...) with dead browsers and returns
// their tokens.
func scaleUsers(b *testing.B, c *scaleChild, n int) []string {
	toks := make([]string, n)
	for i := range toks {
		user := fmt.Sprintf("u%d", i)
		toks[i] = scaleToken(b, user)
		scaleRegister(b, c, toks[i], user, deadBrowserURL(b))
	}
	return toks
}

// openIdleSSE opens n SSE sessions on the child spread over toks, each a
// bare TCP connection that reads the endpoint event and then nothing: an
// idle IDE. They close when the benchmark ends.
func openIdleSSE(b *testing.B, c *scaleChild, toks []string, n int) {
	b.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	b.Cleanup(func() {
		for _, cn := range conns {
			cn.Close()
		}
	})
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				cn, err := dialIdleSSE(c.addr, toks[i%len(toks)])
				if err != nil {
					select {
					case errs <- fmt.Errorf("session %d: %w", i, err):
					default:
					}
					continue
				}
				mu.Lock()
				conns = append(conns, cn)
				mu.Unlock()
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

func dialIdleSSE(addr, tok string) (net.Conn, error) {
	cn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = cn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(cn, "GET /sse HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", addr, tok)
	var got []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(got, []byte("sessionId=")) {
		n, err := cn.Read(buf)
		if err != nil {
			cn.Close()
			return nil, fmt.Errorf("no endpoint event (%q): %w", got, err)
		}
		got = append(got, buf[:n]...)
		if len(got) >= 12 && !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
			cn.Close()
			return nil, fmt.Errorf("answer %q", got)
		}
	}
	_ = cn.SetDeadline(time.Time{})
	return cn, nil
}

// BenchmarkScaleIdleSSE: the proxy's resident memory per idle SSE session
// at 1,000 and then 5,000 sessions over 100 users (goal: under 32 KB).
func BenchmarkScaleIdleSSE(b *testing.B) {
	c := startScaleChild(b, "proxy")
	toks := scaleUsers(b, c, 100)
	openIdleSSE(b, c, toks, 100) // warm: first-use allocations of every path
	base := c.mem(b)
	total := 100
	for _, n := range []int{1000, 5000} {
		openIdleSSE(b, c, toks, n-total)
		total = n
		m := c.mem(b)
		per := func(after, before uint64) float64 {
			return float64(int64(after)-int64(before)) / float64(n-100) / 1024
		}
		b.ReportMetric(per(m.rss, base.rss), fmt.Sprintf("rss-KB/session@%d", n))
		b.ReportMetric(per(m.heap, base.heap), fmt.Sprintf("heap-KB/session@%d", n))
		b.ReportMetric(per(m.stacks, base.stacks), fmt.Sprintf("stack-KB/session@%d", n))
		b.ReportMetric(float64(m.goroutines-base.goroutines)/float64(n-100), fmt.Sprintf("goroutines/session@%d", n))
	}
	if dir := os.Getenv(scaleProfileDirEnv); dir != "" {
		for _, name := range []string{"heap", "goroutine"} {
			fmt.Fprintf(c.in, "%s %s\n", name, filepath.Join(dir, name+".pprof"))
			c.expect(b, "PROFILED")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// loadResult is what one load run measured.
type loadResult struct {
	rps      float64
	p50, p99 time.Duration
}

// loadGET sends GET url from conns keep-alive connections, as fast as
// they are answered, for d, and fails on any answer but 200.
func loadGET(b *testing.B, url, tok string, conns int, d time.Duration) loadResult {
	b.Helper()
	var (
		mu    sync.Mutex
		lats  []time.Duration
		total atomic.Int64
		bad   atomic.Value
		wg    sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	for range conns {
		wg.Go(func() {
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			mine := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				start := time.Now()
				resp, err := cl.Do(req)
				if err != nil {
					bad.Store(err.Error())
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(start))
				if resp.StatusCode != http.StatusOK {
					bad.Store(fmt.Sprintf("status %d", resp.StatusCode))
					return
				}
			}
			total.Add(int64(len(mine)))
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		b.Fatalf("GET %s: %v", url, v)
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration { return lats[min(len(lats)-1, int(p*float64(len(lats))))] }
	return loadResult{rps: float64(total.Load()) / d.Seconds(), p50: pct(0.5), p99: pct(0.99)}
}

// BenchmarkScaleStatus: GET /api/users/:id/status through the proxy
// against a bare net/http server answering the same JSON, with the same
// load generator (64 connections) sending the same requests, bearer token
// included (the bare server reads it as net/http reads every header, and
// ignores it), in the same run, then again with 5,000
// SSE sessions open (goal: at least 0.85x the requests per second, at most
// 1.5x the p99, both times).
func BenchmarkScaleStatus(b *testing.B) {
	const conns, d = 64, 4 * time.Second
	px := startScaleChild(b, "proxy")
	toks := scaleUsers(b, px, 100)
	statusURL := px.url() + "/api/users/u0/status"
	resp, err := http.Get(statusURL) // no token: 401, to check the route answers
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, statusURL, nil)
	req.Header.Set("Authorization", "Bearer "+toks[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status: %d %s", resp.StatusCode, body)
	}
	mini := startScaleChild(b, "minimal", scaleBodyEnv+"="+string(bytes.TrimSpace(body)))
	miniURL := mini.url() + "/api/users/u0/status"

	run := func(label string) {
		loadGET(b, miniURL, toks[0], conns, time.Second) // warm both
		loadGET(b, statusURL, toks[0], conns, time.Second)
		var m, p loadResult
		var mCPU, pCPU time.Duration // each server's CPU time: less noisy than req/s
		var mN, pN float64
		for range 2 { // alternate, so that a neighbour's burst hits both
			c0 := mini.cpu(b)
			rm := loadGET(b, miniURL, toks[0], conns, d/2)
			mCPU += mini.cpu(b) - c0
			c0 = px.cpu(b)
			rp := loadGET(b, statusURL, toks[0], conns, d/2)
			pCPU += px.cpu(b) - c0
			mN += rm.rps * (d / 2).Seconds()
			pN += rp.rps * (d / 2).Seconds()
			m.rps += rm.rps / 2
			p.rps += rp.rps / 2
			m.p99 = max(m.p99, rm.p99)
			p.p99 = max(p.p99, rp.p99)
			m.p50, p.p50 = rm.p50, rp.p50
		}
		b.ReportMetric(p.rps, "proxy-req/s"+label)
		b.ReportMetric(m.rps, "nethttp-req/s"+label)
		b.ReportMetric(p.rps/m.rps, "rps-ratio"+label)
		b.ReportMetric(float64(p.p99)/float64(time.Millisecond), "proxy-p99-ms"+label)
		b.ReportMetric(float64(m.p99)/float64(time.Millisecond), "nethttp-p99-ms"+label)
		b.ReportMetric(float64(p.p99)/float64(m.p99), "p99-ratio"+label)
		b.ReportMetric(float64(pCPU.Microseconds())/pN, "proxy-cpu-µs/req"+label)
		b.ReportMetric(float64(mCPU.Microseconds())/mN, "nethttp-cpu-µs/req"+label)
	}
	dir := os.Getenv(scaleProfileDirEnv)
	// Both servers are profiled, the bare one too: what the proxy spends
	// beyond it is the difference of the two.
	profile := func(name string) {
		if dir == "" {
			return
		}
		for c, arg := range map[*scaleChild]string{px: name + ".cpu", mini: name + "-nethttp.cpu"} {
			if name != "-" {
				arg = filepath.Join(dir, arg)
			} else {
				arg = "-"
			}
			fmt.Fprintf(c.in, "cpu %s\n", arg)
			c.expect(b, "PROFILED")
		}
	}
	profile("status-0")
	run("")
	profile("-")
	openIdleSSE(b, px, toks, 5000)
	profile("status-5000")
	run("@5000sessions")
	profile("-")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkScaleEvaluate: 20 Streamable HTTP sessions over 4 browsers (4
// users, 5 sessions each, a tab each) call evaluate_script back to back for
// a while: the proxy's CPU time per call (goal: under 100 µs), and calls
// per second against raw CDP Runtime.evaluate from 20 tabs over the same
// browsers (goal: at least 0.85x). Beside them, the same 20 sessions on the
// stack's floor (scale_floor_bench_test.go): the CPU per call of the
// proxy's parts with nothing of the proxy's own.
func BenchmarkScaleEvaluate(b *testing.B) {
	const browsers, perBrowser, d = 4, 5, 5 * time.Second
	chromes := make([]*testchrome.Chrome, browsers)
	for i := range chromes {
		chromes[i] = testchrome.Start(b)
	}
	px := startScaleChild(b, "proxy")
	fl, fm := startScaleChild(b, "floor"), startScaleChild(b, "floor-mcp")
	type caller func() error
	// Each child gets the same 20 sessions over the same browsers, a tab each.
	callsOf := func(c *scaleChild) []caller {
		var calls []caller
		for i, ch := range chromes {
			user := fmt.Sprintf("w%d", i)
			tok := scaleToken(b, user)
			scaleRegister(b, c, tok, user, ch.URL)
			for range perBrowser {
				cl, err := dialMCP(c.url(), viaStreamable, map[string]string{"Authorization": "Bearer " + tok})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { cl.Close() })
				mustCall(b, cl, "new_page", nil)
				var req mcp.CallToolRequest
				req.Params.Name = "evaluate_script"
				req.Params.Arguments = map[string]any{"function": "() => 1+1"}
				calls = append(calls, func() error {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					res, err := cl.CallTool(ctx, req)
					if err == nil && res.IsError {
						err = fmt.Errorf("evaluate_script: %v", res.Content)
					}
					if err == nil && !evaluatedTwo(res) {
						err = fmt.Errorf("evaluate_script: %v, not 2", res.Content)
					}
					return err
				})
			}
		}
		return calls
	}
	proxyCalls, floorCalls, floorMCPCalls := callsOf(px), callsOf(fl), callsOf(fm)
	var rawCalls []caller
	for _, c := range chromes {
		actx, acancel := remote.NewAllocator(context.Background(), c.URL)
		b.Cleanup(acancel)
		bctx, bcancel := chromedp.NewContext(actx)
		b.Cleanup(bcancel)
		if err := chromedp.Do(bctx); err != nil {
			b.Fatal(err)
		}
		for range perBrowser {
			tctx, tcancel := chromedp.NewContext(bctx, chromedp.WithNewWindow(false))
			b.Cleanup(tcancel)
			if err := chromedp.Do(tctx); err != nil {
				b.Fatal(err)
			}
			rawCalls = append(rawCalls, func() error {
				res, err := chromedp.Call(tctx, cdpruntime.Evaluate, cdpruntime.EvaluateParams{Expression: "1+1", ReturnByValue: ptrBool(true)})
				if err == nil && string(res.Result.Value) != "2" {
					err = fmt.Errorf("evaluate: %s", res.Result.Value)
				}
				return err
			})
		}
	}
	drive := func(calls []caller, d time.Duration) int64 {
		var n atomic.Int64
		var failed atomic.Value
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for _, call := range calls {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					if err := call(); err != nil {
						failed.Store(err.Error())
						return
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		if v := failed.Load(); v != nil {
			b.Fatal(v)
		}
		return n.Load()
	}
	drive(proxyCalls, time.Second) // warm
	drive(floorCalls, time.Second)
	drive(floorMCPCalls, time.Second)
	drive(rawCalls, time.Second)
	// Where the machine's CPU goes on each path: the proxy (child), this
	// process (the MCP clients, or chromedp for raw CDP) and the browsers.
	selfCPU := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	chromeCPU := func() time.Duration {
		var sum time.Duration
		for _, c := range chromes {
			d, err := c.CPU()
			if err != nil {
				b.Fatal(err)
			}
			sum += d
		}
		return sum
	}
	var proxyN, floorN, floorMCPN, rawN int64
	var proxyCPU, floorCPU, floorMCPCPU, clientCPU, rawClientCPU, browserCPU, rawBrowserCPU time.Duration
	var proxyWork, floorMCPWork childWork
	for range 2 { // alternate, so that a neighbour's burst hits both
		w0 := px.work(b)
		cpu0, self0, ch0 := px.cpu(b), selfCPU(), chromeCPU()
		proxyN += drive(proxyCalls, d/2)
		proxyCPU += px.cpu(b) - cpu0
		proxyWork.add(w0, px.work(b))
		clientCPU += selfCPU() - self0
		browserCPU += chromeCPU() - ch0
		f0 := fl.cpu(b)
		floorN += drive(floorCalls, d/2)
		floorCPU += fl.cpu(b) - f0
		fw0 := fm.work(b)
		f0 = fm.cpu(b)
		floorMCPN += drive(floorMCPCalls, d/2)
		floorMCPCPU += fm.cpu(b) - f0
		floorMCPWork.add(fw0, fm.work(b))
		self0, ch0 = selfCPU(), chromeCPU()
		rawN += drive(rawCalls, d/2)
		rawClientCPU += selfCPU() - self0
		rawBrowserCPU += chromeCPU() - ch0
	}
	perCall := func(cpu time.Duration, n int64) float64 { return float64(cpu.Microseconds()) / float64(n) }
	b.ReportMetric(perCall(proxyCPU, proxyN), "proxy-cpu-µs/call")
	b.ReportMetric(perCall(floorCPU, floorN), "floor-cpu-µs/call")
	b.ReportMetric(float64(floorN)/d.Seconds(), "floor-calls/s")
	b.ReportMetric(perCall(floorMCPCPU, floorMCPN), "floormcp-cpu-µs/call")
	b.ReportMetric(float64(floorMCPN)/d.Seconds(), "floormcp-calls/s")
	b.ReportMetric(float64(floorMCPWork.mallocs)/float64(floorMCPN), "floormcp-allocs/call")
	b.ReportMetric(float64(floorMCPWork.bytes)/float64(floorMCPN), "floormcp-B/call")
	b.ReportMetric(float64(floorMCPWork.switches)/float64(floorMCPN), "floormcp-switches/call")
	b.ReportMetric(float64(floorMCPWork.syscalls)/float64(floorMCPN), "floormcp-rw-syscalls/call")
	b.ReportMetric(float64(proxyWork.syscalls)/float64(proxyN), "proxy-rw-syscalls/call")
	if dir := os.Getenv(scaleProfileDirEnv); dir != "" {
		// Where the calls' allocations come from (alloc_space, since start).
		fmt.Fprintf(px.in, "heap %s\n", filepath.Join(dir, "evaluate-heap.pprof"))
		px.expect(b, "PROFILED")
		// Where its goroutines waited on locks (with MBP_SCALE_MUTEXRATE).
		fmt.Fprintf(px.in, "mutex %s\n", filepath.Join(dir, "evaluate-mutex.pprof"))
		px.expect(b, "PROFILED")
	}
	b.ReportMetric(float64(proxyWork.mallocs)/float64(proxyN), "proxy-allocs/call")
	b.ReportMetric(float64(proxyWork.bytes)/float64(proxyN), "proxy-B/call")
	b.ReportMetric(float64(proxyWork.switches)/float64(proxyN), "proxy-switches/call")
	b.ReportMetric(perCall(clientCPU, proxyN), "client-cpu-µs/call")
	b.ReportMetric(perCall(browserCPU, proxyN), "browser-cpu-µs/call")
	b.ReportMetric(perCall(rawClientCPU, rawN), "raw-client-cpu-µs/call")
	b.ReportMetric(perCall(rawBrowserCPU, rawN), "raw-browser-cpu-µs/call")
	b.ReportMetric(float64(proxyN)/d.Seconds(), "proxy-calls/s")
	b.ReportMetric(float64(rawN)/d.Seconds(), "raw-calls/s")
	b.ReportMetric(float64(proxyN)/float64(rawN), "throughput-ratio")
	b.ReportMetric(0, "ns/op")
}

// evaluatedTwo says whether res is the one text of "() => 1+1": the
// proxy's (the value in a json block) or the floor's (the value alone).
func evaluatedTwo(res *mcp.CallToolResult) bool {
	if len(res.Content) != 1 {
		return false
	}
	tc, ok := res.Content[0].(mcp.TextContent)
	return ok && (tc.Text == "2" || strings.HasSuffix(tc.Text, "```json\n2\n```"))
}

// BenchmarkScaleSSEConnect: from dialling GET /sse to the answer of the
// first tools/list (initialize in between), with mcp-go's client, 200 times
// one after another (goal: p50 under 2 ms). Beside it, alternating, the
// floor: a bare client (net/http, sseFloorConnect) sending the same four
// requests, so that what is the proxy's and what is mcp-go's client's can
// be told apart; the phases of mcp-go's connect; and the CPU time of each
// client per connect (this process's, measured around each connect, Close
// included).
func BenchmarkScaleSSEConnect(b *testing.B) {
	px := startScaleChild(b, "proxy")
	tok := scaleUsers(b, px, 1)[0]
	headers := map[string]string{"Authorization": "Bearer " + tok}
	var phases [3][]time.Duration // Start (GET /sse to the endpoint), initialize, tools/list
	once := func(record bool) time.Duration {
		start := time.Now()
		tr, err := transport.NewSSE(px.url()+"/sse", transport.WithHeaders(headers))
		if err != nil {
			b.Fatal(err)
		}
		cl := client.NewClient(tr)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := cl.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		t1 := time.Now()
		var init mcp.InitializeRequest
		init.Params.ClientInfo = mcp.Implementation{Name: "bench", Version: "0"}
		if _, err := cl.Initialize(ctx, init); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		list, err := cl.ListTools(ctx, mcp.ListToolsRequest{})
		d := time.Since(start)
		if err != nil || len(list.Tools) == 0 {
			b.Fatalf("tools/list: %v", err)
		}
		if record {
			phases[0] = append(phases[0], t1.Sub(start))
			phases[1] = append(phases[1], t2.Sub(t1))
			phases[2] = append(phases[2], d-t2.Sub(start))
		}
		return d
	}
	floor := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer floor.CloseIdleConnections()
	for range 20 {
		once(false)
		sseFloorConnect(b, floor, px.url(), tok)
	}
	durs := make([]time.Duration, 200)
	raw := make([]time.Duration, 200)
	dir := os.Getenv(scaleProfileDirEnv)
	if dir != "" {
		fmt.Fprintf(px.in, "cpu %s\n", filepath.Join(dir, "sseconnect.cpu"))
		px.expect(b, "PROFILED")
	}
	cpu0 := px.cpu(b)
	var mcpCPU, floorCPU time.Duration // this process's: the clients'
	for i := range durs {
		u0 := selfCPU(b)
		durs[i] = once(true)
		u1 := selfCPU(b)
		raw[i] = sseFloorConnect(b, floor, px.url(), tok)
		mcpCPU += u1 - u0
		floorCPU += selfCPU(b) - u1
	}
	b.ReportMetric(float64((px.cpu(b)-cpu0).Microseconds())/float64(2*len(durs)), "proxy-cpu-µs/connect")
	b.ReportMetric(float64(mcpCPU.Microseconds())/float64(len(durs)), "client-cpu-µs/connect")
	b.ReportMetric(float64(floorCPU.Microseconds())/float64(len(durs)), "floor-client-cpu-µs/connect")
	if dir != "" {
		fmt.Fprintln(px.in, "cpu -")
		px.expect(b, "PROFILED")
	}
	p50 := func(d []time.Duration) float64 {
		d = slices.Clone(d)
		slices.Sort(d)
		return float64(d[len(d)/2]) / float64(time.Millisecond)
	}
	b.ReportMetric(p50(raw), "floor-p50-ms")
	for i, name := range []string{"start", "initialize", "list"} {
		b.ReportMetric(p50(phases[i]), name+"-p50-ms")
	}
	reportPercentiles(b, durs)
}

// selfCPU returns this process's user+system CPU time.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sseFloorConnect is an MCP SSE client's connect with nothing but net/http
// and a line reader: GET /sse to the endpoint event, POST initialize and
// read its answer from the stream, POST notifications/initialized, POST
// tools/list and read its answer. It returns how long that took.
func sseFloorConnect(b *testing.B, cl *http.Client, base, tok string) time.Duration {
	b.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	// The stream's own connection, as mcp-go's client (its POSTs reuse
	// pooled ones).
	stream, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil || stream.StatusCode != http.StatusOK {
		b.Fatalf("GET /sse: %v %v", err, stream)
	}
	defer stream.Body.Close()
	rd := bufio.NewReader(stream.Body)
	data := func() string { // the data of the next event
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				b.Fatalf("stream: %v", err)
			}
			if d, ok := strings.CutPrefix(line, "data:"); ok && !strings.Contains(d, `"method":"ping"`) {
				return strings.TrimSpace(d)
			}
		}
	}
	endpoint := base + data()
	post := func(body string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatalf("POST: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("POST %s: %d", body, resp.StatusCode)
		}
	}
	post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"floor","version":"0"}}}`)
	if d := data(); !strings.Contains(d, `"id":1`) || !strings.Contains(d, `"result"`) {
		b.Fatalf("initialize answered %s", d)
	}
	post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	post(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if d := data(); !strings.Contains(d, `"id":2`) || !strings.Contains(d, `"tools"`) {
		b.Fatalf("tools/list answered %.200s", d)
	}
	return time.Since(start)
}
