package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// UnreadInput returns how many bytes clients have sent that qgate has not read yet (SIOCINQ on every
// client socket), so a test can wait until qgate has seen everything it was sent.
func (s *Server) UnreadInput() (int, error) {
	s.mu.Lock()
	ncs := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		ncs = append(ncs, c.nc)
	}
	s.mu.Unlock()
	total := 0
	for _, nc := range ncs {
		raw, err := nc.(syscall.Conn).SyscallConn()
		if err != nil {
			return 0, err
		}
		var n int
		var ierr error
		if err := raw.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
			return 0, err
		}
		if ierr != nil {
			return 0, ierr
		}
		total += n
	}
	return total, nil
}
