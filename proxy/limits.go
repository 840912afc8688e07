package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/labstack/echo/v4"
)

// streamRetryAfter is the Retry-After, in seconds, of a refused stream: a
// slot frees as soon as one of the user's streams ends.
const streamRetryAfter = 10

// streamLimiter counts the open MCP streams of each user.
type streamLimiter struct {
	max int

	mu   sync.Mutex
	open map[string]int
}

// acquire takes one of user's stream slots and reports whether one was free.
func (l *streamLimiter) acquire(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[user] >= l.max {
		return false
	}
	l.open[user]++
	return true
}

// release gives back a slot taken by acquire.
func (l *streamLimiter) release(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[user]--; l.open[user] <= 0 {
		delete(l.open, user)
	}
}

// usage returns the open streams, in all and per user.
func (l *streamLimiter) usage() (total int, perUser map[string]int) {
	if l == nil {
		return 0, map[string]int{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	perUser = make(map[string]int, len(l.open))
	for u, n := range l.open {
		perUser[u] = n
		total += n
	}
	return total, perUser
}

// limitStreams returns a middleware that holds each user to
// cfg.MaxStreams concurrent GET streams (GET /sse, GET /mcp); other
// methods pass. Install it after authenticate and mcpGuard, on every stream
// route, from one call so that the routes share the count.
func (s *Server) limitStreams() echo.MiddlewareFunc {
	l := &streamLimiter{max: s.cfg.MaxStreams, open: map[string]int{}}
	s.streams = l
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, ok := principalOf(c)
			if c.Request().Method != http.MethodGet || !ok {
				return next(c)
			}
			if !l.acquire(p.UserID) {
				markDenied(c, denyStreamLimit)
				s.deny(c, p.UserID, "stream limit")
				return &APIError{
					Status: http.StatusTooManyRequests, Code: CodeLimitExceeded, RetryAfter: streamRetryAfter,
					Message: fmt.Sprintf("%s already has %d open MCP streams (GET /sse and GET /mcp), the limit; close an IDE session or retry in %d seconds",
						p.UserID, l.max, streamRetryAfter),
				}
			}
			slot := &streamSlot{release: func() { l.release(p.UserID) }}
			r := c.Request()
			c.SetRequest(r.WithContext(context.WithValue(r.Context(), streamSlotKey{}, slot)))
			defer slot.done()
			return next(c)
		}
	}
}

// streamSlotKey is the request context key of a GET stream's *streamSlot.
type streamSlotKey struct{}

// streamSlot is the stream slot a GET holds. The slot is freed when the
// handler returns, unless the handler kept the stream past its return (the
// SSE transport takes the connection from net/http) and took the slot
// with it (takeStreamSlot).
type streamSlot struct {
	release func()
	once    sync.Once
	kept    atomic.Bool
}

func (s *streamSlot) free() { s.once.Do(s.release) }

func (s *streamSlot) done() {
	if !s.kept.Load() {
		s.free()
	}
}

// takeStreamSlot takes the stream slot of the request with ctx, if it holds
// one: the caller frees it with the func returned, when its stream ends.
func takeStreamSlot(ctx context.Context) func() {
	s, ok := ctx.Value(streamSlotKey{}).(*streamSlot)
	if !ok {
		return nil
	}
	s.kept.Store(true)
	return s.free
}
