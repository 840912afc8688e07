package session

import (
	"fmt"
	"sync"
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
	wantLast := map[string]time.Time{}
	for _, s := range m.sessions {
		want[s.UserID]++
		wantLast[s.UserID] = latestOf(wantLast[s.UserID], s.LastUsed())
	}
	for user, s := range m.defaults {
		want[user]++
		wantLast[user] = latestOf(wantLast[user], s.LastUsed())
	}
	if len(m.lastOf) != len(m.byUser) {
		t.Errorf("latest activity kept for %d users, %d have sessions", len(m.lastOf), len(m.byUser))
	}
	m.mu.Unlock()
	for _, u := range users {
		n, last := m.UserStats(u)
		if n != want[u] {
			t.Errorf("UserStats(%s) = %d, a scan finds %d", u, n, want[u])
		}
		if !last.Equal(wantLast[u]) {
			t.Errorf("UserStats(%s) last activity %v, a scan finds %v", u, last, wantLast[u])
		}
	}
}

func latestOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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

// TestUserStatsLatestFollowsTouchesAndCloses: the latest activity UserStats
// reports without scanning the user's sessions is the latest of its open
// sessions: raised by a touch, lowered again when the session that held it
// closes, and right after touches and closes that race each other.
func TestUserStatsLatestFollowsTouchesAndCloses(t *testing.T) {
	m := newTestManager(t, Config{MaxSessionsPerUser: 100, MaxSessions: 1000})
	base := time.Now()
	var ss []*Session
	for i := range 3 {
		s := m.Open(m.NewID("dana"), "dana")
		s.setLastUsed(base.Add(time.Duration(i) * time.Minute))
		ss = append(ss, s)
	}
	if _, last := m.UserStats("dana"); !last.Equal(base.Add(2 * time.Minute)) {
		t.Fatalf("last activity %v, want the third session's %v", last, base.Add(2*time.Minute))
	}
	ss[0].setLastUsed(base.Add(5 * time.Minute))
	if _, last := m.UserStats("dana"); !last.Equal(base.Add(5 * time.Minute)) {
		t.Fatalf("after a touch: last activity %v, want %v", last, base.Add(5*time.Minute))
	}
	m.Close(ss[0].ID)
	if n, last := m.UserStats("dana"); n != 2 || !last.Equal(base.Add(2*time.Minute)) {
		t.Fatalf("after closing the latest: %d sessions, last activity %v; want 2, %v", n, last, base.Add(2*time.Minute))
	}
	m.Close(ss[1].ID)
	m.Close(ss[2].ID)
	if n, last := m.UserStats("dana"); n != 0 || !last.IsZero() {
		t.Fatalf("with no session: %d sessions, last activity %v", n, last)
	}

	// Touches racing opens and closes: afterwards the value is a scan's.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			var mine []*Session
			for i := range 200 {
				s := m.Open(m.NewID("erin"), "erin")
				mine = append(mine, s)
				mine[i%len(mine)].touch()
				if i%3 == g%3 && len(mine) > 1 {
					m.Close(mine[0].ID)
					mine = mine[1:]
				}
			}
		})
	}
	wg.Wait()
	checkIndex(t, m, "erin")
}
