package tools

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"mime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// netRequest is one collected request. The listener updates it as the
// response comes in; it only ever replaces fields (never writes into a map
// or slice it stored), so a copy taken under the lock stays consistent.
type netRequest struct {
	id          int // reqid
	cdpID       network.RequestID
	loaderID    cdp.LoaderID
	method      string
	url         string
	resType     string // lower case, as list_network_requests filters it
	reqHeaders  network.Headers
	hasPostData bool
	postData    []byte // from the event, at most maxCollectedText bytes
	postClipped bool
	start       cdp.MonotonicTime
	wallTime    time.Time

	responded   bool
	status      int64
	statusText  string
	mimeType    string
	respHeaders network.Headers
	remote      string
	protocol    string
	timing      *network.ResourceTiming
	fromCache   bool

	done       bool // finished, failed, or redirected
	end        cdp.MonotonicTime
	size       float64 // bytes transferred
	failure    string
	canceled   bool
	blocked    string
	redirectTo int // reqid of the request this one was redirected to
	redirectOf int // reqid of the request redirected to this one

	// src is the cross-site frame whose session reported the request, nil
	// for the page's: the browser gives its bodies on that session only.
	// frame is the URL of the frame's document then.
	src   *frameSource
	frame string
	cost  int64 // bytes it keeps, estimated (logbudget.go)
}

// networkLog collects a tab's network requests.
type networkLog struct {
	mu    sync.Mutex
	ring  navRing[*netRequest]
	acct  logAccount                        // bytes kept, bounded per tab and by the shared budget
	byCDP map[network.RequestID]*netRequest // the latest entry of each browser request id
}

// listen takes one tab event; it runs on the tab's read loop and must not block.
func (n *networkLog) listen(ev any) {
	if e, ok := ev.(*page.EventFrameNavigated); ok {
		if e.Frame != nil && e.Frame.ParentID == "" {
			loader := e.Frame.LoaderID
			n.mu.Lock()
			n.forget(n.ring.navigate(e.Frame.URL, func(r *netRequest) bool { return r.loaderID == loader }))
			n.mu.Unlock()
			n.acct.settle()
		}
		return
	}
	n.take(nil, ev)
}

// take keeps what ev says about a request, from src (nil for the page's
// session). The events of a cross-site frame come here straight
// (TabState.listenFrame), not through listen: the frame's navigations start
// no navigation of the tab. Request ids are unique across the browser's
// processes: a frame's session may finish a request that the page's session
// started, such as the frame's own document.
func (n *networkLog) take(src *frameSource, ev any) {
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		if e.Request != nil {
			n.mu.Lock()
			n.requestSent(src, e)
			n.mu.Unlock()
			n.acct.settle()
		}
	case *network.EventResponseReceived:
		n.update(e.RequestID, func(r *netRequest) {
			r.response(e.Response)
			if e.Type != "" {
				r.resType = strings.ToLower(string(e.Type))
			}
		})
	case *network.EventRequestServedFromCache:
		n.update(e.RequestID, func(r *netRequest) { r.fromCache = true })
	case *network.EventLoadingFinished:
		n.update(e.RequestID, func(r *netRequest) {
			r.done, r.end, r.size = true, e.Timestamp, e.EncodedDataLength
		})
	case *network.EventLoadingFailed:
		n.update(e.RequestID, func(r *netRequest) {
			r.done, r.end, r.failure, r.canceled = true, e.Timestamp, cutText(e.ErrorText, maxKeptText), e.Canceled
			r.blocked = string(e.BlockedReason)
			if e.CorsErrorStatus != nil {
				r.blocked = "CORS " + string(e.CorsErrorStatus.CorsError)
			}
			if e.Type != "" {
				r.resType = strings.ToLower(string(e.Type))
			}
		})
	case *network.EventWebSocketCreated:
		// A WebSocket has no requestWillBeSent: its entry starts here.
		r := &netRequest{cdpID: e.RequestID, method: "GET", url: cutText(e.URL, maxKeptText), resType: "websocket"}
		if src != nil {
			r.src, r.frame = src, cutText(src.URL(), maxKeptText)
		}
		n.mu.Lock()
		n.added(r)
		n.mu.Unlock()
		n.acct.settle()
	case *network.EventWebSocketWillSendHandshakeRequest:
		n.update(e.RequestID, func(r *netRequest) {
			r.start, r.wallTime = e.Timestamp, wallTime(e.WallTime)
			if e.Request != nil {
				r.reqHeaders = keptHeaders(e.Request.Headers)
			}
		})
	case *network.EventWebSocketHandshakeResponseReceived:
		n.update(e.RequestID, func(r *netRequest) {
			if e.Response != nil {
				r.responded, r.status, r.statusText, r.respHeaders = true, e.Response.Status, cutText(e.Response.StatusText, maxKeptText), keptHeaders(e.Response.Headers)
			}
		})
	case *network.EventWebSocketClosed:
		n.update(e.RequestID, func(r *netRequest) { r.done, r.end = true, e.Timestamp })
	}
}

