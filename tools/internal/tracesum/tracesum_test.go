package tracesum

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// traceEv builds one trace event.
func traceEv(name string, pid, tid int64, ts, dur float64, args map[string]any) []byte {
	e := map[string]any{"name": name, "ph": "I", "pid": pid, "tid": tid, "ts": ts, "args": args}
	if dur > 0 {
		e["ph"], e["dur"] = "X", dur
	}
	b, _ := json.Marshal(e)
	return b
}

func dataArgs(d map[string]any) map[string]any { return map[string]any{"data": d} }

func frameArgs(frame string, d map[string]any) map[string]any {
	return map[string]any{"frame": frame, "data": d}
}

func syntheticTrace() [][]byte {
	const main, other = "MAIN", "OTHER"
	req := func(id, frame, url string, ts float64, size int64) [][]byte {
		return [][]byte{
			traceEv("ResourceSendRequest", 10, 10, ts, 0, dataArgs(map[string]any{"requestId": id, "frame": frame, "url": url, "requestMethod": "GET", "resourceType": "Other"})),
			traceEv("ResourceReceiveResponse", 10, 10, ts+5000, 0, dataArgs(map[string]any{"requestId": id, "statusCode": 200, "mimeType": "text/plain"})),
			traceEv("ResourceFinish", 10, 10, ts+9000, 0, dataArgs(map[string]any{"requestId": id, "encodedDataLength": size})),
		}
	}
	events := [][]byte{
		traceEv("thread_name", 10, 10, 0, 0, map[string]any{"name": "CrRendererMain"}),
		traceEv("thread_name", 10, 11, 0, 0, map[string]any{"name": "Compositor"}),
		traceEv("thread_name", 20, 20, 0, 0, map[string]any{"name": "CrRendererMain"}),
		traceEv("TracingStartedInBrowser", 1, 1, 900_000, 0, dataArgs(map[string]any{"frames": []any{
			map[string]any{"frame": main, "processId": 10},
			map[string]any{"frame": "SUB", "parent": main, "processId": 10},
			map[string]any{"frame": other, "processId": 20},
		}})),
		traceEv("navigationStart", 20, 20, 990_000, 0, frameArgs(other, map[string]any{"navigationId": "X", "documentLoaderURL": "http://other/", "isLoadingMainFrame": true})),
		traceEv("navigationStart", 10, 10, 1_000_000, 0, frameArgs(main, map[string]any{"navigationId": "N1", "documentLoaderURL": "http://x/", "isLoadingMainFrame": true})),
		traceEv("ResourceSendRequest", 10, 10, 1_000_500, 0, dataArgs(map[string]any{"requestId": "N1", "frame": main, "url": "http://x/", "requestMethod": "GET", "resourceType": "Document"})),
		traceEv("ResourceReceiveResponse", 10, 10, 1_040_000, 0, dataArgs(map[string]any{"requestId": "N1", "statusCode": 200, "mimeType": "text/html",
			"timing": map[string]any{"requestTime": 1.0002, "receiveHeadersStart": 30.0, "receiveHeadersEnd": 31.0}})),
		traceEv("ResourceFinish", 10, 10, 1_050_000, 0, dataArgs(map[string]any{"requestId": "N1", "encodedDataLength": 900, "finishTime": 1.05})),
		traceEv("firstContentfulPaint", 10, 10, 1_100_000, 0, frameArgs(main, nil)),
		traceEv("MarkDOMContent", 10, 10, 1_200_000, 0, dataArgs(map[string]any{"frame": main, "isOutermostMainFrame": true})),
		traceEv("MarkLoad", 20, 20, 1_210_000, 0, dataArgs(map[string]any{"frame": other, "isOutermostMainFrame": true})),
		traceEv("MarkLoad", 10, 10, 1_300_000, 0, dataArgs(map[string]any{"frame": main, "isOutermostMainFrame": true})),
		traceEv("largestContentfulPaint::Candidate", 10, 10, 1_150_000, 0, frameArgs(main, map[string]any{"candidateIndex": 1, "navigationId": "N1", "type": "text", "nodeName": "H1 id='hero'", "nodeId": 5})),
		traceEv("largestContentfulPaint::Candidate", 10, 10, 1_250_000, 0, frameArgs(main, map[string]any{"candidateIndex": 2, "navigationId": "N1", "type": "image", "nodeName": "IMG id='pic'", "nodeId": 7})),
		traceEv("largestContentfulPaint::Candidate", 20, 20, 1_260_000, 0, frameArgs(other, map[string]any{"candidateIndex": 3, "navigationId": "X", "type": "text", "nodeName": "P"})),
		traceEv("LargestImagePaint::Candidate", 10, 10, 1_250_000, 0, frameArgs(main, map[string]any{"DOMNodeId": 7, "imageUrl": "http://x/big.png"})),
		traceEv("LayoutShift", 10, 10, 1_400_000, 0, frameArgs(main, map[string]any{"score": 0.1, "weighted_score_delta": 0.1})),
		traceEv("LayoutShift", 10, 10, 1_500_000, 0, frameArgs(main, map[string]any{"score": 0.05, "weighted_score_delta": 0.05})),
		traceEv("LayoutShift", 10, 10, 1_600_000, 0, frameArgs(main, map[string]any{"score": 0.3, "weighted_score_delta": 0.3, "had_recent_input": true})),
		traceEv("LayoutShift", 10, 10, 3_000_000, 0, frameArgs(main, map[string]any{"score": 0.2, "weighted_score_delta": 0.2})),
		traceEv("LayoutShift", 20, 20, 3_000_000, 0, frameArgs(other, map[string]any{"score": 0.9, "weighted_score_delta": 0.9})),
		traceEv("RunTask", 10, 10, 1_100_000, 120_000, nil),
		traceEv("RunTask", 10, 10, 1_300_000, 30_000, nil),
		traceEv("RunTask", 10, 11, 1_300_000, 90_000, nil),
		traceEv("RunTask", 20, 20, 1_300_000, 200_000, nil),
		[]byte(`{not json`),
	}
	events = append(events, req("r1", main, "http://x/a.js", 1_100_000, 5000)...)
	events = append(events, req("r2", "SUB", "http://x/frame.html", 1_100_000, 70000)...)
	events = append(events, req("r3", main, "http://x/b.css", 1_100_000, 300)...)
	events = append(events, req("r4", main, "http://x/c.json", 1_100_000, 20)...)
	events = append(events, req("r5", main, "http://x/d.png", 1_100_000, 40000)...)
	events = append(events, req("r6", other, "http://other/huge.bin", 1_100_000, 9_000_000)...)
	return events
}

