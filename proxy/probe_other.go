//go:build !unix

package proxy

import "net"

// peerGone cannot look ahead on this platform; write errors alone detect a lost client.
func peerGone(net.Conn) bool { return false }

// waitPeerGone cannot watch the socket on this platform: it returns false at once.
func waitPeerGone(net.Conn) bool { return false }
