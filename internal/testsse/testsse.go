// Package testsse reads a Server-Sent Events answer line by line, for tests
// that speak the MCP HTTP transports without a client library.
package testsse

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	s := &Stream{lines: make(chan string, 1024)}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	})
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		for range s.lines { // let the reader finish
		}
		wg.Wait()
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
