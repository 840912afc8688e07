package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// SessionInfo is one open MCP session in GET /api/sessions.
type SessionInfo struct {
	ID           string    `json:"id"`
	UserID       string    `json:"userId"`
	Transport    string    `json:"transport"` // sse, streamable, default (the user's stateless workspace)
	CreatedAt    time.Time `json:"createdAt"`
	AgeSeconds   int64     `json:"ageSeconds"`
	LastActivity time.Time `json:"lastActivity"`
	Calls        uint64    `json:"calls"`
	InUse        bool      `json:"inUse"` // a stream open or a call in flight: never closed to make room
	TabCount     int       `json:"tabCount"`
	Tabs         []TabRef  `json:"tabs"`
}

// TabRef is one page of a session: its pageId, as the tools call it. URLs
// and titles live in the browser and are not fetched for a listing; the
// list_pages tool shows them.
type TabRef struct {
	PageID int  `json:"pageId"`
	Owned  bool `json:"owned"` // opened by the session; false: a tab of the user's it attached to
}

func sessionInfo(in session.Info, now time.Time) SessionInfo {
	out := SessionInfo{
		ID: in.ID, UserID: in.UserID, Transport: in.Transport, CreatedAt: in.CreatedAt,
		AgeSeconds: int64(now.Sub(in.CreatedAt).Seconds()), LastActivity: in.LastActivity,
		Calls: in.Calls, InUse: in.InUse, TabCount: len(in.Tabs), Tabs: make([]TabRef, 0, len(in.Tabs)),
	}
	for _, t := range in.Tabs {
		out.Tabs = append(out.Tabs, TabRef{PageID: t.PageID, Owned: t.Owned})
	}
	return out
}

// listSessions answers GET /api/sessions: the caller's open sessions; an
// admin's answer has every user's, or one user's with ?user=.
func (s *Server) listSessions(c echo.Context) error {
	p, _ := principalOf(c)
	user := c.QueryParam("user")
	if user != "" {
		if err := auth.ValidateUserID(user); err != nil {
			return apiError(http.StatusBadRequest, CodeInvalidUserID, "?user=: "+err.Error())
		}
		if err := s.forbidUnlessSelf(c, user); err != nil {
			return err
		}
	} else if !p.Has(auth.PermAdmin) {
		user = p.UserID
	}
	now := time.Now()
	list := s.cfg.Sessions.List(user)
	out := make([]SessionInfo, 0, len(list))
	for _, in := range list {
		out = append(out, sessionInfo(in, now))
	}
	if user == "" && s.cl != nil && !isForwarded(c) {
		// An admin's list: every instance holds its own sessions.
		for _, body := range s.cl.gather(c.Request().Context(), c.Request(), "/api/sessions") {
			var more []SessionInfo
			if json.Unmarshal(body, &more) == nil {
				out = append(out, more...)
			}
		}
		slices.SortFunc(out, func(a, b SessionInfo) int { return strings.Compare(a.ID, b.ID) })
	}
	return c.JSON(http.StatusOK, out)
}

// maxSessionIDLen bounds the :id of /api/sessions/:id (IDs are 32 hex
// digits, or "default:" and a user ID).
const maxSessionIDLen = 8 + 256

// closeSession answers DELETE /api/sessions/:id: the session's user or an
// admin closes it (its transport first, so that its client gets 404 next and
// re-initialises). Another user's session is answered as unknown, so that
// session IDs cannot be probed.
func (s *Server) closeSession(c echo.Context) error {
	p, _ := principalOf(c)
	id := c.Param("id")
	if id == "" || len(id) > maxSessionIDLen {
		return apiError(http.StatusBadRequest, CodeInvalidRequest, "not a session ID; `GET /api/sessions` lists yours")
	}
	info, ok := s.cfg.Sessions.Get(id)
	if !ok || !p.CanActAs(info.UserID) {
		if ok {
			s.deny(c, p.UserID, "closing another user's session")
		}
		return apiError(http.StatusNotFound, CodeNotFound, "no open session of yours with that ID; `GET /api/sessions` lists them")
	}
	if !s.cfg.Sessions.End(id, session.CloseAPI) {
		return apiError(http.StatusNotFound, CodeNotFound, "no open session of yours with that ID; `GET /api/sessions` lists them")
	}
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "session_close_api").Str("request_id", requestID(c)).
		Str("by", p.UserID).Str("user", info.UserID).Str("session", id).Send()
	return c.NoContent(http.StatusNoContent)
}

// CreateAPIKeyRequest is the body of POST /api/apikeys.
type CreateAPIKeyRequest struct {
	UserID string   `json:"user,omitempty"`  // default: the caller
	Perms  []string `json:"perms,omitempty"` // default: read, write, script
	Name   string   `json:"name,omitempty"`
	// Toolsets limits the key to these tool groups (some of
	// tools.Toolsets, or "all"); absent, the key gets the caller's own,
	// every toolset for a caller without a limit.
	Toolsets []string `json:"toolsets,omitempty"`
}