func TestSummarizeTrace(t *testing.T) {
	s := Summarize(syntheticTrace(), "MAIN")
	var b bytes.Buffer
	s.Write(&b)
	want := "Trace: 45 events over 2.1 s.\n\n## Page load\nNavigation to http://x/, times from its start:\n- TTFB: 30 ms\n- First Contentful Paint: 100 ms\n- DOMContentLoaded: 200 ms\n- Load: 300 ms\n\n## Core Web Vitals\n- LCP: 250 ms — image <IMG id='pic'> http://x/big.png\n- CLS: 0.2000 (4 layout shifts, 1 after recent input not counted)\n\n## Long tasks (main thread, over 50 ms)\n1 long task, 120 ms in total, the longest 120 ms.\n- 120 ms at 100 ms after navigation start\n\n## Heaviest requests (by transferred size)\n6 requests, 113.5 kB transferred.\n1. GET http://x/frame.html — 68.4 kB, 200 text/plain, 9 ms\n2. GET http://x/d.png — 39.1 kB, 200 text/plain, 9 ms\n3. GET http://x/a.js — 4.9 kB, 200 text/plain, 9 ms\n4. GET http://x/ — 900 B, 200 text/html, 50 ms\n5. GET http://x/b.css — 300 B, 200 text/plain, 9 ms\n"
	if got := b.String(); got != want {
		t.Errorf("summary:\n%s\nwant\n%s", got, want)
	}
	if out := b.String(); strings.Contains(out, "huge.bin") || strings.Contains(out, "c.json") {
		t.Errorf("summary lists another page's request or more than 5:\n%s", out)
	}
}

