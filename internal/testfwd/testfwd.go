// Package testfwd is a small TCP port forwarder for tests: a second path
// (another loopback port) to a server such as a test Chromium.
package testfwd

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Forwarder listens on 127.0.0.1 and copies every connection to a target
// address. Its zero value is not usable; call Start.
type Forwarder struct {
	// URL is http://127.0.0.1:<Port>.
	URL string
	// Port is the port the forwarder listens on.
	Port int

	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu      sync.Mutex
	enabled bool
	conns   map[net.Conn]struct{} // client sides being forwarded
	total   int
}

// Start forwards a new loopback port to target (host:port) until the test
// ends. It starts enabled.
func Start(t testing.TB, target string) *Forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	f := &Forwarder{URL: "http://127.0.0.1:" + strconv.Itoa(port), Port: port, target: target, ln: ln,
		enabled: true, conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.accept)
	t.Cleanup(f.Close)
	return f
}

// SetEnabled turns forwarding on or off. While off, connections are
// accepted and closed at once, as by a host whose forward is not up yet.
// Turning it off does not cut the connections being forwarded.
func (f *Forwarder) SetEnabled(on bool) {
	f.mu.Lock()
	f.enabled = on
	f.mu.Unlock()
}

// Active returns how many connections are being forwarded now.
func (f *Forwarder) Active() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

// Total returns how many connections have been forwarded so far.
func (f *Forwarder) Total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total
}

// Close stops listening, cuts every forwarded connection and waits for
// the forwarder's goroutines.
func (f *Forwarder) Close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *Forwarder) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		on := f.enabled
		if on {
			f.conns[c] = struct{}{}
			f.total++
		}
		f.mu.Unlock()
		if !on {
			c.Close()
			continue
		}
		f.wg.Go(func() { f.forward(c) })
	}
}

func (f *Forwarder) forward(c net.Conn) {
	defer func() {
		c.Close()
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
	}()
	up, err := net.Dial("tcp", f.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done // one side ended: cut both, and let the other copy end
	c.Close()
	up.Close()
	<-done
}
