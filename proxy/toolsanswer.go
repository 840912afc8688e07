package proxy

import (
	"encoding/json"
	"reflect"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
)

// listAnswers encodes the answers of the SSE transport, remembering the
// encoded results of tools/list: every new session asks for the list, and
// encoding it (each tool's schema and description, then compacted again by
// encoding/json) was a third of the proxy's CPU of an SSE session's setup.
// A result is reused only for a result deeply equal to the one encoded, so
// the bytes are those json.Marshal writes for it; the lists differ only by
// what a caller's permissions and toolsets hide, so a few are kept.
type listAnswers struct {
	mu      sync.Mutex
	entries [listAnswersKept]listAnswer
	next    int
}

const listAnswersKept = 8

type listAnswer struct {
	result any // a tools/list result, never changed once here
	data   []byte
}

// encode is json.Marshal(resp).
func (l *listAnswers) encode(resp any) ([]byte, error) {
	r, ok := resp.(mcp.JSONRPCResponse)
	if !ok || !isToolList(r.Result) {
		return json.Marshal(resp)
	}
	result, ok := l.lookup(r.Result)
	if !ok {
		var err error
		if result, err = json.Marshal(r.Result); err != nil {
			return nil, err
		}
		l.keep(r.Result, result)
	}
	// The members of mcp.JSONRPCResponse, in its order, as json.Marshal
	// writes them (TestToolListAnswerAsMarshalled).
	version, err := json.Marshal(r.JSONRPC)
	if err != nil {
		return nil, err
	}
	id, err := json.Marshal(r.ID)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(result)+len(version)+len(id)+len(`{"jsonrpc":,"id":,"result":}`))
	out = append(append(append(out, `{"jsonrpc":`...), version...), `,"id":`...)
	out = append(append(append(out, id...), `,"result":`...), result...)
	return append(out, '}'), nil
}

func isToolList(v any) bool {
	switch v.(type) {
	case mcp.ListToolsResult, *mcp.ListToolsResult:
		return true
	}
	return false
}

func (l *listAnswers) lookup(result any) ([]byte, bool) {
	l.mu.Lock()
	entries := l.entries
	l.mu.Unlock()
	for _, e := range entries {
		if e.result != nil && reflect.DeepEqual(e.result, result) {
			return e.data, true
		}
	}
	return nil, false
}

func (l *listAnswers) keep(result any, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries[l.next] = listAnswer{result: result, data: data}
	l.next = (l.next + 1) % len(l.entries)
}
