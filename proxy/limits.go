package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"

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
			defer holdForStream(c, func() { l.release(p.UserID) })()
			return next(c)
		}
	}
}

// streamHoldsKey is the request context key of a GET /sse's *streamHolds.
type streamHoldsKey struct{}

// streamHolds are what middlewares hold for a GET /sse until its handler
// returns (a stream slot, a forwarded client's request slot), or, when the
// SSE transport keeps the stream past its handler (it takes the connection
// from net/http), until the stream ends (takeStreamHolds).
type streamHolds struct {
	mu    sync.Mutex
	kept  bool
	holds []*streamHold
}

type streamHold struct {
	once    sync.Once
	release func()
}

func (h *streamHold) free() { h.once.Do(h.release) }

// holdForStream holds release for the request of c: the func returned, to
// defer, runs it unless the stream was kept, which then runs it when it
// ends. Only GET /sse can be kept; other requests run release on return.
func holdForStream(c echo.Context, release func()) (done func()) {
	r := c.Request()
	if r.Method != http.MethodGet || r.URL.Path != "/sse" {
		return release
	}
	hs, ok := r.Context().Value(streamHoldsKey{}).(*streamHolds)
	if !ok {
		hs = &streamHolds{}
		c.SetRequest(r.WithContext(context.WithValue(r.Context(), streamHoldsKey{}, hs)))
	}
	h := &streamHold{release: release}
	hs.mu.Lock()
	hs.holds = append(hs.holds, h)
	hs.mu.Unlock()
	return func() {
		hs.mu.Lock()
		kept := hs.kept
		hs.mu.Unlock()
		if !kept {
			h.free()
		}
	}
}

// takeStreamHolds keeps what the request with ctx holds past its handler:
// the caller runs the func returned when its stream ends. It returns nil
// when nothing is held.
func takeStreamHolds(ctx context.Context) func() {
	hs, ok := ctx.Value(streamHoldsKey{}).(*streamHolds)
	if !ok {
		return nil
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.kept = true
	holds := hs.holds
	return func() {
		for _, h := range holds {
			h.free()
		}
	}
}
