package session

import (
	"sync"
	"time"
)

// Close reasons, the "reason" of session_close audit lines. The two expiries,
// CloseIdle and CloseLifetime, are also counted under their reason in
// mbp_session_refusals_total (the session is refused further service).
const (
	CloseClient       = "client"       // the client or its transport ended it (DELETE, closed stream)
	CloseIdle         = "idle_timeout" // no MCP request for Config.IdleTimeout
	CloseLifetime     = "lifetime"     // open for Config.Lifetime, however busy
	CloseUnregistered = "unregistered" // its user's registration was deleted
	CloseShutdown     = "shutdown"     // the proxy is stopping
	CloseEvicted      = "evicted"      // not in use, and the least recently used of a user at the limit who opened another
	CloseStale        = "stale"        // no open stream and no MCP request for Config.StaleTimeout
	CloseAPI          = "api"          // closed with DELETE /api/sessions/{id}
)

// Transports of a session, the "transport" of Info.
const (
	TransportSSE        = "sse"        // legacy HTTP+SSE: the session lives as long as its GET /sse stream
	TransportStreamable = "streamable" // Streamable HTTP with an Mcp-Session-Id
	TransportDefault    = "default"    // a user's default workspace (stateless protocol, no session ID)
)

// reservation is a session ID handed out to owner at a time, not registered
// yet. Reservations that are never registered expire with the idle bound.
type reservation struct {
	owner string
	at    time.Time
}

// lifeRecord is what the manager keeps of an open session besides the
// session itself: when it began, and how to end its transport.
type lifeRecord struct {
	opened    time.Time
	end       func() // ends the session's streams and transport state; nil: none
	transport string // Transport*; "" until the transport says
	// held counts the session's open streams and requests in flight (Hold);
	// an SSE session's own stream is held for its whole life. A held
	// session is in use: never evicted, never stale.
	held  int
	calls uint64 // tool calls that ran
}

// ending is a session taken out of the manager's maps, to be closed.
type ending struct {
	s      *Session
	reason string
	end    func()
}

// OpenWithEnd is Open that also records end, the way to end the session's
// transport (cancel its SSE stream, terminate its streamable session). The
// manager calls end, once and without holding any lock, when it closes the
// session on its own: expiry, the user's unregistration, shutdown. It does
// not call end from Close, which the transport calls when it is ending the
// session itself. A session that is open already keeps the end it has.
func (m *Manager) OpenWithEnd(id, owner string, end func()) *Session {
	return m.OpenVia(id, owner, "", end)
}

// OpenVia is OpenWithEnd that also records the session's transport
// (Transport*). An SSE session counts as in use for its whole life: it ends
// when its stream does.
func (m *Manager) OpenVia(id, owner, transport string, end func()) *Session {
	m.mu.Lock()
	delete(m.reserved, id)
	s, ok := m.sessions[id]
	if !ok {
		s = m.newSession(id, owner)
		m.addLocked(s)
	}
	if rec := m.life[s]; rec != nil {
		if rec.end == nil {
			rec.end = end
		}
		if rec.transport == "" && transport != "" {
			rec.transport = transport
			if transport == TransportSSE {
				rec.held++
			}
		}
	}
	m.mu.Unlock()
	if !ok {
		s.logged(m.cfg.Log.Info()).Msg("session opened")
		m.cfg.Audit.Info().Bool("audit", true).Str("event", "session_open").Str("user", owner).Str("session", id).Send()
	}
	return s
}

// Touch records activity of session id (any MCP request of its client), so
// that it is not idle. Unknown IDs are ignored.
func (m *Manager) Touch(id string) {
	m.mu.Lock()
	s := m.sessions[id]
	m.mu.Unlock()
	if s != nil {
		s.touch()
	}
}

// Hold marks session id in use until release is called: a stream of it is
// open, or a request of it is being answered. Unknown IDs are ignored.
// release may be called once, also after the session closed.
func (m *Manager) Hold(id string) (release func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[id]
	rec := m.life[s]
	if s == nil || rec == nil {
		return func() {}
	}
	rec.held++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			rec.held--
			m.mu.Unlock()
			s.touch() // stale counts from the end of the last request or stream
		})
	}
}

// inUseLocked reports whether s has an open stream, a request or a tool
// call in flight. Callers hold m.mu.
func (m *Manager) inUseLocked(s *Session) bool {
	if rec := m.life[s]; rec != nil && rec.held > 0 {
		return true
	}
	if !s.calls.TryLock() {
		return true
	}
	// The probe takes nothing.
	s.calls.Unlock()
	return false
}

