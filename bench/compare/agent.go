package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"
)

// The agent calls, each measured through the proxy and at its floor (the
// CDP commands a minimal client sends for the same effect on the same
// browser), in table order, with the bound the proxy must meet.
var agentOps = []struct {
	name  string
	ratio float64 // bound: at most ratio x the floor, when set
	plus  float64 // bound: at most the floor + plus ms, when set
}{
	{"first page tool of a session (opens its tab)", 1.1, 0},
	{"navigate_page on an open tab", 1.15, 0},
	{"fill", 0, 3},
	{"press_key Enter (adds a list item)", 0, 3},
	{"click", 0, 3},
	{"hover", 0, 3},
}

// readyFloorOp is the floor of navigate_page that also waits as its ready
// check does on a page that does nothing after its load: one read after
// the load that answers after two turns of the page's task queue
// (twoTurnsJS). The floor row of the table stops at the load event.
const readyFloorOp = "navigate_page, floor with the ready read"

// twoTurnsJS answers after two turns of the page's task queue, as the
// proxy's first read after a load (tools.readyTwoTurnsJS) does.
const twoTurnsJS = `new Promise(r => { const c = new MessageChannel(); c.port1.onmessage = () => { const d = new MessageChannel(); d.port1.onmessage = () => r(0); d.port2.postMessage(0); }; c.port2.postMessage(0); })`

// agentRun is the agent calls of one side, by name.
type agentRun struct {
	durs map[string][]time.Duration
	err  error
}

func newAgentRun() *agentRun { return &agentRun{durs: map[string][]time.Duration{}} }

func (r *agentRun) add(op string, d time.Duration) { r.durs[op] = append(r.durs[op], d) }

// elementJS finds the benchmark's elements: the new-todo input, the
// counter button, the heading.
const elementJS = `({input: document.querySelector('.new-todo'), button: document.getElementById('counter'), heading: document.querySelector('h1')})`

