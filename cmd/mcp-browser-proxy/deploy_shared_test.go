package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
)

// TestNginxSharedKeepsAUserOnOneProxy: deploy/nginx's shared config in front
// of two real proxies on one Redis sends every request of a user to the same
// proxy, the user's home, so none of them is forwarded between the proxies;
// without the hashing, about half would be.
func TestNginxSharedKeepsAUserOnOneProxy(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not on PATH (apt-get install nginx): skipped the end-to-end run")
	}
	rs := testredis.Start(t)
	args := []string{"--redis-url", rs.URL, "--jwt-secret", procSecret, "--trusted-proxies", "127.0.0.1"}
	a, b := startServe(t, t.TempDir(), args...), startServe(t, t.TempDir(), args...)
	base := startNginx(t, nginx, "mcp-browser-proxy.shared.conf",
		strings.TrimPrefix(a.base, "http://"), strings.TrimPrefix(b.base, "http://"))
	client := clientFrom(t, "127.0.0.2")

	for _, user := range []string{"alice", "bob", "carol", "dave"} {
		out, _, err := run(t, "token", "issue", "--user", user, "--ttl", "1h", "--jwt-secret", procSecret)
		if err != nil {
			t.Fatal(err)
		}
		tok := strings.TrimSpace(out)
		reg := proxy.RegisterRequest{UserID: user, BrowserURL: "http://" + freeAddr(t)}
		if st := nginxCall(t, client, base, http.MethodPost, "/api/register", user, tok, reg); st != http.StatusCreated {
			t.Fatalf("register %s through nginx: %d", user, st)
		}
		for range 6 {
			if st := nginxCall(t, client, base, http.MethodGet, "/api/users/"+user+"/status", user, tok, nil); st != http.StatusOK {
				t.Fatalf("status of %s through nginx: %d", user, st)
			}
		}
	}
	// Each user's requests reached one proxy only: a forwarded request
	// would also be logged by the proxy that forwarded it.
	for _, user := range []string{"alice", "bob", "carol", "dave"} {
		path := `"path":"/api/users/` + user + `/status"`
		if inA, inB := strings.Contains(a.logs.String(), path), strings.Contains(b.logs.String(), path); inA == inB {
			t.Errorf("%s's status requests logged by A: %v, by B: %v; want exactly one proxy", user, inA, inB)
		}
	}
	for _, s := range []*served{a, b} {
		if strings.Contains(s.logs.String(), `"forwarded_to"`) {
			t.Errorf("a request was forwarded between the proxies: nginx did not keep a user on one proxy:\n%s", s.logs.String())
		}
	}
}

// nginxCall sends a JSON API request with the user's X-User-Id (what nginx
// hashes on) and bearer token, and returns the status.
func nginxCall(t *testing.T, c *http.Client, base, method, path, user, tok string, body any) int {
	t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-User-Id", user)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
