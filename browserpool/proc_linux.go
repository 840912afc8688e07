package browserpool

import "syscall"

// managedProcAttr puts a managed Chromium in a process group of its own,
// so that stopping it stops its helpers too, and kills it if the proxy
// dies without stopping it.
func managedProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
