// Package testredis starts a real redis-server (Debian's package) for a
// test, on a loopback TCP port, with no persistence, and stops it when the
// test ends. Stop, Start and Restart let a test make Redis unreachable and
// bring it back on the same port (empty); StopKeepingData then Start
// brings it back with its data.
package testredis

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// readyTimeout bounds the wait for a started server to answer PING.
const readyTimeout = 10 * time.Second

// stopTimeout bounds the wait for a server to exit after SIGTERM, before
// it is killed.
const stopTimeout = 5 * time.Second

// bindAttempts is how many free ports Start tries before it gives up: a
// port found free may be taken by another process before redis binds it.
const bindAttempts = 5

// Binary returns the redis-server executable: $MBP_TEST_REDIS_SERVER, or
// redis-server on PATH.
func Binary() (string, error) {
	if b := os.Getenv("MBP_TEST_REDIS_SERVER"); b != "" {
		return b, nil
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("no redis-server on PATH: run `make test` (it installs Debian's redis-server) or set MBP_TEST_REDIS_SERVER")
	}
	return p, nil
}

// Server is one redis-server process started for a test.
type Server struct {
	// Addr is host:port, e.g. 127.0.0.1:40123; it stays the same across
	// Stop and Start.
	Addr string
	// URL is redis://[:password@]Addr/0, for go-redis's ParseURL and
	// --redis-url.
	URL string

	t        testing.TB
	bin      string
	password string
	dir      string
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	out      *lockedWriter
}

// Start launches redis-server on a free loopback port, waits until it
// answers PING, and registers its stop with t.Cleanup. It fails the test
// when redis-server is missing or does not come up.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWithPassword(t, "")
}

// StartWithPassword is Start with a server that requires password
// (requirepass) when it is not empty; URL then carries it.
func StartWithPassword(t testing.TB, password string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), password: password}
	t.Cleanup(s.Stop)
	var lastErr error
	for range bindAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("find a free loopback port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "redis://" + s.Addr + "/0"
		if password != "" {
			s.URL = "redis://" + url.UserPassword("", password).String() + "@" + s.Addr + "/0"
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errBind) {
			break
		}
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

// Start starts the server again on its port after Stop; it fails the test
// when it cannot (e.g. another process took the port meanwhile).
func (s *Server) Start() {
	s.t.Helper()
	var err error
	for range bindAttempts {
		if err = s.start(); err == nil || !errors.Is(err, errBind) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("restart redis-server on %s: %v", s.Addr, err)
	}
}

// Restart stops the server and starts it again on the same port. Its data
// is lost (nothing is persisted): callers that need it back write it again.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Stop ends the server (SIGTERM, then SIGKILL after 5 s) and waits for it
// to exit; its data is lost. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
	}
	_ = os.Remove(filepath.Join(s.dir, snapshot)) // a snapshot of StopKeepingData must not come back
}

// StopKeepingData ends the server with SHUTDOWN SAVE: it writes its data
// to a snapshot in its own temp dir, which the next Start loads (a plain
// Stop loses the data). It fails the test when the server does not exit
// within 10 s.
func (s *Server) StopKeepingData() {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatal("StopKeepingData: the server is not running")
	}
	if c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second); err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if s.password != "" {
			_, _ = fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(s.password), s.password)
		}
		_, _ = c.Write([]byte("SHUTDOWN SAVE\r\n"))
		_, _ = io.Copy(io.Discard, c) // the server closes the connection as it exits
		c.Close()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		s.t.Fatal("redis-server did not exit on SHUTDOWN SAVE within 10s")
	}
	if _, err := os.Stat(filepath.Join(s.dir, snapshot)); err != nil {
		s.t.Fatalf("redis-server left no snapshot: %v\n%s", err, s.out.String())
	}
}

// snapshot is the file SHUTDOWN SAVE writes in the server's dir.
const snapshot = "dump.rdb"

// errBind marks a start that failed because the port was taken.
var errBind = errors.New("port in use")

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin,
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning")
	if s.password != "" {
		cmd.Args = append(cmd.Args, "--requirepass", s.password)
	}
	out := &lockedWriter{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive a killed test binary
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		// The pid check makes sure the server answering is ours, not
		// another test's that took the port first.
		if pid, err := serverPID(ctx, s.Addr, s.password); err == nil && pid == cmd.Process.Pid {
			s.cmd, s.done, s.out = cmd, done, out
			return nil
		}
		select {
		case <-done:
			msg := out.String()
			if strings.Contains(msg, "Address already in use") || strings.Contains(msg, "bind") {
				return fmt.Errorf("%w: %s", errBind, strings.TrimSpace(msg))
			}
			return fmt.Errorf("redis-server exited at start: %s", strings.TrimSpace(msg))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server did not answer PING on %s within %v: %s", s.Addr, readyTimeout, strings.TrimSpace(out.String()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// serverPID sends PING (the server must answer +PONG, i.e. be ready) and
// INFO server, within ctx, and returns the process_id INFO reports.
func serverPID(ctx context.Context, addr, password string) (int, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	r := bufio.NewReader(c)
	if password != "" {
		if _, err := fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password); err != nil {
			return 0, err
		}
		if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "+OK" {
			return 0, fmt.Errorf("AUTH refused: %v", err)
		}
	}
	if _, err := c.Write([]byte("PING\r\nINFO server\r\n")); err != nil {
		return 0, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return 0, fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	head, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if !strings.HasPrefix(head, "$") || err != nil || n < 0 || n > 1<<20 {
		return 0, fmt.Errorf("INFO answered %q", strings.TrimSpace(head))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO has no process_id")
}

// freePort asks the kernel for a free loopback port. It may be taken
// again before redis binds it: Start retries on a bind failure.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedWriter lets redis's stdout and stderr share one buffer that the
// test reads while the process runs.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
