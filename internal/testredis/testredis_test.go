package testredis

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestStopStart: a stopped server no longer answers on its port, and
// Start brings a new process back on the same one.
func TestStopStart(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pid, err := serverPID(ctx, s.Addr)
	if err != nil {
		t.Fatalf("a started server does not answer: %v", err)
	}
	if host, _, _ := net.SplitHostPort(s.Addr); host != "127.0.0.1" {
		t.Errorf("Addr = %s, want a loopback address", s.Addr)
	}
	addr := s.Addr
	s.Stop()
	if _, err := serverPID(ctx, addr); err == nil {
		t.Fatal("a stopped server still answers")
	}
	s.Start()
	if s.Addr != addr {
		t.Errorf("Addr after Start = %s, want %s", s.Addr, addr)
	}
	again, err := serverPID(ctx, s.Addr)
	if err != nil || again == pid {
		t.Errorf("after Start: pid %d (was %d), %v; want a new process", again, pid, err)
	}
	s.Restart()
	if _, err := serverPID(ctx, s.Addr); err != nil {
		t.Errorf("after Restart: %v", err)
	}
}
