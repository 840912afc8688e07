package auth

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestForwardSigner: a header verifies only for the request it was made
// for, with the key of the same secret, within the skew window; the
// instance ID it names comes back.
func TestForwardSigner(t *testing.T) {
	secret := []byte("forward-secret-forward-secret-forward!")
	f, err := NewForwardSigner(secret, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h := f.Sign("POST", "/message?sessionId=abc", "inst1")
	if id, err := f.Verify(h, "POST", "/message?sessionId=abc"); err != nil || id != "inst1" {
		t.Fatalf("Verify of a fresh header: %q %v", id, err)
	}
	other, err := NewForwardSigner([]byte("another-secret-another-secret-another!"), 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, ";")
	for name, c := range map[string]struct{ header, method, target string }{
		"another method":   {h, "GET", "/message?sessionId=abc"},
		"another target":   {h, "POST", "/message?sessionId=abd"},
		"another instance": {strings.Join([]string{parts[0], "inst2", parts[2], parts[3]}, ";"), "POST", "/message?sessionId=abc"},
		"another time":     {strings.Join([]string{parts[0], parts[1], bump(parts[2]), parts[3]}, ";"), "POST", "/message?sessionId=abc"},
		"another secret":   {other.Sign("POST", "/message?sessionId=abc", "inst1"), "POST", "/message?sessionId=abc"},
		"too old":          {f.SignAt("POST", "/x", "inst1", time.Now().Add(-6*time.Second)), "POST", "/x"},
		"from the future":  {f.SignAt("POST", "/x", "inst1", time.Now().Add(6*time.Second)), "POST", "/x"},
		"malformed":        {"v1;inst1;x;y", "POST", "/x"},
		"no instance":      {"v1;;1;y", "POST", "/x"},
		"empty":            {"", "POST", "/x"},
		"another version":  {"v2" + h[2:], "POST", "/message?sessionId=abc"},
	} {
		if _, err := f.Verify(c.header, c.method, c.target); !errors.Is(err, ErrForward) {
			t.Errorf("%s: Verify = %v, want ErrForward", name, err)
		}
	}
	if _, err := NewForwardSigner([]byte("short"), 0); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
}

// bump adds a second to a decimal timestamp.
func bump(ts string) string {
	n, _ := strconv.ParseInt(ts, 10, 64)
	return strconv.FormatInt(n+1, 10)
}
