package session

import (
	"context"
	"sync/atomic"
)

// RequestNote ties the tool calls of an HTTP request to that request's
// log line: the call's own line (tool_call, or its refusal) carries the
// request ID, and the request log leaves its line out once a call has
// written one, so that a tool call is one log line, not two.
type RequestNote struct {
	// RequestID is the X-Request-Id of the request.
	RequestID string

	called atomic.Bool
}

// Called reports whether a tool call of the request reached the session
// middleware, which then writes the call's line.
func (n *RequestNote) Called() bool { return n != nil && n.called.Load() }

type requestNoteKey struct{}

// WithRequestNote returns a copy of ctx carrying n. Contexts derived from
// it (mcp-go's, even detached ones) carry it too.
func WithRequestNote(ctx context.Context, n *RequestNote) context.Context {
	return context.WithValue(ctx, requestNoteKey{}, n)
}

// requestNote returns the note of ctx's request, or nil.
func requestNote(ctx context.Context) *RequestNote {
	n, _ := ctx.Value(requestNoteKey{}).(*RequestNote)
	return n
}
