// Package tracesum summarizes a Chrome performance trace: the page load,
// the Core Web Vitals, the long tasks and the heaviest requests of one
// page. The figures come from the events that the DevTools performance
// panel reads too; each is "n/a" when the trace lacks them. It reads raw
// trace events and needs no browser.
package tracesum

import (
	"encoding/json"
	"sort"
)

// longTaskMicros is the duration above which a task is long.
const longTaskMicros = 50_000

// NavTiming holds the load figures in milliseconds from navigation start;
// a negative figure is unknown.
type NavTiming struct {
	FromPage bool // read from the page's Performance API, not the trace
	URL      string
	TTFB     float64
	FCP      float64
	DCL      float64
	Load     float64
	LCP      float64
	LCPWhat  string
}

// NoNav is a NavTiming with every figure unknown.
func NoNav() NavTiming {
	return NavTiming{TTFB: -1, FCP: -1, DCL: -1, Load: -1, LCP: -1}
}

// Found says the figures belong to a page load.
func (n NavTiming) Found() bool { return n.URL != "" }

// Summary is what a trace says about one page.
type Summary struct {
	// Nav is the page load; a caller may fill it from elsewhere when the
	// trace has none (Found is false).
	Nav      NavTiming
	events   int
	span     float64 // µs
	navStart float64 // µs; 0 when the trace has no navigation
	shifts   int
	excluded int
	cls      float64
	clsKnown bool
	tasks    []task
	threads  bool // the main thread was identified
	requests []*request
}

type task struct{ ts, dur float64 }

type request struct {
	url, method, kind, mime string
	status                  int
	send, finish            float64 // µs
	size                    int64
	failed, cached          bool
}

// Summarize reads the figures of the page whose main frame is mainFrame
// (in Chrome, the page's target ID) from raw trace events.
func Summarize(raw [][]byte, mainFrame string) Summary {
	tr := collect(raw, mainFrame)
	s := Summary{events: len(raw), Nav: NoNav(), span: tr.span()}
	nav := mainNavigation(tr.navs)
	if nav.ts > 0 {
		s.navStart = nav.ts
		s.Nav.URL = nav.url
		s.Nav.DCL = firstSince(tr.dcl, nav.ts)
		s.Nav.Load = firstSince(tr.load, nav.ts)
		s.Nav.FCP = firstSince(tr.fcp, nav.ts)
		s.Nav.TTFB = timeToFirstByte(tr.answers[nav.id], nav.ts)
		s.Nav.LCP, s.Nav.LCPWhat = largestPaint(tr.lcps, tr.images, nav)
	}
	s.cls, s.shifts, s.excluded = layoutShifts(tr.shifts, s.navStart)
	s.clsKnown = s.shifts > 0 || s.navStart > 0
	s.tasks = longTasks(tr.tasks, tr.mainThreads, tr.renderers)
	s.threads = len(tr.mainThreads) > 0
	s.requests = pageRequests(tr, mainFrame)
	return s
}

// mainNavigation is the last main-frame document load of navs; its ts is
// 0 when there is none.
func mainNavigation(navs []navStart) navStart {
	var nav navStart
	for _, n := range navs {
		if n.loader {
			nav = n
		}
	}
	return nav
}

// firstSince is the time in ms from start to the first of ts at or after
// it, or -1.
func firstSince(ts []float64, start float64) float64 {
	for _, t := range ts {
		if t >= start {
			return (t - start) / 1000
		}
	}
	return -1
}

// timeToFirstByte reads, from the answer to the navigation's request, the
// time in ms from navStart to the response headers, or -1.
func timeToFirstByte(a *requestAnswer, navStart float64) float64 {
	if a == nil || a.response == nil {
		return -1
	}
	var v struct {
		Timing *struct {
			RequestTime         float64 `json:"requestTime"`
			ReceiveHeadersStart float64 `json:"receiveHeadersStart"`
			ReceiveHeadersEnd   float64 `json:"receiveHeadersEnd"`
		} `json:"timing"`
	}
	if json.Unmarshal(a.response, &v) != nil || v.Timing == nil || v.Timing.RequestTime <= 0 {
		return -1
	}
	headers := v.Timing.ReceiveHeadersStart
	if headers <= 0 {
		headers = v.Timing.ReceiveHeadersEnd
	}
	if ttfb := (v.Timing.RequestTime*1e6 + headers*1e3 - navStart) / 1000; headers > 0 && ttfb >= 0 {
		return ttfb
	}
	return -1
}