// requestSent starts an entry. A redirect reuses the browser's request id:
// the hop before it ends with the redirect response, and the new entry is
// linked to it.
func (n *networkLog) requestSent(src *frameSource, e *network.EventRequestWillBeSent) {
	prev := n.byCDP[e.RequestID]
	if prev != nil && prev.src != src && e.RedirectResponse == nil {
		return // the same request, told by another session
	}
	if prev != nil && e.RedirectResponse != nil {
		prev.response(e.RedirectResponse)
		prev.done, prev.end = true, e.Timestamp
		was := prev.cost
		prev.cost = prev.keptBytes()
		n.acct.charge(prev.cost - was)
	}
	rq := e.Request
	r := &netRequest{
		cdpID:       e.RequestID,
		loaderID:    e.LoaderID,
		method:      rq.Method,
		url:         cutText(rq.URL+rq.URLFragment, maxKeptText),
		resType:     strings.ToLower(cmp.Or(string(e.Type), "other")),
		reqHeaders:  keptHeaders(rq.Headers),
		hasPostData: rq.HasPostData,
		start:       e.Timestamp,
		wallTime:    wallTime(e.WallTime),
	}
	if src != nil {
		r.src, r.frame = src, cutText(cmp.Or(e.DocumentURL, src.URL()), maxKeptText)
	}
	for _, pd := range rq.PostDataEntries {
		if len(r.postData)+len(pd.Bytes) > maxCollectedText {
			r.postClipped = true
			break
		}
		r.postData = append(r.postData, pd.Bytes...)
	}
	n.added(r)
	if prev != nil && e.RedirectResponse != nil {
		prev.redirectTo, r.redirectOf = r.id, prev.id
	}
}

// added stores a new entry and indexes it by its browser request id.
func (n *networkLog) added(r *netRequest) {
	if n.byCDP == nil {
		n.byCDP = map[network.RequestID]*netRequest{}
	}
	var dropped []*netRequest
	r.id, dropped = n.ring.add(r, maxNetworkRequests)
	n.byCDP[r.cdpID] = r
	r.cost = r.keptBytes()
	n.acct.charge(r.cost)
	n.forget(dropped)
	n.trim()
}

// trim drops the oldest entries while the tab keeps more than its bound,
// the newest one excepted; n.mu is held.
func (n *networkLog) trim() {
	for n.acct.over() && len(n.ring.entries) > 1 {
		old, _ := n.ring.dropOldest()
		n.forget([]*netRequest{old})
	}
}

// evictTo drops the oldest entries until at most b bytes are kept.
func (n *networkLog) evictTo(b int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for n.acct.bytes.Load() > b {
		old, ok := n.ring.dropOldest()
		if !ok {
			return
		}
		n.forget([]*netRequest{old})
	}
}

