package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// cdpClient is the smallest CDP client: one websocket to the browser,
// flat sessions, commands matched to answers by id, one-shot waits for
// events. The floor of each agent call is measured with it: nothing sits
// between the commands and Chromium but the socket.
type cdpClient struct {
	ws      *websocket.Conn
	wmu     sync.Mutex
	next    atomic.Int64
	mu      sync.Mutex
	pending map[int64]chan cdpMsg
	waits   []*eventWait
	done    chan struct{}
}

type cdpMsg struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type eventWait struct {
	session, method string
	match           func(json.RawMessage) bool
	ch              chan cdpMsg
}

func dialFloor(ctx context.Context, chromeURL string) (*cdpClient, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, chromeURL+"/json/version", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	var v struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, v.WS, nil)
	if err != nil {
		return nil, err
	}
	c := &cdpClient{ws: ws, pending: map[int64]chan cdpMsg{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *cdpClient) read() {
	defer close(c.done)
	for {
		var m cdpMsg
		if err := c.ws.ReadJSON(&m); err != nil {
			return
		}
		c.mu.Lock()
		if m.Method == "" {
			if ch := c.pending[m.ID]; ch != nil {
				delete(c.pending, m.ID)
				ch <- m
			}
		} else {
			for i, w := range c.waits {
				if w.session == m.SessionID && w.method == m.Method && (w.match == nil || w.match(m.Params)) {
					w.ch <- m
					c.waits = append(c.waits[:i], c.waits[i+1:]...)
					break
				}
			}
		}
		c.mu.Unlock()
	}
}

func (c *cdpClient) close() { _ = c.ws.Close(); <-c.done }

// wait registers a one-shot wait for an event, before the command that
// causes it is sent.
func (c *cdpClient) wait(session, method string, match func(json.RawMessage) bool) <-chan cdpMsg {
	w := &eventWait{session: session, method: method, match: match, ch: make(chan cdpMsg, 1)}
	c.mu.Lock()
	c.waits = append(c.waits, w)
	c.mu.Unlock()
	return w.ch
}

// send writes a command and returns the wait for its answer: commands
// sent in a row are in flight together.
func (c *cdpClient) send(session, method string, params any) (func(context.Context) (json.RawMessage, error), error) {
	id := c.next.Add(1)
	ch := make(chan cdpMsg, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	var raw json.RawMessage
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	c.wmu.Lock()
	err := c.ws.WriteJSON(cdpMsg{ID: id, SessionID: session, Method: method, Params: raw})
	c.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (json.RawMessage, error) {
		select {
		case m := <-ch:
			if m.Error != nil {
				return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
			}
			return m.Result, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, errors.New("connection closed")
		}
	}, nil
}

func (c *cdpClient) call(ctx context.Context, session, method string, params any, out any) error {
	w, err := c.send(session, method, params)
	if err != nil {
		return err
	}
	res, err := w(ctx)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(res, out)
}

// recv waits for an event from wait, bounded.
func recv(ctx context.Context, ch <-chan cdpMsg) (cdpMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case m := <-ch:
		return m, nil
	case <-ctx.Done():
		return cdpMsg{}, ctx.Err()
	}
}

// openTab is the floor of the first page tool of a session: create the
// tab with its URL (paused by auto-attach, as the proxy's guard pauses
// it), turn on the Page domain, let it run and wait for its load. It
// returns the tab's target and session ids.
func (c *cdpClient) openTab(ctx context.Context, url string) (string, string, error) {
	attached := c.wait("", "Target.attachedToTarget", func(p json.RawMessage) bool {
		var ev struct {
			TargetInfo         struct{ Type, URL string }
			WaitingForDebugger bool
		}
		return json.Unmarshal(p, &ev) == nil && ev.WaitingForDebugger && ev.TargetInfo.Type == "page"
	})
	var created struct{ TargetID string }
	if err := c.call(ctx, "", "Target.createTarget", map[string]any{"url": url, "newWindow": false, "background": false}, &created); err != nil {
		return "", "", err
	}
	m, err := recv(ctx, attached)
	if err != nil {
		return "", "", fmt.Errorf("no attachedToTarget: %w", err)
	}
	var ev struct{ SessionID string }
	_ = json.Unmarshal(m.Params, &ev)
	sid := ev.SessionID
	load := c.wait(sid, "Page.loadEventFired", nil)
	enable, err := c.send(sid, "Page.enable", nil)
	if err != nil {
		return "", "", err
	}
	run, err := c.send(sid, "Runtime.runIfWaitingForDebugger", nil)
	if err != nil {
		return "", "", err
	}
	if _, err := enable(ctx); err != nil {
		return "", "", err
	}
	if _, err := run(ctx); err != nil {
		return "", "", err
	}
	if _, err := recv(ctx, load); err != nil {
		return "", "", fmt.Errorf("no load: %w", err)
	}
	return created.TargetID, sid, nil
}

// navigate is the floor of navigate_page: Page.navigate and its load.
func (c *cdpClient) navigate(ctx context.Context, sid, url string) error {
	load := c.wait(sid, "Page.loadEventFired", nil)
	if err := c.call(ctx, sid, "Page.navigate", map[string]any{"url": url}, nil); err != nil {
		return err
	}
	_, err := recv(ctx, load)
	return err
}
