package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

// TestBoltGetSeesEveryWrite: once a registration is cached, Get returns
// what the last Put stored and ErrNotFound after a Delete; a caller that
// changes the record it got does not change the next one; and the cache
// holds the record (the second Get reads no bolt transaction).
func TestBoltGetSeesEveryWrite(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9222", Headers: map[string]string{"X-Key": "one"}}); err != nil {
		t.Fatal(err)
	}
	first, err := s.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.cache.get("alice"); !ok {
		t.Fatal("the record read is not cached: the test would not cover a cache hit")
	}
	first.Headers["X-Key"] = "changed by a caller"
	if again, _ := s.Get(ctx, "alice"); again.Headers["X-Key"] != "one" {
		t.Errorf("a caller's change reached the cache: %q", again.Headers["X-Key"])
	}

	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9333", Headers: map[string]string{"X-Key": "two"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "alice"); err != nil || got.BrowserURL != "http://127.0.0.1:9333" || got.Headers["X-Key"] != "two" {
		t.Errorf("after re-registering: %+v, %v; want the new URL and header", got, err)
	}

	if err := s.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	// A Put that fails (another user's browser) leaves alice's record as
	// the store has it.
	if _, err := s.Put(ctx, Registration{UserID: "bob", BrowserURL: "http://127.0.0.1:9444"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9555"}); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Get(ctx, "alice")
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: "http://127.0.0.1:9444"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("taking bob's browser: %v, want ErrConflict", err)
	}
	if got, _ := s.Get(ctx, "alice"); got.BrowserURL != "http://127.0.0.1:9555" {
		t.Errorf("after a refused Put: %q, want alice's own browser", got.BrowserURL)
	}
}

// TestBoltGetRacingPuts: readers racing a writer never leave the cache
// behind the store: once the writes stop, Get returns the last one.
func TestBoltGetRacingPuts(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const writes = 200
	url := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", 10000+i) }
	if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: url(0)}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Get(ctx, "alice"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := 1; i <= writes; i++ {
		if _, err := s.Put(ctx, Registration{UserID: "alice", BrowserURL: url(i)}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if got, err := s.Get(ctx, "alice"); err != nil || got.BrowserURL != url(writes) {
		t.Errorf("after the writes: %q, %v; want %q", got.BrowserURL, err, url(writes))
	}
}

// TestBoltAPIKeyRevokedAfterCaching: a cached API key is gone for the very
// next GetAPIKey once it is revoked, and its LastUsed follows TouchAPIKey.
func TestBoltAPIKeyRevokedAfterCaching(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	_, rec, err := auth.NewAPIKey("alice", nil, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIKey(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.GetAPIKey(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := s.keys.get(rec.ID); !ok {
		t.Fatal("the key read is not cached: the test would not cover a cache hit")
	}
	at := time.Now().Add(time.Hour)
	if err := s.TouchAPIKey(ctx, rec.ID, at); err != nil {
		t.Fatal(err)
	}
	if k, err := s.GetAPIKey(ctx, rec.ID); err != nil || !k.LastUsed.Equal(at.UTC().Round(0)) {
		t.Errorf("after a touch: LastUsed %v, %v; want %v", k.LastUsed, err, at)
	}
	if err := s.RevokeAPIKey(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAPIKey(ctx, rec.ID); !errors.Is(err, auth.ErrAPIKeyNotFound) {
		t.Errorf("GetAPIKey after revoke = %v, want ErrAPIKeyNotFound", err)
	}
}
