package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// These tests speak RESP over raw sockets and check the exact bytes qgate writes. Each scenario runs
// against qgate and then, with the same bytes, against a redis-server 7.0 spoken to directly, so the
// expected bytes are Redis's own (qgate's goal is byte-identical replies). The direct run is skipped
// when the installed redis-server is not 7.0.x. Differences that are deliberate are tested on qgate
// alone (TestRaw_DeliberateDifferences).

const rawTimeout = 5 * time.Second

// rawReader reads replies from one raw connection under a deadline.
type rawReader struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) (net.Conn, *rawReader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, rawTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, &rawReader{c: c, br: bufio.NewReader(c)}
}

// send writes s in one write.
func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(rawTimeout))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("send %q: %v", clipQ(s), err)
	}
}

// expect reads exactly len(want) bytes and compares them with want.
func expect(t *testing.T, rd *rawReader, want string) {
	t.Helper()
	_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
	got := make([]byte, len(want))
	n, err := io.ReadFull(rd.br, got)
	if err != nil {
		t.Fatalf("reading %q: got %q, then %v", clipQ(want), clipQ(string(got[:n])), err)
	}
	if string(got) != want {
		// Show a little of what follows too: it often explains the difference.
		_ = rd.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		more := make([]byte, 256)
		m, _ := rd.br.Read(more)
		t.Fatalf("got  %q (then %q)\nwant %q", clipQ(string(got)), more[:m], clipQ(want))
	}
}

// expectEOF checks that the server closes the connection without sending anything more.
func expectEOF(t *testing.T, rd *rawReader) {
	t.Helper()
	_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
	b, err := rd.br.ReadByte()
	if err == nil {
		rest, _ := rd.br.Peek(rd.br.Buffered())
		t.Fatalf("want EOF, got %q", string(b)+string(rest))
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF, got %v", err)
	}
}

var idLine = regexp.MustCompile(`^:[0-9]+\r\n$`)

// expectHello reads HELLO's reply for protocol proto from a server reporting version.
func expectHello(t *testing.T, rd *rawReader, proto int, version string) {
	t.Helper()
	head := "*14\r\n"
	if proto == 3 {
		head = "%7\r\n"
	}
	expect(t, rd, head+"$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"+bulk(version)+
		"$5\r\nproto\r\n:"+strconv.Itoa(proto)+"\r\n$2\r\nid\r\n")
	_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
	line, err := rd.br.ReadString('\n')
	if err != nil || !idLine.MatchString(line) {
		t.Fatalf("HELLO id: got %q, %v", line, err)
	}
	expect(t, rd, "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n")
}

func bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

