package proxytest

import "syscall"

// sysProcAttr makes the kernel kill a started server when the test process dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