// largestPaint picks the final LCP candidate of nav: the one with the
// highest candidate index, the later one of equals. It returns its time in
// ms from nav (-1 for none) and what was painted.
func largestPaint(lcps []lcpCandidate, images map[int64]string, nav navStart) (float64, string) {
	var best *lcpCandidate
	for i := range lcps {
		c := &lcps[i]
		if c.ts < nav.ts || (c.navID != "" && nav.id != "" && c.navID != nav.id) {
			continue
		}
		if best == nil || c.candidate > best.candidate || (c.candidate == best.candidate && c.ts >= best.ts) {
			best = c
		}
	}
	if best == nil {
		return -1, ""
	}
	what := best.what
	if u := images[best.nodeID]; u != "" {
		what += " " + u
	}
	return (best.ts - nav.ts) / 1000, what
}

// layoutShifts computes CLS, the largest session window of shifts without
// recent input (shifts less than 1 s apart, a window at most 5 s long),
// over the shifts from navStart on. It also returns how many shifts it
// saw, and how many of those it left out for following input.
func layoutShifts(shifts []shift, navStart float64) (cls float64, counted, excluded int) {
	var window, windowStart, prev float64
	for _, sh := range shifts {
		if sh.ts < navStart {
			continue
		}
		counted++
		if sh.input {
			excluded++
			continue
		}
		if prev == 0 || sh.ts-prev > 1e6 || sh.ts-windowStart > 5e6 {
			window, windowStart = 0, sh.ts
		}
		window += sh.score
		prev = sh.ts
		cls = max(cls, window)
	}
	return cls, counted, excluded
}

// longTasks returns the long tasks of the page's renderer main thread,
// in time order. Without the page's process in the trace (no renderers),
// every renderer main thread counts.
func longTasks(tasks map[thread][]task, mainThreads map[thread]bool, renderers map[int64]bool) []task {
	var out []task
	for k, ts := range tasks {
		if !mainThreads[k] || (len(renderers) > 0 && !renderers[k[0]]) {
			continue
		}
		out = append(out, ts...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ts < out[j].ts })
	return out
}

// pageRequests returns the requests of mainFrame and the frames within
// it, heaviest first (and the earlier of equals).
func pageRequests(tr *trace, mainFrame string) []*request {
	ours := func(frame string) bool {
		for i := 0; i < 16 && frame != ""; i++ {
			if frame == mainFrame {
				return true
			}
			frame = tr.parents[frame]
		}
		return false
	}
	var out []*request
	for id, rq := range tr.reqs {
		if !ours(tr.reqFrame[id]) {
			continue
		}
		if a := tr.answers[id]; a != nil {
			a.fill(rq)
		}
		out = append(out, rq)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.size != b.size {
			return a.size > b.size
		}
		return a.send < b.send
	})
	return out
}

// fill completes rq from its response and finish events.
func (a *requestAnswer) fill(rq *request) {
	var resp struct {
		StatusCode        int    `json:"statusCode"`
		MimeType          string `json:"mimeType"`
		FromCache         bool   `json:"fromCache"`
		EncodedDataLength *int64 `json:"encodedDataLength"`
		Timing            *struct {
			RequestTime float64 `json:"requestTime"`
		} `json:"timing"`
	}
	if a.response != nil && json.Unmarshal(a.response, &resp) == nil {
		rq.status, rq.mime, rq.cached = resp.StatusCode, resp.MimeType, resp.FromCache
		// The renderer reports a navigation's request only once the
		// document commits; the network timing has when it was sent.
		if resp.Timing != nil && resp.Timing.RequestTime > 0 {
			rq.send = min(rq.send, resp.Timing.RequestTime*1e6)
		}
	}
	var fin struct {
		EncodedDataLength *int64  `json:"encodedDataLength"`
		DidFail           bool    `json:"didFail"`
		FinishTime        float64 `json:"finishTime"`
	}
	if a.finish != nil && json.Unmarshal(a.finish, &fin) == nil {
		rq.failed = fin.DidFail
		if fin.EncodedDataLength != nil {
			rq.size = *fin.EncodedDataLength
		}
		rq.finish = a.finishTs
		if fin.FinishTime > 0 {
			rq.finish = fin.FinishTime * 1e6
		}
	}
	if rq.size < 0 && resp.EncodedDataLength != nil {
		rq.size = *resp.EncodedDataLength
	}
}
