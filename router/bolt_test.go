package router

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
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

// TestBoltFileModes: the file and its directory are the proxy's alone.
// (The store's behaviour is tested for every backend in store_test.go.)
func TestBoltFileModes(t *testing.T) {
	_, path := openTest(t)
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
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
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
