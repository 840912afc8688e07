package session

import (
	"sort"
	"time"
)

// Info describes an open session for the self-service API. It is a
// snapshot taken without any browser call.
type Info struct {
	ID           string
	UserID       string
	Transport    string // Transport*
	CreatedAt    time.Time
	LastActivity time.Time // last MCP request or tool call
	Calls        uint64    // tool calls that ran
	InUse        bool      // a stream open or a request or call in flight: never evicted
	Tabs         []TabSummary
}

// TabSummary is one page of a session, as the session knows it without
// asking the browser (a page's URL and title live in the browser).
type TabSummary struct {
	PageID int
	Owned  bool // opened by the session; false: an attached tab of the user's
}

// Usage is what the sessions use of the manager's limits.
type Usage struct {
	Sessions           int            // open sessions, default workspaces included
	MaxSessions        int            // Config.MaxSessions
	MaxSessionsPerUser int            // Config.MaxSessionsPerUser
	PerUser            map[string]int // open sessions of each user
	InUse              int            // sessions with a stream open or something in flight
	StaleTimeout       time.Duration
	IdleTimeout        time.Duration
	Lifetime           time.Duration
}

// List returns the open sessions of user, default workspaces included, or
// every user's when user is "". Oldest first.
func (m *Manager) List(user string) []Info {
	m.mu.Lock()
	var out []Info
	var from []*Session
	add := func(s *Session, transport string) {
		if user != "" && s.UserID != user {
			return
		}
		info := Info{ID: s.ID, UserID: s.UserID, Transport: transport, InUse: m.inUseLocked(s)}
		if rec := m.life[s]; rec != nil {
			info.CreatedAt, info.Calls = rec.opened, rec.calls
			if rec.transport != "" && transport == "" {
				info.Transport = rec.transport
			}
		}
		if info.Transport == "" {
			info.Transport = TransportStreamable // registered by its first tool call
		}
		out = append(out, info)
		from = append(from, s)
	}
	for _, s := range m.sessions {
		add(s, "")
	}
	for _, s := range m.defaults {
		add(s, TransportDefault)
	}
	m.mu.Unlock()
	for i, s := range from {
		out[i].LastActivity = s.LastUsed()
		out[i].Tabs = s.tabSummaries()
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Get returns the open session id (a default workspace's ID included).
func (m *Manager) Get(id string) (Info, bool) {
	owner, ok := m.ownerOf(id)
	if !ok {
		return Info{}, false
	}
	for _, info := range m.List(owner) {
		if info.ID == id {
			return info, true
		}
	}
	return Info{}, false
}

// ownerOf returns the owner of open session id, default workspaces included.
func (m *Manager) ownerOf(id string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sessions[id]; ok {
		return s.UserID, true
	}
	for _, s := range m.defaults {
		if s.ID == id {
			return s.UserID, true
		}
	}
	return "", false
}

// End closes open session id (a default workspace's ID included) for
// reason, ending its transport first so that its client gets 404 next, and
// reports whether it was open. A call in flight is cancelled.
func (m *Manager) End(id, reason string) bool {
	m.mu.Lock()
	var ended []ending
	if s, ok := m.sessions[id]; ok {
		m.dropLocked(id)
		ended = append(ended, m.takeLocked(s, reason))
	}
	for user, s := range m.defaults {
		if s.ID == id {
			delete(m.defaults, user)
			ended = append(ended, m.takeLocked(s, reason))
		}
	}
	m.mu.Unlock()
	m.end(ended)
	return len(ended) > 0
}

// Usage returns what the open sessions use of the limits.
func (m *Manager) Usage() Usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := Usage{
		Sessions: len(m.sessions) + len(m.defaults), MaxSessions: m.cfg.MaxSessions, MaxSessionsPerUser: m.cfg.MaxSessionsPerUser,
		PerUser: map[string]int{}, StaleTimeout: m.cfg.StaleTimeout, IdleTimeout: m.cfg.IdleTimeout, Lifetime: m.cfg.Lifetime,
	}
	for _, s := range m.sessions {
		u.PerUser[s.UserID]++
		if m.inUseLocked(s) {
			u.InUse++
		}
	}
	for _, s := range m.defaults {
		u.PerUser[s.UserID]++
	}
	return u
}

// tabSummaries returns the session's pages in the order they were opened.
func (s *Session) tabSummaries() []TabSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TabSummary, 0, len(s.order))
	for _, id := range s.order {
		if t := s.tabs[id]; t != nil {
			out = append(out, TabSummary{PageID: id, Owned: t.Owned})
		}
	}
	return out
}
