package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T) (*BoltStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "router.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestBoltRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode = %o, want 600", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("dir mode = %o, want 700", perm)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	if _, err := s.Get(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on empty store = %v, want ErrNotFound", err)
	}
	if l, err := s.List(ctx); err != nil || l == nil || len(l) != 0 {
		t.Fatalf("List on empty store = %#v, %v; want empty non-nil", l, err)
	}

	bob, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "HTTP://127.0.0.1:9333/"})
	if err != nil {
		t.Fatalf("Put bob: %v", err)
	}
	if bob.BrowserURL != "http://127.0.0.1:9333" {
		t.Errorf("stored URL = %q, want normalised", bob.BrowserURL)
	}
	if bob.CreatedAt.IsZero() || !bob.UpdatedAt.Equal(bob.CreatedAt) {
		t.Errorf("new record times: created %v updated %v", bob.CreatedAt, bob.UpdatedAt)
	}
	alice, err := s.Put(ctx, Registration{
		UserID:     "alice",
		BrowserURL: "http://127.0.0.1:9222",
		Metadata:   map[string]string{"team": "qa"},
	})
	if err != nil {
		t.Fatalf("Put alice: %v", err)
	}

	got, err := s.Get(ctx, "alice")
	if err != nil {
		t.Fatalf("Get alice: %v", err)
	}
	if got.BrowserURL != alice.BrowserURL || got.Metadata["team"] != "qa" || !got.CreatedAt.Equal(alice.CreatedAt) {
		t.Errorf("Get alice = %+v, want %+v", got, alice)
	}

	list, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 2 || list[0].UserID != "alice" || list[1].UserID != "bob" {
		t.Errorf("List = %+v, want alice then bob", list)
	}
	if n, err := s.Count(ctx); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}

	if err := s.Delete(ctx, "alice"); err != nil {
		t.Fatalf("Delete alice: %v", err)
	}
	if _, err := s.Get(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if n, err := s.Count(ctx); err != nil || n != 1 {
		t.Errorf("Count after Delete = %d, %v; want 1", n, err)
	}
	// Delete freed alice's URL.
	if _, err := s.Put(ctx, Registration{UserID: "carol", BrowserURL: "ws://127.0.0.1:9222/devtools/browser/z"}); err != nil {
		t.Errorf("Put carol on freed URL: %v", err)
	}
}

func TestBoltPutInvalid(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	_, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1"})
	var ue *URLError
	if !errors.As(err, &ue) {
		t.Errorf("Put with bad URL = %v, want *URLError", err)
	}
	if _, err := s.Put(ctx, Registration{BrowserURL: "http://127.0.0.1:9222"}); err == nil {
		t.Error("Put with empty user ID succeeded")
	}
	if n, _ := s.Count(ctx); n != 0 {
		t.Errorf("Count = %d after failed Puts, want 0", n)
	}
}

func TestBoltPutConflict(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "ws://127.0.0.1:9222/devtools/browser/abc"}); err != nil {
		t.Fatalf("Put alice: %v", err)
	}
	_, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "HTTP://127.0.0.1:9222"})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Put bob on alice's browser = %v, want ErrConflict", err)
	}
	if !strings.Contains(err.Error(), "bob") {
		t.Errorf("error %q does not name the user", err)
	}
	if _, err := s.Get(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob's record exists after conflict: %v", err)
	}
	if n, _ := s.Count(ctx); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}
	// The same user may re-register the same browser in another spelling.
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Errorf("alice re-registering her own browser: %v", err)
	}
}

func TestBoltReRegisterFreesOldURL(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9333"}); err != nil {
		t.Fatalf("alice moving to new URL: %v", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Errorf("bob taking alice's old URL: %v", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "carol", BrowserURL: "http://127.0.0.1:9333"}); !errors.Is(err, ErrConflict) {
		t.Errorf("carol taking alice's new URL = %v, want ErrConflict", err)
	}
}

func TestBoltCreatedAtKept(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	now := t0
	s.now = func() time.Time { return now }

	first, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"})
	if err != nil {
		t.Fatal(err)
	}
	if !first.CreatedAt.Equal(t0) {
		t.Fatalf("CreatedAt = %v, want %v", first.CreatedAt, t0)
	}
	now = t0.Add(time.Hour)
	second, err := s.Put(ctx, Registration{
		UserID:     "alice",
		BrowserURL: "http://127.0.0.1:9333",
		CreatedAt:  t0.Add(-24 * time.Hour), // ignored
	})
	if err != nil {
		t.Fatal(err)
	}
	if !second.CreatedAt.Equal(t0) || !second.UpdatedAt.Equal(now) {
		t.Errorf("after update created %v updated %v, want %v and %v", second.CreatedAt, second.UpdatedAt, t0, now)
	}
	got, err := s.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(now) || got.BrowserURL != "http://127.0.0.1:9333" {
		t.Errorf("Get = %+v", got)
	}
}

