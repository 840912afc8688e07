package proxy

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// takenMessage answers a registration of another user's browser. It never
// says whose it is.
const takenMessage = "this browser is registered by another user (the same host and port in another spelling, or the same running browser by another URL); each user registers their own Chrome, started with its own --remote-debugging-port and --user-data-dir"

// refuseTaken audits and answers a registration refused because another
// user holds the browser; why (for the audit only) may say more than the
// answer.
func (s *Server) refuseTaken(c echo.Context, caller, why string) error {
	s.deny(c, caller, why)
	return apiError(http.StatusConflict, CodeConflict, takenMessage)
}

// undoRegister drops a registration whose browser turned out to be another
// user's: the user's previous registration (prev, when prevErr is nil)
// comes back, or the user is left unregistered. Failures are logged: the
// pool keeps the refused browser off anyway.
func (s *Server) undoRegister(ctx context.Context, userID string, prev router.Registration, prevErr error) {
	// A client that hangs up must not leave the refused registration in.
	ctx = context.WithoutCancel(ctx)
	if prevErr == nil {
		// Compared on the addresses it was registered with; a record
		// stored before they were is resolved again.
		if len(prev.Addrs) == 0 {
			prev.Addrs, _ = s.browserPolicy().ResolveURL(ctx, prev.BrowserURL)
		}
		back, err := s.cfg.Store.Put(ctx, prev)
		if err == nil {
			s.cfg.Pool.EnsureEndpoint(userID, browserpool.Endpoint{URL: back.BrowserURL, Headers: back.Headers, Registered: back.Since(), Addrs: prev.Addrs})
			return
		}
		s.log.Warn().Err(err).Str("user", userID).Msg("previous registration not restored; the user is unregistered")
	}
	if err := s.cfg.Store.Delete(ctx, userID); err != nil {
		s.log.Warn().Err(err).Str("user", userID).Msg("refused registration not removed from the store")
	}
	s.cfg.Pool.Remove(userID)
}
