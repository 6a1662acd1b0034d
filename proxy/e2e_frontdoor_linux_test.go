package proxy_test

import (
	"net"
	"strings"
	"testing"

	"github.com/qgate/qgate/proxy/proxytest"
)

// hugeHeader announces a 500 MB argument; only the bytes after it are ever sent.
const hugeHeader = "*1\r\n$500000000\r\n"

// waitAllRead waits until qgate has read every byte its clients sent.
func waitAllRead(t *testing.T, q *proxytest.Qgate) {
	t.Helper()
	waitFor(t, "qgate to read everything sent", func() bool {
		n, err := q.Server.UnreadInput()
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}

// TestInput_BulkHeaderAllocatesOnlyWithData: connections that announce 500 MB arguments and send a
// few KiB of them make qgate hold about what they sent, not what they announced (it used to allocate
// the announced length at once: gigabytes for a few KiB sent).
func TestInput_BulkHeaderAllocatesOnlyWithData(t *testing.T) {
	q, _ := startPair(t)
	const conns, rounds = 8, 6
	chunk := strings.Repeat("x", 1024)
	before := heapInUse()
	cs := make([]net.Conn, conns)
	for i := range cs {
		cs[i], _ = dialRaw(t, q.Addr)
		// More than the first read takes, so the buffer must grow before qgate has read it all.
		send(t, cs[i], hugeHeader+chunk)
	}
	waitFor(t, "all connections", func() bool { return connectedClients(q) == conns })
	waitAllRead(t, q)
	for range rounds - 1 {
		for _, c := range cs {
			send(t, c, chunk)
		}
		waitAllRead(t, q)
	}
	if growth := heapInUse() - before; growth > 16<<20 {
		t.Fatalf("heap grew by %d MiB for %d connections that sent %d KiB each", growth>>20, conns, rounds)
	}

	// A large argument that does arrive is read whole, whatever the writes it comes in.
	c, rd := dialRaw(t, q.Addr)
	val := strings.Repeat("v", 3<<20+123)
	msg := "*2\r\n$4\r\nECHO\r\n" + bulk(val)
	for len(msg) > 0 {
		n := min(len(msg), 100_000)
		send(t, c, msg[:n])
		msg = msg[n:]
	}
	expect(t, rd, bulk(val))
}

// TestAuth_UnauthenticatedHugeBulkRefused: with users configured, connections that have not logged
// in and announce a 500 MB argument get Redis's error and are closed at once; qgate's memory does not
// move (it used to allocate the announced length for each of them).
func TestAuth_UnauthenticatedHugeBulkRefused(t *testing.T) {
	e := startAuth(t)
	const conns = 8
	before := heapInUse()
	for range conns {
		c, rd := dialRaw(t, e.q.Addr)
		// Exactly what qgate's first read takes, so it closes with nothing left unread.
		send(t, c, hugeHeader+strings.Repeat("x", 1024-len(hugeHeader)))
		expect(t, rd, "-ERR Protocol error: unauthenticated bulk length\r\n")
		expectClosed(t, rd)
	}
	if growth := heapInUse() - before; growth > 4<<20 {
		t.Fatalf("heap grew by %d MiB for %d refused connections", growth>>20, conns)
	}
}

// TestAuth_UnauthenticatedConnectionStaysSmall: a connection that has not logged in keeps no large
// read buffer between requests, whatever it sent before.
func TestAuth_UnauthenticatedConnectionStaysSmall(t *testing.T) {
	e := startAuth(t)
	const conns = 16
	before := heapInUse()
	type client struct {
		c  net.Conn
		rd *rawReader
	}
	var cs []client
	for range conns {
		c, rd := dialRaw(t, e.q.Addr)
		// A 60 KiB inline request of many arguments: refused, and the connection stays open.
		send(t, c, "RPUSH q"+strings.Repeat(" "+strings.Repeat("a", 59), 1000)+"\r\n")
		expect(t, rd, "-NOAUTH Authentication required.\r\n")
		cs = append(cs, client{c, rd})
	}
	// A reply to a later request means qgate is past the read that followed the large one.
	for _, cl := range cs {
		send(t, cl.c, "ECHO x\r\n")
		expect(t, cl.rd, "-NOAUTH Authentication required.\r\n")
	}
	if growth := heapInUse() - before; growth > conns*32<<10 {
		t.Fatalf("heap grew by %d KiB for %d idle connections that must log in", growth>>10, conns)
	}
}
