//go:build !linux

package proxytest

import "syscall"

// sysProcAttr has no parent-death signal outside Linux; Cleanup stops servers instead.
func sysProcAttr() *syscall.SysProcAttr { return nil }