// size estimates the bytes r keeps.
func (r *netRequest) keptBytes() int64 {
	c := entryOverhead + len(r.cdpID) + len(r.loaderID) + len(r.method) + len(r.url) + len(r.resType) +
		len(r.postData) + len(r.statusText) + len(r.mimeType) + len(r.remote) + len(r.protocol) +
		len(r.failure) + len(r.blocked) + len(r.frame)
	if r.timing != nil {
		c += 200
	}
	return int64(c) + headersCost(r.reqHeaders) + headersCost(r.respHeaders)
}

func wallTime(t cdp.TimeSinceEpoch) time.Time {
	return time.UnixMilli(int64(float64(t) * 1000)).UTC()
}

// forget drops the index and the bytes of entries the ring let go.
func (n *networkLog) forget(dropped []*netRequest) {
	for _, r := range dropped {
		n.acct.charge(-r.cost)
		if n.byCDP[r.cdpID] == r {
			delete(n.byCDP, r.cdpID)
		}
	}
}

func (n *networkLog) update(id network.RequestID, f func(*netRequest)) {
	n.mu.Lock()
	if r := n.byCDP[id]; r != nil {
		f(r)
		// Only entries still in the ring are indexed, so r is charged.
		was := r.cost
		r.cost = r.keptBytes()
		n.acct.charge(r.cost - was)
		n.trim()
	}
	n.mu.Unlock()
	n.acct.settle()
}

func (r *netRequest) response(resp *network.Response) {
	if resp == nil {
		return
	}
	r.responded = true
	r.status, r.statusText, r.mimeType = resp.Status, cutText(resp.StatusText, maxKeptText), cutText(resp.MimeType, maxKeptText)
	r.respHeaders, r.timing, r.protocol = keptHeaders(resp.Headers), resp.Timing, cutText(resp.Protocol, maxKeptText)
	if resp.RemoteIPAddress != "" {
		r.remote = fmt.Sprintf("%s:%d", resp.RemoteIPAddress, resp.RemotePort)
		if strings.Contains(resp.RemoteIPAddress, ":") {
			r.remote = fmt.Sprintf("[%s]:%d", resp.RemoteIPAddress, resp.RemotePort)
		}
	}
	if resp.FromDiskCache || resp.FromPrefetchCache || resp.FromServiceWorker {
		r.fromCache = true
	}
}

// netSnapshot is a copy of an entry, taken under the lock.
type netSnapshot struct {
	nav int
	netRequest
}

// list returns copies of the requests that keep accepts, as navRing.pick
// does.
func (n *networkLog) list(all bool, keep func(*netRequest) bool) ([]netSnapshot, int, map[int]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	picked, earlier, labels := n.ring.pick(all, keep)
	out := make([]netSnapshot, len(picked))
	for i, e := range picked {
		out[i] = netSnapshot{nav: e.nav, netRequest: *e.v}
	}
	return out, earlier, labels
}

// get returns a copy of request id; known says whether the id was given out
// once.
func (n *networkLog) get(id int) (s netSnapshot, ok, known bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.ring.find(id)
	if !ok {
		return s, false, n.ring.forgotten(id)
	}
	return netSnapshot{nav: e.nav, netRequest: *e.v}, true, true
}

// resourceTypes are the resource types list_network_requests filters on,
// as chrome-devtools-mcp names them.
var resourceTypes = []string{
	"document", "stylesheet", "image", "media", "font", "script", "texttrack", "xhr", "fetch",
	"prefetch", "eventsource", "websocket", "manifest", "signedexchange", "ping",
	"cspviolationreport", "preflight", "fedcm", "other",
}

// networkTools returns list_network_requests and get_network_request.
func (t *toolset) networkTools() []Tool {
	return []Tool{t.listNetworkRequests(), t.getNetworkRequest()}
}

type listNetworkRequestsArgs struct {
	pageArg
	pagingArgs
	// ResourceTypes is checked by typeFilter, for its own message.
	ResourceTypes            any  `json:"resourceTypes"`
	IncludePreservedRequests bool `json:"includePreservedRequests"`
}