// evictableLocked returns owner's least recently used session that is not
// in use, or nil. Callers hold m.mu.
func (m *Manager) evictableLocked(owner string) *Session {
	var lru *Session
	var lruAt time.Time
	for _, s := range m.byUser[owner] {
		if m.inUseLocked(s) {
			continue
		}
		if at := s.LastUsed(); lru == nil || at.Before(lruAt) {
			lru, lruAt = s, at
		}
	}
	return lru
}

// Lifetime returns how long a session may live, however busy.
func (m *Manager) Lifetime() time.Duration { return m.cfg.Lifetime }

// SweepInterval returns how often Run looks for expired sessions: a quarter
// of the shorter bound, at most a minute. A session is closed at most this
// late.
func (m *Manager) SweepInterval() time.Duration {
	return max(min(min(m.cfg.IdleTimeout, m.cfg.Lifetime, m.cfg.StaleTimeout)/4, time.Minute), time.Millisecond)
}

// expire closes, as of now, the sessions (default workspaces included) idle
// for IdleTimeout (and not running a tool call) or open for Lifetime, and
// drops reservations older than IdleTimeout. It also closes the sessions
// with an ID that are not in use (no stream, nothing in flight) and had no
// request for StaleTimeout: clients that went away without a DELETE. Default
// workspaces are not stale: every stateless call of their user shares one.
func (m *Manager) expire(now time.Time) {
	idleSince, bornBefore := now.Add(-m.cfg.IdleTimeout), now.Add(-m.cfg.Lifetime)
	staleSince := now.Add(-m.cfg.StaleTimeout)
	reason := func(s *Session) string {
		if rec := m.life[s]; rec != nil && rec.opened.Before(bornBefore) {
			return CloseLifetime
		}
		if s.LastUsed().Before(idleSince) && s.calls.TryLock() {
			// A session running a tool call is busy, not idle, however
			// long the call takes; the probe takes nothing.
			s.calls.Unlock()
			return CloseIdle
		}
		return ""
	}
	m.mu.Lock()
	var ended []ending
	for id, s := range m.sessions {
		r := reason(s)
		if r == "" && s.LastUsed().Before(staleSince) && !m.inUseLocked(s) {
			r = CloseStale
		}
		if r != "" {
			m.dropLocked(id)
			ended = append(ended, m.takeLocked(s, r))
		}
	}
	for user, s := range m.defaults {
		if r := reason(s); r != "" {
			delete(m.defaults, user)
			ended = append(ended, m.takeLocked(s, r))
		}
	}
	for id, r := range m.reserved {
		if r.at.Before(idleSince) {
			delete(m.reserved, id)
		}
	}
	m.mu.Unlock()
	m.end(ended)
}

// takeLocked forgets the lifetime of s, which the caller has just removed
// from m.sessions or m.defaults, and returns what end needs to close it.
// Callers hold m.mu.
func (m *Manager) takeLocked(s *Session, reason string) ending {
	e := ending{s: s, reason: reason}
	if rec := m.life[s]; rec != nil {
		e.end = rec.end
	}
	delete(m.life, s)
	return e
}

// end ends the transports of the sessions first (so that their clients stop
// sending), then closes them.
func (m *Manager) end(ended []ending) {
	for _, e := range ended {
		if e.end != nil {
			e.end()
		}
	}
	if len(ended) == 1 {
		m.finish(ended[0].s, ended[0].reason)
		return
	}
	// Side by side: one user's hung browser must not hold up closing
	// everyone else's sessions (the sweep, shutdown).
	var wg sync.WaitGroup
	for _, e := range ended {
		wg.Go(func() { m.finish(e.s, e.reason) })
	}
	wg.Wait()
}

// finish closes s, which is out of the manager's maps already: it cancels
// a running tool call (never waiting for it: one endless call must not stall
// the sweep that expires every user's sessions), closes the tabs s opened
// (unless KeepTabs), and logs, audits and counts the close.
func (m *Manager) finish(s *Session, reason string) {
	s.close(m.cfg.KeepTabs)
	s.logged(m.cfg.Log.Info()).Str("reason", reason).Msg("session closed")
	m.cfg.Audit.Info().Bool("audit", true).Str("event", "session_close").Str("user", s.UserID).Str("session", s.ID).
		Str("reason", reason).Send()
	if reason == CloseIdle || reason == CloseLifetime || reason == CloseStale || reason == CloseEvicted {
		m.cfg.Metrics.refused(reason)
	}
}
