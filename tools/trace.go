package tools

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// Trace analysis. The figures come from the events that the DevTools
// performance panel reads too; each is "n/a" when the trace lacks them.

const longTaskMicros = 50_000

// traceEvent is the part of a trace event the summary reads.
type traceEvent struct {
	Name string  `json:"name"`
	Ph   string  `json:"ph"`
	Pid  int64   `json:"pid"`
	Tid  int64   `json:"tid"`
	Ts   float64 `json:"ts"`
	Dur  float64 `json:"dur"`
	Args struct {
		Frame string          `json:"frame"`
		Name  string          `json:"name"`
		Data  json.RawMessage `json:"data"`
	} `json:"args"`
}

// navTiming holds the load figures in milliseconds from navigation start;
// a negative figure is unknown.
type navTiming struct {
	fromPage bool // read from the page's Performance API, not the trace
	url      string
	ttfb     float64
	fcp      float64
	dcl      float64
	load     float64
	lcp      float64
	lcpWhat  string
}

func (n navTiming) found() bool { return n.url != "" }

type traceRequest struct {
	url, method, kind, mime string
	status                  int
	send, finish            float64 // µs
	size                    int64
	failed, cached          bool
}

// requestAnswer holds the response and finish events of one request.
type requestAnswer struct {
	response, finish json.RawMessage
	finishTs         float64
}

type traceTask struct{ ts, dur float64 }

type traceSummary struct {
	events   int
	span     float64 // µs
	nav      navTiming
	navStart float64 // µs; 0 when the trace has no navigation
	shifts   int
	excluded int
	cls      float64
	clsKnown bool
	tasks    []traceTask
	threads  bool // the main thread was identified
	requests []*traceRequest
}