func TestSummarizeEmptyTrace(t *testing.T) {
	s := Summarize(nil, "MAIN")
	if s.Nav.Found() {
		t.Errorf("an empty trace has a page load: %+v", s.Nav)
	}
	var b bytes.Buffer
	s.Write(&b)
	want := "Trace: 0 events over 0 ms.\n\n## Page load\nThe trace has no page load and the page's timings could not be read; start it with reload true to trace one.\n- TTFB: n/a\n- First Contentful Paint: n/a\n- DOMContentLoaded: n/a\n- Load: n/a\n\n## Core Web Vitals\n- LCP: n/a (no largest-contentful-paint candidate for a page load in the trace)\n- CLS: n/a (no layout shift and no page load in the trace)\n\n## Long tasks (main thread, over 50 ms)\nn/a (the trace does not name the renderer's main thread)\n\n## Heaviest requests (by transferred size)\nn/a (no request of the page in the trace)\n"
	if got := b.String(); got != want {
		t.Errorf("empty summary:\n%s\nwant\n%s", got, want)
	}
}

// A page load the caller read from the page itself is said to be so.
func TestSummaryWithPageTimings(t *testing.T) {
	s := Summarize(nil, "MAIN")
	s.Nav = NavTiming{FromPage: true, URL: "http://x/", TTFB: 12, FCP: -1, DCL: 40, Load: 55.4, LCP: 33, LCPWhat: "<IMG>"}
	var b bytes.Buffer
	s.Write(&b)
	for _, want := range []string{
		"these figures come from the page's own Performance API for http://x/:\n- TTFB: 12 ms\n- First Contentful Paint: n/a\n- DOMContentLoaded: 40 ms\n- Load: 55 ms\n",
		"- LCP: 33 ms — <IMG>\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

func TestMainNavigation(t *testing.T) {
	for _, tc := range []struct {
		name string
		navs []navStart
		want navStart
	}{
		{"none", nil, navStart{}},
		{"only without a document loader", []navStart{{ts: 5, id: "A"}}, navStart{}},
		{"the last load", []navStart{{ts: 5, id: "A", url: "u1", loader: true}, {ts: 9, id: "B", url: "u2", loader: true}}, navStart{ts: 9, id: "B", url: "u2", loader: true}},
		{"a later one without loader does not count", []navStart{{ts: 5, id: "A", url: "u1", loader: true}, {ts: 9, id: "B"}}, navStart{ts: 5, id: "A", url: "u1", loader: true}},
	} {
		if got := mainNavigation(tc.navs); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestFirstSince(t *testing.T) {
	for _, tc := range []struct {
		ts    []float64
		start float64
		want  float64
	}{
		{nil, 1000, -1},
		{[]float64{500}, 1000, -1},             // before the navigation
		{[]float64{500, 3000, 9000}, 1000, 2},  // the first one after it
		{[]float64{1000}, 1000, 0},             // at its start
		{[]float64{9000, 3000}, 1000, 8},       // in event order, not the earliest
		{[]float64{1_001_500}, 1_000_000, 1.5}, // µs to ms
	} {
		if got := firstSince(tc.ts, tc.start); got != tc.want {
			t.Errorf("firstSince(%v, %v) = %v, want %v", tc.ts, tc.start, got, tc.want)
		}
	}
}

func TestTimeToFirstByte(t *testing.T) {
	answer := func(timing string) *requestAnswer {
		return &requestAnswer{response: json.RawMessage(`{"statusCode":200` + timing + `}`)}
	}
	for _, tc := range []struct {
		name string
		a    *requestAnswer
		want float64
	}{
		{"no answer", nil, -1},
		{"no response", &requestAnswer{finish: json.RawMessage(`{}`)}, -1},
		{"no timing", answer(""), -1},
		{"no request time", answer(`,"timing":{"requestTime":0,"receiveHeadersStart":30}`), -1},
		{"headers start", answer(`,"timing":{"requestTime":1.0002,"receiveHeadersStart":30,"receiveHeadersEnd":31}`), 30.2},
		{"headers end when start is missing", answer(`,"timing":{"requestTime":1.0002,"receiveHeadersEnd":31}`), 31.2},
		{"no headers", answer(`,"timing":{"requestTime":1.0002}`), -1},
		{"before the navigation", answer(`,"timing":{"requestTime":0.5,"receiveHeadersStart":1}`), -1},
		{"not JSON", &requestAnswer{response: json.RawMessage(`{`)}, -1},
	} {
		got := timeToFirstByte(tc.a, 1_000_000)
		if fmt.Sprintf("%.3f", got) != fmt.Sprintf("%.3f", tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLargestPaint(t *testing.T) {
	nav := navStart{ts: 1_000_000, id: "N1", loader: true}
	images := map[int64]string{7: "http://x/big.png"}
	for _, tc := range []struct {
		name string
		lcps []lcpCandidate
		ms   float64
		what string
	}{
		{"none", nil, -1, ""},
		{"before the navigation", []lcpCandidate{{ts: 900_000, navID: "N1", what: "text <P>"}}, -1, ""},
		{"of another navigation", []lcpCandidate{{ts: 1_100_000, navID: "N0", what: "text <P>"}}, -1, ""},
		{"without a navigation id", []lcpCandidate{{ts: 1_100_000, what: "text <P>"}}, 100, "text <P>"},
		{"the highest candidate index wins", []lcpCandidate{
			{ts: 1_300_000, navID: "N1", what: "text <H1>", candidate: 1},
			{ts: 1_200_000, navID: "N1", what: "image <IMG>", nodeID: 7, candidate: 2},
		}, 200, "image <IMG> http://x/big.png"},
		{"the later of equal indexes", []lcpCandidate{
			{ts: 1_100_000, navID: "N1", what: "a", candidate: 1},
			{ts: 1_400_000, navID: "N1", what: "b", candidate: 1},
		}, 400, "b"},
	} {
		ms, what := largestPaint(tc.lcps, images, nav)
		if ms != tc.ms || what != tc.what {
			t.Errorf("%s: %v %q, want %v %q", tc.name, ms, what, tc.ms, tc.what)
		}
	}
}

func TestLayoutShifts(t *testing.T) {
	for _, tc := range []struct {
		name              string
		shifts            []shift
		navStart          float64
		cls               float64
		counted, excluded int
	}{
		{"none", nil, 0, 0, 0, 0},
		{"one window", []shift{{ts: 1e6, score: 0.1}, {ts: 1.5e6, score: 0.05}}, 0, 0.15, 2, 0},
		{"a gap over 1 s starts a window", []shift{{ts: 1e6, score: 0.1}, {ts: 2.2e6, score: 0.05}}, 0, 0.1, 2, 0},
		{"the largest window counts", []shift{{ts: 1e6, score: 0.1}, {ts: 3e6, score: 0.2}, {ts: 3.5e6, score: 0.1}}, 0, 0.3, 3, 0},
		{"a window ends after 5 s", []shift{{ts: 1e6, score: 0.1}, {ts: 1.9e6, score: 0.1}, {ts: 2.8e6, score: 0.1}, {ts: 3.7e6, score: 0.1}, {ts: 4.6e6, score: 0.1}, {ts: 5.5e6, score: 0.1}, {ts: 6.4e6, score: 0.1}},
			0, 0.6, 7, 0},
		{"shifts after input are counted but left out", []shift{{ts: 1e6, score: 0.1}, {ts: 1.2e6, score: 0.5, input: true}}, 0, 0.1, 2, 1},
		{"shifts before the navigation are not seen", []shift{{ts: 1e6, score: 0.9}, {ts: 3e6, score: 0.1}}, 2e6, 0.1, 1, 0},
	} {
		cls, counted, excluded := layoutShifts(tc.shifts, tc.navStart)
		if fmt.Sprintf("%.4f", cls) != fmt.Sprintf("%.4f", tc.cls) || counted != tc.counted || excluded != tc.excluded {
			t.Errorf("%s: CLS %.4f, %d shifts, %d excluded; want %.4f, %d, %d", tc.name, cls, counted, excluded, tc.cls, tc.counted, tc.excluded)
		}
	}
}

func TestLongTasks(t *testing.T) {
	mainA, mainB, other := thread{10, 10}, thread{20, 20}, thread{10, 11}
	tasks := map[thread][]task{
		mainA: {{ts: 300, dur: 60_000}, {ts: 100, dur: 70_000}},
		mainB: {{ts: 200, dur: 80_000}},
		other: {{ts: 50, dur: 90_000}},
	}
	mains := map[thread]bool{mainA: true, mainB: true}
	for _, tc := range []struct {
		name      string
		mains     map[thread]bool
		renderers map[int64]bool
		want      []task
	}{
		{"the page's renderer only, in time order", mains, map[int64]bool{10: true}, []task{{100, 70_000}, {300, 60_000}}},
		{"every main thread without the page's process", mains, nil, []task{{100, 70_000}, {200, 80_000}, {300, 60_000}}},
		{"no main thread named", nil, nil, nil},
	} {
		if got := longTasks(tasks, tc.mains, tc.renderers); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLongTasksAreOverFiftyMs(t *testing.T) {
	tr := collect([][]byte{
		traceEv("RunTask", 1, 1, 10, 50_000, nil),
		traceEv("RunTask", 1, 1, 20, 50_001, nil),
		traceEv("ThreadControllerImpl::RunTask", 1, 1, 30, 60_000, nil),
		[]byte(`{"name":"RunTask","ph":"B","pid":1,"tid":1,"ts":40}`),
	}, "MAIN")
	if got := fmt.Sprint(tr.tasks[thread{1, 1}]); got != "[{20 50001} {30 60000}]" {
		t.Errorf("long tasks: %s", got)
	}
}

func TestPageRequests(t *testing.T) {
	raw := [][]byte{
		traceEv("TracingStartedInBrowser", 1, 1, 1, 0, dataArgs(map[string]any{"frames": []any{
			map[string]any{"frame": "MAIN", "processId": 10},
			map[string]any{"frame": "SUB", "parent": "MAIN"},
		}})),
		traceEv("FrameCommittedInBrowser", 1, 1, 2, 0, dataArgs(map[string]any{"frame": "SUBSUB", "parent": "SUB"})),
		traceEv("ResourceSendRequest", 10, 10, 1010, 0, dataArgs(map[string]any{"requestId": "deep", "frame": "SUBSUB", "url": "http://x/deep", "requestMethod": "GET"})),
		traceEv("ResourceSendRequest", 10, 10, 1000, 0, dataArgs(map[string]any{"requestId": "other", "frame": "ELSE", "url": "http://y/", "requestMethod": "GET"})),
		traceEv("ResourceSendRequest", 10, 10, 1020, 0, dataArgs(map[string]any{"requestId": "pending", "frame": "MAIN", "url": "http://x/pending", "requestMethod": "POST"})),
		traceEv("ResourceSendRequest", 10, 10, 5000, 0, dataArgs(map[string]any{"requestId": "doc", "frame": "MAIN", "url": "http://x/", "requestMethod": "GET"})),
		traceEv("ResourceSendRequest", 10, 10, 9000, 0, dataArgs(map[string]any{"requestId": "doc", "frame": "MAIN", "url": "http://x/again", "requestMethod": "GET"})),
		traceEv("ResourceReceiveResponse", 10, 10, 6000, 0, dataArgs(map[string]any{"requestId": "doc", "statusCode": 200, "mimeType": "text/html", "encodedDataLength": 77,
			"timing": map[string]any{"requestTime": 0.002}})),
		traceEv("ResourceSendRequest", 10, 10, 1000, 0, dataArgs(map[string]any{"requestId": "cached", "frame": "MAIN", "url": "http://x/c.css", "requestMethod": "GET"})),
		traceEv("ResourceReceiveResponse", 10, 10, 1100, 0, dataArgs(map[string]any{"requestId": "cached", "statusCode": 200, "fromCache": true})),
		traceEv("ResourceFinish", 10, 10, 1200, 0, dataArgs(map[string]any{"requestId": "cached", "encodedDataLength": 0})),
		traceEv("ResourceSendRequest", 10, 10, 1000, 0, dataArgs(map[string]any{"requestId": "failed", "frame": "MAIN", "url": "http://x/f", "requestMethod": "GET"})),
		traceEv("ResourceFinish", 10, 10, 3000, 0, dataArgs(map[string]any{"requestId": "failed", "didFail": true})),
	}
	tr := collect(raw, "MAIN")
	var lines []string
	for _, rq := range pageRequests(tr, "MAIN") {
		lines = append(lines, rq.url+" — "+rq.line())
	}
	want := []string{
		// The response's size stands in for a missing finish, and the
		// network timing moves the send time back.
		"http://x/ — 77 B, 200 text/html, not finished within the trace",
		"http://x/c.css — 0 B, 200 (cache), 0 ms",
		// Of equal sizes, the earlier first.
		"http://x/f — size n/a, failed, 2 ms",
		"http://x/deep — size n/a, no response, not finished within the trace",
		"http://x/pending — size n/a, no response, not finished within the trace",
	}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("requests:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if rq := tr.reqs["doc"]; rq.send != 2000 {
		t.Errorf("the document request was sent at %v µs, want 2000 (from its network timing)", rq.send)
	}
}

// A frame chain deeper than 16 is not followed: a trace cannot make the
// summary walk forever.
func TestPageRequestsBoundTheFrameChain(t *testing.T) {
	tr := collect(nil, "MAIN")
	tr.parents["F0"] = "MAIN"
	for i := 1; i <= 20; i++ {
		tr.parents[fmt.Sprintf("F%d", i)] = fmt.Sprintf("F%d", i-1)
	}
	tr.parents["LOOP"] = "LOOP"
	for _, f := range []string{"F5", "F20", "LOOP"} {
		tr.reqs[f] = &request{url: f, size: -1}
		tr.reqFrame[f] = f
	}
	if got := pageRequests(tr, "MAIN"); len(got) != 1 || got[0].url != "F5" {
		t.Errorf("requests %v, want only F5's", got)
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{lcpWhat("image", "IMG", 7), "image <IMG>"},
		{lcpWhat("text", "", 7), "text <node 7>"},
		{lcpWhat("", "P", 0), "<P>"},
		{lcpWhat("text", "", 0), "text"},
		{count(1, "request"), "1 request"},
		{count(0, "request"), "0 requests"},
		{count(3, "long task"), "3 long tasks"},
		{ms(-1), "n/a"},
		{ms(0), "0 ms"},
		{ms(12.6), "13 ms"},
		{Size(0), "0 B"},
		{Size(1023), "1023 B"},
		{Size(1024), "1.0 kB"},
		{Size(5 << 20), "5.0 MB"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
}
