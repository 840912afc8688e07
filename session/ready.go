package session

// AtLimit reports whether the proxy holds as many sessions as MaxSessions
// allows (default workspaces included, as CheckOpen counts them), so that
// no new session could open. The readiness probe uses it to steer new
// clients to another instance.
func (m *Manager) AtLimit() bool { return m.Count() >= m.cfg.MaxSessions }
