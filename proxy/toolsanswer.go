package proxy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sync"
	"unsafe"

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
	parts, err := l.encodeParts(resp)
	if err != nil {
		return nil, err
	}
	return bytes.Join(parts, nil), nil
}

// encodeParts is json.Marshal(resp) in pieces, to be written one after
// another; they are shared and must not be changed.
func (l *listAnswers) encodeParts(resp any) ([][]byte, error) {
	r, ok := resp.(mcp.JSONRPCResponse)
	if !ok || !isToolList(r.Result) {
		data, err := json.Marshal(resp)
		return [][]byte{data}, err
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
	head := make([]byte, 0, len(version)+len(id)+len(`{"jsonrpc":,"id":,"result":`))
	head = append(append(append(head, `{"jsonrpc":`...), version...), `,"id":`...)
	head = append(append(head, id...), `,"result":`...)
	return [][]byte{head, result, closeBrace}, nil
}

var closeBrace = []byte("}")

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
		if e.result != nil && sameResult(e.result, result) {
			return e.data, true
		}
	}
	return nil, false
}

// sameResult is reflect.DeepEqual(cached, result) for tools/list results,
// quicker for the common case: DeepEqual walked every field of every tool
// by reflection, a third of the cost of the answer. mcp-go copies its tools
// by value into each result, so the tools of two lists of the same tools
// are byte for byte the same values (the same strings, maps and slices, by
// address), which makes them deeply equal; lists that are not may still
// be, and are left to DeepEqual.
func sameResult(cached, result any) bool {
	a, aok := toolList(cached)
	b, bok := toolList(result)
	if aok && bok && sameToolValues(a.Tools, b.Tools) {
		return reflect.DeepEqual(a.PaginatedResult, b.PaginatedResult)
	}
	return reflect.DeepEqual(cached, result)
}

func toolList(v any) (*mcp.ListToolsResult, bool) {
	switch r := v.(type) {
	case mcp.ListToolsResult:
		return &r, true
	case *mcp.ListToolsResult:
		return r, r != nil
	}
	return nil, false
}

// sameToolValues reports whether a and b hold byte for byte the same
// values. Padding that differs only makes it report false.
func sameToolValues(a, b []mcp.Tool) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	n := len(a) * int(unsafe.Sizeof(a[0]))
	return bytes.Equal(unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), n), unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), n))
}

func (l *listAnswers) keep(result any, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries[l.next] = listAnswer{result: result, data: data}
	l.next = (l.next + 1) % len(l.entries)
}
