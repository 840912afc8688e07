package proxy

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/session"
)

// TestDotUserIDsRefused: "." and ".." are no user IDs anywhere the proxy
// takes one, so no per-user state can be named after a path.
func TestDotUserIDsRefused(t *testing.T) {
	files := filepath.Join(t.TempDir(), "files")
	h := newHarnessWith(t, "", session.Config{FilesDir: files})
	admin := h.token("root", "admin", "browser:read", "browser:write")
	for _, id := range []string{".", "..", "..."} {
		var e APIError
		resp := h.do(http.MethodPost, "/api/register", admin, map[string]string{"userId": id, "browserURL": deadURL(t)}, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Code != CodeInvalidUserID {
			t.Errorf("register %q: %d %+v, want 400 %s", id, resp.StatusCode, e, CodeInvalidUserID)
		}
	}
	// The route's :userId, plain (the client sends the path as it is) and
	// percent-encoded.
	for _, path := range []string{"/api/users/../status", "/api/users/./status", "/api/users/.../status", "/api/users/%2E%2E/status"} {
		var e APIError
		resp := h.do(http.MethodGet, path, admin, nil, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Code != CodeInvalidUserID {
			t.Errorf("GET %s: %d %+v, want 400 %s", path, resp.StatusCode, e, CodeInvalidUserID)
		}
	}
	var e APIError
	if resp := h.do(http.MethodDelete, "/api/users/..", admin, nil, &e); resp.StatusCode != http.StatusBadRequest || e.Code != CodeInvalidUserID {
		t.Errorf("DELETE /api/users/..: %d %+v", resp.StatusCode, e)
	}
	// A correctly signed token for ".." is not a credential.
	dots, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "..", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := h.get("/api/users/../status", dots); code != http.StatusUnauthorized {
		t.Errorf("token for ..: %d, want 401", code)
	}
	if code, _ := h.get("/sse", dots); code != http.StatusUnauthorized {
		t.Errorf("token for .. on /sse: %d, want 401", code)
	}
	if n, _ := h.store.Count(context.Background()); n != 0 {
		t.Errorf("%d registrations stored", n)
	}
	if _, err := os.Stat(files); !os.IsNotExist(err) {
		t.Errorf("--files-dir was touched: %v", err)
	}
}