// measureAgentFloor times the floor of each agent call with cdpClient.
func measureAgentFloor(ctx context.Context, chromeURL, pageURL string, n, firstN, warmup int) *agentRun {
	r := newAgentRun()
	c, err := dialFloor(ctx, chromeURL)
	if err != nil {
		r.err = err
		return r
	}
	defer c.close()
	// New tabs start paused, as under the proxy's guard.
	if err := c.call(ctx, "", "Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}, nil); err != nil {
		r.err = err
		return r
	}
	op := agentOps[0].name
	for i := range warmup*min(firstN, 1) + firstN {
		t0 := time.Now()
		id, _, err := c.openTab(ctx, pageURL)
		d := time.Since(t0)
		if err != nil {
			r.err = fmt.Errorf("%s: %w", op, err)
			return r
		}
		if i >= warmup {
			r.add(op, d)
		}
		_ = c.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": id}, nil)
	}
	id, sid, err := c.openTab(ctx, pageURL)
	if err != nil {
		r.err = err
		return r
	}
	defer func() {
		_ = c.call(context.Background(), "", "Target.closeTarget", map[string]any{"targetId": id}, nil)
	}()
	op = agentOps[1].name
	for i := range warmup + n {
		time.Sleep(callGap)
		t0 := time.Now()
		if err := c.navigate(ctx, sid, pageURL); err != nil {
			r.err = fmt.Errorf("%s: %w", op, err)
			return r
		}
		if i >= warmup {
			r.add(op, time.Since(t0))
		}
	}
	// The same, with the read navigate_page's ready check makes after the
	// load (two turns of the page's task queue), shown beside the table.
	for i := range warmup + n {
		time.Sleep(callGap)
		t0 := time.Now()
		if err := c.navigate(ctx, sid, pageURL); err != nil {
			r.err = fmt.Errorf("%s: %w", readyFloorOp, err)
			return r
		}
		if err := c.call(ctx, sid, "Runtime.evaluate", map[string]any{"expression": twoTurnsJS, "awaitPromise": true, "returnByValue": true}, nil); err != nil {
			r.err = fmt.Errorf("%s: %w", readyFloorOp, err)
			return r
		}
		if i >= warmup {
			r.add(readyFloorOp, time.Since(t0))
		}
	}
	// The elements, once: a minimal client keeps what it found.
	if err := c.call(ctx, sid, "DOM.enable", nil, nil); err != nil {
		r.err = err
		return r
	}
	node := func(prop string) (obj string, backend int64, err error) {
		var ev struct {
			Result struct{ ObjectID string }
		}
		if err := c.call(ctx, sid, "Runtime.evaluate", map[string]any{"expression": elementJS + "." + prop}, &ev); err != nil {
			return "", 0, err
		}
		var d struct {
			Node struct{ BackendNodeID int64 }
		}
		err = c.call(ctx, sid, "DOM.describeNode", map[string]any{"objectId": ev.Result.ObjectID}, &d)
		return ev.Result.ObjectID, d.Node.BackendNodeID, err
	}
	inputObj, _, err := node("input")
	if err != nil {
		r.err = err
		return r
	}
	_, button, err := node("button")
	if err != nil {
		r.err = err
		return r
	}
	_, heading, err := node("heading")
	if err != nil {
		r.err = err
		return r
	}
	center := func(backend int64) (float64, float64, error) {
		if err := c.call(ctx, sid, "DOM.scrollIntoViewIfNeeded", map[string]any{"backendNodeId": backend}, nil); err != nil {
			return 0, 0, err
		}
		var q struct{ Quads [][]float64 }
		if err := c.call(ctx, sid, "DOM.getContentQuads", map[string]any{"backendNodeId": backend}, &q); err != nil {
			return 0, 0, err
		}
		if len(q.Quads) == 0 || len(q.Quads[0]) < 8 {
			return 0, 0, fmt.Errorf("no box")
		}
		p := q.Quads[0]
		return (p[0] + p[2] + p[4] + p[6]) / 4, (p[1] + p[3] + p[5] + p[7]) / 4, nil
	}
	mouse := func(typ string, x, y float64) error {
		return c.call(ctx, sid, "Input.dispatchMouseEvent", map[string]any{"type": typ, "x": x, "y": y, "button": "left", "clickCount": 1}, nil)
	}
	key := func(typ string) error {
		p := map[string]any{"type": typ, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
		if typ == "keyDown" {
			p["text"] = "\r"
		}
		return c.call(ctx, sid, "Input.dispatchKeyEvent", p, nil)
	}
	steps := []func(i int) error{
		func(i int) error { // fill
			if err := c.call(ctx, sid, "Runtime.callFunctionOn", map[string]any{"objectId": inputObj, "functionDeclaration": "function() { this.focus(); this.select(); }"}, nil); err != nil {
				return err
			}
			return c.call(ctx, sid, "Input.insertText", map[string]any{"text": fmt.Sprintf("Floor item %d", i)}, nil)
		},
		func(int) error { // press_key Enter
			if err := key("keyDown"); err != nil {
				return err
			}
			return key("keyUp")
		},
		func(int) error { // click
			x, y, err := center(button)
			if err != nil {
				return err
			}
			if err := mouse("mousePressed", x, y); err != nil {
				return err
			}
			return mouse("mouseReleased", x, y)
		},
		func(int) error { // hover
			x, y, err := center(heading)
			if err != nil {
				return err
			}
			return mouse("mouseMoved", x, y)
		},
	}
	for i := range warmup + n {
		for j, step := range steps {
			time.Sleep(callGap)
			t0 := time.Now()
			if err := step(i); err != nil {
				r.err = fmt.Errorf("%s: %w", agentOps[2+j].name, err)
				return r
			}
			if i >= warmup {
				r.add(agentOps[2+j].name, time.Since(t0))
			}
		}
	}
	return r
}

var (
	textboxUID = regexp.MustCompile(`uid=(\S+) textbox "New todo"`)
	headingUID = regexp.MustCompile(`uid=(\S+) heading "todos"`)
)

func match(re *regexp.Regexp, snap string) (string, error) {
	m := re.FindStringSubmatch(snap)
	if m == nil {
		return "", fmt.Errorf("no %s in the snapshot:\n%s", re, snap)
	}
	return m[1], nil
}

// measureAgentProxy times the agent calls through the proxy's tools.
func measureAgentProxy(ctx context.Context, s *server, chromeURL, pageURL string, n, firstN, warmup int) *agentRun {
	r := newAgentRun()
	op := agentOps[0].name
	for i := range warmup*min(firstN, 1) + firstN {
		cl, err := s.dial(ctx)
		if err != nil {
			r.err = err
			return r
		}
		t0 := time.Now()
		_, err = callText(ctx, cl, call{"navigate_page", map[string]any{"url": pageURL}})
		d := time.Since(t0)
		_ = cl.Close()
		if err != nil {
			r.err = fmt.Errorf("%s: %w", op, err)
			return r
		}
		if i >= warmup {
			r.add(op, d)
		}
		waitPagesGone(chromeURL, pageURL)
	}
	cl := s.cl
	if _, err := callText(ctx, cl, call{"navigate_page", map[string]any{"url": pageURL}}); err != nil {
		r.err = err
		return r
	}
	op = agentOps[1].name
	for i := range warmup + n {
		time.Sleep(callGap)
		t0 := time.Now()
		_, err := callText(ctx, cl, call{"navigate_page", map[string]any{"url": pageURL}})
		if err != nil {
			r.err = fmt.Errorf("%s: %w", op, err)
			return r
		}
		if i >= warmup {
			r.add(op, time.Since(t0))
		}
	}
	snap, err := callText(ctx, cl, s.snapshot)
	if err != nil {
		r.err = err
		return r
	}
	input, err := match(textboxUID, snap)
	if err != nil {
		r.err = err
		return r
	}
	button, err := findUID(snap)
	if err != nil {
		r.err = err
		return r
	}
	heading, err := match(headingUID, snap)
	if err != nil {
		r.err = err
		return r
	}
	calls := func(i int) []call {
		return []call{
			{"fill", map[string]any{"uid": input, "value": fmt.Sprintf("Proxy item %d", i)}},
			{"press_key", map[string]any{"key": "Enter"}},
			{"click", map[string]any{"uid": button}},
			{"hover", map[string]any{"uid": heading}},
		}
	}
	for i := range warmup + n {
		for j, c := range calls(i) {
			time.Sleep(callGap)
			t0 := time.Now()
			if _, err := callText(ctx, cl, c); err != nil {
				r.err = fmt.Errorf("%s: %w", agentOps[2+j].name, err)
				return r
			}
			if i >= warmup {
				r.add(agentOps[2+j].name, time.Since(t0))
			}
		}
	}
	// The adds landed: the list has every item.
	if text, err := callText(ctx, cl, call{"evaluate_script", map[string]any{"function": "() => document.querySelectorAll('.todo-list li').length"}}); err != nil || !strings.Contains(text, fmt.Sprint(10+warmup+n)) {
		r.err = fmt.Errorf("after %d adds the list reads %q (%v), want %d items", warmup+n, text, err, 10+warmup+n)
	}
	return r
}

// measureFirstInTurns times the first page tool at its floor and through
// the proxy in turns, floor then proxy, n times after warmup turns, adding
// to floor and proxy: the figure swings with the load of the machine
// (other processes, and Chromium's own work), which a turn sees alike on
// both sides. Only one tab is open at a time: each turn closes its tab
// and waits until it is gone.
func measureFirstInTurns(ctx context.Context, s *server, chromeURL, pageURL string, n, warmup int, floor, proxy *agentRun) {
	op := agentOps[0].name
	for i := range warmup + n {
		// A floor connection of its own per turn: its auto-attach would
		// hold the proxy's tabs waiting for it.
		time.Sleep(settlePause)
		d, err := floorFirst(ctx, chromeURL, pageURL)
		if err != nil {
			floor.err = fmt.Errorf("%s: %w", op, err)
			return
		}
		waitPagesGone(chromeURL, pageURL)
		if i >= warmup {
			floor.add(op, d)
		}
		cl, err := s.dial(ctx)
		if err != nil {
			proxy.err = err
			return
		}
		time.Sleep(settlePause)
		t0 := time.Now()
		_, err = callText(ctx, cl, call{"navigate_page", map[string]any{"url": pageURL}})
		d = time.Since(t0)
		_ = cl.Close()
		if err != nil {
			proxy.err = fmt.Errorf("%s: %w", op, err)
			return
		}
		waitPagesGone(chromeURL, pageURL)
		if i >= warmup {
			proxy.add(op, d)
		}
	}
}

// callGap comes before each navigate_page and input call, on both sides:
// an agent's calls are seconds apart (the model thinks between them), so a
// call starts on a page that has drawn its last frame. Back to back, a call
// that returns before the frame its input caused (the floor stops at the
// input's answer) hands that pending frame to the next call, whose mouse
// move then rides it, while one that waited for the frame (the proxy's
// settle read) leaves the next move to wait for the following vsync.
var callGap = 30 * time.Millisecond

// settlePause comes before each timed first page tool of
// measureFirstInTurns: Chromium tears the last tab's renderer down and
// starts a spare one after a tab opens, and a tab opened meanwhile waits
// for that work (measured: the proxy's blank tab answered 60-80 ms later
// right after a floor turn than after a pause).
const settlePause = 300 * time.Millisecond

// floorFirst times one first page tool at its floor, on a connection of
// its own.
func floorFirst(ctx context.Context, chromeURL, pageURL string) (time.Duration, error) {
	c, err := dialFloor(ctx, chromeURL)
	if err != nil {
		return 0, err
	}
	defer c.close()
	if err := c.call(ctx, "", "Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}, nil); err != nil {
		return 0, err
	}
	t0 := time.Now()
	id, _, err := c.openTab(ctx, pageURL)
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	return d, c.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": id}, nil)
}

// waitPagesGone waits, bounded, until no tab shows url: a session that
// ended closes its tab on its own time.
func waitPagesGone(chromeURL, url string) {
	for range 100 {
		resp, err := http.Get(chromeURL + "/json/list")
		if err != nil {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var targets []struct{ Type, URL string }
		_ = json.Unmarshal(b, &targets)
		open := false
		for _, t := range targets {
			open = open || (t.Type == "page" && t.URL == url)
		}
		if !open {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// taskRun is the TodoMVC-style task on one server.
type taskRun struct {
	name      string
	firstNav  []time.Duration
	rest      []time.Duration
	err       error
	lastCheck string
}

var newItemCheckbox = regexp.MustCompile(`uid=(\S+) checkbox "Task 2"`)

// runTask does the task reps times on s: navigate to the page, then (timed
// apart) read it, add three todos with fill and Enter, toggle the second,
// wait for the third to show, and check the counter.
func runTask(ctx context.Context, s *server, pageURL string, reps int) *taskRun {
	r := &taskRun{name: s.name}
	cl := s.cl
	c := func(tool string, a map[string]any) (string, error) {
		return callText(ctx, cl, call{tool, s.args(a)})
	}
	for range reps {
		t0 := time.Now()
		if _, err := c("navigate_page", map[string]any{"type": "url", "url": pageURL}); err != nil {
			r.err = err
			return r
		}
		t1 := time.Now()
		err := func() error {
			snap, err := c("take_snapshot", map[string]any{})
			if err != nil {
				return err
			}
			input, err := match(textboxUID, snap)
			if err != nil {
				return err
			}
			for i := 1; i <= 3; i++ {
				if _, err := c("fill", map[string]any{"uid": input, "value": fmt.Sprintf("Task %d", i)}); err != nil {
					return err
				}
				if _, err := c("press_key", map[string]any{"key": "Enter"}); err != nil {
					return err
				}
			}
			snap, err = c("take_snapshot", map[string]any{})
			if err != nil {
				return err
			}
			box, err := match(newItemCheckbox, snap)
			if err != nil {
				return err
			}
			if _, err := c("click", map[string]any{"uid": box}); err != nil {
				return err
			}
			if _, err := c("wait_for", map[string]any{"text": []string{"Task 3"}}); err != nil {
				return err
			}
			text, err := c("evaluate_script", map[string]any{"function": "() => document.getElementById('left').textContent + ' left'"})
			if err != nil {
				return err
			}
			r.lastCheck = text
			if !strings.Contains(text, "9 left") {
				return fmt.Errorf("after the task the page reads %q, want 9 left", text)
			}
			return nil
		}()
		t2 := time.Now()
		if err != nil {
			r.err = err
			return r
		}
		r.firstNav = append(r.firstNav, t1.Sub(t0))
		r.rest = append(r.rest, t2.Sub(t1))
	}
	return r
}

// printAgent writes the floor table and the task table.
func printAgent(w io.Writer, proxy, floor *agentRun, tasks []*taskRun) {
	if proxy == nil || floor == nil {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Agent calls, proxy beside the raw CDP floor (same browser, same run):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| call | calls | proxy p50 (ms) | floor p50 (ms) | ratio | bound | met? |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, op := range agentOps {
		p, f := proxy.durs[op.name], floor.durs[op.name]
		if len(p) == 0 || len(f) == 0 {
			fmt.Fprintf(w, "| %s | | not measured | | | | |\n", op.name)
			continue
		}
		p50, f50 := pct(p, 0.5), pct(f, 0.5)
		bound, met := "", false
		if op.ratio > 0 {
			bound, met = fmt.Sprintf("≤ %.2fx", op.ratio), p50 <= op.ratio*f50
		} else {
			bound, met = fmt.Sprintf("≤ floor + %.0f ms", op.plus), p50 <= f50+op.plus
		}
		yes := "no"
		if met {
			yes = "**yes**"
		}
		fmt.Fprintf(w, "| %s | %d | %.2f | %.2f | %.2fx (+%.1f ms) | %s | %s |\n", op.name, len(p), p50, f50, p50/f50, p50-f50, bound, yes)
	}
	if p, f := proxy.durs[agentOps[1].name], floor.durs[readyFloorOp]; len(p) > 0 && len(f) > 0 {
		p50, f50 := pct(p, 0.5), pct(f, 0.5)
		fmt.Fprintf(w, "\n%s against a floor that also makes the ready check's read after the load (two task turns; %d calls): %.2f against %.2f ms, %.2fx (%+.1f ms).\n", agentOps[1].name, len(f), p50, f50, p50/f50, p50-f50)
	}
	for name, r := range map[string]*agentRun{"proxy": proxy, "floor": floor} {
		if r.err != nil {
			fmt.Fprintf(w, "\n%s agent calls: %v\n", name, r.err)
		}
	}
	if len(tasks) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "TodoMVC-style task (navigate; snapshot, three fill + Enter, snapshot, toggle one, wait_for, check):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | runs | first navigation p50 (ms) | everything after it p50 (ms) |")
	fmt.Fprintln(w, "|---|---|---|---|")
	var base, ours *taskRun
	for _, t := range tasks {
		if t.err != nil {
			fmt.Fprintf(w, "| %s | failed: %s | | |\n", t.name, firstLine(t.err.Error()))
			continue
		}
		if t.name == nameDevtools {
			base = t
		}
		if t.name == nameProxy {
			ours = t
		}
		fmt.Fprintf(w, "| %s | %d | %.1f | %.1f |\n", t.name, len(t.rest), pct(t.firstNav, 0.5), pct(t.rest, 0.5))
	}
	if base != nil && ours != nil {
		fmt.Fprintf(w, "\nAfter the first navigation the proxy is %.1fx faster than chrome-devtools-mcp (bound: at least 10x).\n", pct(base.rest, 0.5)/pct(ours.rest, 0.5))
	}
	fmt.Fprintln(os.Stderr, "   task done")
}
