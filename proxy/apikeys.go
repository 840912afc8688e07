package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// APIKeyInfo describes an API key in answers; it never carries the secret
// or its hash.
type APIKeyInfo struct {
	ID     string   `json:"id"`
	UserID string   `json:"userId"`
	Perms  []string `json:"perms"`
	Name   string   `json:"name,omitempty"`
	// Toolsets are the tool groups the key may use; null: every one the
	// proxy offers.
	Toolsets  []string  `json:"toolsets"`
	CreatedAt time.Time `json:"createdAt"`
	LastUsed  time.Time `json:"lastUsed,omitzero"`
}

// listAPIKeys answers GET /api/apikeys: the caller's keys, or every key for
// an admin.
func (s *Server) listAPIKeys(c echo.Context) error {
	p, _ := principalOf(c)
	user := p.UserID
	if p.Has(auth.PermAdmin) {
		user = ""
	}
	keys, err := s.cfg.Store.ListAPIKeys(c.Request().Context(), user)
	if err != nil {
		return fmt.Errorf("list API keys: %w", err)
	}
	out := make([]APIKeyInfo, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyInfo(k))
	}
	return c.JSON(http.StatusOK, out)
}

// keyInfo describes k in answers.
func keyInfo(k auth.APIKey) APIKeyInfo {
	return APIKeyInfo{ID: k.ID, UserID: k.UserID, Perms: k.Perms, Name: k.Name, Toolsets: k.Toolsets, CreatedAt: k.CreatedAt, LastUsed: k.LastUsed}
}

// revokeAPIKey answers DELETE /api/apikeys/:id: the key's user or an admin
// revokes it while the proxy runs; its next request is refused.
func (s *Server) revokeAPIKey(c echo.Context) error {
	id := c.Param("id")
	if !auth.ValidAPIKeyID(id) {
		return apiError(http.StatusBadRequest, CodeInvalidRequest, "not an API key ID; `GET /api/apikeys` or `mcp-browser-proxy apikey list` shows them")
	}
	ctx := c.Request().Context()
	k, err := s.cfg.Store.GetAPIKey(ctx, id)
	if errors.Is(err, auth.ErrAPIKeyNotFound) {
		return apiError(http.StatusNotFound, CodeNotFound, "no API key with that ID")
	}
	if err != nil {
		return fmt.Errorf("revoke API key: %w", err)
	}
	if err := s.forbidUnlessSelf(c, k.UserID); err != nil {
		return err
	}
	if err := s.cfg.Store.RevokeAPIKey(ctx, id); err != nil && !errors.Is(err, auth.ErrAPIKeyNotFound) {
		return fmt.Errorf("revoke API key: %w", err)
	}
	p, _ := principalOf(c)
	s.cfg.Audit.Info().Bool("audit", true).Str("event", "apikey_revoke").Str("request_id", requestID(c)).
		Str("by", p.UserID).Str("user", k.UserID).Str("key", id).Send()
	return c.NoContent(http.StatusNoContent)
}
