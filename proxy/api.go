package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// RegisterRequest is the body of POST /api/register.
type RegisterRequest struct {
	UserID     string            `json:"userId"`
	BrowserURL string            `json:"browserURL"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	// Headers are sent to this browser only, on the CDP handshake and
	// /json/version, e.g. {"X-Api-Key": "..."} for a hosted browser. They
	// are credentials: stored encrypted, never shown back.
	Headers map[string]string `json:"headers,omitempty"`
}

// RegisterResponse is the answer of POST /api/register.
type RegisterResponse struct {
	Success       bool   `json:"success"`
	UserID        string `json:"userId"`
	BrowserURL    string `json:"browserURL"`
	BrowserStatus string `json:"browserStatus"`
	SessionToken  string `json:"sessionToken"`
	Message       string `json:"message"`
	// BrowserHeaders names the registered headers; values are never shown.
	BrowserHeaders []string `json:"browserHeaders,omitempty"`
}

// UserStatus is the answer of GET /api/users/:userId/status.
type UserStatus struct {
	UserID         string     `json:"userId"`
	BrowserURL     string     `json:"browserURL"`
	BrowserStatus  string     `json:"browserStatus"`
	BrowserError   string     `json:"browserError,omitempty"`
	ActiveSessions int        `json:"activeSessions"`
	LastActivity   *time.Time `json:"lastActivity"`
	// Tunnel is set for a browser reached through the agent's tunnel.
	Tunnel *TunnelStatus `json:"tunnel,omitempty"`
	// Managed says the browser is one the proxy starts for a user with
	// none registered (serve --managed-browsers); browserURL is then
	// "managed", and browserStatus "disconnected" while none runs (the
	// next page tool starts one).
	Managed bool `json:"managed,omitempty"`
}

// Health is the answer of GET /health.
type Health struct {
	Status             string `json:"status"`
	ActiveSessions     int    `json:"activeSessions"`
	RegisteredUsers    int    `json:"registeredUsers"`
	BrowserConnections int    `json:"browserConnections"`
	// Browsers counts the registered browsers by connection state.
	Browsers map[string]int `json:"browsers"`
	// Tunnels is the number of live agent tunnels.
	Tunnels int `json:"tunnels"`
	// TunnelBrowsers counts the tunnelled browsers by connection state.
	TunnelBrowsers map[string]int `json:"tunnelBrowsers"`
	// ManagedBrowsers is the number of managed browsers running (or
	// starting); only with --managed-browsers.
	ManagedBrowsers *int  `json:"managedBrowsers,omitempty"`
	Uptime          int64 `json:"uptime"` // seconds
}

const maxMetadata = 32

// ValidateRegister checks a register body and returns it normalised.
func ValidateRegister(req RegisterRequest) (RegisterRequest, *APIError) {
	if err := auth.ValidateUserID(req.UserID); err != nil {
		return req, apiError(http.StatusBadRequest, CodeInvalidUserID, err.Error())
	}
	if req.BrowserURL == "" {
		return req, apiError(http.StatusBadRequest, CodeInvalidBrowserURL, "browserURL is required, e.g. http://127.0.0.1:9222 (the port Chrome was started with --remote-debugging-port)")
	}
	u, err := router.ValidateBrowserURL(req.BrowserURL)
	if err != nil {
		return req, apiError(http.StatusBadRequest, CodeInvalidBrowserURL, err.Error())
	}
	req.BrowserURL = u
	if len(req.Metadata) > maxMetadata {
		return req, apiError(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("metadata has %d keys; at most %d are allowed", len(req.Metadata), maxMetadata))
	}
	for k, v := range req.Metadata {
		if k == "" || len(k) > 64 || len(v) > 256 {
			return req, apiError(http.StatusBadRequest, CodeInvalidRequest, "metadata keys must be 1-64 characters and values at most 256")
		}
	}
	if req.Headers, err = router.ValidateHeaders(req.Headers); err != nil {
		return req, apiError(http.StatusBadRequest, CodeInvalidRequest, "headers: "+err.Error())
	}
	return req, nil
}

func (s *Server) register(c echo.Context) error {
	if err := s.requirePerm(c, auth.PermWrite, "registering a browser"); err != nil {
		return err
	}
	var req RegisterRequest
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if tooLarge(err) {
			return err
		}
		return apiError(http.StatusBadRequest, CodeInvalidRequest, "the body must be JSON like {\"userId\":\"alice\",\"browserURL\":\"http://127.0.0.1:9222\"}: "+jsonProblem(err))
	}
	req, aerr := ValidateRegister(req)
	if aerr != nil {
		return aerr
	}
	if err := s.forbidUnlessSelf(c, req.UserID); err != nil {
		return err
	}
	ctx := c.Request().Context()
	p, _ := principalOf(c)
	addrs, err := s.browserPolicy().ResolveURL(ctx, req.BrowserURL)
	if err != nil {
		s.deny(c, p.UserID, "browser URL refused: "+err.Error())
		return apiError(http.StatusBadRequest, CodeInvalidBrowserURL, err.Error()+"; register the DevTools URL of your own Chrome")
	}
	// The sessionToken never outlives or outranks the caller, and dies with
	// the API key the caller's credential came from. It is minted before
	// anything is stored, so a refusal changes nothing.
	token, err := s.cfg.Auth.IssueSession(p, req.UserID, s.cfg.SessionTokenTTL)
	if errors.Is(err, auth.ErrExpiredToken) {
		s.deny(c, p.UserID, "credential expires now")
		return apiError(http.StatusUnauthorized, CodeUnauthorized, "your token expires now, so it cannot mint a sessionToken; issue a new one and register again")
	}
	if err != nil {
		return fmt.Errorf("register %s: issue token: %w", req.UserID, err)
	}
	prev, prevErr := s.cfg.Store.Get(ctx, req.UserID)
	reg, err := s.cfg.Store.Put(ctx, router.Registration{UserID: req.UserID, BrowserURL: req.BrowserURL, Metadata: req.Metadata, Headers: req.Headers, Addrs: addrs})
	if errors.Is(err, router.ErrConflict) {
		return s.refuseTaken(c, p.UserID, "the browser is registered by another user (same endpoint)")
	}
	if err != nil {
		return fmt.Errorf("register %s: %w", req.UserID, err)
	}
	b := s.cfg.Pool.EnsureEndpoint(reg.UserID, browserpool.Endpoint{URL: reg.BrowserURL, Headers: reg.Headers, Registered: reg.Since(), Addrs: addrs})
	st := b.WaitSettled(ctx, s.cfg.RegisterWait)
	if st.State == browserpool.StateConflict {
		s.undoRegister(ctx, reg.UserID, prev, prevErr)
		return s.refuseTaken(c, p.UserID, "the browser is registered by another user (same running browser)")
	}
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "register").Str("request_id", requestID(c)).
		Str("by", p.UserID).Str("user", reg.UserID).Str("browser", router.Redact(reg.BrowserURL)).
		Strs("browser_headers", router.HeaderNames(reg.Headers)).Str("browser_status", string(st.State)).Send()

	msg := "Browser connected. Give sessionToken to your IDE as its bearer token (Authorization: Bearer ...) for /sse or /mcp."
	if st.State != browserpool.StateConnected {
		msg = "Registered, but the browser is not reachable yet"
		if st.LastError != "" {
			msg += " (" + st.LastError + ")"
		}
		msg += "; the proxy keeps trying. Start Chrome with --remote-debugging-port and --user-data-dir, and check the URL."
	}
	return c.JSON(http.StatusCreated, RegisterResponse{
		Success: true, UserID: reg.UserID, BrowserURL: router.Redact(reg.BrowserURL),
		BrowserStatus: string(st.State), SessionToken: token, Message: msg,
		BrowserHeaders: router.HeaderNames(reg.Headers),
	})
}

func jsonProblem(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field") {
		return strings.TrimPrefix(msg, "json: ")
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %s must be a %s", te.Field, te.Type)
	case msg == "EOF":
		return "empty body"
	}
	return "invalid JSON"
}

// userParam returns the route's :userId once it is a valid user ID that the
// caller may act for (itself, or anyone for an admin).
func (s *Server) userParam(c echo.Context) (string, error) {
	userID := c.Param("userId")
	if err := auth.ValidateUserID(userID); err != nil {
		return "", apiError(http.StatusBadRequest, CodeInvalidUserID, err.Error())
	}
	if err := s.forbidUnlessSelf(c, userID); err != nil {
		return "", err
	}
	return userID, nil
}

func (s *Server) userStatus(c echo.Context) error {
	userID, err := s.userParam(c)
	if err != nil {
		return err
	}
	reg, err := s.cfg.Store.Get(c.Request().Context(), userID)
	if errors.Is(err, router.ErrNotFound) && s.cfg.Pool.ManagedEnabled() {
		return c.JSON(http.StatusOK, s.managedStatus(userID))
	}
	if errors.Is(err, router.ErrNotFound) {
		return apiError(http.StatusNotFound, CodeNotFound, userID+" has no registered browser; POST /api/register first")
	}
	if err != nil {
		return fmt.Errorf("status %s: %w", userID, err)
	}
	out := UserStatus{UserID: userID, BrowserURL: router.Redact(reg.BrowserURL), BrowserStatus: string(browserpool.StateDisconnected)}
	if b, ok := s.cfg.Pool.Get(userID); ok {
		st := b.Status()
		out.BrowserStatus, out.BrowserError = string(st.State), st.LastError
	}
	out.Tunnel = s.tunnelStatus(reg)
	n, last := s.cfg.Sessions.UserStats(userID)
	out.ActiveSessions = n
	if !last.IsZero() {
		out.LastActivity = &last
	}
	return writeStatus(c, http.StatusOK, &out)
}

// managedStatus is the status of a user with no registration when the
// proxy runs managed browsers.
func (s *Server) managedStatus(userID string) UserStatus {
	out := UserStatus{UserID: userID, BrowserURL: "managed", BrowserStatus: string(browserpool.StateDisconnected), Managed: true}
	if b, ok := s.cfg.Pool.Get(userID); ok && b.Managed() {
		st := b.Status()
		out.BrowserStatus, out.BrowserError = string(st.State), st.LastError
	}
	n, last := s.cfg.Sessions.UserStats(userID)
	out.ActiveSessions = n
	if !last.IsZero() {
		out.LastActivity = &last
	}
	return out
}

func (s *Server) deleteUser(c echo.Context) error {
	if err := s.requirePerm(c, auth.PermWrite, "deleting a registration"); err != nil {
		return err
	}
	userID, err := s.userParam(c)
	if err != nil {
		return err
	}
	err = s.cfg.Store.Delete(c.Request().Context(), userID)
	if b, ok := s.cfg.Pool.Get(userID); errors.Is(err, router.ErrNotFound) && ok && b.Managed() {
		// No registration, a managed browser: stopping it is the reset.
		closed := s.cfg.Sessions.CloseUser(userID)
		s.cfg.Pool.Remove(userID)
		p, _ := principalOf(c)
		s.cfg.Audit.Info().Bool("audit", true).Str("event", "managed_stop").Str("reason", "deleted").Str("request_id", requestID(c)).
			Str("by", p.UserID).Str("user", userID).Int("sessions_closed", closed).Send()
		return c.NoContent(http.StatusNoContent)
	}
	if errors.Is(err, router.ErrNotFound) {
		return apiError(http.StatusNotFound, CodeNotFound, userID+" has no registered browser")
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", userID, err)
	}
	closed := s.cfg.Sessions.CloseUser(userID)
	s.cfg.Pool.Remove(userID)
	tunnelClosed := s.closeUserTunnel(userID)
	p, _ := principalOf(c)
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "unregister").Str("request_id", requestID(c)).
		Str("by", p.UserID).Str("user", userID).Int("sessions_closed", closed).Bool("tunnel_closed", tunnelClosed).Send()
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) health(c echo.Context) error {
	users, err := s.cfg.Store.Count(c.Request().Context())
	status := "ok"
	if err != nil {
		status = "degraded"
	}
	states := map[string]int{}
	for st, n := range s.cfg.Pool.States() {
		states[string(st)] = n
	}
	tunnels, tunnelStates := s.tunnelHealth()
	h := Health{
		Status: status, ActiveSessions: s.cfg.Sessions.Count(), RegisteredUsers: users,
		BrowserConnections: states[string(browserpool.StateConnected)], Browsers: states,
		Tunnels: tunnels, TunnelBrowsers: tunnelStates,
		Uptime: int64(time.Since(s.started).Seconds()),
	}
	if s.cfg.Pool.ManagedEnabled() {
		n := s.cfg.Pool.ManagedCount()
		h.ManagedBrowsers = &n
	}
	return c.JSON(http.StatusOK, h)
}

// ready is the readiness probe: 503 while the store is unreachable or the
// proxy holds its maximum of MCP sessions (new sessions would be refused),
// 200 otherwise.
func (s *Server) ready(c echo.Context) error {
	if err := s.cfg.Store.Ping(c.Request().Context()); err != nil {
		if errors.Is(err, router.ErrUnavailable) {
			return storeUnavailable()
		}
		return apiError(http.StatusServiceUnavailable, CodeInternal, "the registration store is unreachable")
	}
	if s.cfg.Sessions.AtLimit() {
		return &APIError{Status: http.StatusServiceUnavailable, Code: CodeLimitExceeded, RetryAfter: 30,
			Message: "the proxy holds its maximum of MCP sessions (--max-sessions); new sessions go to another instance, or retry later"}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
