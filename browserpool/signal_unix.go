//go:build unix

package browserpool

import (
	"errors"
	"syscall"
	"time"
)

// signalGroup sends SIGTERM, or SIGKILL when kill, to the process group
// of a managed Chromium.
func signalGroup(pid int, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-pid, sig)
}

// groupGone waits up to d for every process of pid's group to be gone: a
// helper killed with the group may outlive its leader by a moment.
func groupGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
