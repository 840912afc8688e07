package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// firstRoutes is how many turns -first-routes times; 0 skips the phase.
var firstRoutes int

// firstRoute is one raw-CDP way to open a session's first tab on url.
type firstRoute struct {
	name string
	// blank: the tab is created at about:blank and navigated after its
	// guard rules; row: the navigation goes out in the same row as the
	// rules, before the blank tab's renderer answers them.
	blank, row bool
}

var firstRouteList = []firstRoute{
	{name: "created with its URL (the floor; unguarded)"},
	{name: "blank, guard rules answered, then navigate (the proxy's order)", blank: true},
	{name: "blank, guard rules and navigate in one row", blank: true, row: true},
}

// measureFirstRoutes times each first-tab route in turns, n times after
// warmup turns, with raw CDP only, and writes a table. Each guarded
// route's Fetch rule is the page's own URL, so the table also says whether
// the document's request was paused by the tab's rule (it must be, for a
// route to be safe).
func measureFirstRoutes(ctx context.Context, w io.Writer, chromeURL, pageURL string, n, warmup int) error {
	durs := make([][]time.Duration, len(firstRouteList))
	paused := make([]int, len(firstRouteList))
	for i := range warmup + n {
		for j, r := range firstRouteList {
			time.Sleep(settlePause)
			d, p, err := openRoute(ctx, chromeURL, pageURL, r)
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			waitPagesGone(chromeURL, pageURL)
			if i >= warmup {
				durs[j] = append(durs[j], d)
				if p {
					paused[j]++
				}
			}
		}
	}
	fmt.Fprintln(w, "| first tab, raw CDP | turns | p50 (ms) | ratio to the floor | document paused by the tab's rule |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	floor := pct(durs[0], 0.5)
	for j, r := range firstRouteList {
		fmt.Fprintf(w, "| %s | %d | %.1f | %.2fx | %d of %d |\n", r.name, len(durs[j]), pct(durs[j], 0.5), pct(durs[j], 0.5)/floor, paused[j], len(durs[j]))
	}
	return nil
}

// openRoute opens one tab by route r on a connection of its own, waits for
// its load, closes it and says how long the opening took and whether the
// tab's Fetch rule paused the document's request.
func openRoute(ctx context.Context, chromeURL, pageURL string, r firstRoute) (time.Duration, bool, error) {
	// Every answer and event of a turn is awaited within this bound.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := dialFloor(ctx, chromeURL)
	if err != nil {
		return 0, false, err
	}
	defer c.close()
	if err := c.call(ctx, "", "Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}, nil); err != nil {
		return 0, false, err
	}
	if !r.blank {
		t0 := time.Now()
		id, _, err := c.openTab(ctx, pageURL)
		d := time.Since(t0)
		if err != nil {
			return 0, false, err
		}
		return d, false, c.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": id}, nil)
	}
	t0 := time.Now()
	// The new tab, paused; the tabs already open were attached running.
	attached := c.wait("", "Target.attachedToTarget", func(p json.RawMessage) bool {
		var ev struct {
			TargetInfo         struct{ Type string }
			WaitingForDebugger bool
		}
		return json.Unmarshal(p, &ev) == nil && ev.WaitingForDebugger && ev.TargetInfo.Type == "page"
	})
	var created struct{ TargetID string }
	if err := c.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank", "newWindow": false, "background": false}, &created); err != nil {
		return 0, false, err
	}
	closed := false
	defer func() {
		// A turn that failed half-way leaves no tab behind.
		if !closed {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = c.call(cctx, "", "Target.closeTarget", map[string]any{"targetId": created.TargetID}, nil)
		}
	}()
	m, err := recv(ctx, attached)
	if err != nil {
		return 0, false, err
	}
	var ev struct{ SessionID string }
	_ = json.Unmarshal(m.Params, &ev)
	sid := ev.SessionID
	load := c.wait(sid, "Page.loadEventFired", nil)
	pausedDoc := c.wait(sid, "Fetch.requestPaused", nil)
	// The rows of browserpool's guard and chromedp's attach, in short.
	row := []struct {
		method string
		params any
	}{
		{"Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}},
		{"Fetch.enable", map[string]any{"patterns": []any{map[string]any{"urlPattern": pageURL}}}},
		{"Network.enable", map[string]any{"maxTotalBufferSize": 1 << 16}},
		{"Network.emulateNetworkConditionsByRule", map[string]any{"matchedNetworkConditions": []any{map[string]any{"urlPattern": "ws://*:9/*", "offline": true, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}}}},
		{"Page.enable", nil},
		{"Runtime.runIfWaitingForDebugger", nil},
	}
	var waits []func(context.Context) (json.RawMessage, error)
	for _, x := range row {
		f, err := c.send(sid, x.method, x.params)
		if err != nil {
			return 0, false, err
		}
		waits = append(waits, f)
	}
	navigate := func() (func(context.Context) (json.RawMessage, error), error) {
		return c.send(sid, "Page.navigate", map[string]any{"url": pageURL})
	}
	var nav func(context.Context) (json.RawMessage, error)
	if r.row {
		if nav, err = navigate(); err != nil {
			return 0, false, err
		}
	}
	for _, f := range waits {
		if _, err := f(ctx); err != nil {
			return 0, false, err
		}
	}
	if !r.row {
		if nav, err = navigate(); err != nil {
			return 0, false, err
		}
	}
	pm, err := recv(ctx, pausedDoc)
	if err != nil {
		return 0, false, fmt.Errorf("the document's request was not paused: %w", err)
	}
	var p struct{ RequestID string }
	_ = json.Unmarshal(pm.Params, &p)
	if err := c.call(ctx, sid, "Fetch.continueRequest", map[string]any{"requestId": p.RequestID}, nil); err != nil {
		return 0, false, err
	}
	if _, err := nav(ctx); err != nil {
		return 0, false, err
	}
	if _, err := recv(ctx, load); err != nil {
		return 0, false, fmt.Errorf("no load: %w", err)
	}
	d := time.Since(t0)
	closed = true
	return d, true, c.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": created.TargetID}, nil)
}
