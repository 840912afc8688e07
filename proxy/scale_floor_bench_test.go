package proxy

// The stack's floor for BenchmarkScaleEvaluate: the least a server built on
// the proxy's parts (net/http, encoding/json, gorilla/websocket) does to
// answer evaluate_script over Streamable HTTP, with nothing of the proxy in
// it: no authentication, no limits, no logs, metrics, audit or page guard,
// no mcp-go. One websocket per browser, read by one goroutine; a tab per
// session, attached flat; each call decodes the JSON-RPC body, sends
// Runtime.evaluate on the tab's session, waits for its answer and writes
// the JSON-RPC answer. Its CPU per call, beside the proxy's in the same
// run, is what the chosen parts cost on this machine before the proxy does
// anything of its own (BENCHMARKS.md, issue 12). In mode "floor-mcp" the
// tool calls go through mcp-go's MCPServer.HandleMessage (its schema and
// dispatch, which the proxy keeps) to two tools doing the same.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// floorServer is the child's server in mode "floor".
type floorServer struct {
	mcp *server.MCPServer // mode "floor-mcp": tool calls go through it; nil: answered here

	mu       sync.Mutex
	browsers map[string]*floorBrowser // by bearer token, from /api/register
	sessions map[string]*floorSession // by Mcp-Session-Id
}

// floorBrowser is one websocket to a browser and the calls awaiting their
// answers on it.
type floorBrowser struct {
	wmu  sync.Mutex
	conn *websocket.Conn

	mu      sync.Mutex
	next    int64
	waiting map[int64]chan json.RawMessage
}

// floorSession is a Streamable HTTP session: its browser and its tab.
type floorSession struct {
	b   *floorBrowser
	tab string // the tab's CDP session ID, "" before new_page
}

// floorSessionKey carries a call's floorSession to mcp-go's tool handlers.
type floorSessionKey struct{}

func newFloorServer(withMCP bool) *floorServer {
	f := &floorServer{browsers: map[string]*floorBrowser{}, sessions: map[string]*floorSession{}}
	if withMCP {
		f.mcp = server.NewMCPServer("floor", "0", server.WithToolCapabilities(false))
		for _, name := range []string{"new_page", "evaluate_script"} {
			f.mcp.AddTool(mcp.NewTool(name, mcp.WithString("function")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				s := ctx.Value(floorSessionKey{}).(*floorSession)
				text, err := f.tool(ctx, s, name, req.GetString("function", ""))
				if err != nil {
					return mcp.NewToolResultError(err.Error()), nil
				}
				return mcp.NewToolResultText(text), nil
			})
		}
	}
	return f
}

func (f *floorServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/api/register" && r.Method == http.MethodPost:
		f.register(w, r)
	case r.URL.Path == "/mcp" && r.Method == http.MethodPost:
		f.post(w, r)
	case r.URL.Path == "/mcp" && r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusOK)
	default:
		http.Error(w, "not here", http.StatusNotFound)
	}
}

// register dials the browser of {"browserURL"} for the request's token.
func (f *floorServer) register(w http.ResponseWriter, r *http.Request) {
	var in struct {
		BrowserURL string `json:"browserURL"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	b, err := dialFloorBrowser(ctx, in.BrowserURL)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	f.mu.Lock()
	f.browsers[r.Header.Get("Authorization")] = b
	f.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
}

func dialFloorBrowser(ctx context.Context, httpURL string) (*floorBrowser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL+"/json/version", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, v.WS, nil)
	if err != nil {
		return nil, err
	}
	b := &floorBrowser{conn: conn, waiting: map[int64]chan json.RawMessage{}}
	go b.read()
	return b, nil
}

// read hands each answer to its call until the connection ends.
func (b *floorBrowser) read() {
	for {
		_, data, err := b.conn.ReadMessage()
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.waiting {
				close(ch)
				delete(b.waiting, id)
			}
			b.mu.Unlock()
			return
		}
		var msg struct {
			ID     int64           `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(data, &msg) != nil || msg.ID == 0 {
			continue // an event
		}
		b.mu.Lock()
		ch := b.waiting[msg.ID]
		delete(b.waiting, msg.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- msg.Result
		}
	}
}