func TestBoltPersistence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "router.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222", Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping after Close succeeded")
	}

	s, err = OpenBolt(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	got, err := s.Get(ctx, "alice")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if got.BrowserURL != want.BrowserURL || got.Metadata["k"] != "v" ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("after reopen got %+v, want %+v", got, want)
	}
	// The URL index persisted too.
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "ws://127.0.0.1:9222/devtools/browser/q"}); !errors.Is(err, ErrConflict) {
		t.Errorf("Put bob after reopen = %v, want ErrConflict", err)
	}
}

func TestBoltLocked(t *testing.T) {
	_, path := openTest(t)
	start := time.Now()
	s2, err := OpenBolt(path)
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second OpenBolt on a locked file succeeded")
	}
	if elapsed > 3*time.Second {
		t.Errorf("second OpenBolt took %v, want <= 3s", elapsed)
	}
	msg := err.Error()
	if !strings.Contains(msg, path) || !strings.Contains(msg, "another proxy") {
		t.Errorf("error %q should name %s and mention another proxy", msg, path)
	}
}

func TestBoltReadOnlyDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	probe := filepath.Join(dir, "probe")
	if f, err := os.Create(probe); err == nil {
		f.Close()
		t.Skip("directory is writable despite mode 0500 (running as root?)")
	}
	path := filepath.Join(dir, "router.db")
	s, err := OpenBolt(path)
	if err == nil {
		s.Close()
		t.Fatal("OpenBolt in a read-only directory succeeded")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
}

func TestBoltConcurrentPuts(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Put(ctx, Registration{
				UserID:     fmt.Sprintf("user%02d", i),
				BrowserURL: fmt.Sprintf("http://127.0.0.1:%d", 9000+i),
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Put: %v", err)
		}
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("List has %d records, want %d", len(list), n)
	}
	for i, r := range list {
		if want := fmt.Sprintf("user%02d", i); r.UserID != want {
			t.Errorf("list[%d] = %s, want %s", i, r.UserID, want)
		}
	}
	if c, err := s.Count(ctx); err != nil || c != n {
		t.Errorf("Count = %d, %v; want %d", c, err, n)
	}
}

func TestBoltCanceledContext(t *testing.T) {
	s, _ := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with canceled ctx = %v", err)
	}
	if n, _ := s.Count(context.Background()); n != 0 {
		t.Errorf("Count = %d after canceled Put, want 0", n)
	}
}

// TestBoltPutConflictSpellings: every spelling of a host and port that
// reaches the same endpoint is the same browser, without any lookup.
func TestBoltPutConflictSpellings(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"http://localhost:9222", "HTTP://LOCALHOST.:9222", "http://[::ffff:127.0.0.1]:9222",
		"http://127.1:9222", "http://0x7f.0.0.1:9222", "http://2130706433:9222", "http://127.0.0.2:9222",
		"http://[::1]:9222", "https://127.0.0.1:9222", "wss://localhost:9222/devtools/browser/x",
		"ws://sub.localhost:9222/devtools/page/1",
	} {
		if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: u}); !errors.Is(err, ErrConflict) {
			t.Errorf("bob registering %s = %v, want ErrConflict", u, err)
		}
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9223"}); err != nil {
		t.Errorf("bob on another port: %v", err)
	}
	// Default ports collapse: ws without a port is port 80.
	if _, err := s.Put(ctx, Registration{UserID: "carol", BrowserURL: "ws://browser.test/devtools/browser/x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "dave", BrowserURL: "http://Browser.Test.:80"}); !errors.Is(err, ErrConflict) {
		t.Errorf("dave on carol's browser with an explicit default port = %v, want ErrConflict", err)
	}
}

