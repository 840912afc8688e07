//go:build unix && !linux

package browserpool

import "syscall"

// managedProcAttr puts a managed Chromium in a process group of its own,
// so that stopping it stops its helpers too.
func managedProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
