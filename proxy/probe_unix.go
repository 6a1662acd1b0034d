//go:build unix

package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peerGone reports whether the client has closed or reset its side of the connection, without
// consuming input: one non-blocking MSG_PEEK. Checked before writing a reply that carries popped
// items, because a write to a peer that already closed succeeds locally and the item would be lost.
//
// On a TLS connection the peek runs on the TCP socket underneath (tls.Conn.NetConn). A TLS client
// usually sends a close_notify alert before its FIN, so the peek sees bytes rather than the end of
// the stream; then the socket's TCP state tells whether the FIN arrived (peerClosedWrite).
func peerGone(nc net.Conn) bool { return peek(nc, false) }

// waitPeerGone blocks until the client closes or resets its side of the connection (true), until input
// is waiting, or until a read deadline passes (false); it consumes nothing. Input ends the watch,
// since the socket stays readable from then on: a FIN behind it is seen only through the TCP state
// (Linux), and a TLS client's close_notify usually arrives just before its FIN, so a TLS client's
// disconnect may go unnoticed; the caller's wait is bounded anyway.
func waitPeerGone(nc net.Conn) bool { return peek(nc, true) }

// peek is one MSG_PEEK of the socket under nc: at once, or (wait) until it is readable or its read
// deadline passes. Waiting, the TCP state is always consulted on data (input ends the watch);
// otherwise only for TLS, whose close_notify usually precedes the FIN.
func peek(nc net.Conn, wait bool) bool {
	isTLS := false
	if tc, ok := nc.(*tls.Conn); ok {
		nc, isTLS = tc.NetConn(), true
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var b [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil:
			gone = n == 0 || (wait || isTLS) && peerClosedWrite(int(fd)) // orderly shutdown (FIN)
			return true
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
			return !wait // waiting: until the socket is readable or the deadline passes
		default:
			gone = true // reset or other error
			return true
		}
	})
	return gone
}