// TestBoltRekeysOldIndex: a store written before endpoint keys (one
// CanonicalURL of the old form per user, localhost and 127.0.0.1 apart) is
// rekeyed when it opens; where two users' keys fall together, the one
// registered first keeps the browser.
func TestBoltRekeysOldIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := []struct {
		user, url, key string
		created        time.Time
	}{
		{"zed", "http://localhost:9222", "http://localhost:9222", t0}, // first, though last by name
		{"amy", "http://127.0.0.1:9222", "http://127.0.0.1:9222", t0.Add(time.Hour)},
		{"carol", "wss://browser.test/devtools/browser/x", "https://browser.test:443", t0},
	}
	err = db.Update(func(tx *bolt.Tx) error {
		regs, _ := tx.CreateBucketIfNotExists([]byte(bucketRegistrations))
		idx, _ := tx.CreateBucketIfNotExists([]byte(bucketBrowserURLs))
		for _, o := range old {
			data, _ := json.Marshal(storedRecord{UserID: o.user, BrowserURL: o.url, CreatedAt: o.created, UpdatedAt: o.created})
			if err := regs.Put([]byte(o.user), data); err != nil {
				return err
			}
			if err := idx.Put([]byte(o.key), []byte(o.user)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	for range 2 { // rekeying twice changes nothing more
		s, err := OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		index := map[string]string{}
		_ = s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(bucketBrowserURLs)).ForEach(func(k, v []byte) error {
				index[string(k)] = string(v)
				return nil
			})
		})
		want := map[string]string{"tcp://127.0.0.1:9222": "zed", "tcp://browser.test:443": "carol"}
		if !maps.Equal(index, want) {
			t.Errorf("index after open = %v, want %v", index, want)
		}
		s.Close()
	}

	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, u := range []string{"http://127.0.0.1:9222", "ws://localhost:9222/devtools/browser/y", "http://browser.test:443"} {
		if _, err := s.Put(ctx, Registration{UserID: "dave", BrowserURL: u}); !errors.Is(err, ErrConflict) {
			t.Errorf("dave registering %s after the rekey = %v, want ErrConflict", u, err)
		}
	}
	// amy keeps her registration; removing it frees nothing of zed's.
	if _, err := s.Get(ctx, "amy"); err != nil {
		t.Errorf("amy's registration: %v", err)
	}
	if err := s.Delete(ctx, "amy"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "dave", BrowserURL: "http://127.0.0.1:9222"}); !errors.Is(err, ErrConflict) {
		t.Errorf("dave after amy left = %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, "zed"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "dave", BrowserURL: "http://127.0.0.1:9222"}); err != nil {
		t.Errorf("dave after zed left: %v", err)
	}
}

// TestBoltPutConflictByAddress: registrations resolved to a common address
// and port conflict, whatever their names.
func TestBoltPutConflictByAddress(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	a := netip.MustParseAddr("10.0.0.5")
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://mybox.test:9222", Addrs: []netip.Addr{a}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://10.0.0.5:9222"}); !errors.Is(err, ErrConflict) {
		t.Errorf("bob on alice's address = %v, want ErrConflict", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://alias.test:9222", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("::ffff:10.0.0.5")}}); !errors.Is(err, ErrConflict) {
		t.Errorf("bob on an alias sharing alice's address = %v, want ErrConflict", err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://mybox.test:9222"}); !errors.Is(err, ErrConflict) {
		t.Errorf("bob on alice's name, unresolved = %v, want ErrConflict", err)
	}
	// alice moving elsewhere frees every key she held.
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://10.0.0.7:9222"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://10.0.0.5:9222"}); err != nil {
		t.Errorf("bob on alice's old address: %v", err)
	}
}

// TestBoltBrowserSince: seniority over a browser is that of its URL. A
// user who moves to another URL registers it now, whatever their
// CreatedAt; the same URL again keeps it, and a restored record keeps its.
func TestBoltBrowserSince(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	now := t0
	s.now = func() time.Time { return now }
	first, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9222"})
	if err != nil || !first.Since().Equal(t0) {
		t.Fatalf("first: %v since %v", err, first.Since())
	}
	now = t0.Add(time.Hour)
	same, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9222", Metadata: map[string]string{"a": "b"}})
	if err != nil || !same.Since().Equal(t0) {
		t.Errorf("same URL again: %v since %v, want %v", err, same.Since(), t0)
	}
	now = t0.Add(2 * time.Hour)
	moved, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9333"})
	if err != nil || !moved.Since().Equal(now) || !moved.CreatedAt.Equal(t0) {
		t.Errorf("moved: %v since %v created %v, want since %v created %v", err, moved.Since(), moved.CreatedAt, now, t0)
	}
	if got, _ := s.Get(ctx, "bob"); !got.Since().Equal(now) {
		t.Errorf("stored since %v, want %v", got.Since(), now)
	}
	now = t0.Add(3 * time.Hour)
	back, err := s.Put(ctx, first)
	if err != nil || !back.Since().Equal(t0) {
		t.Errorf("restored: %v since %v, want %v", err, back.Since(), t0)
	}
}
