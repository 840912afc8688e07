package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealthcheck: 200 from /health is healthy; another status, or nothing
// listening, is an error that says what was wrong.
func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	run := func(args ...string) error {
		root := newRoot()
		root.SetArgs(append([]string{"healthcheck"}, args...))
		return root.Execute()
	}
	if err := run("--url", srv.URL+"/health"); err != nil {
		t.Fatalf("healthy proxy: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := run("--url", srv.URL+"/health"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("unhealthy proxy: %v", err)
	}
	t.Setenv("MBP_URL", srv.URL+"/nope")
	if err := run(); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("env twin of --url not used: %v", err)
	}
	addr := srv.Listener.Addr().String()
	srv.Close()
	if err := run("--url", "http://"+addr+"/health"); err == nil || !strings.Contains(err.Error(), "is the proxy running") {
		t.Fatalf("nothing listening: %v", err)
	}
}
