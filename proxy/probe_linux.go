//go:build linux

package proxy

import "golang.org/x/sys/unix"

// peerClosedWrite reports whether the peer of a TCP socket has sent its FIN (state CLOSE_WAIT, or
// later states of our own close), even while unread data is still queued before it.
func peerClosedWrite(fd int) bool {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return false
	}
	switch info.State {
	case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_CLOSE:
		return true
	}
	return false
}