// call sends a CDP command (on a tab's session unless it is "") and decodes
// its result into out, within 10 s.
func (b *floorBrowser) call(ctx context.Context, session, method string, params, out any) error {
	ch := make(chan json.RawMessage, 1)
	b.mu.Lock()
	b.next++
	id := b.next
	b.waiting[id] = ch
	b.mu.Unlock()
	data, err := json.Marshal(struct {
		ID        int64  `json:"id"`
		SessionID string `json:"sessionId,omitempty"`
		Method    string `json:"method"`
		Params    any    `json:"params"`
	}{id, session, method, params})
	if err != nil {
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
		return err
	}
	b.wmu.Lock()
	err = b.conn.WriteMessage(websocket.TextMessage, data)
	b.wmu.Unlock()
	if err != nil {
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case res, ok := <-ch:
		if !ok {
			return errors.New("the browser's connection ended")
		}
		return json.Unmarshal(res, out)
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
		return ctx.Err()
	}
}

// post answers one JSON-RPC message of POST /mcp.
func (f *floorServer) post(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name      string `json:"name"`
			Arguments struct {
				Function string `json:"function"`
			} `json:"arguments"`
		} `json:"params"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(req.ID) == 0 { // a notification
		w.WriteHeader(http.StatusAccepted)
		return
	}
	var result any
	switch req.Method {
	case "initialize":
		sid := rand.Text()
		f.mu.Lock()
		b := f.browsers[r.Header.Get("Authorization")]
		f.sessions[sid] = &floorSession{b: b}
		f.mu.Unlock()
		w.Header().Set("Mcp-Session-Id", sid)
		result = map[string]any{
			"protocolVersion": "2025-11-25",
			"capabilities":    map[string]any{"tools": map[string]any{}},
			"serverInfo":      map[string]any{"name": "floor", "version": "0"},
		}
	case "tools/call":
		f.mu.Lock()
		s := f.sessions[r.Header.Get("Mcp-Session-Id")]
		f.mu.Unlock()
		if s == nil || s.b == nil {
			http.Error(w, "no such session", http.StatusNotFound)
			return
		}
		if f.mcp != nil {
			data, err := json.Marshal(f.mcp.HandleMessage(context.WithValue(r.Context(), floorSessionKey{}, s), body))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(data)
			return
		}
		text, err := f.tool(r.Context(), s, req.Params.Name, req.Params.Arguments.Function)
		res := floorResult{Content: []floorText{{Type: "text", Text: text}}}
		if err != nil {
			res = floorResult{Content: []floorText{{Type: "text", Text: err.Error()}}, IsError: true}
		}
		result = res
	default:
		result = map[string]any{}
	}
	data, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  any             `json:"result"`
	}{"2.0", req.ID, result})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

type floorResult struct {
	Content []floorText `json:"content"`
	IsError bool        `json:"isError,omitempty"`
}

type floorText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// tool runs new_page (a blank tab for the session, attached flat) or
// evaluate_script (Runtime.evaluate of the function, by value).
func (f *floorServer) tool(ctx context.Context, s *floorSession, name, fn string) (string, error) {
	switch name {
	case "new_page":
		var t struct {
			TargetID string `json:"targetId"`
		}
		if err := s.b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &t); err != nil {
			return "", err
		}
		var a struct {
			SessionID string `json:"sessionId"`
		}
		if err := s.b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": t.TargetID, "flatten": true}, &a); err != nil {
			return "", err
		}
		f.mu.Lock()
		s.tab = a.SessionID
		f.mu.Unlock()
		return "opened", nil
	case "evaluate_script":
		f.mu.Lock()
		tab := s.tab
		f.mu.Unlock()
		var res struct {
			Result struct {
				Value json.RawMessage `json:"value"`
			} `json:"result"`
			ExceptionDetails *struct {
				Text string `json:"text"`
			} `json:"exceptionDetails"`
		}
		if err := s.b.call(ctx, tab, "Runtime.evaluate", floorEvaluate{Expression: "(" + fn + "\n)()", AwaitPromise: true, ReturnByValue: true}, &res); err != nil {
			return "", err
		}
		if res.ExceptionDetails != nil {
			return "", errors.New(res.ExceptionDetails.Text)
		}
		return strings.TrimSpace(string(res.Result.Value)), nil
	}
	return "", fmt.Errorf("no tool %q here", name)
}

type floorEvaluate struct {
	Expression    string `json:"expression"`
	AwaitPromise  bool   `json:"awaitPromise"`
	ReturnByValue bool   `json:"returnByValue"`
}
