package router

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestValidateBrowserURL(t *testing.T) {
	good := []struct{ in, want string }{
		{"http://127.0.0.1:9222", "http://127.0.0.1:9222"},
		{"http://127.0.0.1:9222/", "http://127.0.0.1:9222"},
		{"  HTTP://LocalHost:9222/ ", "http://localhost:9222"},
		{"https://Chrome.Example.com:443", "https://chrome.example.com:443"},
		{"http://[::1]:9222", "http://[::1]:9222"},
		{"ws://127.0.0.1:9222/devtools/browser/abc-123", "ws://127.0.0.1:9222/devtools/browser/abc-123"},
		{"WS://Host:9222/devtools/browser/ABC", "ws://host:9222/devtools/browser/ABC"},
		{"wss://cloud.example.com/devtools/browser/x?token=t0k", "wss://cloud.example.com/devtools/browser/x?token=t0k"},
		{"wss://cloud.example.com:8443/devtools/page/1", "wss://cloud.example.com:8443/devtools/page/1"},
	}
	for _, tc := range good {
		got, err := ValidateBrowserURL(tc.in)
		if err != nil {
			t.Errorf("ValidateBrowserURL(%q) error: %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ValidateBrowserURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// Normalisation must be idempotent: the store re-validates.
		again, err := ValidateBrowserURL(got)
		if err != nil || again != got {
			t.Errorf("ValidateBrowserURL(%q) = %q, %v; want %q unchanged", got, again, err, got)
		}
	}

	bad := []struct{ name, in, reason string }{
		{"empty", "", "empty"},
		{"missing port", "http://127.0.0.1", "add the DevTools port, e.g. http://127.0.0.1:9222"},
		{"missing port https", "https://example.com/", "add the DevTools port"},
		{"ftp scheme", "ftp://127.0.0.1:9222", "not supported"},
		{"javascript", "javascript:alert(1)", "not supported"},
		{"no scheme", "127.0.0.1:9222", ""},
		{"empty host", "http://:9222", "host is empty"},
		{"empty host ws", "ws:///devtools/browser/x", "host is empty"},
		{"empty label", "http://a0..:9222", "empty label"},
		{"empty inner label", "http://a..b:9222", "empty label"},
		{"leading dot", "http://.a:9222", "empty label"},
		{"stray bracket", "http://0].:1", "a bracket belongs only around an IPv6 address"},
		{"userinfo without user", "http://:pw@127.0.0.1:9222", "empty user name"},
		{"http with query", "http://127.0.0.1:9222?x=1", "query is not allowed"},
		{"http empty query", "http://127.0.0.1:9222/?", "query is not allowed"},
		{"http with path", "http://127.0.0.1:9222/json/version", "path must be empty"},
		{"fragment", "http://127.0.0.1:9222/#frag", "fragments are not allowed"},
		{"ws fragment", "ws://h:1/devtools/browser/x#f", "fragments are not allowed"},
		{"ws without devtools path", "ws://127.0.0.1:9222/", "must start with /devtools/"},
		{"ws bare devtools", "ws://127.0.0.1:9222/devtools/", "must start with /devtools/"},
		{"port zero", "http://127.0.0.1:0", "out of range"},
		{"port too big", "http://127.0.0.1:70000", "out of range"},
		{"bad port", "http://127.0.0.1:abc", ""},
		{"too long", "ws://h:1/devtools/browser/" + strings.Repeat("a", MaxURLLength), "limit is 2048"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ValidateBrowserURL(tc.in)
			if err == nil {
				t.Fatalf("ValidateBrowserURL(%q) = %q, want error", tc.in, got)
			}
			var ue *URLError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v is %T, want *URLError", err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "invalid browser URL: ") {
				t.Errorf("error %q lacks prefix", msg)
			}
			if !strings.Contains(msg, tc.reason) {
				t.Errorf("error %q does not contain %q", msg, tc.reason)
			}
			for _, leak := range []string{"secret", "pw@", "x=1"} {
				if strings.Contains(msg, leak) || strings.Contains(ue.URL, leak) {
					t.Errorf("error %q / URL %q leaks %q", msg, ue.URL, leak)
				}
			}
		})
	}
}

func TestValidateBrowserURLLengthBoundary(t *testing.T) {
	prefix := "ws://h:1/devtools/browser/"
	ok := prefix + strings.Repeat("a", MaxURLLength-len(prefix))
	if _, err := ValidateBrowserURL(ok); err != nil {
		t.Errorf("URL of exactly %d chars rejected: %v", len(ok), err)
	}
	if _, err := ValidateBrowserURL(ok + "a"); err == nil {
		t.Errorf("URL of %d chars accepted", len(ok)+1)
	}
}

func TestCanonicalURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://127.0.0.1:9222", "tcp://127.0.0.1:9222"},
		{"ws://127.0.0.1:9222/devtools/browser/abc", "tcp://127.0.0.1:9222"},
		{"HTTP://LOCALHOST:9222/", "tcp://127.0.0.1:9222"},
		{"http://LOCALHOST.:9222", "tcp://127.0.0.1:9222"},
		{"http://app.localhost:9222", "tcp://127.0.0.1:9222"},
		{"http://[::1]:9222", "tcp://127.0.0.1:9222"},
		{"http://[::ffff:127.0.0.1]:9222", "tcp://127.0.0.1:9222"},
		{"http://127.1:9222", "tcp://127.0.0.1:9222"},
		{"http://127.255.0.9:9222", "tcp://127.0.0.1:9222"},
		{"http://0.0.0.0:9222", "tcp://127.0.0.1:9222"},
		{"http://[::]:9222", "tcp://127.0.0.1:9222"},
		{"http://0x7f000001:9222", "tcp://127.0.0.1:9222"},
		{"http://0300.0250.1.2:9222", "tcp://192.168.1.2:9222"},
		{"http://3232235778:9222", "tcp://192.168.1.2:9222"},
		{"http://[::ffff:10.0.0.5]:9222", "tcp://10.0.0.5:9222"},
		{"http://[FD00::1]:9222", "tcp://[fd00::1]:9222"},
		{"http://user:pw@10.0.0.5:9222", "tcp://10.0.0.5:9222"},
		{"wss://Cloud.Example.com./devtools/browser/x?token=a", "tcp://cloud.example.com:443"},
		{"https://cloud.example.com:443", "tcp://cloud.example.com:443"},
		{"ws://h/devtools/browser/x", "tcp://h:80"},
		{"http://h:80", "tcp://h:80"},
		{"ws://[::1]:9222/devtools/browser/x", "tcp://127.0.0.1:9222"},
		// Not IPv4 to a browser either: names.
		{"http://1.2.3.4.5:9222", "tcp://1.2.3.4.5:9222"},
		{"http://256.1.1.1:9222", "tcp://256.1.1.1:9222"},
		{"http://09.1:9222", "tcp://09.1:9222"},
	}
	for _, tc := range tests {
		got := CanonicalURL(tc.in)
		if got != tc.want {
			t.Errorf("CanonicalURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again := CanonicalURL(got); again != got {
			t.Errorf("CanonicalURL(%q) = %q: not idempotent", got, again)
		}
	}
	// Other names are not resolved.
	if a, b := CanonicalURL("http://browser.test:9222"), CanonicalURL("http://10.0.0.5:9222"); a == b {
		t.Errorf("a name folded into an address without a lookup: %q", a)
	}
	if a, b := CanonicalURL("http://h:9222"), CanonicalURL("http://h:9223"); a == b {
		t.Errorf("two ports folded to %q", a)
	}
}

func TestEndpointKeys(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("::ffff:10.0.0.5"), netip.MustParseAddr("::1")}
	got := EndpointKeys("ws://Browser.Test.:9222/devtools/browser/x", addrs)
	want := []string{"tcp://10.0.0.5:9222", "tcp://127.0.0.1:9222", "tcp://browser.test:9222"}
	if !slices.Equal(got, want) {
		t.Errorf("EndpointKeys = %q, want %q", got, want)
	}
	if got := EndpointKeys("https://browser.test", nil); !slices.Equal(got, []string{"tcp://browser.test:443"}) {
		t.Errorf("EndpointKeys without addresses = %q", got)
	}
}

func TestValidateBrowserURLWritesIPv4Plainly(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.1:9222":                   "http://127.0.0.1:9222",
		"ws://0x7f.1:9222/devtools/browser/x": "ws://127.0.0.1:9222/devtools/browser/x",
		"http://2130706433:9222":              "http://127.0.0.1:9222",
		"http://localhost.:9222":              "http://localhost.:9222",
	} {
		if got, err := ValidateBrowserURL(in); err != nil || got != want {
			t.Errorf("ValidateBrowserURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestRedact(t *testing.T) {
	in := "wss://u:secret@h/devtools/browser/x?token=secret"
	got := Redact(in)
	if strings.Contains(got, "secret") {
		t.Fatalf("Redact(%q) = %q leaks the secret", in, got)
	}
	want := "wss://u:redacted@h/devtools/browser/x?token=redacted"
	if got != want {
		t.Errorf("Redact(%q) = %q, want %q", in, got, want)
	}

	tests := []struct{ in, want string }{
		{"http://127.0.0.1:9222", "http://127.0.0.1:9222"},
		{"ws://h:1/devtools/browser/x?a=1&b=2", "ws://h:1/devtools/browser/x?a=redacted&b=redacted"},
		{"ws://h:1/devtools/browser/x?secret", "ws://h:1/devtools/browser/x?redacted"},
		{"http://token@h:1", "http://redacted@h:1"},
		{"http://u:secret@h:bad", "redacted"}, // unparseable
	}
	for _, tc := range tests {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRedactRemembersOnlyWhatItLeaves: Redact answers alike the first time
// and later ones, and keeps in memory only URLs it leaves unchanged, never
// one it had to redact.
func TestRedactRemembersOnlyWhatItLeaves(t *testing.T) {
	for _, raw := range []string{
		"http://127.0.0.1:9222", "http://u:secret@h:1/x", "http://h:1/?token=secret", "ws://h/devtools/browser/ab?k",
		"javascript:secret", "http://[::1", "HTTP://Host:1/a%2Fb",
	} {
		first, again := Redact(raw), Redact(raw)
		if first != again || first != redact(raw) {
			t.Errorf("Redact(%q) = %q, then %q; redact says %q", raw, first, again, redact(raw))
		}
		if _, kept := unredacted.Load(raw); kept != (first == raw) {
			t.Errorf("Redact(%q) = %q: remembered %v", raw, first, kept)
		}
	}
}
