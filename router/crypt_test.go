package router

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func testSealer(t *testing.T, secret string) *Sealer {
	t.Helper()
	s, err := NewSealer([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	keyA = "store-key-A-store-key-A-store-key-A!"
	keyB = "store-key-B-store-key-B-store-key-B!"
)

func TestSealer(t *testing.T) {
	if _, err := NewSealer([]byte("short")); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	a, b := testSealer(t, keyA), testSealer(t, keyB)
	plain := []byte("wss://u:pw@h/devtools/browser/x?token=t")
	s1, s2 := a.Seal(plain, []byte("alice")), a.Seal(plain, []byte("alice"))
	if bytes.Equal(s1, s2) {
		t.Error("two seals of the same text are equal: the nonce is not random")
	}
	if bytes.Contains(s1, []byte("token")) {
		t.Error("the sealed blob contains the plain text")
	}
	got, err := a.Open(s1, []byte("alice"))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := a.Open(s1, []byte("bob")); !errors.Is(err, ErrUnseal) {
		t.Errorf("a blob opened for another user: %v", err)
	}
	if _, err := b.Open(s1, []byte("alice")); !errors.Is(err, ErrUnseal) {
		t.Errorf("a blob opened with another key: %v", err)
	}
	s1[len(s1)-1] ^= 1
	if _, err := a.Open(s1, []byte("alice")); !errors.Is(err, ErrUnseal) {
		t.Errorf("a tampered blob opened: %v", err)
	}
}

func TestBoltSealsOldClearRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registrations.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in := Registration{UserID: "alice", BrowserURL: "ws://127.0.0.1:9/devtools/browser/x?token=t", Headers: map[string]string{"X-K": "v"}}
	if _, err := s.Put(ctx, in); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = OpenBolt(path, WithSealer(testSealer(t, keyA)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "alice")
	if err != nil || got.BrowserURL != in.BrowserURL || got.Headers["X-K"] != "v" {
		t.Fatalf("after sealing: %+v, %v", got, err)
	}
	s.Close()
	// Sealed on open: a store without the key can no longer read it.
	s, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, "alice"); err == nil {
		t.Error("the old clear record was not sealed")
	}
}

func TestValidateHeaders(t *testing.T) {
	got, err := ValidateHeaders(map[string]string{"x-api-key": "k", "Authorization": "Bearer t", "Cookie": "a=b"})
	if err != nil {
		t.Fatal(err)
	}
	if got["X-Api-Key"] != "k" || len(got) != 3 {
		t.Errorf("names not canonical: %v", got)
	}
	if got, err := ValidateHeaders(nil); got != nil || err != nil {
		t.Errorf("no headers: %v, %v", got, err)
	}
	many := map[string]string{}
	for i := range MaxHeaders + 1 {
		many["X-H"+strings.Repeat("a", i)] = "v"
	}
	for _, tc := range []struct {
		name string
		h    map[string]string
		want string
	}{
		{"too many", many, "at most 16"},
		{"host", map[string]string{"host": "x"}, "Host"},
		{"origin", map[string]string{"Origin": "http://x"}, "Origin"},
		{"upgrade", map[string]string{"Upgrade": "h2c"}, "Upgrade"},
		{"connection", map[string]string{"Connection": "close"}, "Connection"},
		{"sec-", map[string]string{"Sec-WebSocket-Key": "x"}, "Sec-Websocket-Key"},
		{"proxy-", map[string]string{"Proxy-Authorization": "x"}, "Proxy-Authorization"},
		{"bad name", map[string]string{"X Bad": "v"}, "not a valid HTTP header name"},
		{"crlf value", map[string]string{"X-A": "v\r\nHost: evil"}, "X-A"},
		{"duplicate", map[string]string{"x-a": "1", "X-A": "2"}, "twice"},
	} {
		_, err := ValidateHeaders(tc.h)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "evil") {
			t.Errorf("%s: error %q repeats the value", tc.name, err)
		}
	}
}

func TestCredentialURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://user:p%40ss@127.0.0.1:9222/", "http://user:p%40ss@127.0.0.1:9222"},
		{"wss://u:secret@Cloud.Test/devtools/browser/x?token=t", "wss://u:secret@cloud.test/devtools/browser/x?token=t"},
		{"ws://tok@h:1/devtools/browser/x", "ws://tok@h:1/devtools/browser/x"},
	} {
		got, err := ValidateBrowserURL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ValidateBrowserURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		if again, err := ValidateBrowserURL(got); err != nil || again != got {
			t.Errorf("not idempotent: %q -> %q, %v", got, again, err)
		}
		if c := CanonicalURL(got); strings.Contains(c, "@") || strings.Contains(c, "secret") || strings.Contains(c, "tok") {
			t.Errorf("CanonicalURL(%q) = %q keeps credentials", got, c)
		}
		if r := Redact(got); strings.Contains(r, "secret") || strings.Contains(r, "p%40ss") || strings.Contains(r, "tok@") || strings.Contains(r, "token=t") {
			t.Errorf("Redact(%q) = %q leaks", got, r)
		}
	}
	if names := HeaderNames(map[string]string{"x-b": "1", "X-A": "2"}); !reflect.DeepEqual(names, []string{"X-A", "X-B"}) {
		t.Errorf("HeaderNames = %v", names)
	}
}
