package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/auth"
)

// The front door: what a client can make qgate hold in memory, before and after it logs in, and
// what happens when its replies outgrow the output limit.

// heapInUse is the heap in use after a collection (qgate runs in this process).
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// totalAlloc is the number of heap bytes allocated so far by this process.
func totalAlloc() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.TotalAlloc)
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

// TestOutput_LimitClosesClientAndReturnsItems: a client whose replies pass client_output_limit is
// closed without them (as Redis closes a client past client-output-buffer-limit), and items popped
// into the unwritten reply go back to their list, in order. Replies under the limit are untouched.
func TestOutput_LimitClosesClientAndReturnsItems(t *testing.T) {
	const limit = 256 << 10
	e := e2eStart(t, func(c *proxy.Config) { c.ClientOutputLimit = limit })
	ctx := context.Background()
	items := make([]any, 1000)
	for i := range items {
		items[i] = fmt.Sprintf("%04d-%s", i, strings.Repeat("i", 1019))
	}
	if err := e.Direct.RPush(ctx, "outq", items...).Err(); err != nil {
		t.Fatal(err)
	}

	c, rd := dialRaw(t, e.Qgate.Addr)
	send(t, c, "LPOP outq 100\r\n")
	want := "*100\r\n"
	for _, it := range items[:100] {
		want += bulk(it.(string))
	}
	expect(t, rd, want)

	// About 520 KB of reply: over the limit. Nothing of it is written.
	send(t, c, "LPOP outq 500\r\nPING\r\n")
	expectClosed(t, rd)
	waitFor(t, "the popped items back in the list", func() bool { return e.Direct.LLen(ctx, "outq").Val() == 900 })
	got, err := e.Direct.LRange(ctx, "outq", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if w := items[100+i].(string); v != w {
			t.Fatalf("item %d is %.8q…, want %.8q…", i, v, w)
		}
	}
	if got, want := strings.Count(e.Qgate.Logs.String(), "closing client: output buffer limit reached"), 1; got != want {
		t.Fatalf("%d log lines about the limit, want %d", got, want)
	}

	// A read-only reply over the limit closes the client too; the list is untouched.
	c2, rd2 := dialRaw(t, e.Qgate.Addr)
	send(t, c2, "LRANGE outq 0 -1\r\n")
	expectClosed(t, rd2)
	if n := e.Direct.LLen(ctx, "outq").Val(); n != 900 {
		t.Fatalf("LLEN = %d after LRANGE, want 900", n)
	}
}

// TestOutput_NoLimitByDefault: like Redis's normal clients, replies have no size limit by default.
func TestOutput_NoLimitByDefault(t *testing.T) {
	if got := proxy.DefaultConfig().ClientOutputLimit; got != 0 {
		t.Fatalf("default client_output_limit = %d, want 0", got)
	}
	e := e2eStart(t)
	ctx := context.Background()
	big := strings.Repeat("b", 4<<20)
	if err := e.Direct.RPush(ctx, "bigq", big, big, big).Err(); err != nil {
		t.Fatal(err)
	}
	c, rd := dialRaw(t, e.Qgate.Addr)
	send(t, c, "LRANGE bigq 0 -1\r\n")
	expect(t, rd, "*3\r\n"+bulk(big)+bulk(big)+bulk(big))
}

// TestInput_BigValueIsCopiedOnce bounds what a large value costs qgate's heap on its way in and
// out (RPUSH through the default envelope, LPOP), in bytes allocated per byte of value: the read
// buffer grows with the data (about twice the value in all), the envelope is built in one
// allocation, the backend's reply is written out as it is, not copied into the reply buffer and
// again into the output.
func TestInput_BigValueIsCopiedOnce(t *testing.T) {
	q, _ := startPair(t)
	const size = 16 << 20
	val := strings.Repeat("x", size)
	cmd := []byte("*3\r\n$5\r\nRPUSH\r\n$4\r\nbigv\r\n$" + strconv.Itoa(size) + "\r\n" + val + "\r\n")
	c, err := net.Dial("tcp", q.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	before := totalAlloc()
	if _, err := c.Write(cmd); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != ":1\r\n" {
		t.Fatalf("RPUSH: %q, %v", line, err)
	}
	if _, err := io.WriteString(c, "LPOP bigv\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "$"+strconv.Itoa(size)+"\r\n" {
		t.Fatalf("LPOP: %q, %v", line, err)
	}
	if _, err := br.Discard(size + 2); err != nil {
		t.Fatal(err)
	}
	// Read buffer ≤ 2×, envelope 1×, the backend's reply 1×: 4× and a little.
	if got, bound := float64(totalAlloc()-before)/size, 4.5; got > bound {
		t.Fatalf("qgate allocated %.1f× the value, want at most %.1f×", got, bound)
	}
}

// TestOutput_LargePubSubFrameIsShared: a large message is encoded once and queued by reference on
// every subscriber, not copied per subscriber.
func TestOutput_LargePubSubFrameIsShared(t *testing.T) {
	q, _ := startPair(t)
	ctx := context.Background()
	const subscribers, size = 10, 1 << 20
	var subs []*rawReader
	for range subscribers {
		c, rd := dialRaw(t, q.Addr)
		send(t, c, "SUBSCRIBE bigch\r\n")
		expect(t, rd, "*3\r\n$9\r\nsubscribe\r\n$5\r\nbigch\r\n:1\r\n")
		subs = append(subs, rd)
	}
	pub := q.Client(t)
	msg := strings.Repeat("m", size)
	want := []byte("*3\r\n$7\r\nmessage\r\n$5\r\nbigch\r\n" + bulk(msg))
	got := make([]byte, len(want))
	before := totalAlloc()
	if n, err := pub.Publish(ctx, "bigch", msg).Result(); err != nil || n != subscribers {
		t.Fatalf("PUBLISH = %d, %v", n, err)
	}
	for i, rd := range subs {
		_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
		if _, err := io.ReadFull(rd.br, got); err != nil || string(got) != string(want) {
			t.Fatalf("subscriber %d: %v, got %.60q", i, err, got)
		}
	}
	if got, bound := float64(totalAlloc()-before)/size, 8.0; got > bound {
		t.Fatalf("qgate allocated %.1f× the message for %d subscribers, want at most %.1f×", got, subscribers, bound)
	}
}
