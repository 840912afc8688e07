package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestPprofLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:6060", "[::]:0"} {
		if _, _, err := listenPprof(context.Background(), addr, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("listenPprof(%q) = %v, want a loopback-only refusal", addr, err)
		}
	}
	if got, stop, err := listenPprof(context.Background(), "", zerolog.Nop()); err != nil || got != "" {
		t.Fatalf("listenPprof(\"\") = %q, %v; want nothing served", got, err)
	} else {
		stop()
	}
	addr, stop, err := listenPprof(context.Background(), "127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("goroutine profile: %d %.200s", resp.StatusCode, body)
	}
	stop()
	if _, err := http.Get("http://" + addr + "/debug/pprof/"); err == nil {
		t.Error("pprof still answers after stop")
	}
}