// summarizeTrace reads the figures of the page whose main frame is
// mainFrame (in Chrome, the page's target ID) from raw trace events.
func summarizeTrace(raw [][]byte, mainFrame string) traceSummary {
	s := traceSummary{events: len(raw), nav: navTiming{ttfb: -1, fcp: -1, dcl: -1, load: -1, lcp: -1}}
	type navStart struct {
		ts     float64
		id     string
		url    string
		loader bool
	}
	type lcpCandidate struct {
		ts        float64
		navID     string
		what      string
		nodeID    int64
		candidate int64
	}
	type shift struct {
		ts, score float64
		input     bool
	}
	var (
		navs        []navStart
		dcl, load   []float64
		fcp         []float64
		lcps        []lcpCandidate
		images      = map[int64]string{}
		shifts      []shift
		tasks       = map[[2]int64][]traceTask{}
		mainThreads = map[[2]int64]bool{}
		renderers   = map[int64]bool{}
		parents     = map[string]string{}
		reqs        = map[string]*traceRequest{}
		reqFrame    = map[string]string{}
		answers     = map[string]*requestAnswer{}
		first, last float64
	)
	for _, r := range raw {
		var e traceEvent
		if json.Unmarshal(r, &e) != nil {
			continue
		}
		if e.Ts > 0 {
			if first == 0 || e.Ts < first {
				first = e.Ts
			}
			last = max(last, e.Ts+e.Dur)
		}
		d := e.Args.Data
		switch e.Name {
		case "thread_name":
			if e.Args.Name == "CrRendererMain" {
				mainThreads[[2]int64{e.Pid, e.Tid}] = true
			}
		case "RunTask", "ThreadControllerImpl::RunTask":
			if e.Ph == "X" && e.Dur > longTaskMicros {
				k := [2]int64{e.Pid, e.Tid}
				tasks[k] = append(tasks[k], traceTask{e.Ts, e.Dur})
			}
		case "TracingStartedInBrowser":
			var v struct {
				Frames []struct {
					Frame, Parent, URL string
					ProcessID          int64 `json:"processId"`
				} `json:"frames"`
			}
			if json.Unmarshal(d, &v) == nil {
				for _, f := range v.Frames {
					if f.Parent != "" {
						parents[f.Frame] = f.Parent
					}
					if f.Frame == mainFrame && f.ProcessID != 0 {
						renderers[f.ProcessID] = true
					}
				}
			}
		case "FrameCommittedInBrowser":
			var v struct {
				Frame, Parent string
				ProcessID     int64 `json:"processId"`
			}
			if json.Unmarshal(d, &v) == nil {
				if v.Parent != "" {
					parents[v.Frame] = v.Parent
				}
				if v.Frame == mainFrame && v.ProcessID != 0 {
					renderers[v.ProcessID] = true
				}
			}
		case "navigationStart":
			if e.Args.Frame != mainFrame {
				continue
			}
			var v struct {
				NavigationID       string `json:"navigationId"`
				DocumentLoaderURL  string `json:"documentLoaderURL"`
				IsLoadingMainFrame bool   `json:"isLoadingMainFrame"`
			}
			if json.Unmarshal(d, &v) == nil && v.IsLoadingMainFrame {
				navs = append(navs, navStart{e.Ts, v.NavigationID, v.DocumentLoaderURL, v.DocumentLoaderURL != ""})
				renderers[e.Pid] = true
			}
		case "MarkDOMContent", "MarkLoad":
			var v struct {
				Frame                string `json:"frame"`
				IsOutermostMainFrame *bool  `json:"isOutermostMainFrame"`
			}
			if json.Unmarshal(d, &v) != nil || v.Frame != mainFrame || (v.IsOutermostMainFrame != nil && !*v.IsOutermostMainFrame) {
				continue
			}
			if e.Name == "MarkDOMContent" {
				dcl = append(dcl, e.Ts)
			} else {
				load = append(load, e.Ts)
			}
		case "firstContentfulPaint":
			if e.Args.Frame == mainFrame {
				fcp = append(fcp, e.Ts)
			}
		case "largestContentfulPaint::Candidate":
			if e.Args.Frame != mainFrame {
				continue
			}
			var v struct {
				NavigationID   string `json:"navigationId"`
				NodeName       string `json:"nodeName"`
				Type           string `json:"type"`
				NodeID         int64  `json:"nodeId"`
				CandidateIndex int64  `json:"candidateIndex"`
				IsMainFrame    *bool  `json:"isOutermostMainFrame"`
			}
			if json.Unmarshal(d, &v) == nil && (v.IsMainFrame == nil || *v.IsMainFrame) {
				lcps = append(lcps, lcpCandidate{ts: e.Ts, navID: v.NavigationID, what: lcpWhat(v.Type, v.NodeName, v.NodeID),
					nodeID: v.NodeID, candidate: v.CandidateIndex})
			}
		case "LargestImagePaint::Candidate":
			var v struct {
				DOMNodeID int64  `json:"DOMNodeId"`
				ImageURL  string `json:"imageUrl"`
			}
			if e.Args.Frame == mainFrame && json.Unmarshal(d, &v) == nil && v.ImageURL != "" {
				images[v.DOMNodeID] = v.ImageURL
			}
		case "LayoutShift":
			if e.Args.Frame != mainFrame {
				continue
			}
			var v struct {
				Score          float64  `json:"score"`
				Weighted       *float64 `json:"weighted_score_delta"`
				HadRecentInput bool     `json:"had_recent_input"`
			}
			if json.Unmarshal(d, &v) == nil {
				score := v.Score
				if v.Weighted != nil {
					score = *v.Weighted
				}
				shifts = append(shifts, shift{e.Ts, score, v.HadRecentInput})
			}
		case "ResourceSendRequest":
			var v struct {
				RequestID     string `json:"requestId"`
				URL           string `json:"url"`
				RequestMethod string `json:"requestMethod"`
				ResourceType  string `json:"resourceType"`
				Frame         string `json:"frame"`
			}
			if json.Unmarshal(d, &v) == nil && v.RequestID != "" {
				if _, seen := reqs[v.RequestID]; !seen {
					reqs[v.RequestID] = &traceRequest{url: v.URL, method: v.RequestMethod, kind: v.ResourceType, send: e.Ts, size: -1}
					reqFrame[v.RequestID] = v.Frame
				}
			}
		case "ResourceReceiveResponse", "ResourceFinish":
			var v struct {
				RequestID string `json:"requestId"`
			}
			if json.Unmarshal(d, &v) != nil || v.RequestID == "" {
				continue
			}
			a := answers[v.RequestID]
			if a == nil {
				a = &requestAnswer{}
				answers[v.RequestID] = a
			}
			if e.Name == "ResourceReceiveResponse" {
				a.response = d
			} else {
				a.finish, a.finishTs = d, e.Ts
			}
		}
	}
	if last > first {
		s.span = last - first
	}

	// The navigation: the last main-frame document load in the trace.
	var nav navStart
	for _, n := range navs {
		if n.loader {
			nav = n
		}
	}
	if nav.ts > 0 {
		s.navStart = nav.ts
		s.nav.url = nav.url
		since := func(ts []float64) float64 {
			for _, t := range ts {
				if t >= nav.ts {
					return (t - nav.ts) / 1000
				}
			}
			return -1
		}
		s.nav.dcl, s.nav.load, s.nav.fcp = since(dcl), since(load), since(fcp)
		if a := answers[nav.id]; a != nil && a.response != nil {
			var v struct {
				Timing *struct {
					RequestTime         float64 `json:"requestTime"`
					ReceiveHeadersStart float64 `json:"receiveHeadersStart"`
					ReceiveHeadersEnd   float64 `json:"receiveHeadersEnd"`
				} `json:"timing"`
			}
			if json.Unmarshal(a.response, &v) == nil && v.Timing != nil && v.Timing.RequestTime > 0 {
				headers := v.Timing.ReceiveHeadersStart
				if headers <= 0 {
					headers = v.Timing.ReceiveHeadersEnd
				}
				if ttfb := (v.Timing.RequestTime*1e6 + headers*1e3 - nav.ts) / 1000; headers > 0 && ttfb >= 0 {
					s.nav.ttfb = ttfb
				}
			}
		}
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
		if best != nil {
			s.nav.lcp = (best.ts - nav.ts) / 1000
			s.nav.lcpWhat = best.what
			if u := images[best.nodeID]; u != "" {
				s.nav.lcpWhat += " " + u
			}
		}
	}

	// CLS: the largest session window of shifts without recent input
	// (shifts less than 1 s apart, a window at most 5 s long).
	var window, windowStart, prev float64
	for _, sh := range shifts {
		if sh.ts < s.navStart {
			continue
		}
		s.shifts++
		if sh.input {
			s.excluded++
			continue
		}
		if prev == 0 || sh.ts-prev > 1e6 || sh.ts-windowStart > 5e6 {
			window, windowStart = 0, sh.ts
		}
		window += sh.score
		prev = sh.ts
		s.cls = max(s.cls, window)
	}
	s.clsKnown = s.shifts > 0 || s.navStart > 0

	// Long tasks on the page's renderer main thread. Without the page's
	// process in the trace, every renderer main thread counts.
	for k, ts := range tasks {
		if !mainThreads[k] || (len(renderers) > 0 && !renderers[k[0]]) {
			continue
		}
		s.tasks = append(s.tasks, ts...)
	}
	s.threads = len(mainThreads) > 0
	sort.Slice(s.tasks, func(i, j int) bool { return s.tasks[i].ts < s.tasks[j].ts })

	// Requests of the page's frames.
	ours := func(frame string) bool {
		for i := 0; i < 16 && frame != ""; i++ {
			if frame == mainFrame {
				return true
			}
			frame = parents[frame]
		}
		return false
	}
	for id, rq := range reqs {
		a := answers[id]
		if !ours(reqFrame[id]) || a == nil {
			if ours(reqFrame[id]) {
				s.requests = append(s.requests, rq)
			}
			continue
		}
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
		s.requests = append(s.requests, rq)
	}
	sort.Slice(s.requests, func(i, j int) bool {
		a, b := s.requests[i], s.requests[j]
		if a.size != b.size {
			return a.size > b.size
		}
		return a.send < b.send
	})
	return s
}