func (t *toolset) listNetworkRequests() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("list_network_requests",
			mcp.WithDescription("List the page's requests since the last navigation: method, URL, status, type, size, duration, reqid."),
			mcp.WithInteger("pageSize", mcp.Min(1)),
			mcp.WithInteger("pageIdx", mcp.Min(0)),
			mcp.WithArray("resourceTypes", mcp.WithStringEnumItems(resourceTypes)),
			mcp.WithBoolean("includePreservedRequests"),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a listNetworkRequestsArgs) (*mcp.CallToolResult, error) {
			types, err := typeFilter(a.ResourceTypes, "resourceTypes", resourceTypes)
			if err != nil {
				return nil, err
			}
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			all := a.IncludePreservedRequests
			reqs, earlier, labels := tab.State.network.list(all, func(r *netRequest) bool {
				return len(types) == 0 || types[r.resType]
			})
			from, to, err := listPaging(a.pagingArgs, len(reqs))
			if err != nil {
				return nil, err
			}
			text := formatList(networkWords, tab.ID, reqs[from:to], func(r netSnapshot) int { return r.nav }, networkLine, labels, all, earlier, types != nil)
			return mcp.NewToolResultText(text +
				pagingFooter(from, to, len(reqs), a.pagingArgs, "requests")), nil
		}),
	}
}

var networkWords = listWords{
	title:       "Network requests",
	noneOfTypes: "No requests of those resource types.", none: "No requests.",
	noneSinceNav: "No requests since the last navigation.",
	kept:         "request(s)", preserveArg: "includePreservedRequests",
}

func networkLine(r netSnapshot) string {
	s := fmt.Sprintf("reqid=%d %s %s [%s] %s", r.id, r.method, clipMiddle(r.url, listURLWidth), r.state(), r.resType)
	if r.done && r.failure == "" && r.redirectTo == 0 && r.resType != "websocket" {
		s += " " + netSize(r.size)
	}
	if r.done && r.start > 0 {
		s += " " + netDuration(r.end, r.start)
	}
	if r.fromCache {
		s += " (cache)"
	}
	return s
}

// state says in a few words where the request is: its status, or why it has
// none.
func (r *netRequest) state() string {
	var s string
	switch {
	case r.redirectTo != 0:
		s = fmt.Sprintf("%d redirect to reqid=%d", r.status, r.redirectTo)
	case r.failure != "" && r.blocked != "":
		s = "blocked: " + r.blocked
	case r.failure != "":
		s = "failed: " + r.failure
	case !r.responded:
		s = "pending"
	case r.resType == "websocket" && r.done:
		s = fmt.Sprintf("%d, closed", r.status)
	case r.resType == "websocket":
		s = fmt.Sprintf("%d, open", r.status)
	case !r.done:
		s = fmt.Sprintf("%d, loading", r.status)
	default:
		s = fmt.Sprint(r.status)
	}
	if r.failure != "" && r.responded {
		s = fmt.Sprintf("%d, %s", r.status, s)
	}
	return s
}

func netSize(n float64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%.0f B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1f KB", n/1024)
	default:
		return fmt.Sprintf("%.1f MB", n/1024/1024)
	}
}

func netDuration(end, start cdp.MonotonicTime) string {
	ms := (float64(end) - float64(start)) * 1000
	if ms >= 1000 {
		return fmt.Sprintf("%.2f s", ms/1000)
	}
	return fmt.Sprintf("%.0f ms", max(ms, 0))
}

type getNetworkRequestArgs struct {
	pageArg
	ReqID            *int   `json:"reqid"`
	RequestFilePath  string `json:"requestFilePath"`
	ResponseFilePath string `json:"responseFilePath"`
}

