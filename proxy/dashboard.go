package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/browserpool"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/web"
)

// dashboardCSP allows the dashboard its own scripts, styles and JSON calls
// and nothing else: no inline script, no other origin, no framing.
// Thumbnails are fetched with the bearer header and shown as blob: URLs.
// With OAuth sign-in configured, connect-src also allows the origin of the
// issuer's token endpoint, where oauth.js exchanges its code.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; " +
	"connect-src 'self'%s; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// csp returns the dashboard's Content-Security-Policy: dashboardCSP, with
// the token endpoint's origin when the dashboard signs in through OAuth and
// the issuer's endpoints are known (discovery is bounded to a short wait:
// without them sign-in is unavailable anyway).
func (s *Server) csp(ctx context.Context) string {
	o := s.cfg.OAuth
	if o.Verifier == nil || o.DashboardClientID == "" {
		return fmt.Sprintf(dashboardCSP, "")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ep, err := o.Verifier.Endpoints(ctx)
	if err != nil {
		return fmt.Sprintf(dashboardCSP, "")
	}
	u, err := url.Parse(ep.Token)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Sprintf(dashboardCSP, "")
	}
	return fmt.Sprintf(dashboardCSP, " "+u.Scheme+"://"+u.Host)
}

// routeDashboard serves the dashboard's embedded files: GET / is
// index.html, and every other file is served at its own name. The files
// need no credentials; the JSON routes they call do.
func (s *Server) routeDashboard(e *echo.Echo) {
	files := web.Static()
	_ = fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		ctype := mime.TypeByExtension(path.Ext(name))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		page := path.Ext(name) == ".html"
		h := func(c echo.Context) error {
			hd := c.Response().Header()
			// Only the page's own policy governs what its scripts may
			// fetch: the issuer's origin (which may need discovery) is
			// looked up for it alone, not for every script and style.
			csp := fmt.Sprintf(dashboardCSP, "")
			if page {
				csp = s.csp(c.Request().Context())
			}
			hd.Set("Content-Security-Policy", csp)
			hd.Set("X-Content-Type-Options", "nosniff")
			hd.Set("X-Frame-Options", "DENY")
			hd.Set("Referrer-Policy", "no-referrer")
			hd.Set("Cache-Control", "no-cache")
			return c.Blob(http.StatusOK, ctype, data)
		}
		e.GET("/"+name, h)
		if name == "index.html" {
			e.GET("/", h)
		}
		return nil
	})
}

// Overview is the answer of GET /api/overview and the data of each
// overview event of GET /api/events: what the caller may see.
type Overview struct {
	Me       Me             `json:"me"`
	Users    []UserOverview `json:"users"`    // every user for an admin, else the caller alone
	Sessions []SessionInfo  `json:"sessions"` // the open sessions of those users
}

