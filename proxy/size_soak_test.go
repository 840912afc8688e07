//go:build soak

package proxy

// abandonedSessions is the make soak size of TestAbandonedSessionsDoNotLeak.
const abandonedSessions = 500