func (t *toolset) getNetworkRequest() Tool {
	return Tool{
		Perm: auth.PermRead,
		Tool: mcp.NewTool("get_network_request",
			mcp.WithDescription(fmt.Sprintf("Get a request by reqid: URL, status, headers, timing, bodies (%d chars inline).", maxCollectedText)),
			mcp.WithNumber("reqid", mcp.Required()),
			mcp.WithString("requestFilePath"),
			mcp.WithString("responseFilePath"),
			pageIDOption,
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
		),
		Handler: bind(func(ctx context.Context, _ mcp.CallToolRequest, a getNetworkRequestArgs) (*mcp.CallToolResult, error) {
			if a.ReqID == nil {
				return mcp.NewToolResultError("get_network_request needs a reqid; call list_network_requests to get one"), nil
			}
			id := *a.ReqID
			tab, err := pageOf(ctx, a.PageID)
			if err != nil {
				return nil, err
			}
			r, ok, known := tab.State.network.get(id)
			if !ok {
				if known {
					return mcp.NewToolResultErrorf("get_network_request: reqid %d of page %d is no longer kept (only the last %d navigations and %d requests are); call list_network_requests for the current ones", id, tab.ID, keptNavigations, maxNetworkRequests), nil
				}
				return mcp.NewToolResultErrorf("get_network_request: page %d has no request reqid=%d; call list_network_requests and use a reqid from its lines", tab.ID, id), nil
			}
			cctx, cancel := callCtx(ctx, tab, t.cfg.CallTimeout)
			defer cancel()
			bctx, live := context.Context(cctx), true
			if r.src != nil {
				// A frame's bodies are on the frame's session, while the
				// attachment that saw the request lasts.
				if fctx, ok := tab.State.frameSession(cctx, r.src); ok {
					bctx = fctx
				} else {
					live = false
				}
			}
			reqBody := requestBody(bctx, r, t.cfg.CallTimeout, live)
			respBody := responseBody(bctx, r, t.cfg.CallTimeout, live)
			for _, out := range []struct {
				arg, fp string
				body    *bodyResult
			}{{"requestFilePath", a.RequestFilePath, &reqBody}, {"responseFilePath", a.ResponseFilePath, &respBody}} {
				fp := out.fp
				if fp == "" {
					continue
				}
				if out.body.data == nil {
					out.body.note += fmt.Sprintf(" (nothing saved to %s)", fp)
					continue
				}
				p, err := writeOutput(ctx, fp, out.body.data)
				if err != nil {
					return mcp.NewToolResultErrorf("get_network_request: %s: %v", out.arg, err), nil
				}
				out.body.saved = p
			}
			return mcp.NewToolResultText(formatNetworkRequest(tab.ID, r, reqBody, respBody)), nil
		}),
	}
}

// bodyResult is a request or response body, or why there is none.
type bodyResult struct {
	data   []byte // nil when there is no body to show
	mime   string
	binary bool   // the browser sent it base64-encoded and it is not text
	note   string // why there is no body, when data is nil
	saved  string // the file it was saved to
}

// frameGone says why a frame's request has no body to ask for.
const frameGone = "unavailable: the tab's attachment to the cross-site frame that made the request has ended (the frame navigated away or was removed, or the page moved on), and the bodies went with it"

// requestBody returns the body the page sent. The browser has it when the
// request had one; the event's copy stands in when the browser does not
// answer, and for the hops of a redirect (the browser keeps the last one).
// live is false when the session that saw the request is gone.
func requestBody(ctx context.Context, r netSnapshot, d time.Duration, live bool) bodyResult {
	b := bodyResult{mime: netHeader(r.reqHeaders, "Content-Type")}
	if !r.hasPostData {
		b.note = "none"
		return b
	}
	if !live {
		b.note = frameGone
	} else if r.redirectTo == 0 {
		res, err := chromedp.Call(ctx, network.GetRequestPostData, network.GetRequestPostDataParams{RequestID: r.cdpID})
		if err == nil {
			b.data, b.binary = bodyBytes(res.PostData), res.Base64encoded && !bodyIsText(res.PostData, b.mime)
			return b
		}
		b.note = "unavailable: " + bodyError(ctx, err, d)
	}
	if len(r.postData) > 0 {
		b.data, b.note = r.postData, ""
		if r.postClipped {
			b.note = fmt.Sprintf("only the first %d bytes were kept", len(r.postData))
		}
		b.binary = !bodyIsText(r.postData, b.mime)
	} else if b.note == "" {
		b.note = "unavailable: the browser did not report it"
	}
	return b
}

