//go:build !unix

package browserpool

import (
	"os"
	"syscall"
	"time"
)

// managedProcAttr: no process groups here; stopping kills the main
// process only.
func managedProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup kills the process; it has no group.
func signalGroup(pid int, _ bool) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

// groupGone: no group to wait for.
func groupGone(int, time.Duration) bool { return true }