// CreatedAPIKey is the answer of POST /api/apikeys: the key, shown this
// once, and its record.
type CreatedAPIKey struct {
	Key string `json:"key"`
	APIKeyInfo
}

// createAPIKey answers POST /api/apikeys: a new key while the proxy runs.
// Its perms are at most what the caller may hand to its user (as for a
// sessionToken, auth.SessionPerms): a user's own perms for themselves, and
// for another user (admins only) never admin or browser:all-tabs.
func (s *Server) createAPIKey(c echo.Context) error {
	p, _ := principalOf(c)
	var req CreateAPIKeyRequest
	if err := c.Bind(&req); err != nil {
		if tooLarge(err) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return apiError(http.StatusBadRequest, CodeInvalidRequest, `the body must be JSON: {"user":"alice","perms":["browser:read"],"name":"ci"}, every field optional`)
	}
	if p.KeyID != "" {
		// A key made with a key (or with a sessionToken minted through one)
		// would live on after its parent is revoked.
		s.deny(c, p.UserID, "API key creation with an API key credential")
		return apiError(http.StatusForbidden, CodeForbidden, "an API key, or a token minted with one, cannot create API keys (the new key would outlive its revocation); sign in with a user token, or ask an admin")
	}
	if p.Minted {
		// A key never expires; the sessionToken is capped at its parent's exp.
		s.deny(c, p.UserID, "API key creation with a sessionToken")
		return apiError(http.StatusForbidden, CodeForbidden, "a sessionToken (from POST /api/register) cannot create API keys (the key would outlive the token and the credential it came from); use your own user token, or ask an admin")
	}
	if req.UserID == "" {
		req.UserID = p.UserID
	}
	if err := auth.ValidateUserID(req.UserID); err != nil {
		return apiError(http.StatusBadRequest, CodeInvalidUserID, err.Error())
	}
	if err := s.forbidUnlessSelf(c, req.UserID); err != nil {
		return err
	}
	perms, err := auth.ParsePerms(strings.Join(req.Perms, ","))
	if err != nil {
		return apiError(http.StatusBadRequest, CodeInvalidRequest, "perms: "+err.Error())
	}
	if req.Perms != nil && perms == nil {
		return apiError(http.StatusBadRequest, CodeInvalidRequest, "perms is empty: name at least one of "+strings.Join(auth.AllPerms(), ", ")+", or leave perms out for the default")
	}
	if perms == nil {
		perms = auth.DefaultPerms()
	}
	allowed := auth.SessionPerms(p, req.UserID)
	for _, perm := range perms {
		if !slices.Contains(allowed, perm) {
			s.deny(c, p.UserID, "API key perms beyond the caller's")
			return apiError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("you may not grant %s to a key for %s: a key holds at most the perms you may hand that user (%s); ask for fewer perms", perm, req.UserID, strings.Join(allowed, ", ")))
		}
	}
	toolsets, aerr := s.keyToolsets(c, p, req.Toolsets)
	if aerr != nil {
		return aerr
	}
	key, rec, err := auth.NewAPIKeyWithToolsets(req.UserID, perms, toolsets, req.Name)
	if err != nil {
		return apiError(http.StatusBadRequest, CodeInvalidRequest, err.Error())
	}
	if err := s.cfg.Store.CreateAPIKey(c.Request().Context(), rec); err != nil {
		if errors.Is(err, router.ErrAPIKeyExists) {
			return apiError(http.StatusConflict, CodeConflict, "key ID collision; retry")
		}
		return fmt.Errorf("create API key: %w", err)
	}
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "apikey_create").Str("request_id", requestID(c)).
		Str("by", p.UserID).Str("user", rec.UserID).Str("key", rec.ID).Strs("perms", rec.Perms).Strs("toolsets", rec.Toolsets).Send()
	return c.JSON(http.StatusCreated, CreatedAPIKey{Key: key, APIKeyInfo: keyInfo(rec)})
}

// keyToolsets returns the toolsets of a key that p asks for with names
// (nil: every toolset): names checked against the known ones, and at most
// p's own toolsets when p is limited to some; no names, p's own.
func (s *Server) keyToolsets(c echo.Context, p auth.Principal, names []string) ([]string, *APIError) {
	limited := p.Toolsets != nil && !slices.Contains(p.Toolsets, "all")
	if names == nil {
		if !limited {
			return nil, nil
		}
		return slices.Clone(p.Toolsets), nil
	}
	sets, err := tools.ParseToolsets(names)
	if err != nil {
		return nil, apiError(http.StatusBadRequest, CodeInvalidRequest, "toolsets: "+err.Error())
	}
	if !limited {
		return sets, nil
	}
	have := strings.Join(p.Toolsets, ",")
	if have == "" {
		have = "none"
	}
	if sets == nil {
		s.deny(c, p.UserID, "API key toolsets beyond the caller's")
		return nil, apiError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("you may not create a key with every toolset: your credential is limited to the toolsets %s; name some of them, or leave toolsets out for yours", have))
	}
	for _, ts := range sets {
		if !slices.Contains(p.Toolsets, ts) {
			s.deny(c, p.UserID, "API key toolsets beyond the caller's")
			return nil, apiError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("you may not grant the %s toolset to a key: your credential is limited to the toolsets %s; name some of them, or leave toolsets out for yours", ts, have))
		}
	}
	return sets, nil
}