// responseBody asks the browser for the body it received. It has none for
// redirects and failures, none yet while loading, and drops bodies when
// its buffer is full or the page is gone. live is false when the session
// that saw the request is gone.
func responseBody(ctx context.Context, r netSnapshot, d time.Duration, live bool) bodyResult {
	b := bodyResult{mime: r.mimeType}
	switch {
	case r.redirectTo != 0:
		b.note = "none: the response was a redirect"
		return b
	case r.resType == "websocket":
		b.note = "none: a WebSocket has no body, and its messages are not collected"
		return b
	case r.failure != "":
		b.note = "none: the request failed"
		return b
	case !r.done:
		b.note = "not available yet: the request is still loading; call get_network_request again once it has finished"
		return b
	case r.method == "HEAD" || r.status == 204 || r.status == 304:
		b.note = "none"
		return b
	case !live:
		b.note = frameGone
		return b
	}
	res, err := chromedp.Call(ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: r.cdpID})
	if err != nil {
		b.note = "unavailable: " + bodyError(ctx, err, d)
		return b
	}
	b.data, b.binary = bodyBytes(res.Body), res.Base64encoded && !bodyIsText(res.Body, b.mime)
	return b
}

func bodyBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// bodyError says why the browser gave no body.
func bodyError(ctx context.Context, err error, d time.Duration) string {
	var cerr *cdproto.Error
	switch {
	case errors.As(err, &cerr):
		return "the browser no longer has it (" + cerr.Message + "); it drops bodies of old or large responses and of closed pages"
	case ctx.Err() != nil:
		return fmt.Sprintf("the browser did not answer within %s", d)
	default:
		return err.Error()
	}
}

// bodyIsText tells whether data is text to show: valid UTF-8 without control
// bytes, of a textual type when the type is known.
func bodyIsText(data []byte, contentType string) bool {
	if !utf8.Valid(data) || bytes.ContainsRune(data, 0) {
		return false
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "", strings.HasPrefix(mt, "text/"):
		return true
	}
	for _, s := range []string{"json", "xml", "javascript", "ecmascript", "x-www-form-urlencoded", "svg", "graphql", "csv", "yaml"} {
		if strings.Contains(mt, s) {
			return true
		}
	}
	return false
}

