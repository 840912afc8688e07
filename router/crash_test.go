package router

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testbolt"
)

// Environment of the helper process of TestBoltSurvivesSIGKILL.
const (
	crashStoreEnv = "MBP_CRASH_STORE" // the store file; set only in the helper
	crashStartEnv = "MBP_CRASH_START" // the first user number to write
)

// crashUser returns the user and browser URL of write number i: every
// user and URL is new, so that each acknowledged write must stay.
func crashUser(i int) (string, string) {
	return fmt.Sprintf("crash%06d", i), fmt.Sprintf("http://10.%d.%d.%d:9222", i/62500, i/250%250, i%250+1)
}

// TestCrashHelperProcess is not a test of its own: it is the process that
// TestBoltSurvivesSIGKILL kills. It writes registrations from four
// goroutines until it is killed (or after 100000 writes), printing
// "ack USER" once each Put has returned.
func TestCrashHelperProcess(t *testing.T) {
	path := os.Getenv(crashStoreEnv)
	if path == "" {
		t.Skip("the helper process of TestBoltSurvivesSIGKILL")
	}
	start, _ := strconv.Atoi(os.Getenv(crashStartEnv))
	s, err := OpenBolt(path, WithSealer(crashSealer(t)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex // one ack line at a time
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := start + g; i < start+100000; i += 4 {
				user, url := crashUser(i)
				_, err := s.Put(context.Background(), Registration{UserID: user, BrowserURL: url,
					Metadata: map[string]string{"n": strconv.Itoa(i)}, Headers: map[string]string{"X-Api-Key": "k" + strconv.Itoa(i)}})
				if err != nil {
					fmt.Fprintln(os.Stderr, "put:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Printf("ack %s\n", user)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}

func crashSealer(t testing.TB) *Sealer {
	s, err := NewSealer([]byte("crash-test-key-crash-test-key-crash-test-key"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBoltSurvivesSIGKILL kills a process with SIGKILL in the middle of a
// burst of registrations, three times on the same file: each time the file
// passes bbolt's consistency check, opens as a store, and holds every
// registration whose Put had returned, intact.
func TestBoltSurvivesSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registrations.db")
	acked := map[string]bool{}
	next := 0
	for round := range 3 {
		got := crashRound(t, path, next, 150)
		for _, u := range got {
			acked[u] = true
		}
		next += 100000 // the next round writes new users

		if err := testbolt.Check(path); err != nil {
			t.Fatalf("round %d: the killed store: %v", round, err)
		}

		s, err := OpenBolt(path, WithSealer(crashSealer(t)))
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		n, err := s.Count(context.Background())
		if err != nil || n < len(acked) {
			t.Errorf("round %d: %d registrations (%v), %d were acknowledged", round, n, err, len(acked))
		}
		for u := range acked {
			r, err := s.Get(context.Background(), u)
			i, _ := strconv.Atoi(strings.TrimPrefix(u, "crash"))
			_, url := crashUser(i)
			if err != nil || r.BrowserURL != url || r.Metadata["n"] != strconv.Itoa(i) || r.Headers["X-Api-Key"] != "k"+strconv.Itoa(i) {
				t.Fatalf("round %d: acknowledged %s: %+v %v", round, u, r, err)
			}
		}
		s.Close()
		t.Logf("round %d: %d acknowledged, %d stored", round, len(acked), n)
	}
}

// crashRound runs the helper on path from user number start, kills it with
// SIGKILL once it acknowledged after writes, and returns every user it
// acknowledged, those printed while the kill was on its way included.
func crashRound(t *testing.T, path string, start, after int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashStoreEnv+"="+path, crashStartEnv+"="+strconv.Itoa(start))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The helper is killed after enough acks, or after a bound if it never
	// gets there; the reader below ends when its stdout closes.
	timer := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	var users []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		user, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			continue
		}
		users = append(users, user)
		if len(users) == after {
			_ = cmd.Process.Kill() // SIGKILL: no deferred code, no Close
		}
	}
	err = cmd.Wait()
	if len(users) < after {
		t.Fatalf("the helper acknowledged %d writes (want %d): %v\n%s", len(users), after, err, stderr.String())
	}
	if st, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !st.Signaled() {
		t.Fatalf("the helper was not killed by the signal: %v\n%s", err, stderr.String())
	}
	return users
}
