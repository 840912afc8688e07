package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidateUserID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"empty", "", false},
		{"64 chars", strings.Repeat("a", 64), true},
		{"65 chars", strings.Repeat("a", 65), false},
		{"unicode", "jösé", false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"all allowed punctuation", "a.b_c-d@e", true},
		{"digits and case", "User01", true},
		// Dot-only IDs are path components (".", ".."): a per-user
		// directory named so would be its parent or the parent's parent.
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"three dots", "...", false},
		{"64 dots", strings.Repeat(".", 64), false},
		{"leading dots", "..alice", true},
		{"trailing dot", "alice.", true},
		{"dots inside", "a..b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateUserID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateUserID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "A-Z, a-z, 0-9") {
				t.Errorf("error %q does not say what is allowed", err)
			}
		})
	}
}

func TestParsePerms(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " , ,", want: nil},
		{in: "browser:read, admin", want: []string{PermRead, PermAdmin}},
		{in: "admin,browser:read,admin, browser:read", want: []string{PermAdmin, PermRead}},
		{in: "browser:all-tabs,,browser:script", want: []string{PermAllTabs, PermScript}},
		{in: "browser:read,browser:fly", wantErr: `"browser:fly"`},
		{in: "Admin", wantErr: `"Admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePerms(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParsePerms(%q) = %v, want error", tt.in, got)
				}
				for _, s := range append([]string{tt.wantErr}, AllPerms()...) {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %s", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePerms(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("ParsePerms(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestPermLists(t *testing.T) {
	all := AllPerms()
	want := []string{PermRead, PermWrite, PermScript, PermAllTabs, PermAdmin}
	if !slices.Equal(all, want) {
		t.Errorf("AllPerms() = %v, want %v", all, want)
	}
	def := DefaultPerms()
	if !slices.Equal(def, []string{PermRead, PermWrite, PermScript}) {
		t.Errorf("DefaultPerms() = %v", def)
	}
	def[0] = "mutated"
	if DefaultPerms()[0] != PermRead {
		t.Error("DefaultPerms returns shared state")
	}
}

func TestPrincipalHas(t *testing.T) {
	p := Principal{UserID: "u", Perms: []string{PermAdmin, PermRead}}
	if !p.Has(PermRead) || !p.Has(PermAdmin) {
		t.Errorf("Has missing granted perm: %+v", p)
	}
	if p.Has(PermWrite) {
		t.Error("admin must not imply browser:write")
	}
}

func TestCanActAs(t *testing.T) {
	tests := []struct {
		name string
		p    Principal
		user string
		want bool
	}{
		{"self", Principal{UserID: "alice"}, "alice", true},
		{"other", Principal{UserID: "alice", Perms: DefaultPerms()}, "bob", false},
		{"all-tabs is not admin", Principal{UserID: "alice", Perms: []string{PermAllTabs}}, "bob", false},
		{"admin", Principal{UserID: "alice", Perms: []string{PermAdmin}}, "bob", true},
		{"zero principal, empty user", Principal{}, "", false},
		{"case sensitive", Principal{UserID: "alice"}, "Alice", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.CanActAs(tt.user); got != tt.want {
				t.Errorf("%+v.CanActAs(%q) = %v, want %v", tt.p, tt.user, got, tt.want)
			}
		})
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("FromContext on empty context reported a principal")
	}
	want := Principal{UserID: "alice", Perms: []string{PermRead}}
	got, ok := FromContext(WithPrincipal(context.Background(), want))
	if !ok || got.UserID != want.UserID || !slices.Equal(got.Perms, want.Perms) {
		t.Errorf("FromContext = %+v, %v; want %+v, true", got, ok, want)
	}
}

// TestContextAsWithValue: WithPrincipal's context behaves as
// context.WithValue's: other values and the parent's cancellation pass
// through it, a later WithPrincipal wins, contexts derived from it keep
// the principal, and it allocates once.
func TestContextAsWithValue(t *testing.T) {
	type otherKey struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "v"))
	ctx := WithPrincipal(parent, Principal{UserID: "alice"})
	if got := ctx.Value(otherKey{}); got != "v" {
		t.Errorf("parent's value through WithPrincipal: %v", got)
	}
	child, stop := context.WithTimeout(WithPrincipal(ctx, Principal{UserID: "bob"}), time.Hour)
	defer stop()
	if p, ok := FromContext(child); !ok || p.UserID != "bob" {
		t.Errorf("derived context: %+v, %v; want bob", p, ok)
	}
	if p, _ := FromContext(ctx); p.UserID != "alice" {
		t.Errorf("outer principal changed to %q", p.UserID)
	}
	cancel()
	select {
	case <-child.Done():
	case <-time.After(time.Second):
		t.Fatal("the parent's cancellation did not reach a context derived through WithPrincipal")
	}
	if s := fmt.Sprint(ctx); strings.Contains(s, "alice") || !strings.HasSuffix(s, ".WithPrincipal") {
		t.Errorf("String() = %q", s)
	}
	bg := context.Background()
	p := Principal{UserID: "alice", Perms: []string{PermRead}}
	if n := testing.AllocsPerRun(100, func() { contextSink = WithPrincipal(bg, p) }); n != 1 {
		t.Errorf("WithPrincipal: %v allocations, want 1", n)
	}
}

// contextSink makes TestContextAsWithValue's contexts escape, as a
// request's do.
var contextSink context.Context
