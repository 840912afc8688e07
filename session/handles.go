package session

import (
	"crypto/rand"
	"math/big"
	"strconv"
	"sync"
)

// ReasonPageHandle is the refusal of a page handle of another user.
const ReasonPageHandle = "page_handle"

// Page handles. On the stateless protocol (2026-07-28) every call of a user
// runs in that user's default workspace, so several agents of one user
// share its selected page. Each agent keeps to its own pages by passing
// their pageId, which in a default workspace is a handle: a random number
// that is unique in the proxy and bound to its user, stored as
// "<user>:<handle>" as the MCP spec's security best practices ask of
// session IDs. A handle resolves only in its owner's workspace; another
// user's handle is answered like an unknown page, and audited.
const (
	handleMin = 100000
	handleMax = 999999
)

// handles is the registry of the page handles of default workspaces.
type handles struct {
	mu    sync.Mutex
	bound map[string]bool // "<user>:<handle>"
	owner map[int]string  // handle -> user, to tell another user's handle from an unknown one
}

func handleKey(user string, h int) string { return user + ":" + strconv.Itoa(h) }

// take returns a fresh handle bound to user.
func (hs *handles) take(user string) int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.bound == nil {
		hs.bound, hs.owner = map[string]bool{}, map[int]string{}
	}
	for {
		n, err := rand.Int(rand.Reader, big.NewInt(handleMax-handleMin+1))
		if err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		h := handleMin + int(n.Int64())
		if _, used := hs.owner[h]; !used {
			hs.owner[h] = user
			hs.bound[handleKey(user, h)] = true
			return h
		}
	}
}

// release forgets handles of user.
func (hs *handles) release(user string, ids ...int) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, h := range ids {
		if hs.bound[handleKey(user, h)] {
			delete(hs.bound, handleKey(user, h))
			delete(hs.owner, h)
		}
	}
}

// foreign reports whether h is a live handle of a user other than user.
func (hs *handles) foreign(user string, h int) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	o, ok := hs.owner[h]
	return ok && o != user && !hs.bound[handleKey(user, h)]
}

// count returns how many handles are live, for tests.
func (hs *handles) count() int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.owner)
}

// Shared implements tools.SharedWorkspace: a default workspace is shared by
// every stateless agent of its user.
func (s *Session) Shared() bool { return s.handled }
