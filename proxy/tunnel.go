package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tunnel"
)

// TunnelStatus is the tunnel part of GET /api/users/:userId/status.
type TunnelStatus struct {
	Connected    bool       `json:"connected"`
	AgentVersion string     `json:"agentVersion,omitempty"`
	Since        *time.Time `json:"since,omitempty"`
}

// tunnelUpgrader upgrades GET /api/tunnel. The agent is not a web page: a
// request with an Origin header (a browser's) is refused.
var tunnelUpgrader = websocket.Upgrader{
	ReadBufferSize:  64 << 10,
	WriteBufferSize: 64 << 10,
	CheckOrigin:     func(r *http.Request) bool { return r.Header.Get("Origin") == "" },
}

// tunnelRoute answers GET /api/tunnel: the developer-machine agent's
// reverse tunnel. The user is the credential's own (never a parameter), it
// needs browser:write (it registers a browser), and the tunnel lives no
// longer than the credential: it closes at the token's exp, and when the
// API key it came from is revoked (checked every TunnelCheckInterval).
func (s *Server) tunnelRoute(c echo.Context) error {
	if s.cfg.Tunnels == nil {
		return apiError(http.StatusNotFound, CodeNotFound, "this proxy does not accept tunnels")
	}
	if err := s.requirePerm(c, auth.PermWrite, "opening a browser tunnel"); err != nil {
		return err
	}
	p, _ := principalOf(c)
	if !p.Expires.IsZero() && !time.Now().Before(p.Expires) {
		s.deny(c, p.UserID, "tunnel with an expired credential")
		markAuthFailed(c, authExpired)
		return apiError(http.StatusUnauthorized, CodeUnauthorized, "the token has expired; issue a new one")
	}
	if !websocket.IsWebSocketUpgrade(c.Request()) {
		return apiError(http.StatusBadRequest, CodeInvalidRequest, "GET /api/tunnel is a WebSocket for `mcp-browser-proxy connect`; run that on the machine with your browser")
	}
	if c.Request().Header.Get("Origin") != "" {
		s.deny(c, p.UserID, "tunnel request from a web page")
		return apiError(http.StatusForbidden, CodeForbidden, "tunnels are opened by `mcp-browser-proxy connect`, not by web pages")
	}
	ws, err := tunnelUpgrader.Upgrade(c.Response(), c.Request(), nil)
	if err != nil {
		return nil // the upgrader has answered
	}
	t, err := s.cfg.Tunnels.Accept(p.UserID, ws)
	if err != nil {
		s.log.Warn().Str("user", p.UserID).Err(err).Msg("tunnel refused")
		return nil
	}
	ctx := context.WithoutCancel(c.Request().Context())
	url := router.TunnelURL(p.UserID)
	reg, err := s.cfg.Store.Put(ctx, router.Registration{UserID: p.UserID, BrowserURL: url})
	if errors.Is(err, router.ErrUnavailable) {
		t.Close(websocket.CloseTryAgainLater, "the registration store is unreachable; connect retries by itself")
		return fmt.Errorf("tunnel %s: %w", p.UserID, err)
	}
	if err != nil {
		t.Close(websocket.CloseInternalServerErr, "the proxy could not record the registration")
		return fmt.Errorf("tunnel %s: %w", p.UserID, err)
	}
	// The same endpoint again only retries at once: a new tunnel is used
	// without waiting for the backoff.
	s.cfg.Pool.EnsureEndpoint(p.UserID, browserpool.Endpoint{URL: url, Registered: reg.Since()})
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "tunnel_open").Str("request_id", requestID(c)).
		Str("user", p.UserID).Send()
	go s.watchTunnel(t, p)
	reason := t.Serve()
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "tunnel_close").Str("request_id", requestID(c)).
		Str("user", p.UserID).Str("reason", reason).Send()
	return nil
}

// watchTunnel closes t when p's credential expires or its API key is
// revoked.
func (s *Server) watchTunnel(t *tunnel.Tunnel, p auth.Principal) {
	var expiry <-chan time.Time
	if !p.Expires.IsZero() {
		timer := time.NewTimer(time.Until(p.Expires))
		defer timer.Stop()
		expiry = timer.C
	}
	var check <-chan time.Time
	if p.KeyID != "" {
		tick := time.NewTicker(s.cfg.TunnelCheckInterval)
		defer tick.Stop()
		check = tick.C
	}
	for {
		select {
		case <-t.Done():
			return
		case <-expiry:
			s.cfg.Audit.Warn().Bool("audit", true).Str("event", "denied").Str("user", p.UserID).Str("path", "/api/tunnel").
				Str("reason", "tunnel credential expired").Send()
			t.Close(tunnel.CloseExpired, "the token expired; start connect again with a new token")
			return
		case <-check:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := auth.CheckAPIKeyLive(ctx, s.cfg.Store, p.KeyID)
			cancel()
			if errors.Is(err, auth.ErrInvalidToken) {
				s.cfg.Audit.Warn().Bool("audit", true).Str("event", "denied").Str("user", p.UserID).Str("path", "/api/tunnel").
					Str("reason", "tunnel of a revoked API key").Send()
				t.Close(tunnel.CloseRevoked, "the API key was revoked; start connect again with a valid credential")
				return
			}
		}
	}
}

// tunnelStatus returns the status's tunnel part for a tunnelled registration.
func (s *Server) tunnelStatus(reg router.Registration) *TunnelStatus {
	if _, ok := router.TunnelUser(reg.BrowserURL); !ok {
		return nil
	}
	out := &TunnelStatus{}
	if s.cfg.Tunnels == nil {
		return out
	}
	if info, ok := s.cfg.Tunnels.Info(reg.UserID); ok {
		since := info.Since.UTC()
		out.Connected, out.AgentVersion, out.Since = true, info.AgentVersion, &since
	}
	return out
}

// closeUserTunnel ends userID's live tunnel after its registration was
// deleted, with the close code that stops the agent: a reconnecting agent
// would register the browser again.
func (s *Server) closeUserTunnel(userID string) bool {
	if s.cfg.Tunnels == nil {
		return false
	}
	return s.cfg.Tunnels.CloseUser(userID, tunnel.CloseUnregistered,
		"the registration was deleted (DELETE /api/users/"+userID+"); run connect again to register the browser")
}

// tunnelHealth returns /health's tunnel part: the live tunnels, and the
// tunnelled browsers by state.
func (s *Server) tunnelHealth() (int, map[string]int) {
	states := map[string]int{}
	for st, n := range s.cfg.Pool.TunnelStates() {
		states[string(st)] = n
	}
	if s.cfg.Tunnels == nil {
		return 0, states
	}
	return s.cfg.Tunnels.Count(), states
}
