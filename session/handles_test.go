package session

import "testing"

// TestHandlesBoundToUser: a handle is unique, resolves for its user only,
// and is forgotten when released (only by its own user).
func TestHandlesBoundToUser(t *testing.T) {
	var hs handles
	a, b := hs.take("alice"), hs.take("bob")
	if a == b || a < handleMin || a > handleMax || b < handleMin || b > handleMax {
		t.Fatalf("handles %d and %d", a, b)
	}
	if !hs.foreign("bob", a) || hs.foreign("alice", a) || hs.foreign("bob", 42) {
		t.Error("foreign does not tell another user's handle from one's own or an unknown one")
	}
	hs.release("bob", a) // not bob's to release
	if !hs.foreign("bob", a) || hs.count() != 2 {
		t.Errorf("bob released alice's handle; %d live", hs.count())
	}
	hs.release("alice", a)
	if hs.foreign("bob", a) || hs.count() != 1 {
		t.Errorf("alice's released handle is still live; %d live", hs.count())
	}
}
