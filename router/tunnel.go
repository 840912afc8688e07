package router

import (
	"strings"
)

// TunnelScheme is the scheme of the browser URL of a tunnelled registration.
const TunnelScheme = "tunnel"

// TunnelURL returns the browser URL of userID's tunnelled registration,
// tunnel://<userID>. Only the proxy's tunnel route creates it: it is what
// the user proved by dialling GET /api/tunnel with their own credential, so
// ValidateBrowserURL (and with it POST /api/register) refuses the scheme.
func TunnelURL(userID string) string { return TunnelScheme + "://" + userID }

// TunnelUser reports whether raw is a tunnel URL (exactly tunnel://<user>)
// and whose.
func TunnelUser(raw string) (string, bool) {
	user, ok := strings.CutPrefix(raw, TunnelScheme+"://")
	if !ok || user == "" || strings.ContainsAny(user, "/?#@:%") {
		return "", false
	}
	return user, true
}

// validateStoredURL is ValidateBrowserURL for a record about to be stored:
// it also accepts the tunnel URL of the record's own user, and only that,
// so that no registration can name another user's tunnel.
func validateStoredURL(r Registration) (string, error) {
	if user, ok := TunnelUser(r.BrowserURL); ok && user == r.UserID {
		return r.BrowserURL, nil
	}
	return ValidateBrowserURL(r.BrowserURL)
}
