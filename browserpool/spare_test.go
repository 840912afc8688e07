package browserpool

import "testing"

// TestSpareIsCoversTheTabBeingMade: a spare tab is no session's to attach
// to from its creation on, not only once it is guarded and ready; another
// session of the same user listing the browser's tabs meanwhile would
// otherwise see it and could select it.
func TestSpareIsCoversTheTabBeingMade(t *testing.T) {
	s := &Spare{pending: "MAKING"}
	if !s.Is("MAKING") {
		t.Error("the tab being made is not the spare")
	}
	s.finish("READY", &spareOwner{})
	if s.Is("MAKING") || !s.Is("READY") {
		t.Errorf("after finish: Is(MAKING) = %v, Is(READY) = %v; want false, true", s.Is("MAKING"), s.Is("READY"))
	}
	if s.Is("") || (*Spare)(nil).Is("READY") {
		t.Error("an empty ID or a nil spare is a spare")
	}
}
