//go:build !soak

package proxy

// abandonedSessions is how many sessions TestAbandonedSessionsDoNotLeak
// opens and abandons in make test: enough for every way a client vanishes
// to happen many times, few enough for a loaded 2-core machine. make soak
// (the soak build tag) opens 500.
const abandonedSessions = 60
