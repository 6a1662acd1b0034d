package proxy_test

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/auth"
)

// The front door: what a client can make qgate hold in memory, before and after it logs in.

// heapInUse is the heap in use after a collection (qgate runs in this process).
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// expectClosed checks that the server closes the connection without sending anything more (an end
// of stream, or a reset when it closed with some of our bytes unread).
func expectClosed(t *testing.T, rd *rawReader) {
	t.Helper()
	_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
	b, err := rd.br.ReadByte()
	switch {
	case err == nil:
		rest, _ := rd.br.Peek(rd.br.Buffered())
		t.Fatalf("want the connection closed, got %q", string(b)+string(rest))
	case !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("want the connection closed, got %v", err)
	}
}

func multibulk(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		b.WriteString(bulk(a))
	}
	return b.String()
}

// TestAuth_UnauthenticatedLimitsLikeRedis compares byte for byte with a redis-server started with
// --requirepass: before logging in, more than 10 arguments or a bulk above 16384 bytes is refused
// from its header with Redis's protocol error, and the connection is closed; at the limits the
// request is read (and refused with NOAUTH); after AUTH, in the same write, the limits are gone.
func TestAuth_UnauthenticatedLimitsLikeRedis(t *testing.T) {
	env := newRawEnv(t, func(c *proxy.Config) {
		c.Users = []auth.UserConfig{{Name: "default", PasswordHash: authHash(t, pwDefault), Push: []string{"*"}, Pop: []string{"*"}}}
	}, "--requirepass", pwDefault)
	const (
		errMbulk = "-ERR Protocol error: unauthenticated multibulk length\r\n"
		errBulk  = "-ERR Protocol error: unauthenticated bulk length\r\n"
		noauth   = "-NOAUTH Authentication required.\r\n"
	)
	tests := []struct {
		name, in, want string
		closed         bool
	}{
		{"eleven arguments", "*11\r\n", errMbulk, true},
		{"a million arguments", "*1048577\r\n", errMbulk, true},
		{"above INT_MAX arguments", "*2147483648\r\n", "-ERR Protocol error: invalid multibulk length\r\n", true},
		{"bulk of 16385", "*2\r\n$4\r\nECHO\r\n$16385\r\n", errBulk, true},
		{"bulk of 500 MB", "*1\r\n$500000000\r\n", errBulk, true},
		{"invalid bulk", "*1\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n", true},
		{"ten arguments", multibulk("RPUSH", "q", "1", "2", "3", "4", "5", "6", "7", "8"), noauth, false},
		{"bulk of 16384", multibulk("ECHO", strings.Repeat("e", 16384)), noauth, false},
		{"inline of 11 arguments", "RPUSH q 1 2 3 4 5 6 7 8 9 10\r\n", noauth, false},
		{"after AUTH", "AUTH " + pwDefault + "\r\n" + multibulk("ECHO", strings.Repeat("e", 16385)) + "*11\r\n",
			"+OK\r\n" + bulk(strings.Repeat("e", 16385)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.both(t, func(t *testing.T, tg target) {
				c, rd := dialRaw(t, tg.addr)
				send(t, c, tt.in)
				expect(t, rd, tt.want)
				if tt.closed {
					expectEOF(t, rd)
				} else if tt.name != "after AUTH" {
					send(t, c, "ECHO x\r\n")
					expect(t, rd, noauth)
				}
			})
		})
	}
	// RESET logs out: the limits apply again.
	env.both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "AUTH "+pwDefault+"\r\nRESET\r\n*11\r\n")
		expect(t, rd, "+OK\r\n+RESET\r\n"+errMbulk)
		expectEOF(t, rd)
	})
}
