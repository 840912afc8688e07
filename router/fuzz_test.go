package router

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// FuzzValidateBrowserURL checks that validation never panics, that what it
// accepts is a fixed point (validating it again gives it back), that
// CanonicalURL of an accepted URL is stable, and that a refusal never
// echoes the URL in its message.
func FuzzValidateBrowserURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := ValidateBrowserURL(raw)
		canon := CanonicalURL(raw)
		_ = Redact(raw)
		if err != nil {
			var ue *URLError
			if !errors.As(err, &ue) {
				t.Fatalf("error of type %T, want *URLError", err)
			}
			// Long secrets cannot come from the fixed text of the messages.
			if u, perr := url.Parse(strings.TrimSpace(raw)); perr == nil {
				for _, s := range urlSecrets(u) {
					if len(s) >= 16 && unreserved(s) && strings.Contains(err.Error(), s) &&
						!strings.Contains(strings.ToLower(u.Scheme+u.Host), strings.ToLower(s)) {
						t.Fatalf("refusal %q carries the secret %q of %q", err, s, raw)
					}
				}
			}
			return
		}
		if len(v) > MaxURLLength {
			t.Fatalf("accepted a %d-character URL", len(v))
		}
		again, err := ValidateBrowserURL(v)
		if err != nil {
			t.Fatalf("%q was accepted as %q, which is refused: %v", raw, v, err)
		}
		if again != v {
			t.Fatalf("%q was accepted as %q, which validates to %q", raw, v, again)
		}
		if c := CanonicalURL(v); c != canon || CanonicalURL(c) != c {
			t.Fatalf("canonical forms differ: of the input %q, of the result %q, of itself %q", canon, c, CanonicalURL(c))
		}
	})
}

// urlSecrets returns the parts of u that are credentials: the password (or
// a user name without one, which may be a token), every query value and
// every bare query key ("?token").
func urlSecrets(u *url.URL) []string {
	var out []string
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw)
		} else {
			out = append(out, u.User.Username())
		}
	}
	if u.RawQuery != "" {
		for _, part := range strings.Split(u.RawQuery, "&") {
			if _, val, ok := strings.Cut(part, "="); ok {
				out = append(out, val)
			} else {
				out = append(out, part)
			}
		}
	}
	return out
}

// unreserved reports whether s is made only of characters that URLs never
// escape, so that it reads the same in every part of a URL.
func unreserved(s string) bool {
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '_', r == '.', r == '~':
		default:
			return false
		}
	}
	return s != ""
}

// FuzzRedact checks that Redact never panics and that its output carries no
// password and no query value of its input. A secret made of unreserved
// characters may only show up inside a part Redact keeps (scheme, user name,
// host, path, query keys, fragment) or the word "redacted".
func FuzzRedact(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		out := Redact(raw)
		u, err := url.Parse(raw)
		if err != nil {
			if out != "redacted" {
				t.Fatalf("unparsable URL redacted to %q", out)
			}
			return
		}
		bare := *u // the URL without its credentials, as Redact writes it
		bare.User, bare.RawQuery, bare.ForceQuery = nil, "", false
		if bare.Opaque != "" {
			bare.Opaque = "redacted"
		}
		public := []string{"redacted", bare.String()}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				public = append(public, u.User.Username(), url.User(u.User.Username()).String())
			}
		}
		for _, part := range strings.Split(u.RawQuery, "&") {
			if key, _, ok := strings.Cut(part, "="); ok {
				public = append(public, key)
			}
		}
		for _, s := range urlSecrets(u) {
			if len(s) < 3 || !unreserved(s) || !strings.Contains(out, s) {
				continue
			}
			explained := false
			for _, p := range public {
				if strings.Contains(p, s) {
					explained = true
					break
				}
			}
			if !explained {
				t.Fatalf("Redact(%q) = %q keeps the secret %q", raw, out, s)
			}
		}
	})
}