// DetailedHealth is the answer of GET /health/detailed (admins only).
type DetailedHealth struct {
	Health
	BrowserDetails []BrowserHealth `json:"browserDetails"`
	Limits         LimitsInUse     `json:"limits"`
}

// BrowserHealth is one registered browser's connection.
type BrowserHealth struct {
	UserID            string     `json:"userId"`
	BrowserURL        string     `json:"browserURL"` // redacted
	State             string     `json:"state"`
	LastError         string     `json:"lastError,omitempty"`
	ReconnectAttempts int        `json:"reconnectAttempts"` // failed attempts since the last success
	ConnectedAt       *time.Time `json:"connectedAt,omitempty"`
	LastHealthCheck   *time.Time `json:"lastHealthCheck,omitempty"` // last successful check (or the connect)
	Version           string     `json:"version,omitempty"`
	Sessions          int        `json:"sessions"`
}

// LimitsInUse is what the proxy uses of its limits.
type LimitsInUse struct {
	Sessions           int            `json:"sessions"`
	MaxSessions        int            `json:"maxSessions"`
	MaxSessionsPerUser int            `json:"maxSessionsPerUser"`
	SessionsPerUser    map[string]int `json:"sessionsPerUser"`
	SessionsInUse      int            `json:"sessionsInUse"` // a stream open or something in flight
	Streams            int            `json:"streams"`       // open GET /sse and GET /mcp streams
	StreamsPerUser     map[string]int `json:"streamsPerUser"`
	MaxStreamsPerUser  int            `json:"maxStreamsPerUser"`
	StaleTimeout       string         `json:"staleSessionTimeout"`
	IdleTimeout        string         `json:"idleTimeout"`
	SessionLifetime    string         `json:"sessionLifetime"`
}

// healthDetailed answers GET /health/detailed, for admins: every
// browser's connection, and the sessions and streams against the limits.
func (s *Server) healthDetailed(c echo.Context) error {
	if err := s.requirePerm(c, auth.PermAdmin, "GET /health/detailed"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	regs, err := s.cfg.Store.List(ctx)
	if err != nil {
		return fmt.Errorf("detailed health: %w", err)
	}
	u := s.cfg.Sessions.Usage()
	out := DetailedHealth{BrowserDetails: make([]BrowserHealth, 0, len(regs))}
	out.Status, out.ActiveSessions, out.RegisteredUsers = "ok", u.Sessions, len(regs)
	out.Browsers, out.Uptime = map[string]int{}, int64(time.Since(s.started).Seconds())
	for st, n := range s.cfg.Pool.States() {
		out.Browsers[string(st)] = n
	}
	out.BrowserConnections = out.Browsers[string(browserpool.StateConnected)]
	for _, r := range regs {
		bh := BrowserHealth{UserID: r.UserID, BrowserURL: router.Redact(r.BrowserURL), State: string(browserpool.StateDisconnected), Sessions: u.PerUser[r.UserID]}
		if b, ok := s.cfg.Pool.Get(r.UserID); ok {
			st := b.Status()
			bh.State, bh.LastError, bh.ReconnectAttempts, bh.Version = string(st.State), st.LastError, st.Attempts, st.Version
			if !st.ConnectedAt.IsZero() {
				bh.ConnectedAt = &st.ConnectedAt
				last := st.ConnectedAt
				if st.LastCheck.After(last) {
					last = st.LastCheck
				}
				bh.LastHealthCheck = &last
			}
		}
		out.BrowserDetails = append(out.BrowserDetails, bh)
	}
	streams, perUser := s.streams.usage()
	out.Limits = LimitsInUse{
		Sessions: u.Sessions, MaxSessions: u.MaxSessions, MaxSessionsPerUser: u.MaxSessionsPerUser,
		SessionsPerUser: u.PerUser, SessionsInUse: u.InUse,
		Streams: streams, StreamsPerUser: perUser, MaxStreamsPerUser: s.cfg.MaxStreams,
		StaleTimeout: u.StaleTimeout.String(), IdleTimeout: u.IdleTimeout.String(), SessionLifetime: u.Lifetime.String(),
	}
	return c.JSON(http.StatusOK, out)
}
