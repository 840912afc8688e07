package tracesum

import "encoding/json"

// event is the part of a trace event the summary reads.
type event struct {
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

// thread is a pid and a tid.
type thread = [2]int64

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

// requestAnswer holds the response and finish events of one request.
type requestAnswer struct {
	response, finish json.RawMessage
	finishTs         float64
}

// trace is what one pass over the events gathers for the metrics, each
// list in the order of the events.
type trace struct {
	navs        []navStart
	dcl, load   []float64
	fcp         []float64
	lcps        []lcpCandidate
	images      map[int64]string // LCP image URLs by DOM node
	shifts      []shift
	tasks       map[thread][]task
	mainThreads map[thread]bool
	renderers   map[int64]bool    // processes of the main frame
	parents     map[string]string // frame to parent frame
	reqs        map[string]*request
	reqFrame    map[string]string
	answers     map[string]*requestAnswer
	first, last float64 // µs
}

// collect reads raw in one pass; events that are not JSON are skipped.
func collect(raw [][]byte, mainFrame string) *trace {
	tr := &trace{
		images:      map[int64]string{},
		tasks:       map[thread][]task{},
		mainThreads: map[thread]bool{},
		renderers:   map[int64]bool{},
		parents:     map[string]string{},
		reqs:        map[string]*request{},
		reqFrame:    map[string]string{},
		answers:     map[string]*requestAnswer{},
	}
	for _, r := range raw {
		var e event
		if json.Unmarshal(r, &e) != nil {
			continue
		}
		tr.add(&e, mainFrame)
	}
	return tr
}

// span is the time the events cover, in µs.
func (tr *trace) span() float64 {
	if tr.last > tr.first {
		return tr.last - tr.first
	}
	return 0
}

func (tr *trace) add(e *event, mainFrame string) {
	if e.Ts > 0 {
		if tr.first == 0 || e.Ts < tr.first {
			tr.first = e.Ts
		}
		tr.last = max(tr.last, e.Ts+e.Dur)
	}
	d := e.Args.Data
	switch e.Name {
	case "thread_name":
		if e.Args.Name == "CrRendererMain" {
			tr.mainThreads[thread{e.Pid, e.Tid}] = true
		}
	case "RunTask", "ThreadControllerImpl::RunTask":
		if e.Ph == "X" && e.Dur > longTaskMicros {
			k := thread{e.Pid, e.Tid}
			tr.tasks[k] = append(tr.tasks[k], task{e.Ts, e.Dur})
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
					tr.parents[f.Frame] = f.Parent
				}
				if f.Frame == mainFrame && f.ProcessID != 0 {
					tr.renderers[f.ProcessID] = true
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
				tr.parents[v.Frame] = v.Parent
			}
			if v.Frame == mainFrame && v.ProcessID != 0 {
				tr.renderers[v.ProcessID] = true
			}
		}
	case "navigationStart":
		if e.Args.Frame != mainFrame {
			return
		}
		var v struct {
			NavigationID       string `json:"navigationId"`
			DocumentLoaderURL  string `json:"documentLoaderURL"`
			IsLoadingMainFrame bool   `json:"isLoadingMainFrame"`
		}
		if json.Unmarshal(d, &v) == nil && v.IsLoadingMainFrame {
			tr.navs = append(tr.navs, navStart{e.Ts, v.NavigationID, v.DocumentLoaderURL, v.DocumentLoaderURL != ""})
			tr.renderers[e.Pid] = true
		}
	case "MarkDOMContent", "MarkLoad":
		var v struct {
			Frame                string `json:"frame"`
			IsOutermostMainFrame *bool  `json:"isOutermostMainFrame"`
		}
		if json.Unmarshal(d, &v) != nil || v.Frame != mainFrame || (v.IsOutermostMainFrame != nil && !*v.IsOutermostMainFrame) {
			return
		}
		if e.Name == "MarkDOMContent" {
			tr.dcl = append(tr.dcl, e.Ts)
		} else {
			tr.load = append(tr.load, e.Ts)
		}
	case "firstContentfulPaint":
		if e.Args.Frame == mainFrame {
			tr.fcp = append(tr.fcp, e.Ts)
		}
	case "largestContentfulPaint::Candidate":
		if e.Args.Frame != mainFrame {
			return
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
			tr.lcps = append(tr.lcps, lcpCandidate{ts: e.Ts, navID: v.NavigationID, what: lcpWhat(v.Type, v.NodeName, v.NodeID),
				nodeID: v.NodeID, candidate: v.CandidateIndex})
		}
	case "LargestImagePaint::Candidate":
		var v struct {
			DOMNodeID int64  `json:"DOMNodeId"`
			ImageURL  string `json:"imageUrl"`
		}
		if e.Args.Frame == mainFrame && json.Unmarshal(d, &v) == nil && v.ImageURL != "" {
			tr.images[v.DOMNodeID] = v.ImageURL
		}
	case "LayoutShift":
		if e.Args.Frame != mainFrame {
			return
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
			tr.shifts = append(tr.shifts, shift{e.Ts, score, v.HadRecentInput})
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
			if _, seen := tr.reqs[v.RequestID]; !seen {
				tr.reqs[v.RequestID] = &request{url: v.URL, method: v.RequestMethod, kind: v.ResourceType, send: e.Ts, size: -1}
				tr.reqFrame[v.RequestID] = v.Frame
			}
		}
	case "ResourceReceiveResponse", "ResourceFinish":
		var v struct {
			RequestID string `json:"requestId"`
		}
		if json.Unmarshal(d, &v) != nil || v.RequestID == "" {
			return
		}
		a := tr.answers[v.RequestID]
		if a == nil {
			a = &requestAnswer{}
			tr.answers[v.RequestID] = a
		}
		if e.Name == "ResourceReceiveResponse" {
			a.response = d
		} else {
			a.finish, a.finishTs = d, e.Ts
		}
	}
}
