// Package testsse reads a Server-Sent Events answer line by line, for tests
// that speak the MCP HTTP transports without a client library.
package testsse

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

// openTimeout bounds how long Open waits for the answer's status and headers.
const openTimeout = 60 * time.Second

// Stream is an open SSE answer.
type Stream struct {
	lines chan string // closed when the stream ends
}

// Open sends GET url with the headers hdr and fails t unless the answer is
// 200. The stream is read in the background until it ends or the test's
// cleanup closes it.
func Open(t testing.TB, url string, hdr map[string]string) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// The answer's headers must come within a bound; the body (the stream)
	// may then stay open until the test's cleanup.
	headers := time.AfterFunc(openTimeout, cancel)
	resp, err := http.DefaultClient.Do(req)
	headers.Stop()
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v (no answer within %v?)", url, err, openTimeout)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	s := &Stream{lines: make(chan string, 1024)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		for range s.lines { // the reader is done once it closes lines
		}
	})
	return s
}

// Lines gives the stream's lines as they come; it is closed at the end of
// the stream.
func (s *Stream) Lines() <-chan string { return s.lines }

// Until returns the first line that match accepts, io.EOF when the stream
// ends first, or an error when within passes first.
func (s *Stream) Until(within time.Duration, match func(string) bool) (string, error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				return "", io.EOF
			}
			if match(l) {
				return l, nil
			}
		case <-timer.C:
			return "", errors.New("timed out")
		}
	}
}