func lcpWhat(kind, nodeName string, nodeID int64) string {
	el := nodeName
	if el == "" && nodeID != 0 {
		el = fmt.Sprintf("node %d", nodeID)
	}
	switch {
	case kind != "" && el != "":
		return kind + " <" + el + ">"
	case el != "":
		return "<" + el + ">"
	default:
		return kind
	}
}

func perfCount(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func perfMS(v float64) string {
	if v < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f ms", v)
}

// write formats the summary for the caller.
func (s traceSummary) write(b *bytes.Buffer) {
	span := perfMS(s.span / 1000)
	if s.span >= 1e6 {
		span = fmt.Sprintf("%.1f s", s.span/1e6)
	}
	fmt.Fprintf(b, "Trace: %d events over %s.\n", s.events, span)
	n := s.nav
	b.WriteString("\n## Page load\n")
	switch {
	case n.fromPage:
		fmt.Fprintf(b, "The trace has no page load (start it with reload true to trace one); these figures come from the page's own Performance API for %s:\n", n.url)
	case n.found():
		fmt.Fprintf(b, "Navigation to %s, times from its start:\n", n.url)
	default:
		b.WriteString("The trace has no page load and the page's timings could not be read; start it with reload true to trace one.\n")
	}
	fmt.Fprintf(b, "- TTFB: %s\n- First Contentful Paint: %s\n- DOMContentLoaded: %s\n- Load: %s\n", perfMS(n.ttfb), perfMS(n.fcp), perfMS(n.dcl), perfMS(n.load))
	b.WriteString("\n## Core Web Vitals\n")
	if n.lcp >= 0 {
		what := ""
		if n.lcpWhat != "" {
			what = " — " + n.lcpWhat
		}
		fmt.Fprintf(b, "- LCP: %s%s\n", perfMS(n.lcp), what)
	} else {
		b.WriteString("- LCP: n/a (no largest-contentful-paint candidate for a page load in the trace)\n")
	}
	if s.clsKnown {
		fmt.Fprintf(b, "- CLS: %.4f (%s", s.cls, perfCount(s.shifts, "layout shift"))
		if s.excluded > 0 {
			fmt.Fprintf(b, ", %d after recent input not counted", s.excluded)
		}
		b.WriteString(")\n")
	} else {
		b.WriteString("- CLS: n/a (no layout shift and no page load in the trace)\n")
	}

	b.WriteString("\n## Long tasks (main thread, over 50 ms)\n")
	switch {
	case !s.threads:
		b.WriteString("n/a (the trace does not name the renderer's main thread)\n")
	case len(s.tasks) == 0:
		b.WriteString("None.\n")
	default:
		var total, longest float64
		for _, tk := range s.tasks {
			total += tk.dur
			longest = max(longest, tk.dur)
		}
		fmt.Fprintf(b, "%s, %s in total, the longest %s.\n", perfCount(len(s.tasks), "long task"), perfMS(total/1000), perfMS(longest/1000))
		for i, tk := range s.tasks {
			if i == 5 {
				fmt.Fprintf(b, "- … and %d more\n", len(s.tasks)-5)
				break
			}
			at := ""
			if s.navStart > 0 && tk.ts >= s.navStart {
				at = fmt.Sprintf(" at %s after navigation start", perfMS((tk.ts-s.navStart)/1000))
			}
			fmt.Fprintf(b, "- %s%s\n", perfMS(tk.dur/1000), at)
		}
	}

	b.WriteString("\n## Heaviest requests (by transferred size)\n")
	if len(s.requests) == 0 {
		b.WriteString("n/a (no request of the page in the trace)\n")
		return
	}
	var total int64
	for _, rq := range s.requests {
		total += max(rq.size, 0)
	}
	fmt.Fprintf(b, "%s, %s transferred.\n", perfCount(len(s.requests), "request"), perfSize(total))
	for i, rq := range s.requests[:min(5, len(s.requests))] {
		size := "size n/a"
		if rq.size >= 0 {
			size = perfSize(rq.size)
		}
		status := "no response"
		switch {
		case rq.failed:
			status = "failed"
		case rq.status != 0:
			status = strconv.Itoa(rq.status)
			if rq.mime != "" {
				status += " " + rq.mime
			}
		}
		if rq.cached {
			status += " (cache)"
		}
		dur := "not finished within the trace"
		if rq.finish > rq.send {
			dur = perfMS((rq.finish - rq.send) / 1000)
		}
		fmt.Fprintf(b, "%d. %s %s — %s, %s, %s\n", i+1, rq.method, rq.url, size, status, dur)
	}
}
