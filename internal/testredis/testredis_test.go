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
	pid, err := serverPID(ctx, s.Addr, "")
	if err != nil {
		t.Fatalf("a started server does not answer: %v", err)
	}
	if host, _, _ := net.SplitHostPort(s.Addr); host != "127.0.0.1" {
		t.Errorf("Addr = %s, want a loopback address", s.Addr)
	}
	addr := s.Addr
	s.Stop()
	if _, err := serverPID(ctx, addr, ""); err == nil {
		t.Fatal("a stopped server still answers")
	}
	s.Start()
	if s.Addr != addr {
		t.Errorf("Addr after Start = %s, want %s", s.Addr, addr)
	}
	again, err := serverPID(ctx, s.Addr, "")
	if err != nil || again == pid {
		t.Errorf("after Start: pid %d (was %d), %v; want a new process", again, pid, err)
	}
	s.Restart()
	if _, err := serverPID(ctx, s.Addr, ""); err != nil {
		t.Errorf("after Restart: %v", err)
	}
}

// TestStopKeepingData: data written before StopKeepingData is there after
// Start; after a plain Stop it is not.
func TestStopKeepingData(t *testing.T) {
	s := Start(t)
	send := func(cmd string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		return string(buf[:n])
	}
	if got := send("SET k v"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	s.StopKeepingData()
	s.Start()
	if got := send("GET k"); got != "$1\r\nv\r\n" {
		t.Errorf("GET after StopKeepingData and Start = %q, want v", got)
	}
	s.Restart()
	if got := send("GET k"); got != "$-1\r\n" {
		t.Errorf("GET after Restart = %q, want nil", got)
	}
}