func clipQ(s string) string {
	if len(s) > 300 {
		return s[:300] + "…(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}

// target is a server a scenario runs against.
type target struct {
	name    string
	addr    string
	data    *redis.Client // the Redis holding the target's data, for set-up the target cannot do
	version string        // the version HELLO reports
	redis   bool          // true for redis-server spoken to directly
}

// rawEnv is a qgate in front of its own redis-server and, when it is Redis 7.0, a second redis-server
// spoken to directly.
type rawEnv struct {
	q       *proxytest.Qgate
	backend *proxytest.Redis
	direct  *proxytest.Redis
	noRedis string // why there is no direct Redis
}

var redisVersion = sync.OnceValues(func() (string, error) {
	bin, err := proxytest.RedisServerPath()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`v=([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no version in %q", out)
	}
	return string(m[1]), nil
})

// newRawEnv starts qgate with the default config changed by mutate, and a direct redis-server with
// directArgs.
func newRawEnv(t *testing.T, mutate func(*proxy.Config), directArgs ...string) *rawEnv {
	t.Helper()
	e := &rawEnv{backend: proxytest.StartRedis(t)}
	cfg := proxy.DefaultConfig()
	cfg.Backend = e.backend.URL()
	if mutate != nil {
		mutate(&cfg)
	}
	e.q = proxytest.StartQgate(t, cfg)
	switch v, err := redisVersion(); {
	case err != nil:
		e.noRedis = "redis-server version unknown: " + err.Error()
	case !strings.HasPrefix(v, "7.0."):
		e.noRedis = "redis-server is " + v + ", the expected bytes are Redis 7.0's"
	default:
		e.direct = proxytest.StartRedis(t, directArgs...)
	}
	return e
}

func (e *rawEnv) qgate(t *testing.T) target {
	return target{name: "qgate", addr: e.q.Addr, data: e.backend.Client(t), version: commands.RedisVersion}
}

// both runs scenario against qgate, then against redis-server directly.
func (e *rawEnv) both(t *testing.T, scenario func(t *testing.T, tg target)) {
	t.Helper()
	t.Run("qgate", func(t *testing.T) { scenario(t, e.qgate(t)) })
	t.Run("redis", func(t *testing.T) {
		if e.direct == nil {
			t.Skip(e.noRedis)
		}
		v, _ := redisVersion()
		scenario(t, target{name: "redis", addr: e.direct.Addr, data: e.direct.Client(t), version: v, redis: true})
	})
}

// expectAlive checks that the connection still serves commands.
func expectAlive(t *testing.T, c net.Conn, rd *rawReader) {
	t.Helper()
	send(t, c, "PING\r\n")
	expect(t, rd, "+PONG\r\n")
}

func TestRaw_Ping(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "*1\r\n$4\r\nPING\r\n")
		expect(t, rd, "+PONG\r\n")
		send(t, c, "PING\r\n")
		expect(t, rd, "+PONG\r\n")
		send(t, c, "*2\r\n$4\r\nping\r\n$5\r\nhello\r\n")
		expect(t, rd, "$5\r\nhello\r\n")
		send(t, c, "PING a b\r\n")
		expect(t, rd, "-ERR wrong number of arguments for 'ping' command\r\n")
		send(t, c, "ECHO \"\"\r\n")
		expect(t, rd, "$0\r\n\r\n")
	})
}

func TestRaw_UnknownCommand(t *testing.T) {
	long := strings.Repeat("x", 100)
	longer := strings.Repeat("y", 100)
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "foo a b\r\n")
		expect(t, rd, "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n")
		send(t, c, "*1\r\n$3\r\nfoo\r\n")
		expect(t, rd, "-ERR unknown command 'foo', with args beginning with: \r\n")
		// The argument list stops once it reaches 128 bytes, each argument cut to what is left.
		send(t, c, "foo "+long+" "+longer+" c\r\n")
		expect(t, rd, "-ERR unknown command 'foo', with args beginning with: '"+long+"' '"+longer[:25]+"' \r\n")
		send(t, c, strings.Repeat("f", 200)+" a\r\n")
		expect(t, rd, "-ERR unknown command '"+strings.Repeat("f", 128)+"', with args beginning with: 'a' \r\n")
		// Arguments are printed as C strings (cut at NUL), with CR and LF turned into spaces.
		send(t, c, "*3\r\n$3\r\nfoo\r\n$3\r\na\x00b\r\n$4\r\nc\r\nd\r\n")
		expect(t, rd, "-ERR unknown command 'foo', with args beginning with: 'a' 'c  d' \r\n")
		send(t, c, "CLIENT NOSUCH\r\n")
		expect(t, rd, "-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n")
		send(t, c, "client nosuch\r\n")
		expect(t, rd, "-ERR unknown subcommand 'nosuch'. Try CLIENT HELP.\r\n")
		expectAlive(t, c, rd)
	})
}

func TestRaw_WrongArity(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		for _, tc := range []struct{ in, name string }{
			{"LPOP\r\n", "lpop"},
			{"lpop q 1 2\r\n", "lpop"},
			{"RPUSH q\r\n", "rpush"},
			{"BLPOP q\r\n", "blpop"},
			{"LLEN\r\n", "llen"},
			{"LRANGE q 0\r\n", "lrange"},
			{"PUBLISH ch\r\n", "publish"},
			{"SUBSCRIBE\r\n", "subscribe"},
			{"ECHO\r\n", "echo"},
			{"CLIENT\r\n", "client"},
			{"CLIENT SETNAME\r\n", "client|setname"},
			{"CLIENT ID x\r\n", "client|id"},
			{"PUBSUB NUMPAT x\r\n", "pubsub|numpat"},
		} {
			send(t, c, tc.in)
			expect(t, rd, "-ERR wrong number of arguments for '"+tc.name+"' command\r\n")
		}
		expectAlive(t, c, rd)
	})
}

// TestRaw_NullReplies: missing keys and timeouts give RESP2 nulls, and RESP3's _ after HELLO 3.
func TestRaw_NullReplies(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "LPOP missing\r\n")
		expect(t, rd, "$-1\r\n")
		send(t, c, "RPOP missing\r\n")
		expect(t, rd, "$-1\r\n")
		send(t, c, "LPOP missing 2\r\n")
		expect(t, rd, "*-1\r\n")
		send(t, c, "BLPOP missing other 0.05\r\n")
		expect(t, rd, "*-1\r\n")
		send(t, c, "BRPOP missing 0.01\r\n")
		expect(t, rd, "*-1\r\n")
		send(t, c, "LRANGE missing 0 -1\r\n")
		expect(t, rd, "*0\r\n")
		send(t, c, "CLIENT GETNAME\r\n")
		expect(t, rd, "$-1\r\n")

		send(t, c, "HELLO 3\r\n")
		expectHello(t, rd, 3, tg.version)
		send(t, c, "LPOP missing\r\n")
		expect(t, rd, "_\r\n")
		send(t, c, "LPOP missing 2\r\n")
		expect(t, rd, "_\r\n")
		send(t, c, "BLPOP missing 0.05\r\n")
		expect(t, rd, "_\r\n")
		send(t, c, "CLIENT GETNAME\r\n")
		expect(t, rd, "_\r\n")

		send(t, c, "HELLO 2\r\n")
		expectHello(t, rd, 2, tg.version)
		send(t, c, "LPOP missing\r\n")
		expect(t, rd, "$-1\r\n")
	})
}

func TestRaw_ListReplies(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "RPUSH q a b c\r\n")
		expect(t, rd, ":3\r\n")
		send(t, c, "LPUSH q z\r\n")
		expect(t, rd, ":4\r\n")
		send(t, c, "LRANGE q 0 -1\r\n")
		expect(t, rd, "*4\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n")
		send(t, c, "LPOP q 2\r\n")
		expect(t, rd, "*2\r\n$1\r\nz\r\n$1\r\na\r\n")
		send(t, c, "RPOP q\r\n")
		expect(t, rd, "$1\r\nc\r\n")
		send(t, c, "BLPOP missing q 0\r\n")
		expect(t, rd, "*2\r\n$1\r\nq\r\n$1\r\nb\r\n")
		send(t, c, "LLEN q\r\n")
		expect(t, rd, ":0\r\n")
		send(t, c, "LPOP q 0\r\n")
		expect(t, rd, "*-1\r\n")
		// Binary values round-trip.
		send(t, c, "*3\r\n$5\r\nRPUSH\r\n$1\r\nb\r\n$5\r\n\x00\r\n\xff\n\r\n")
		expect(t, rd, ":1\r\n")
		send(t, c, "LPOP b\r\n")
		expect(t, rd, "$5\r\n\x00\r\n\xff\n\r\n")
	})
}

// TestRaw_Pipelining: 50 commands in one write get 50 replies, in order.
func TestRaw_Pipelining(t *testing.T) {
	var in, want strings.Builder
	for i := 0; i < 50; i++ {
		v := fmt.Sprintf("pipelined-item-%02d", i)
		switch i % 5 {
		case 0:
			fmt.Fprintf(&in, "*3\r\n$5\r\nRPUSH\r\n$2\r\npq\r\n%s", bulk(v))
			fmt.Fprintf(&want, ":%d\r\n", i/5+1)
		case 1:
			in.WriteString("PING\r\n")
			want.WriteString("+PONG\r\n")
		case 2:
			fmt.Fprintf(&in, "ECHO %s\r\n", v)
			want.WriteString(bulk(v))
		case 3:
			in.WriteString("LLEN pq\n")
			fmt.Fprintf(&want, ":%d\r\n", i/5+1)
		case 4:
			in.WriteString("NOSUCH " + v + "\r\n")
			want.WriteString("-ERR unknown command 'NOSUCH', with args beginning with: '" + v + "' \r\n")
		}
	}
	in.WriteString("LRANGE pq 0 -1\r\n")
	want.WriteString("*10\r\n")
	for i := 0; i < 50; i += 5 {
		want.WriteString(bulk(fmt.Sprintf("pipelined-item-%02d", i)))
	}
	if in.Len() <= 1024 {
		t.Fatalf("the pipeline (%d bytes) should exceed qgate's initial 1 KiB read buffer", in.Len())
	}
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, in.String())
		expect(t, rd, want.String())
	})
}

// TestRaw_SplitWrites: a command in many small writes, and a command split around a complete one (the
// server keeps part of it while it compacts its buffer).
func TestRaw_SplitWrites(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		cmd := "*3\r\n$5\r\nRPUSH\r\n$5\r\nsplit\r\n$11\r\nhello world\r\n"
		for i := 0; i < len(cmd); i++ {
			send(t, c, cmd[i:i+1])
		}
		expect(t, rd, ":1\r\n")
		send(t, c, "PING\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhel")
		expect(t, rd, "+PONG\r\n")
		send(t, c, "lo\r\n")
		expect(t, rd, "$5\r\nhello\r\n")
		send(t, c, "*2\r\n$4\r\nLPOP\r\n$5\r\nsplit\r\nPING\r\n*4\r\n$6\r\nLRANGE\r\n$5\r\nsp")
		expect(t, rd, "$11\r\nhello world\r\n+PONG\r\n")
		send(t, c, "lit\r\n$1\r\n0\r\n$2\r\n-1\r\n")
		expect(t, rd, "*0\r\n")
		send(t, c, "ECHO big"+strings.Repeat("!", 3000))
		send(t, c, "\r\n")
		expect(t, rd, bulk("big"+strings.Repeat("!", 3000)))
	})
}

func TestRaw_Inline(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "PING\r\n")
		expect(t, rd, "+PONG\r\n")
		send(t, c, "RPUSH q a b\n")
		expect(t, rd, ":2\r\n")
		send(t, c, "RPUSH q \"c d\" 'e\\'f' \"\\x41\\n\"\r\n")
		expect(t, rd, ":5\r\n")
		send(t, c, "LRANGE q 0 -1\r\n")
		expect(t, rd, "*5\r\n$1\r\na\r\n$1\r\nb\r\n$3\r\nc d\r\n$3\r\ne'f\r\n$2\r\nA\n\r\n")
		// Empty lines are ignored.
		send(t, c, "\r\n\n   \r\nPING\r\n")
		expect(t, rd, "+PONG\r\n")
		send(t, c, "  echo\t \"x y\"  \r\n")
		expect(t, rd, "$3\r\nx y\r\n")
	})
}

// TestRaw_ProtocolErrors: a malformed request gets Redis's protocol error, then the server closes the
// connection. Nothing is sent after the bad bytes, so the server has read everything when it closes
// (otherwise the close could turn into a reset).
func TestRaw_ProtocolErrors(t *testing.T) {
	tests := []struct{ name, in, err string }{
		{"invalid bulk length", "*1\r\n$abc\r\n", "invalid bulk length"},
		{"negative bulk length", "*1\r\n$-1\r\n", "invalid bulk length"},
		{"leading zero bulk length", "*2\r\n$4\r\nECHO\r\n$03\r\n", "invalid bulk length"},
		{"bulk above proto-max-bulk-len", "*1\r\n$536870913\r\n", "invalid bulk length"},
		{"invalid multibulk length", "*abc\r\n", "invalid multibulk length"},
		{"leading zero multibulk length", "*01\r\n", "invalid multibulk length"},
		{"minus zero multibulk length", "*-0\r\n", "invalid multibulk length"},
		{"expected dollar", "*1\r\nx\r\n", "expected '$', got 'x'"},
		{"expected dollar second", "*2\r\n$4\r\nECHO\r\n:1\r\n", "expected '$', got ':'"},
		{"unbalanced double quotes", "ECHO \"abc\r\n", "unbalanced quotes in request"},
		{"text after closing quote", "ECHO 'a'b\r\n", "unbalanced quotes in request"},
		{"too big inline request", strings.Repeat("a", 64*1024+1), "too big inline request"},
		{"too big mbulk count string", "*" + strings.Repeat("1", 64*1024+1), "too big mbulk count string"},
	}
	e := newRawEnv(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.both(t, func(t *testing.T, tg target) {
				c, rd := dialRaw(t, tg.addr)
				send(t, c, tt.in)
				expect(t, rd, "-ERR Protocol error: "+tt.err+"\r\n")
				expectEOF(t, rd)
			})
		})
	}
}

// TestRaw_ProtocolErrorAfterCommands: commands before a protocol error in the same write are executed
// and replied to first.
func TestRaw_ProtocolErrorAfterCommands(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "RPUSH perr a\r\nPING\r\n*2\r\n$4\r\nLLEN\r\n$4\r\nperr\r\n*1\r\n$abc\r\n")
		expect(t, rd, ":1\r\n+PONG\r\n:1\r\n-ERR Protocol error: invalid bulk length\r\n")
		expectEOF(t, rd)
		c2, rd2 := dialRaw(t, tg.addr)
		send(t, c2, "LRANGE perr 0 -1\r\n")
		expect(t, rd2, "*1\r\n$1\r\na\r\n")
	})
}

// TestRaw_MaxBulkBytes: a bulk above max_bulk_bytes is refused from its header, like Redis's
// proto-max-bulk-len (which cannot be set below 1 MiB in Redis, so this is qgate alone).
func TestRaw_MaxBulkBytes(t *testing.T) {
	e := newRawEnv(t, func(cfg *proxy.Config) { cfg.MaxBulkBytes = 1024 })
	tg := e.qgate(t)
	c, rd := dialRaw(t, tg.addr)
	payload := strings.Repeat("p", 1024)
	send(t, c, "*2\r\n$4\r\nECHO\r\n"+bulk(payload))
	expect(t, rd, bulk(payload))
	send(t, c, "*2\r\n$4\r\nECHO\r\n$1025\r\n")
	expect(t, rd, "-ERR Protocol error: invalid bulk length\r\n")
	expectEOF(t, rd)
}

// TestRaw_ErrorsKeepConnection: after any error reply that is not a protocol error the connection
// stays usable.
func TestRaw_ErrorsKeepConnection(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nosuch a\r\n", "-ERR unknown command 'nosuch', with args beginning with: 'a' \r\n"},
		{"LPOP\r\n", "-ERR wrong number of arguments for 'lpop' command\r\n"},
		{"CLIENT NOSUCH\r\n", "-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n"},
		{"LPOP q abc\r\n", "-ERR value is out of range, must be positive\r\n"},
		{"LPOP q -1\r\n", "-ERR value is out of range, must be positive\r\n"},
		{"LRANGE q a 1\r\n", "-ERR value is not an integer or out of range\r\n"},
		{"BLPOP q abc\r\n", "-ERR timeout is not a float or out of range\r\n"},
		{"BLPOP q -1\r\n", "-ERR timeout is negative\r\n"},
		{"LPOP str\r\n", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{"RPUSH str a\r\n", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{"BLPOP str 0\r\n", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{"LLEN str\r\n", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{"HELLO 4\r\n", "-NOPROTO unsupported protocol version\r\n"},
		{"HELLO x\r\n", "-ERR Protocol version is not an integer or out of range\r\n"},
		{"HELLO 3 BOGUS\r\n", "-ERR Syntax error in HELLO option 'BOGUS'\r\n"},
		{"SELECT x\r\n", "-ERR value is not an integer or out of range\r\n"},
		{"CLIENT SETNAME \"a b\"\r\n", "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"},
		{"CLIENT NO-EVICT maybe\r\n", "-ERR syntax error\r\n"},
	}
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		if err := tg.data.Set(context.Background(), "str", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		c, rd := dialRaw(t, tg.addr)
		for _, tt := range tests {
			send(t, c, tt.in)
			expect(t, rd, tt.want)
			expectAlive(t, c, rd)
		}
		// Several in one write.
		var in, want strings.Builder
		for _, tt := range tests {
			in.WriteString(tt.in)
			want.WriteString(tt.want)
		}
		send(t, c, in.String())
		expect(t, rd, want.String())
		expectAlive(t, c, rd)
	})
}

func TestRaw_PubSubRESP2(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		sub, rd := dialRaw(t, tg.addr)
		pub, prd := dialRaw(t, tg.addr)
		send(t, sub, "SUBSCRIBE a b\r\n")
		expect(t, rd, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
		send(t, pub, "PUBLISH a hello\r\n")
		expect(t, prd, ":1\r\n")
		expect(t, rd, "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n")

		// Subscribed state in RESP2: only (P|S)(UN)SUBSCRIBE, PING, QUIT, RESET.
		send(t, sub, "LPOP q\r\n")
		expect(t, rd, "-ERR Can't execute 'lpop': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n")
		send(t, sub, "CLIENT ID\r\n")
		expect(t, rd, "-ERR Can't execute 'client|id': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n")
		send(t, sub, "LPOP\r\n")
		expect(t, rd, "-ERR wrong number of arguments for 'lpop' command\r\n")
		send(t, sub, "PING\r\n")
		expect(t, rd, "*2\r\n$4\r\npong\r\n$0\r\n\r\n")
		send(t, sub, "PING hi\r\n")
		expect(t, rd, "*2\r\n$4\r\npong\r\n$2\r\nhi\r\n")
		send(t, sub, "SUBSCRIBE a\r\n")
		expect(t, rd, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:2\r\n")

		send(t, sub, "PSUBSCRIBE n*\r\n")
		expect(t, rd, "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n")
		send(t, pub, "PUBLISH news x\r\n")
		expect(t, prd, ":1\r\n")
		expect(t, rd, "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nx\r\n")
		send(t, pub, "PUBLISH other x\r\n")
		expect(t, prd, ":0\r\n")

		send(t, sub, "UNSUBSCRIBE a\r\n")
		expect(t, rd, "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n")
		send(t, sub, "UNSUBSCRIBE zz\r\n")
		expect(t, rd, "*3\r\n$11\r\nunsubscribe\r\n$2\r\nzz\r\n:2\r\n")
		send(t, sub, "UNSUBSCRIBE\r\n")
		expect(t, rd, "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n")
		send(t, sub, "PUNSUBSCRIBE\r\n")
		expect(t, rd, "*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:0\r\n")

		// Out of subscribed state: no subscriptions left.
		send(t, sub, "UNSUBSCRIBE\r\n")
		expect(t, rd, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")
		send(t, sub, "PUNSUBSCRIBE\r\n")
		expect(t, rd, "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n")
		send(t, sub, "LPOP q\r\n")
		expect(t, rd, "$-1\r\n")
		expectAlive(t, sub, rd)
	})
}

func TestRaw_PubSubRESP3(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		sub, rd := dialRaw(t, tg.addr)
		pub, prd := dialRaw(t, tg.addr)
		send(t, sub, "HELLO 3\r\n")
		expectHello(t, rd, 3, tg.version)
		send(t, sub, "UNSUBSCRIBE\r\n")
		expect(t, rd, ">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n")
		send(t, sub, "SUBSCRIBE a b\r\n")
		expect(t, rd, ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
		send(t, pub, "PUBLISH a hello\r\n")
		expect(t, prd, ":1\r\n")
		expect(t, rd, ">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n")

		// RESP3 has no subscribed-state restriction.
		send(t, sub, "LPOP q\r\n")
		expect(t, rd, "_\r\n")
		send(t, sub, "RPUSH q v\r\n")
		expect(t, rd, ":1\r\n")
		send(t, sub, "PING\r\n")
		expect(t, rd, "+PONG\r\n")

		send(t, sub, "PSUBSCRIBE n*\r\n")
		expect(t, rd, ">3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n")
		send(t, pub, "PUBLISH news x\r\n")
		expect(t, prd, ":1\r\n")
		expect(t, rd, ">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nx\r\n")

		// (With several subscriptions left, the order in which UNSUBSCRIBE without arguments lists them
		// is Redis's hash order, random per process: one at a time keeps the bytes exact.)
		send(t, sub, "UNSUBSCRIBE a\r\n")
		expect(t, rd, ">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n")
		send(t, sub, "UNSUBSCRIBE\r\n")
		expect(t, rd, ">3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n")
		send(t, sub, "PUNSUBSCRIBE n*\r\n")
		expect(t, rd, ">3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:0\r\n")
		send(t, sub, "PUNSUBSCRIBE\r\n")
		expect(t, rd, ">3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n")
	})
}

func TestRaw_Reset(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "SUBSCRIBE a\r\n")
		expect(t, rd, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
		send(t, c, "RESET\r\n")
		expect(t, rd, "+RESET\r\n")
		send(t, c, "PING\r\n")
		expect(t, rd, "+PONG\r\n")
		send(t, c, "LPOP q\r\n")
		expect(t, rd, "$-1\r\n")
		send(t, c, "UNSUBSCRIBE\r\n")
		expect(t, rd, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")

		// RESET also goes back to RESP2 and forgets the name.
		send(t, c, "HELLO 3 SETNAME me\r\n")
		expectHello(t, rd, 3, tg.version)
		send(t, c, "CLIENT GETNAME\r\n")
		expect(t, rd, "$2\r\nme\r\n")
		send(t, c, "RESET\r\n")
		expect(t, rd, "+RESET\r\n")
		send(t, c, "LPOP q\r\n")
		expect(t, rd, "$-1\r\n")
		send(t, c, "CLIENT GETNAME\r\n")
		expect(t, rd, "$-1\r\n")
	})
}

func TestRaw_Quit(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "QUIT\r\n")
		expect(t, rd, "+OK\r\n")
		expectEOF(t, rd)

		c, rd = dialRaw(t, tg.addr)
		send(t, c, "PING\r\nQUIT\r\n")
		expect(t, rd, "+PONG\r\n+OK\r\n")
		expectEOF(t, rd)

		c, rd = dialRaw(t, tg.addr)
		send(t, c, "SUBSCRIBE a\r\n")
		expect(t, rd, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
		send(t, c, "QUIT\r\n")
		expect(t, rd, "+OK\r\n")
		expectEOF(t, rd)
	})
}

// TestRaw_MaxClients: with max_clients 2 (Redis: maxclients 2) a third connection is told so and closed.
func TestRaw_MaxClients(t *testing.T) {
	e := newRawEnv(t, func(cfg *proxy.Config) { cfg.MaxClients = 2 }, "--maxclients", "2")
	e.both(t, func(t *testing.T, tg target) {
		c1, rd1 := dialRaw(t, tg.addr)
		expectAlive(t, c1, rd1)
		c2, rd2 := dialRaw(t, tg.addr)
		expectAlive(t, c2, rd2)
		_, rd3 := dialRaw(t, tg.addr)
		expect(t, rd3, "-ERR max number of clients reached\r\n")
		expectEOF(t, rd3)
		expectAlive(t, c1, rd1)
		expectAlive(t, c2, rd2)
	})
	// Once a client leaves, a new one gets in.
	tg := e.qgate(t)
	c1, rd1 := dialRaw(t, tg.addr)
	expectAlive(t, c1, rd1)
	c2, rd2 := dialRaw(t, tg.addr)
	expectAlive(t, c2, rd2)
	send(t, c1, "QUIT\r\n")
	expect(t, rd1, "+OK\r\n")
	expectEOF(t, rd1)
	deadline := time.Now().Add(rawTimeout)
	for e.q.Server.Stats().ConnectedClients > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("qgate still counts %d clients", e.q.Server.Stats().ConnectedClients)
		}
		time.Sleep(time.Millisecond) // polling a condition, not waiting for one to happen
	}
	c3, rd3 := dialRaw(t, tg.addr)
	expectAlive(t, c3, rd3)
}

// TestRaw_DeliberateDifferences: where qgate answers differently from Redis on purpose.
func TestRaw_DeliberateDifferences(t *testing.T) {
	e := newRawEnv(t, nil)
	c, rd := dialRaw(t, e.q.Addr)
	// Commands outside qgate's table never reach the backend.
	for _, tc := range []struct{ in, want string }{
		{"FLUSHALL\r\n", "-ERR unknown command 'FLUSHALL', with args beginning with: \r\n"},
		{"CONFIG GET maxclients\r\n", "-ERR unknown command 'CONFIG', with args beginning with: 'GET' 'maxclients' \r\n"},
		{"EVAL \"return 1\" 0\r\n", "-ERR unknown command 'EVAL', with args beginning with: 'return 1' '0' \r\n"},
		{"KEYS *\r\n", "-ERR unknown command 'KEYS', with args beginning with: '*' \r\n"},
		{"DEBUG SLEEP 0\r\n", "-ERR unknown command 'DEBUG', with args beginning with: 'SLEEP' '0' \r\n"},
		{"SET k v\r\n", "-ERR unknown command 'SET', with args beginning with: 'k' 'v' \r\n"},
		// qgate serves database 0 of its backend only.
		{"SELECT 1\r\n", "-ERR DB index is out of range\r\n"},
		{"SELECT 0\r\n", "+OK\r\n"},
	} {
		send(t, c, tc.in)
		expect(t, rd, tc.want)
	}
	expectAlive(t, c, rd)
	// qgate caps a request at 1M arguments (Redis 7.0: INT_MAX).
	send(t, c, "*1048577\r\n")
	expect(t, rd, "-ERR Protocol error: invalid multibulk length\r\n")
	expectEOF(t, rd)
}
