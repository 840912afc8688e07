package session

import (
	"sync"
	"time"
)

// rateWindow is the span of the per-user call rates: calls and errors per
// minute, counted in one-second buckets.
const rateWindow = 60

// rateUsers is how many users' windows are kept before the quiet ones
// (nothing within the window) are dropped.
const rateUsers = 4096

// callRates counts each user's tool calls and failed calls over the last
// minute, for the dashboard. Its zero value is ready.
type callRates struct {
	mu    sync.Mutex
	users map[string]*rateRing
}

type rateBucket struct {
	sec           int64 // Unix second the counts are of
	calls, errors uint32
}

type rateRing struct {
	buckets [rateWindow]rateBucket
	last    int64 // newest second counted
}

// record counts one call of user at now, failed or not.
func (r *callRates) record(user string, failed bool, now time.Time) {
	sec := now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.users == nil {
		r.users = map[string]*rateRing{}
	}
	ring, ok := r.users[user]
	if !ok {
		if len(r.users) >= rateUsers {
			for u, other := range r.users {
				if sec-other.last >= rateWindow {
					delete(r.users, u)
				}
			}
		}
		ring = &rateRing{}
		r.users[user] = ring
	}
	b := &ring.buckets[sec%rateWindow]
	if b.sec != sec {
		*b = rateBucket{sec: sec}
	}
	b.calls++
	if failed {
		b.errors++
	}
	ring.last = max(ring.last, sec)
}

// perMinute returns user's calls and failed calls in the minute up to now.
func (r *callRates) perMinute(user string, now time.Time) (calls, errors int) {
	sec := now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	ring := r.users[user]
	if ring == nil {
		return 0, 0
	}
	for _, b := range ring.buckets {
		if b.sec > sec-rateWindow && b.sec <= sec {
			calls += int(b.calls)
			errors += int(b.errors)
		}
	}
	return calls, errors
}

// CallRates returns how many tool calls user made in the last minute, and
// how many of them failed (a tool error, or refused for a permission or the
// rate limit).
func (m *Manager) CallRates(user string) (calls, errors int) {
	return m.rates.perMinute(user, time.Now())
}
