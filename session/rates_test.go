package session

import (
	"testing"
	"time"
)

func TestCallRatesWindow(t *testing.T) {
	var r callRates
	t0 := time.Unix(1_000_000, 0)
	r.record("alice", false, t0)
	r.record("alice", true, t0.Add(500*time.Millisecond))
	r.record("alice", false, t0.Add(30*time.Second))
	r.record("bob", true, t0)
	if c, e := r.perMinute("alice", t0.Add(30*time.Second)); c != 3 || e != 1 {
		t.Errorf("alice at +30s: %d calls, %d errors; want 3, 1", c, e)
	}
	if c, e := r.perMinute("alice", t0.Add(65*time.Second)); c != 1 || e != 0 {
		t.Errorf("alice at +65s: %d calls, %d errors; want 1, 0 (the first second left the window)", c, e)
	}
	if c, e := r.perMinute("carol", t0); c != 0 || e != 0 {
		t.Errorf("carol: %d, %d; want nothing", c, e)
	}
	// A bucket reused a minute later starts from zero.
	r.record("bob", false, t0.Add(rateWindow*time.Second))
	if c, e := r.perMinute("bob", t0.Add(rateWindow*time.Second)); c != 1 || e != 0 {
		t.Errorf("bob a minute later: %d, %d; want 1, 0", c, e)
	}
}

func TestCallRatesDropQuietUsers(t *testing.T) {
	var r callRates
	t0 := time.Unix(2_000_000, 0)
	for i := range rateUsers {
		r.record(string(rune('a'+i%26))+string(rune(i)), false, t0)
	}
	r.record("late", false, t0.Add(2*rateWindow*time.Second))
	if n := len(r.users); n != 1 {
		t.Errorf("%d users kept, want 1: the quiet ones are dropped once the map is full", n)
	}
}
