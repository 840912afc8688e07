package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
)

// TestAdvertiseURL: the advertised URL defaults to --addr unless that is a
// wildcard; a given one must be a plain base URL the others can reach.
func TestAdvertiseURL(t *testing.T) {
	for _, c := range []struct {
		flag, addr, scheme, want, err string
	}{
		{"", "127.0.0.1:3000", "http", "http://127.0.0.1:3000", ""},
		{"", "10.1.2.3:3000", "https", "https://10.1.2.3:3000", ""},
		{"", "0.0.0.0:3000", "http", "", "--advertise-url"},
		{"", ":3000", "http", "", "--advertise-url"},
		{"", "[::]:3000", "http", "", "--advertise-url"},
		{"http://10.0.0.5:3000/", ":3000", "http", "http://10.0.0.5:3000", ""},
		{"https://proxy-0.proxy:3000", ":3000", "https", "https://proxy-0.proxy:3000", ""},
		{"http://10.0.0.5:3000/base", ":3000", "http", "", "no path"},
		{"http://u:p@10.0.0.5:3000", ":3000", "http", "", "credentials"},
		{"ftp://10.0.0.5", ":3000", "http", "", "base URL"},
		{"http://0.0.0.0:3000", ":3000", "http", "", "wildcard"},
	} {
		got, err := clusterFlags{advertiseURL: c.flag}.advertise(c.addr, c.scheme)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("advertise(%q, %q) = %q, %v; want an error naming %q", c.flag, c.addr, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("advertise(%q, %q) = %q, %v; want %q", c.flag, c.addr, got, err, c.want)
		}
	}
}

// TestServeClusterStart: shared mode on a wildcard --addr refuses to start
// until --advertise-url (or MBP_ADVERTISE_URL) says how the others reach
// it, and with a forwarding secret other than the running instances'; two instances on one Redis act as one (a registration made on one
// is answered for by the other, which forwards to the user's home); a
// graceful stop releases the instance's leases at once, so the other
// serves that user straight away, without waiting for the lease to expire.
func TestServeClusterStart(t *testing.T) {
	rs := testredis.Start(t)
	_, _, err := run(t, "serve", "--addr", "0.0.0.0:0", "--redis-url", rs.URL, "--data-dir", t.TempDir(), "--jwt-secret", procSecret)
	if err == nil || !strings.Contains(err.Error(), "--advertise-url") || !strings.Contains(err.Error(), "MBP_ADVERTISE_URL") {
		t.Fatalf("shared mode on a wildcard address without --advertise-url: %v", err)
	}
	t.Setenv("MBP_ADVERTISE_URL", "http://10.0.0.5:3000/some/path")
	if _, _, err := run(t, "serve", "--addr", "0.0.0.0:0", "--redis-url", rs.URL, "--data-dir", t.TempDir(), "--jwt-secret", procSecret); err == nil || !strings.Contains(err.Error(), "--advertise-url") {
		t.Fatalf("MBP_ADVERTISE_URL with a path: %v, want it refused", err)
	}

	args := []string{"--redis-url", rs.URL, "--jwt-secret", procSecret}
	s1 := startServe(t, t.TempDir(), args...)
	// An instance with another forwarding secret would refuse the others'
	// forwarded requests, and they its: it does not start.
	if _, _, err := run(t, "serve", "--addr", freeAddr(t), "--redis-url", rs.URL, "--data-dir", t.TempDir(), "--jwt-secret", procSecret,
		"--cluster-secret", "another-cluster-secret-another-cluster!", "--advertise-url", "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--cluster-secret") {
		t.Fatalf("an instance with another --cluster-secret: %v, want a refusal naming --cluster-secret", err)
	}
	s2 := startServe(t, t.TempDir(), args...)
	out, _, err := run(t, "token", "issue", "--user", "bob", "--ttl", "1h", "--jwt-secret", procSecret)
	if err != nil {
		t.Fatal(err)
	}
	bob := strings.TrimSpace(out)
	reg := proxy.RegisterRequest{UserID: "bob", BrowserURL: "http://" + freeAddr(t)}
	if st, e, _ := apiCall(t, s1.base, http.MethodPost, "/api/register", bob, reg); st != http.StatusCreated {
		t.Fatalf("register on the first instance: %d %+v", st, e)
	}
	if st, e, _ := apiCall(t, s2.base, http.MethodGet, "/api/users/bob/status", bob, nil); st != http.StatusOK {
		t.Fatalf("status on the second instance: %d %+v", st, e)
	}
	if !strings.Contains(s1.logs.String(), `"path":"/api/users/bob/status"`) {
		t.Errorf("the status asked of the second instance was not answered by bob's home, the first:\n%s", s1.logs.String())
	}
	if err := s1.stop(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s1.logs.String(), "left the cluster") {
		t.Errorf("the stopped instance did not release its leases:\n%s", s1.logs.String())
	}
	// The default lease lives 10 s: a 200 now means it was released.
	if st, e, _ := apiCall(t, s2.base, http.MethodGet, "/api/users/bob/status", bob, nil); st != http.StatusOK {
		t.Fatalf("status on the second instance after the first stopped: %d %+v", st, e)
	}
}