// Me describes the caller's credential, so that the page offers only what
// it may do.
type Me struct {
	UserID    string     `json:"userId"`
	Perms     []string   `json:"perms"`
	Admin     bool       `json:"admin"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Derived: an API key, or a token minted from a credential; it cannot
	// create API keys or tokens (POST /api/apikeys, POST /api/tokens).
	Derived bool `json:"derived"`
}

// UserOverview is one user's row of the dashboard.
type UserOverview struct {
	UserID          string        `json:"userId"`
	Registered      bool          `json:"registered"`
	BrowserURL      string        `json:"browserURL,omitempty"` // redacted
	BrowserStatus   string        `json:"browserStatus"`        // a browserStatus, conflict, or "unregistered"
	BrowserError    string        `json:"browserError,omitempty"`
	Tunnel          *TunnelStatus `json:"tunnel,omitempty"`
	Sessions        int           `json:"sessions"`
	LastActivity    *time.Time    `json:"lastActivity,omitempty"`
	CallsPerMinute  int           `json:"callsPerMinute"`  // tool calls in the last minute
	ErrorsPerMinute int           `json:"errorsPerMinute"` // of which failed or were refused
}

// overviewOf builds what p may see: every user for an admin, else p's own.
func (s *Server) overviewOf(ctx context.Context, p auth.Principal) (Overview, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := Overview{Me: Me{UserID: p.UserID, Perms: p.Perms, Admin: p.Has(auth.PermAdmin), Derived: p.KeyID != "" || p.Minted}}
	if out.Me.Perms == nil {
		out.Me.Perms = []string{}
	}
	if !p.Expires.IsZero() {
		exp := p.Expires.UTC()
		out.Me.ExpiresAt = &exp
	}
	var regs []router.Registration
	filter := p.UserID
	if out.Me.Admin {
		filter = ""
		var err error
		if regs, err = s.cfg.Store.List(ctx); err != nil {
			return out, fmt.Errorf("overview: %w", err)
		}
	} else {
		reg, err := s.cfg.Store.Get(ctx, p.UserID)
		switch {
		case err == nil:
			regs = append(regs, reg)
		case !errors.Is(err, router.ErrNotFound):
			return out, fmt.Errorf("overview: %w", err)
		}
	}
	now := time.Now()
	list := s.cfg.Sessions.List(filter)
	out.Sessions = make([]SessionInfo, 0, len(list))
	for _, in := range list {
		out.Sessions = append(out.Sessions, sessionInfo(in, now))
	}
	seen := map[string]bool{}
	for _, r := range regs {
		seen[r.UserID] = true
		u := UserOverview{UserID: r.UserID, Registered: true, BrowserURL: router.Redact(r.BrowserURL),
			BrowserStatus: string(browserpool.StateDisconnected), Tunnel: s.tunnelStatus(r)}
		if b, ok := s.cfg.Pool.Get(r.UserID); ok {
			st := b.Status()
			u.BrowserStatus, u.BrowserError = string(st.State), st.LastError
		}
		out.Users = append(out.Users, u)
	}
	// Users with sessions and no registration (unregistered since, or a
	// non-admin who never registered) still get a row.
	extra := []string{}
	if !out.Me.Admin && !seen[p.UserID] {
		extra = append(extra, p.UserID)
		seen[p.UserID] = true
	}
	for _, in := range list {
		if !seen[in.UserID] {
			extra = append(extra, in.UserID)
			seen[in.UserID] = true
		}
	}
	for _, id := range extra {
		out.Users = append(out.Users, UserOverview{UserID: id, BrowserStatus: "unregistered"})
	}
	for i := range out.Users {
		u := &out.Users[i]
		n, last := s.cfg.Sessions.UserStats(u.UserID)
		u.Sessions = n
		if !last.IsZero() {
			last = last.UTC()
			u.LastActivity = &last
		}
		u.CallsPerMinute, u.ErrorsPerMinute = s.cfg.Sessions.CallRates(u.UserID)
	}
	slices.SortFunc(out.Users, func(a, b UserOverview) int { return strings.Compare(a.UserID, b.UserID) })
	if out.Users == nil {
		out.Users = []UserOverview{}
	}
	return out, nil
}

// clusterOverview is overviewOf, with an admin's view in shared mode
// gathered from every instance (a non-admin's is served at their home).
func (s *Server) clusterOverview(c echo.Context, p auth.Principal) (Overview, error) {
	ctx := c.Request().Context()
	ov, err := s.overviewOf(ctx, p)
	if err != nil || s.cl == nil || !ov.Me.Admin || isForwarded(c) {
		return ov, err
	}
	for _, body := range s.cl.gather(ctx, c.Request(), "/api/overview") {
		var peer Overview
		if json.Unmarshal(body, &peer) == nil {
			mergeOverview(&ov, peer)
		}
	}
	slices.SortFunc(ov.Sessions, func(a, b SessionInfo) int { return strings.Compare(a.ID, b.ID) })
	return ov, nil
}

// stateRank orders browser states for mergeOverview: the instance that
// holds a user's browser reports it; the others say disconnected.
func stateRank(st string) int {
	switch browserpool.State(st) {
	case browserpool.StateConnected:
		return 3
	case browserpool.StateDisconnected, "unregistered":
		return 0
	case browserpool.StateConflict, browserpool.StateFailed:
		return 2
	}
	return 1
}

// mergeOverview folds another instance's overview (its own sessions and
// browsers, every registration) into ov.
func mergeOverview(ov *Overview, peer Overview) {
	ov.Sessions = append(ov.Sessions, peer.Sessions...)
	at := make(map[string]int, len(ov.Users))
	for i, u := range ov.Users {
		at[u.UserID] = i
	}
	for _, pu := range peer.Users {
		i, ok := at[pu.UserID]
		if !ok {
			at[pu.UserID] = len(ov.Users)
			ov.Users = append(ov.Users, pu)
			continue
		}
		u := &ov.Users[i]
		u.Registered = u.Registered || pu.Registered
		if u.BrowserURL == "" {
			u.BrowserURL = pu.BrowserURL
		}
		if stateRank(pu.BrowserStatus) > stateRank(u.BrowserStatus) {
			u.BrowserStatus, u.BrowserError = pu.BrowserStatus, pu.BrowserError
		}
		if pu.Tunnel != nil && (u.Tunnel == nil || pu.Tunnel.Connected && !u.Tunnel.Connected) {
			u.Tunnel = pu.Tunnel
		}
		u.Sessions += pu.Sessions
		if pu.LastActivity != nil && (u.LastActivity == nil || pu.LastActivity.After(*u.LastActivity)) {
			u.LastActivity = pu.LastActivity
		}
		u.CallsPerMinute += pu.CallsPerMinute
		u.ErrorsPerMinute += pu.ErrorsPerMinute
	}
	slices.SortFunc(ov.Users, func(a, b UserOverview) int { return strings.Compare(a.UserID, b.UserID) })
}

// overview answers GET /api/overview.
func (s *Server) overview(c echo.Context) error {
	p, _ := principalOf(c)
	out, err := s.clusterOverview(c, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// events answers GET /api/events: an SSE stream of the caller's overview,
// sent at once and then whenever it changes (checked every
// EventsInterval), with a comment line every KeepAlive. The page reads it
// with fetch(), which sends the Authorization header, so the long-lived
// token never goes into a URL and no one-time ticket has to be kept. The
// stream counts against the user's stream limit and ends when the client
// goes, at the credential's exp, when the API key behind it is revoked,
// and at shutdown.
func (s *Server) events(c echo.Context) error {
	p, _ := principalOf(c)
	ctx := c.Request().Context()
	w := c.Response()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	send := func(event string, data []byte) bool {
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return false
		}
		w.Flush()
		return true
	}
	end := func(why string) error {
		b, _ := json.Marshal(map[string]string{"reason": why})
		send("end", b)
		return nil
	}
	var expired <-chan time.Time
	if !p.Expires.IsZero() {
		t := time.NewTimer(time.Until(p.Expires))
		defer t.Stop()
		expired = t.C
	}
	tick := time.NewTicker(s.cfg.EventsInterval)
	defer tick.Stop()
	keep := time.NewTicker(s.cfg.KeepAlive)
	defer keep.Stop()
	var last []byte
	push := func() bool {
		ov, err := s.clusterOverview(c, p)
		if err != nil {
			s.log.Warn().Err(err).Str("request_id", requestID(c)).Msg("dashboard events: overview failed")
			return true // the next tick tries again
		}
		key := overviewKey(ov)
		if bytes.Equal(key, last) {
			return true
		}
		last = key
		data, _ := json.Marshal(ov)
		return send("overview", data)
	}
	if !push() {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.eventsEnd.Done():
			return end("the proxy is shutting down; reconnect in a few seconds")
		case <-expired:
			return end("your token expired; sign in again")
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			w.Flush()
		case <-tick.C:
			if p.KeyID != "" {
				if err := auth.CheckAPIKeyLive(ctx, s.cfg.Store, p.KeyID); errors.Is(err, auth.ErrInvalidToken) {
					return end("the API key of your credential was revoked; sign in again")
				}
			}
			if !push() {
				return nil
			}
		}
	}
}

// overviewKey is what decides whether an overview changed: its JSON
// without the session ages, which change every second.
func overviewKey(ov Overview) []byte {
	ov.Sessions = slices.Clone(ov.Sessions)
	for i := range ov.Sessions {
		ov.Sessions[i].AgeSeconds = 0
	}
	b, _ := json.Marshal(ov)
	return b
}

// Thumbnail widths of GET /api/sessions/:id/tabs/:pageId/screenshot.
const (
	thumbWidth    = 320
	thumbMinWidth = 80
	thumbMaxWidth = 640
)

// tabScreenshot answers GET /api/sessions/:id/tabs/:pageId/screenshot: a
// small JPEG of what a session's tab shows, for its user or an admin, with
// browser:read. It does not navigate, focus or resize the tab. Another
// user's session is answered as unknown, as by DELETE /api/sessions/:id.
func (s *Server) tabScreenshot(c echo.Context) error {
	if err := s.requirePerm(c, auth.PermRead, "a tab's screenshot"); err != nil {
		return err
	}
	p, _ := principalOf(c)
	id := c.Param("id")
	if id == "" || len(id) > maxSessionIDLen {
		return apiError(http.StatusBadRequest, CodeInvalidRequest, "not a session ID; `GET /api/sessions` lists yours")
	}
	pageID, err := strconv.Atoi(c.Param("pageId"))
	if err != nil || pageID <= 0 {
		return apiError(http.StatusBadRequest, CodeInvalidRequest, "pageId must be a positive integer, a tab's pageId from `GET /api/sessions`")
	}
	width := thumbWidth
	if q := c.QueryParam("width"); q != "" {
		if width, err = strconv.Atoi(q); err != nil || width < thumbMinWidth || width > thumbMaxWidth {
			return apiError(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("width must be an integer from %d to %d (CSS pixels), or left out for %d", thumbMinWidth, thumbMaxWidth, thumbWidth))
		}
	}
	info, ok := s.cfg.Sessions.Get(id)
	if !ok || !p.CanActAs(info.UserID) {
		if ok {
			s.deny(c, p.UserID, "screenshot of another user's session")
		}
		return apiError(http.StatusNotFound, CodeNotFound, "no open session of yours with that ID; `GET /api/sessions` lists them")
	}
	img, err := s.cfg.Sessions.Thumbnail(c.Request().Context(), id, pageID, width)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return apiError(http.StatusNotFound, CodeNotFound, "the session closed; `GET /api/sessions` lists the open ones")
	case errors.Is(err, session.ErrPageNotFound):
		return apiError(http.StatusNotFound, CodeNotFound, fmt.Sprintf("page %d is not an open page of that session; `GET /api/sessions` lists its tabs", pageID))
	case err != nil:
		return apiError(http.StatusServiceUnavailable, CodeBrowserUnavailable, "could not take the screenshot: "+err.Error())
	}
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "tab_screenshot").Str("request_id", requestID(c)).
		Str("by", p.UserID).Str("user", info.UserID).Str("session", id).Int("page", pageID).Send()
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, "image/jpeg", img)
}

// IssueTokenRequest is the body of POST /api/tokens.
type IssueTokenRequest struct {
	Perms []string `json:"perms,omitempty"` // default: all of the caller's
	TTL   string   `json:"ttl,omitempty"`   // a Go duration, e.g. "30m"; default 1h
}

// IssuedToken is the answer of POST /api/tokens: the token, shown this
// once.
type IssuedToken struct {
	Token     string    `json:"token"`
	UserID    string    `json:"userId"`
	Perms     []string  `json:"perms"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// defaultIssuedTTL is the lifetime of a token of POST /api/tokens that
// names none.
const defaultIssuedTTL = time.Hour

// issueToken answers POST /api/tokens: a bearer token for the caller
// itself, e.g. for an IDE, with at most the caller's perms, expiring at
// most when the caller's credential does and at most SessionTokenTTL from
// now. As for POST /api/apikeys, an API key or a token minted from a
// credential may not make one.
func (s *Server) issueToken(c echo.Context) error {
	p, _ := principalOf(c)
	var req IssueTokenRequest
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if tooLarge(err) {
			return err
		}
		return apiError(http.StatusBadRequest, CodeInvalidRequest, `the body must be JSON like {"perms":["browser:read"],"ttl":"1h"}, every field optional: `+jsonProblem(err))
	}
	if p.KeyID != "" {
		s.deny(c, p.UserID, "token issue with an API key credential")
		return apiError(http.StatusForbidden, CodeForbidden, "an API key, or a token minted with one, cannot issue tokens; sign in with a user token, or ask an admin")
	}
	if p.Minted {
		s.deny(c, p.UserID, "token issue with a sessionToken")
		return apiError(http.StatusForbidden, CodeForbidden, "a token minted by the proxy (sessionToken or POST /api/tokens) cannot issue tokens; use your own user token, or ask an admin")
	}
	ttl := defaultIssuedTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return apiError(http.StatusBadRequest, CodeInvalidRequest, `ttl must be a positive duration like "30m" or "8h"`)
		}
		ttl = d
	}
	if ttl > s.cfg.SessionTokenTTL {
		return apiError(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("ttl %s is longer than this proxy allows (%s); ask for less", ttl, s.cfg.SessionTokenTTL))
	}
	var perms []string
	if req.Perms != nil {
		var err error
		if perms, err = auth.ParsePerms(strings.Join(req.Perms, ",")); err != nil {
			return apiError(http.StatusBadRequest, CodeInvalidRequest, "perms: "+err.Error())
		}
		if perms == nil {
			return apiError(http.StatusBadRequest, CodeInvalidRequest, "perms is empty: name at least one of yours ("+strings.Join(p.Perms, ", ")+"), or leave perms out for all of them")
		}
	}
	tok, exp, err := s.cfg.Auth.IssueDerived(p, perms, ttl)
	switch {
	case errors.Is(err, auth.ErrPermsBeyondParent):
		s.deny(c, p.UserID, "token perms beyond the caller's")
		return apiError(http.StatusForbidden, CodeForbidden, fmt.Sprintf("a token holds at most your own perms (%s); ask for fewer", strings.Join(p.Perms, ", ")))
	case errors.Is(err, auth.ErrExpiredToken):
		s.deny(c, p.UserID, "credential expires now")
		return apiError(http.StatusUnauthorized, CodeUnauthorized, "your token expires now, so it cannot issue another; sign in with a new one")
	case err != nil:
		return fmt.Errorf("issue token for %s: %w", p.UserID, err)
	}
	if perms == nil {
		perms = auth.SessionPerms(p, p.UserID)
	}
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "token_issue").Str("request_id", requestID(c)).
		Str("by", p.UserID).Str("user", p.UserID).Strs("perms", perms).Time("expires", exp).Send()
	return c.JSON(http.StatusCreated, IssuedToken{Token: tok, UserID: p.UserID, Perms: perms, ExpiresAt: exp.UTC()})
}
