package session

import (
	"fmt"
	"testing"
	"time"
)

// checkIndex fails t unless m.byUser holds exactly m.sessions, by owner,
// with no empty entries, and UserStats agrees with a scan of every session.
func checkIndex(t *testing.T, m *Manager, users ...string) {
	t.Helper()
	m.mu.Lock()
	indexed := 0
	for user, mine := range m.byUser {
		if len(mine) == 0 {
			t.Errorf("empty index entry for %s", user)
		}
		for id, s := range mine {
			indexed++
			if m.sessions[id] != s || s.UserID != user {
				t.Errorf("index has %s under %s, sessions has %v", id, user, m.sessions[id])
			}
		}
	}
	if indexed != len(m.sessions) {
		t.Errorf("index holds %d sessions, the manager %d", indexed, len(m.sessions))
	}
	want := map[string]int{}
	for _, s := range m.sessions {
		want[s.UserID]++
	}
	for user := range m.defaults {
		want[user]++
	}
	m.mu.Unlock()
	for _, u := range users {
		if n, _ := m.UserStats(u); n != want[u] {
			t.Errorf("UserStats(%s) = %d, a scan finds %d", u, n, want[u])
		}
	}
}

// TestUserIndexFollowsEveryWayIn: the per-user index behind UserStats and
// CheckOpen stays equal to the sessions themselves through every way a
// session is opened or ends: Open, a first tool call's registration, Close,
// End, CloseUser, eviction at the per-user limit, expiry, and CloseAll.
func TestUserIndexFollowsEveryWayIn(t *testing.T) {
	m := newTestManager(t, Config{MaxSessionsPerUser: 3, MaxSessions: 100})
	users := []string{"alice", "bob", "carol"}
	ids := map[string][]string{}
	for _, u := range users {
		for range 3 {
			id := m.NewID(u)
			m.Open(id, u)
			ids[u] = append(ids[u], id)
		}
	}
	checkIndex(t, m, users...)
	if n, _ := m.UserStats("alice"); n != 3 {
		t.Fatalf("alice has %d sessions, want 3", n)
	}

	m.Close(ids["alice"][0])
	checkIndex(t, m, users...)
	if !m.End(ids["bob"][1], CloseClient) {
		t.Fatal("End of bob's open session reported none")
	}
	checkIndex(t, m, users...)

	// carol is at the limit: CheckOpen evicts her least recently used one.
	m.mu.Lock()
	m.sessions[ids["carol"][2]].setLastUsed(time.Now().Add(-time.Hour))
	m.mu.Unlock()
	if err := m.CheckOpen("carol"); err != nil {
		t.Fatalf("carol at the limit with idle sessions: %v", err)
	}
	if _, ok := m.Owner(ids["carol"][2]); ok {
		t.Error("carol's least recently used session was not the one evicted")
	}
	checkIndex(t, m, users...)
	if n, _ := m.UserStats("carol"); n != 2 {
		t.Errorf("carol has %d sessions after the eviction, want 2", n)
	}

	if n := m.CloseUser("alice"); n != 2 {
		t.Errorf("CloseUser(alice) closed %d, want 2", n)
	}
	checkIndex(t, m, users...)
	if n, _ := m.UserStats("alice"); n != 0 {
		t.Errorf("alice has %d sessions after CloseUser", n)
	}

	// Expiry: everything is idle a day from now.
	m.expire(time.Now().Add(24 * time.Hour))
	checkIndex(t, m, users...)
	if n := m.Count(); n != 0 {
		t.Errorf("%d sessions after expiry", n)
	}

	for i := range 5 {
		u := fmt.Sprintf("u%d", i)
		m.Open(m.NewID(u), u)
	}
	m.CloseAll()
	checkIndex(t, m, "u0", "u4")
}
