// Command compare measures mcp-browser-proxy side by side with
// chrome-devtools-mcp 1.11.0 and @playwright/mcp 0.0.83 on one headless
// Chromium: p50/p99 of evaluate, click, snapshot and screenshot, and the
// snapshot's size on the same page. It prints markdown for BENCHMARKS.md.
//
// Run it from the repository root:
//
//	go run ./bench/compare            # or: make compare
//	go run ./bench/compare -n 200 -peer-n 50 -dump /tmp/snapshots
//
// The peers come from npm (bench/package.json pins them); they are
// installed into bench/node_modules on the first run. Everything runs on
// loopback; the servers are measured one after another, never at once.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
)

// Names of the measured operations, in table order.
var ops = []string{"evaluate", "click", "snapshot", "screenshot"}

// measurement is one operation on one server.
type measurement struct {
	n        int
	durs     []time.Duration
	text     int // text bytes of one answer
	image    int // image bytes of one answer, base64 as sent
	firstErr string
}

// report is everything measured on one server.
type report struct {
	name     string
	err      error
	n        int
	ops      map[string]*measurement
	snapshot string // the first snapshot's text, on the fresh page
	counter  string // the button's text after all the clicks
}

func main() {
	n := flag.Int("n", 200, "timed calls per operation for mcp-browser-proxy")
	peerN := flag.Int("peer-n", 200, "timed calls per operation for the peers (they are slow)")
	warmup := flag.Int("warmup", 5, "untimed calls per operation before the timed ones")
	only := flag.String("servers", "raw,proxy,chrome-devtools-mcp,playwright-mcp", "comma-separated servers to measure (raw: the CDP commands alone, the floor)")
	dump := flag.String("dump", "", "directory to write each server's first answer of each operation to")
	benchDir := flag.String("bench-dir", "", "directory with package.json and node_modules of the peers (default: bench/ of the repository)")
	flag.BoolVar(&agent.on, "agent", true, "also time the agent calls (first page tool, navigate_page, fill, press_key, click, hover) beside their raw CDP floor, and the TodoMVC-style task on the proxy and chrome-devtools-mcp")
	flag.BoolVar(&agent.classic, "classic", true, "time evaluate, click, snapshot and screenshot on every server (the first table)")
	flag.IntVar(&agent.n, "agent-n", 100, "timed calls per agent call (navigate_page and the input tools)")
	flag.DurationVar(&callGap, "gap", callGap, "pause before each timed navigate_page and input call, on both sides (an agent's calls are never back to back)")
	flag.IntVar(&agent.firstN, "first-n", 20, "timed first page tools (each one a new session and tab)")
	flag.IntVar(&agent.reps, "task-reps", 5, "runs of the TodoMVC-style task per server")
	flag.IntVar(&firstRoutes, "first-routes", 0, "also time, in turns with raw CDP only, the ways to open a session's first tab (created with its URL; blank then navigated after the guard's rules; blank with the navigation in the rules' row), this many turns each")
	flag.Parse()
	if err := run(*n, *peerN, *warmup, *only, *dump, *benchDir); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// agent holds the flags of the agent-call phase.
var agent struct {
	on, classic     bool
	n, firstN, reps int
}

func run(n, peerN, warmup int, only, dump, benchDir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	want := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	if benchDir == "" {
		root, err := repoRoot()
		if err != nil {
			return err
		}
		benchDir = filepath.Join(root, "bench")
	}
	if want["chrome-devtools-mcp"] || want["playwright-mcp"] {
		if err := ensurePeers(benchDir); err != nil {
			return err
		}
	}
	if dump != "" {
		if err := os.MkdirAll(dump, 0o755); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "mbp-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	c, err := testchrome.Run(mkdir(tmp, "chrome"))
	if err != nil {
		return err
	}
	defer c.Kill()
	chromeVersion, err := c.Version()
	if err != nil {
		return err
	}
	pageURL, err := servePage(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s at %s, page %s\n", chromeVersion, c.URL, pageURL)

	type starter struct {
		key   string
		n     int
		start func() (*server, error)
	}
	starters := []starter{
		{"proxy", n, func() (*server, error) { return startProxy(ctx, c.URL, mkdir(tmp, "proxy")) }},
		{"chrome-devtools-mcp", peerN, func() (*server, error) {
			return startDevtools(ctx, benchDir, c.URL, mkdir(tmp, "devtools"))
		}},
		{"playwright-mcp", peerN, func() (*server, error) {
			return startPlaywright(ctx, benchDir, c.URL, mkdir(tmp, "playwright"))
		}},
	}
	var reports []*report
	if want["raw"] && agent.classic {
		fmt.Fprintf(os.Stderr, "== raw CDP: %d warm-up + %d timed commands per operation\n", warmup, n)
		r := measureRaw(ctx, c.URL, pageURL, n, warmup)
		if r.err != nil {
			fmt.Fprintf(os.Stderr, "   raw CDP failed: %v\n", r.err)
		}
		reports = append(reports, r)
	}
	for _, st := range starters {
		if !want[st.key] || !agent.classic {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s: %d warm-up + %d timed calls per operation\n", st.key, warmup, st.n)
		r := measure(ctx, st.start, pageURL, st.n, warmup, dump, st.key)
		if r.err != nil {
			fmt.Fprintf(os.Stderr, "   %s failed: %v\n", st.key, r.err)
		}
		reports = append(reports, r)
		closePages(c.URL, pageURL)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if firstRoutes > 0 {
		fmt.Fprintf(os.Stderr, "== first tab routes, raw CDP\n")
		if err := measureFirstRoutes(ctx, os.Stdout, c.URL, pageURL, firstRoutes, warmup); err != nil {
			fmt.Fprintf(os.Stderr, "   first tab routes failed: %v\n", err)
		}
	}
	var floor, proxyAgent *agentRun
	var tasks []*taskRun
	if agent.on {
		fmt.Fprintf(os.Stderr, "== agent calls: raw CDP floor\n")
		// The first page tool is timed in turns with the proxy below.
		floor = measureAgentFloor(ctx, c.URL, pageURL, agent.n, 0, warmup)
		if floor.err != nil {
			fmt.Fprintf(os.Stderr, "   floor failed: %v\n", floor.err)
		}
		fmt.Fprintf(os.Stderr, "== agent calls and task: proxy\n")
		if s, err := startProxy(ctx, c.URL, mkdir(tmp, "proxy-agent")); err != nil {
			proxyAgent = &agentRun{err: err}
		} else {
			proxyAgent = newAgentRun()
			if floor.err == nil {
				fmt.Fprintf(os.Stderr, "== first page tool: floor and proxy in turns\n")
				measureFirstInTurns(ctx, s, c.URL, pageURL, agent.firstN, warmup, floor, proxyAgent)
			}
			if proxyAgent.err == nil {
				rest := measureAgentProxy(ctx, s, c.URL, pageURL, agent.n, 0, warmup)
				for op, d := range rest.durs {
					proxyAgent.durs[op] = append(proxyAgent.durs[op], d...)
				}
				proxyAgent.err = rest.err
			}
			tasks = append(tasks, runTask(ctx, s, pageURL, agent.reps))
			s.stop()
		}
		closePages(c.URL, pageURL)
		if want["chrome-devtools-mcp"] {
			fmt.Fprintf(os.Stderr, "== task: chrome-devtools-mcp\n")
			if s, err := startDevtools(ctx, benchDir, c.URL, mkdir(tmp, "devtools-agent")); err != nil {
				tasks = append(tasks, &taskRun{name: nameDevtools, err: err})
			} else {
				if err := s.open(ctx, pageURL); err != nil {
					tasks = append(tasks, &taskRun{name: nameDevtools, err: err})
				} else {
					tasks = append(tasks, runTask(ctx, s, pageURL, agent.reps))
				}
				s.stop()
			}
			closePages(c.URL, pageURL)
		}
	}
	if agent.classic {
		printReport(os.Stdout, reports, chromeVersion, n, peerN, warmup)
	} else {
		printMachine(os.Stdout, chromeVersion)
	}
	printAgent(os.Stdout, proxyAgent, floor, tasks)
	return nil
}

func mkdir(parent, name string) string {
	d := filepath.Join(parent, name)
	_ = os.MkdirAll(d, 0o755)
	return d
}

// repoRoot walks up from the working directory to the directory with go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from the repository or pass -bench-dir")
		}
		dir = parent
	}
}

// measure starts one server, opens the todo page in a page of its own and
// times each operation, one after another.
func measure(ctx context.Context, start func() (*server, error), pageURL string, n, warmup int, dump, key string) *report {
	r := &report{n: n, ops: map[string]*measurement{}}
	s, err := start()
	if err != nil {
		r.name, r.err = key, err
		return r
	}
	defer s.stop()
	r.name = s.name
	if err := s.open(ctx, pageURL); err != nil {
		r.err = fmt.Errorf("open the page: %w", err)
		return r
	}
	snap, err := callText(ctx, s.cl, s.snapshot)
	if err != nil {
		r.err = fmt.Errorf("first snapshot: %w", err)
		return r
	}
	r.snapshot = snap
	click, err := s.click(snap)
	if err != nil {
		r.err = fmt.Errorf("%w:\n%s", err, snap)
		return r
	}
	byOp := map[string]call{"evaluate": s.evaluate, "click": click, "snapshot": s.snapshot, "screenshot": s.screenshot}
	clicks := 0
	for _, op := range ops {
		m := &measurement{n: n, durs: make([]time.Duration, 0, n)}
		r.ops[op] = m
		c := byOp[op]
		for i := range warmup + n {
			if ctx.Err() != nil {
				r.err = ctx.Err()
				return r
			}
			t0 := time.Now()
			res, err := do(ctx, s.cl, c)
			d := time.Since(t0)
			if err == nil && res.IsError {
				text, _ := content(res)
				err = fmt.Errorf("tool error: %s", text)
			}
			if err != nil {
				m.firstErr = err.Error()
				fmt.Fprintf(os.Stderr, "   %s failed on call %d: %v\n", op, i+1, err)
				break
			}
			if op == "click" {
				clicks++
				if s.nextClick != nil {
					text, _ := content(res)
					if c, err = s.nextClick(text); err != nil {
						m.firstErr = err.Error()
						break
					}
				}
			}
			if i == 0 {
				text, img := content(res)
				m.text, m.image = len(text), img
				if dump != "" {
					_ = os.WriteFile(filepath.Join(dump, key+"-"+op+".txt"), []byte(text), 0o644)
					if png := firstImage(res); png != nil {
						_ = os.WriteFile(filepath.Join(dump, key+"-"+op+".png"), png, 0o644)
					}
				}
			}
			if i >= warmup {
				m.durs = append(m.durs, d)
			}
		}
		fmt.Fprintf(os.Stderr, "   %-10s p50 %8.2f ms  p99 %8.2f ms  (%d calls)%s\n", op,
			pct(m.durs, 0.50), pct(m.durs, 0.99), len(m.durs), errSuffix(m.firstErr))
	}
	if dump != "" {
		_ = os.WriteFile(filepath.Join(dump, key+"-first-snapshot.txt"), []byte(r.snapshot), 0o644)
	}
	// Check that the clicks did what a click should: the text changed.
	if text, err := callText(ctx, s.cl, s.readCounter); err == nil {
		r.counter = text
		if want := fmt.Sprintf("Clicked %d times", clicks); !strings.Contains(text, want) {
			r.err = fmt.Errorf("after %d clicks the button reads %q, want %q", clicks, text, want)
		}
	}
	return r
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return "  FAILED: " + firstLine(e)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// closePages closes the page targets showing url, so the next server
// starts on a browser that is as idle as it was for the first.
func closePages(chromeURL, url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, chromeURL+"/json/list", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var targets []struct{ ID, Type, URL string }
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		return
	}
	for _, t := range targets {
		if t.Type == "page" && t.URL == url {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, chromeURL+"/json/close/"+t.ID, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
}

// pct is the p-th percentile of d in milliseconds, the same rule as the
// proxy's benchmarks (proxy/bench_test.go). d is sorted in place.
func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[min(len(d)-1, int(p*float64(len(d))))]) / float64(time.Millisecond)
}

// printMachine says what the figures were measured on.
func printMachine(w io.Writer, chromeVersion string) {
	nodeVersion := "?"
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		nodeVersion = strings.TrimSpace(string(out))
	}
	fmt.Fprintf(w, "Machine: %d cores (%s/%s), %s, node %s, %s; loopback only.\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, chromeVersion, nodeVersion, runtime.Version())
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(w, "Load average at the end (1, 5, 15 min): %s.\n", strings.Join(strings.Fields(string(b))[:3], ", "))
	}
}

// printReport writes the markdown tables.
func printReport(w io.Writer, reports []*report, chromeVersion string, n, peerN, warmup int) {
	printMachine(w, chromeVersion)
	fmt.Fprintf(w, "Calls per operation: %d for mcp-browser-proxy, %d for the peers, after %d untimed warm-up calls each.\n\n", n, peerN, warmup)

	var base *report
	for _, r := range reports {
		if r.name == nameDevtools && r.err == nil {
			base = r
		}
	}
	fmt.Fprintln(w, "| call | server | calls | p50 (ms) | p99 (ms) | p50 speed-up vs chrome-devtools-mcp | p99 speed-up | answer bytes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, op := range ops {
		for _, r := range reports {
			m := r.ops[op]
			if m == nil {
				continue
			}
			p50, p99 := pct(m.durs, 0.50), pct(m.durs, 0.99)
			up50, up99 := "", ""
			if base != nil && base != r && len(m.durs) > 0 {
				if b := base.ops[op]; b != nil && len(b.durs) > 0 {
					up50 = fmt.Sprintf("%.1fx", pct(b.durs, 0.50)/p50)
					up99 = fmt.Sprintf("%.1fx", pct(b.durs, 0.99)/p99)
				}
			}
			bytes := fmt.Sprintf("%d text", m.text)
			if m.image > 0 {
				bytes += fmt.Sprintf(" + %d image (base64)", m.image)
			}
			if r.name == nameRaw {
				bytes = "(CDP JSON)"
			}
			if m.firstErr != "" {
				fmt.Fprintf(w, "| %s | %s | %d | failed: %s | | | | |\n", op, r.name, len(m.durs), firstLine(m.firstErr))
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %d | %.2f | %.2f | %s | %s | %s |\n", op, r.name, len(m.durs), p50, p99, up50, up99, bytes)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Snapshot of the freshly loaded page (text the model reads):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | bytes | lines |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, r := range reports {
		if r.snapshot == "" {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %d |\n", r.name, len(r.snapshot), strings.Count(strings.TrimRight(r.snapshot, "\n"), "\n")+1)
	}
	for _, r := range reports {
		if r.err != nil {
			fmt.Fprintf(w, "\n%s: %v\n", r.name, r.err)
		}
	}
}