func netHeader(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// formatNetworkRequest renders a request in full.
func formatNetworkRequest(pageID int, r netSnapshot, reqBody, respBody bodyResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Request reqid=%d of page %d\n%s %s\n", r.id, pageID, r.method, r.url)
	if r.src != nil {
		b.WriteString(frameLine(r.frame))
	}
	switch {
	case r.responded:
		fmt.Fprintf(&b, "Status: %d %s\n", r.status, r.statusText)
	case r.done:
		b.WriteString("Status: none (no response)\n")
	default:
		b.WriteString("Status: pending (no response yet)\n")
	}
	if r.failure != "" {
		fmt.Fprintf(&b, "Failure: %s", r.failure)
		if r.blocked != "" {
			fmt.Fprintf(&b, " (blocked: %s)", r.blocked)
		}
		if r.canceled {
			b.WriteString(" (canceled)")
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "Resource type: %s\n", r.resType)
	if r.mimeType != "" {
		fmt.Fprintf(&b, "MIME type: %s\n", r.mimeType)
	}
	if r.start > 0 {
		fmt.Fprintf(&b, "Started: %s\n", r.wallTime.Format("2006-01-02T15:04:05.000Z07:00"))
	}
	if r.done && r.start > 0 {
		fmt.Fprintf(&b, "Duration: %s\n", netDuration(r.end, r.start))
	}
	if r.done && r.redirectTo == 0 && r.failure == "" && r.resType != "websocket" {
		fmt.Fprintf(&b, "Transferred: %s\n", netSize(r.size))
	}
	if r.fromCache {
		b.WriteString("Served from cache\n")
	}
	if r.remote != "" {
		fmt.Fprintf(&b, "Remote address: %s", r.remote)
		if r.protocol != "" {
			fmt.Fprintf(&b, " (%s)", r.protocol)
		}
		b.WriteByte('\n')
	}
	if r.redirectOf != 0 {
		fmt.Fprintf(&b, "Redirected from reqid=%d\n", r.redirectOf)
	}
	if r.redirectTo != 0 {
		fmt.Fprintf(&b, "Redirected to reqid=%d (%s)\n", r.redirectTo, netHeader(r.respHeaders, "Location"))
	}
	writeHeaders(&b, "Request headers", r.reqHeaders)
	writeBody(&b, "Request body", reqBody, "requestFilePath")
	if r.responded {
		writeHeaders(&b, "Response headers", r.respHeaders)
	}
	writeBody(&b, "Response body", respBody, "responseFilePath")
	if t := timingText(r); t != "" {
		fmt.Fprintf(&b, "### Timing\n%s\n", t)
	}
	return b.String()
}

func writeHeaders(b *strings.Builder, title string, h network.Headers) {
	fmt.Fprintf(b, "### %s\n", title)
	if len(h) == 0 {
		b.WriteString("(none)\n")
		return
	}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		// Repeated headers come joined by newlines.
		for _, v := range strings.Split(fmt.Sprint(h[k]), "\n") {
			fmt.Fprintf(b, "%s: %s\n", k, clipEnd(v, maxCollectedText))
		}
	}
}

func writeBody(b *strings.Builder, title string, body bodyResult, fileArg string) {
	fmt.Fprintf(b, "### %s\n", title)
	switch {
	case body.saved != "":
		fmt.Fprintf(b, "Saved %d bytes to %s.", len(body.data), body.saved)
		if body.note != "" {
			fmt.Fprintf(b, " Note: %s.", body.note)
		}
	case body.data == nil:
		b.WriteString(body.note)
	case len(body.data) == 0:
		b.WriteString("(empty)")
	case body.binary:
		fmt.Fprintf(b, "binary, %d bytes", len(body.data))
		if body.mime != "" {
			fmt.Fprintf(b, " (%s)", body.mime)
		}
		fmt.Fprintf(b, "; pass %s to save it", fileArg)
	default:
		s := string(body.data)
		if len(s) > maxCollectedText {
			fmt.Fprintf(b, "%s\n[truncated: the first %d of %d characters are shown; pass %s to save all of it]",
				clipEnd(s, maxCollectedText), maxCollectedText, len(s), fileArg)
		} else {
			b.WriteString(s)
		}
		if body.note != "" {
			fmt.Fprintf(b, "\n[%s]", body.note)
		}
	}
	b.WriteByte('\n')
}

// timingText breaks the request's time down as the DevTools timing tab does.
func timingText(r netSnapshot) string {
	t := r.timing
	if t == nil {
		return ""
	}
	var parts []string
	span := func(name string, from, to float64) {
		if from >= 0 && to >= from {
			parts = append(parts, fmt.Sprintf("%s %.1f ms", name, to-from))
		}
	}
	if queued := (t.RequestTime - float64(r.start)) * 1000; queued >= 0 {
		parts = append(parts, fmt.Sprintf("queued %.1f ms", queued))
	}
	span("DNS", t.DNSStart, t.DNSEnd)
	span("connect", t.ConnectStart, t.ConnectEnd)
	span("TLS", t.SslStart, t.SslEnd)
	span("send", t.SendStart, t.SendEnd)
	headers := t.ReceiveHeadersStart
	if headers <= 0 {
		headers = t.ReceiveHeadersEnd
	}
	span("waiting for the server", t.SendEnd, headers)
	if r.done && r.redirectTo == 0 {
		span("download", t.ReceiveHeadersEnd, (float64(r.end)-t.RequestTime)*1000)
	}
	return strings.Join(parts, ", ")
}
