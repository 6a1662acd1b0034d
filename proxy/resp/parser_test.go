package resp

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"weak"

	"github.com/tidwall/redcon"
)

// result is what a parser made of a byte stream: the commands (empty requests left out), the protocol
// error that stopped it ("" for none) and how many bytes were left unconsumed.
type result struct {
	cmds [][]string
	err  string
	rest int
}

func (r result) String() string {
	return fmt.Sprintf("cmds=%q err=%q rest=%d", r.cmds, r.err, r.rest)
}

// feed parses chunks the way qgate's connection loop does: each chunk is appended to the unconsumed
// bytes of the previous ones in a newly allocated buffer, and the old buffer is overwritten, so a parser
// that kept slices of an earlier buffer across calls returns garbage. It checks the Next contract on
// every call (n within the buffer, no arguments with n == 0, ProtocolError type).
func feed(tb testing.TB, p *Parser, chunks ...[]byte) result {
	tb.Helper()
	var res result
	var pending []byte
	for ci, ch := range chunks {
		buf := make([]byte, 0, len(pending)+len(ch))
		buf = append(append(buf, pending...), ch...)
		for i := range pending {
			pending[i] = '#'
		}
		pos := 0
		for pos < len(buf) {
			args, n, err := p.Next(buf[pos:])
			if n < 0 || n > len(buf)-pos {
				tb.Fatalf("Next consumed %d of %d bytes", n, len(buf)-pos)
			}
			if err != nil {
				if !IsProtocolError(err) {
					tb.Fatalf("Next returned %T %v, want a *ProtocolError", err, err)
				}
				if n != 0 || args != nil {
					tb.Fatalf("Next returned n=%d args=%q with error %v", n, args, err)
				}
				res.err = err.Error()
				res.rest = len(buf) - pos
				for _, later := range chunks[ci+1:] {
					res.rest += len(later)
				}
				return res
			}
			if n == 0 {
				if len(args) != 0 {
					tb.Fatalf("Next returned args %q with n == 0", args)
				}
				break
			}
			pos += n
			if len(args) > 0 {
				cmd := make([]string, len(args))
				for i, a := range args {
					cmd[i] = string(a)
				}
				res.cmds = append(res.cmds, cmd)
			}
		}
		pending = buf[pos:]
	}
	res.rest = len(pending)
	return res
}

// bytewise splits b into one chunk per byte.
func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

// chunked splits b into chunks of size n.
func chunked(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

func sameResult(a, b result) bool {
	return reflect.DeepEqual(a.cmds, b.cmds) && a.err == b.err && a.rest == b.rest
}

// checkSplits checks that feeding in at every split point (or, for long inputs, at a sample of them) and
// byte by byte gives the same result as feeding in whole, and returns that result.
func checkSplits(tb testing.TB, maxBulk int64, in []byte) result {
	tb.Helper()
	whole := feed(tb, NewParser(maxBulk), in)
	if len(in) <= 4096 {
		if got := feed(tb, NewParser(maxBulk), bytewise(in)...); !sameResult(got, whole) {
			tb.Fatalf("byte by byte %q:\n got %v\nwant %v", in, got, whole)
		}
	}
	step := 1
	if len(in) > 512 {
		step = len(in)/97 + 1
	}
	for k := 0; k <= len(in); k += step {
		if got := feed(tb, NewParser(maxBulk), in[:k], in[k:]); !sameResult(got, whole) {
			tb.Fatalf("split at %d of %q:\n got %v\nwant %v", k, in, got, whole)
		}
	}
	return whole
}

func multibulk(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

func cmds(c ...[]string) [][]string { return c }

const (
	errMbulkLen    = "Protocol error: invalid multibulk length"
	errBulkLen     = "Protocol error: invalid bulk length"
	errInline      = "Protocol error: too big inline request"
	errMbulkCount  = "Protocol error: too big mbulk count string"
	errBulkCount   = "Protocol error: too big bulk count string"
	errQuotes      = "Protocol error: unbalanced quotes in request"
	errUnauthMbulk = "Protocol error: unauthenticated multibulk length"
	errUnauthBulk  = "Protocol error: unauthenticated bulk length"
)

func TestParser(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want result
	}{
		// multibulk
		{"ping", "*1\r\n$4\r\nPING\r\n", result{cmds: cmds([]string{"PING"})}},
		{"args", multibulk("RPUSH", "q", "a", "bc"), result{cmds: cmds([]string{"RPUSH", "q", "a", "bc"})}},
		{"empty bulk", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", result{cmds: cmds([]string{"ECHO", ""})}},
		{"binary bulk", "*2\r\n$4\r\nECHO\r\n$6\r\na\r\nb\x00\xff\r\n", result{cmds: cmds([]string{"ECHO", "a\r\nb\x00\xff"})}},
		{"lower case", "*1\r\n$4\r\nping\r\n", result{cmds: cmds([]string{"ping"})}},
		// Redis skips the two bytes after a payload and the byte after a header's '\r' unchecked.
		{"bulk trailer unchecked", "*1\r\n$4\r\nPINGxx", result{cmds: cmds([]string{"PING"})}},
		{"header lf unchecked", "*1\rx$4\rxPINGxx", result{cmds: cmds([]string{"PING"})}},
		{"star zero skipped", "*0\r\n", result{}},
		{"star minus one skipped", "*-1\r\n", result{}},
		{"star negative skipped", "*-5\r\n", result{}},
		{"skips then command", "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", result{cmds: cmds([]string{"PING"})}},
		{"pipelined", multibulk("PING") + multibulk("ECHO", "x") + multibulk("LPOP", "q", "2"),
			result{cmds: cmds([]string{"PING"}, []string{"ECHO", "x"}, []string{"LPOP", "q", "2"})}},
		{"pipelined mixed", "PING\r\n" + multibulk("ECHO", "a b") + "ECHO c\n\r\n" + multibulk("PING"),
			result{cmds: cmds([]string{"PING"}, []string{"ECHO", "a b"}, []string{"ECHO", "c"}, []string{"PING"})}},
		{"bulk max len zero ok", "*1\r\n$0\r\n\r\n", result{cmds: cmds([]string{""})}},

		// incomplete input
		{"incomplete header", "*1", result{rest: 2}},
		{"incomplete header cr", "*1\r", result{rest: 3}},
		{"incomplete bulk header", "*1\r\n$4", result{rest: 6}},
		{"incomplete bulk", "*1\r\n$4\r\nPI", result{rest: 10}},
		{"incomplete trailer", "*1\r\n$4\r\nPING\r", result{rest: 13}},
		{"incomplete second arg", "*2\r\n$4\r\nECHO\r\n", result{rest: 14}},
		{"complete then incomplete", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI", result{cmds: cmds([]string{"PING"}), rest: 10}},
		{"incomplete inline", "PING", result{rest: 4}},
		{"incomplete inline cr", "PING\r", result{rest: 5}},

		// inline
		{"inline crlf", "PING\r\n", result{cmds: cmds([]string{"PING"})}},
		{"inline lf", "PING\n", result{cmds: cmds([]string{"PING"})}},
		{"inline args", "RPUSH q a b\n", result{cmds: cmds([]string{"RPUSH", "q", "a", "b"})}},
		{"inline blanks", " \t RPUSH\tq  a \v\r\n", result{cmds: cmds([]string{"RPUSH", "q", "a"})}},
		{"inline extra cr", "PING\r\r\n", result{cmds: cmds([]string{"PING"})}},
		{"inline vt ff inside token", "ECHO \vab\f\r\n", result{cmds: cmds([]string{"ECHO", "ab\f"})}},
		{"empty line skipped", "\r\n\n   \r\n", result{}},
		{"double quotes", `ECHO "hello world" x` + "\r\n", result{cmds: cmds([]string{"ECHO", "hello world", "x"})}},
		{"hex escape", `ECHO "\x41\x4a\x4B\x00z"` + "\r\n", result{cmds: cmds([]string{"ECHO", "AJK\x00z"})}},
		{"bad hex escape", `ECHO "\xZZ\x4"` + "\r\n", result{cmds: cmds([]string{"ECHO", "xZZx4"})}},
		{"escapes", `ECHO "a\nb\rc\td\be\af\"g\\h\qi"` + "\n", result{cmds: cmds([]string{"ECHO", "a\nb\rc\td\be\af\"g\\hqi"})}},
		{"single quotes", `ECHO 'it\'s' '\n' 'a"b'` + "\n", result{cmds: cmds([]string{"ECHO", "it's", `\n`, `a"b`})}},
		{"empty quoted", `ECHO "" ''` + "\n", result{cmds: cmds([]string{"ECHO", "", ""})}},
		{"quote inside token", `ECHO a"b c"` + "\n", result{cmds: cmds([]string{"ECHO", "ab c"})}},
		{"quote then tab", "ECHO \"a\"\tb\n", result{cmds: cmds([]string{"ECHO", "a", "b"})}},
		{"quote then vt", "ECHO \"a\"\v\n", result{cmds: cmds([]string{"ECHO", "a"})}},
		{"unbalanced double", `ECHO "abc` + "\r\n", result{err: errQuotes, rest: 11}},
		{"unbalanced single", `ECHO 'abc` + "\r\n", result{err: errQuotes, rest: 11}},
		{"text after double quote", `ECHO "a"b` + "\r\n", result{err: errQuotes, rest: 11}},
		{"text after single quote", `ECHO 'a'b` + "\r\n", result{err: errQuotes, rest: 11}},
		{"escaped closing quote", `ECHO "a\"` + "\r\n", result{err: errQuotes, rest: 11}},
		{"commands before unbalanced", "PING\r\nECHO \"x\n", result{cmds: cmds([]string{"PING"}), err: errQuotes, rest: 8}},
		// Redis looks for the end of the line with strchr: a NUL byte before it hides it.
		{"nul in inline waits", "PING\x00x\r\nPING\r\n", result{rest: 14}},
		{"nul in header waits", "*1\x00\r\n", result{rest: 5}},
		{"nul in bulk header waits", "*1\r\n$4\x00\r\nPING\r\n", result{rest: 15}},
		{"nul in payload fine", "*1\r\n$3\r\na\x00b\r\n", result{cmds: cmds([]string{"a\x00b"})}},

		// protocol errors
		{"mbulk not a number", "*abc\r\n", result{err: errMbulkLen, rest: 6}},
		{"mbulk empty", "*\r\n", result{err: errMbulkLen, rest: 3}},
		{"mbulk leading zero", "*01\r\n$4\r\nPING\r\n", result{err: errMbulkLen, rest: 15}},
		{"mbulk minus zero", "*-0\r\n", result{err: errMbulkLen, rest: 5}},
		{"mbulk plus", "*+1\r\n", result{err: errMbulkLen, rest: 5}},
		{"mbulk space", "* 1\r\n", result{err: errMbulkLen, rest: 5}},
		{"mbulk trailing space", "*1 \r\n", result{err: errMbulkLen, rest: 5}},
		{"mbulk overflow", "*99999999999999999999\r\n", result{err: errMbulkLen, rest: 23}},
		{"mbulk too long string", "*123456789012345678901\r\n", result{err: errMbulkLen, rest: 24}},
		{"mbulk above qgate limit", "*1048577\r\n", result{err: errMbulkLen, rest: 10}},
		{"mbulk at qgate limit", "*1048576\r\n", result{rest: 10}},
		{"bulk not a number", "*1\r\n$abc\r\n", result{err: errBulkLen, rest: 10}},
		{"bulk negative", "*1\r\n$-1\r\n", result{err: errBulkLen, rest: 9}},
		{"bulk leading zero", "*1\r\n$04\r\nPING\r\n", result{err: errBulkLen, rest: 15}},
		{"bulk minus zero", "*1\r\n$-0\r\n", result{err: errBulkLen, rest: 9}},
		{"bulk plus", "*1\r\n$+4\r\nPING\r\n", result{err: errBulkLen, rest: 15}},
		{"bulk empty", "*1\r\n$\r\n", result{err: errBulkLen, rest: 7}},
		{"bulk above default max", "*1\r\n$536870913\r\n", result{err: errBulkLen, rest: 16}},
		{"bulk at default max", "*1\r\n$536870912\r\n", result{rest: 16}},
		{"expected dollar", "*1\r\nx\r\n", result{err: "Protocol error: expected '$', got 'x'", rest: 7}},
		{"expected dollar second", "*2\r\n$4\r\nECHO\r\n:1\r\n", result{err: "Protocol error: expected '$', got ':'", rest: 18}},
		{"commands before error", multibulk("PING") + "PING\r\n*1\r\n$abc\r\n" + multibulk("PING"),
			result{cmds: cmds([]string{"PING"}, []string{"PING"}), err: errBulkLen, rest: 24}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkSplits(t, 0, []byte(tt.in))
			if !sameResult(got, tt.want) {
				t.Fatalf("%q:\n got %v\nwant %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParser_MaxBulkLen(t *testing.T) {
	in := "*2\r\n$4\r\nECHO\r\n$1024\r\n" + strings.Repeat("x", 1024) + "\r\n"
	if got := checkSplits(t, 1024, []byte(in)); got.err != "" || len(got.cmds) != 1 || len(got.cmds[0][1]) != 1024 {
		t.Fatalf("bulk of exactly MaxBulkLen: %v", got)
	}
	in = "*2\r\n$4\r\nECHO\r\n$1025\r\n" + strings.Repeat("x", 1025) + "\r\n"
	if got := checkSplits(t, 1024, []byte(in)); got.err != errBulkLen || got.cmds != nil {
		t.Fatalf("bulk above MaxBulkLen: %v", got)
	}
	// The header alone is enough to refuse it.
	if got := feed(t, NewParser(1024), []byte("*1\r\n$1025\r\n")); got.err != errBulkLen {
		t.Fatalf("header above MaxBulkLen: %v", got)
	}
	if p := NewParser(0); p.MaxBulkLen != DefaultMaxBulkLen {
		t.Fatalf("NewParser(0).MaxBulkLen = %d", p.MaxBulkLen)
	}
}

// unauthParser returns a parser for a client that has not authenticated while authentication is required.
func unauthParser() *Parser {
	p := NewParser(0)
	p.SetAuthRequired(true)
	return p
}

// TestParser_Unauthenticated checks Redis 7.0's limits for clients that must still authenticate
// (networking.c: more than 10 arguments or a bulk above 16384 bytes is refused from its header), in
// Redis's order of checks, whatever the split of the input.
func TestParser_Unauthenticated(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want result
	}{
		{"ten args", multibulk("RPUSH", "q", "1", "2", "3", "4", "5", "6", "7", "8"),
			result{cmds: cmds([]string{"RPUSH", "q", "1", "2", "3", "4", "5", "6", "7", "8"})}},
		{"eleven args", "*11\r\n", result{err: errUnauthMbulk, rest: 5}},
		{"eleven args with data", multibulk("RPUSH", "q", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
			result{err: errUnauthMbulk, rest: len(multibulk("RPUSH", "q", "1", "2", "3", "4", "5", "6", "7", "8", "9"))}},
		{"bulk at limit", multibulk("ECHO", strings.Repeat("b", UnauthMaxBulkLen)),
			result{cmds: cmds([]string{"ECHO", strings.Repeat("b", UnauthMaxBulkLen)})}},
		{"bulk above limit", "*2\r\n$4\r\nECHO\r\n$16385\r\n", result{err: errUnauthBulk, rest: 22}},
		{"huge bulk header", "*1\r\n$500000000\r\n" + strings.Repeat("x", 1024), result{err: errUnauthBulk, rest: 16 + 1024}},
		// Invalid lengths stay invalid; above qgate's own cap the unauthenticated error comes first, as in Redis.
		{"bulk above max", "*1\r\n$536870913\r\n", result{err: errBulkLen, rest: 16}},
		{"mbulk above qgate cap", "*1048577\r\n", result{err: errUnauthMbulk, rest: 10}},
		{"mbulk above INT_MAX", "*2147483648\r\n", result{err: errMbulkLen, rest: 13}},
		{"mbulk at INT_MAX", "*2147483647\r\n", result{err: errUnauthMbulk, rest: 13}},
		{"star zero skipped", "*0\r\n", result{}},
		// Inline requests have only the 64 KiB line limit, for every client.
		{"inline many args", "RPUSH q 1 2 3 4 5 6 7 8 9 10 11\r\n",
			result{cmds: cmds([]string{"RPUSH", "q", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			whole := feed(t, unauthParser(), in)
			if !sameResult(whole, tt.want) {
				t.Fatalf("whole:\n got %.200v\nwant %.200v", whole, tt.want)
			}
			for _, k := range []int{1, 2, 5, len(in) / 2, len(in) - 1} {
				if k <= 0 || k >= len(in) {
					continue
				}
				if got := feed(t, unauthParser(), in[:k], in[k:]); !sameResult(got, whole) {
					t.Fatalf("split at %d:\n got %.200v\nwant %.200v", k, got, whole)
				}
			}
		})
	}
	// The same requests from an authenticated client (or with no authentication configured) pass.
	for _, in := range []string{"*11\r\n", "*2\r\n$4\r\nECHO\r\n$16385\r\n"} {
		if got, want := feed(t, NewParser(0), []byte(in)), (result{rest: len(in)}); !sameResult(got, want) {
			t.Fatalf("authenticated %q: got %v, want %v", in, got, want)
		}
	}
}

// TestParser_AuthRequiredChangesBetweenCommands: the limits apply to headers parsed while they are
// set, so a command after the one that logs in may be large (Redis checks at each header too).
func TestParser_AuthRequiredChangesBetweenCommands(t *testing.T) {
	p := unauthParser()
	big := multibulk("ECHO", strings.Repeat("b", UnauthMaxBulkLen+1))
	in := []byte(multibulk("AUTH", "pw") + big)
	args, n, err := p.Next(in)
	if err != nil || len(args) != 2 {
		t.Fatalf("AUTH: args=%q n=%d err=%v", args, n, err)
	}
	p.SetAuthRequired(false)
	args, m, err := p.Next(in[n:])
	if err != nil || m != len(big) || len(args) != 2 || len(args[1]) != UnauthMaxBulkLen+1 {
		t.Fatalf("after login: %d args, n=%d, err=%v", len(args), m, err)
	}
	p.SetAuthRequired(true)
	if _, _, err := p.Next([]byte(big)); err == nil || err.Error() != errUnauthBulk {
		t.Fatalf("after logout: err=%v, want %q", err, errUnauthBulk)
	}
}

// TestParser_ReleaseDropsArguments: once released, the parser holds nothing of the buffer its last
// command was parsed from, so the connection's buffer can be freed while it waits for the next one.
func TestParser_ReleaseDropsArguments(t *testing.T) {
	p := NewParser(0)
	buf := []byte(multibulk("RPUSH", "q", strings.Repeat("v", 1<<20)))
	alive := weak.Make(&buf[0])
	if args, n, err := p.Next(buf); err != nil || n != len(buf) || len(args) != 3 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	buf = nil
	p.Release()
	runtime.GC()
	if alive.Value() != nil {
		t.Fatal("the parser still holds the buffer of its last command")
	}
	// The parser still works afterwards.
	if args, _, err := p.Next([]byte(multibulk("PING"))); err != nil || len(args) != 1 {
		t.Fatalf("after Release: args=%q err=%v", args, err)
	}
}

// TestParser_LineLimits checks the 64 KiB limit on inline requests and header lines, at the boundary,
// and that the result does not depend on how the input is split.
func TestParser_LineLimits(t *testing.T) {
	long := func(n int, c byte) string { return strings.Repeat(string(c), n) }
	tests := []struct {
		name string
		in   string
		want result
	}{
		{"inline at limit", long(MaxInlineSize, 'a') + "\n", result{cmds: cmds([]string{long(MaxInlineSize, 'a')})}},
		{"inline crlf at limit", long(MaxInlineSize-1, 'a') + "\r\n", result{cmds: cmds([]string{long(MaxInlineSize-1, 'a')})}},
		{"inline over limit", long(MaxInlineSize+1, 'a') + "\n", result{err: errInline, rest: MaxInlineSize + 2}},
		{"inline no newline at limit", long(MaxInlineSize, 'a'), result{rest: MaxInlineSize}},
		{"inline no newline over limit", long(MaxInlineSize+1, 'a'), result{err: errInline, rest: MaxInlineSize + 1}},
		{"inline nul over limit", "PING\x00" + long(MaxInlineSize, 'a') + "\n", result{err: errInline, rest: MaxInlineSize + 6}},
		{"mbulk header no cr over limit", "*" + long(MaxInlineSize, '1'), result{err: errMbulkCount, rest: MaxInlineSize + 1}},
		{"mbulk header no cr at limit", "*" + long(MaxInlineSize-1, '1'), result{rest: MaxInlineSize}},
		// A '\r' at the limit: the line is not too big, the number is invalid (whatever the split).
		{"mbulk header cr at limit", "*" + long(MaxInlineSize-1, '1') + "\r\n", result{err: errMbulkLen, rest: MaxInlineSize + 2}},
		{"mbulk header cr over limit", "*" + long(MaxInlineSize, '1') + "\r\n", result{err: errMbulkCount, rest: MaxInlineSize + 3}},
		{"bulk header no cr over limit", "*1\r\n$" + long(MaxInlineSize, '1'), result{err: errBulkCount, rest: MaxInlineSize + 5}},
		{"bulk header cr at limit", "*1\r\n$" + long(MaxInlineSize-1, '1') + "\r\n", result{err: errBulkLen, rest: MaxInlineSize + 6}},
		{"bulk header cr over limit", "*1\r\n$" + long(MaxInlineSize, '1') + "\r\n", result{err: errBulkCount, rest: MaxInlineSize + 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			whole := feed(t, NewParser(0), in)
			if !sameResult(whole, tt.want) {
				t.Fatalf("whole:\n got %.200v\nwant %.200v", whole, tt.want)
			}
			for _, k := range []int{1, MaxInlineSize - 1, MaxInlineSize, MaxInlineSize + 1, MaxInlineSize + 2, len(in) - 1} {
				if k < 0 || k > len(in) {
					continue
				}
				if got := feed(t, NewParser(0), in[:k], in[k:]); !sameResult(got, whole) {
					t.Fatalf("split at %d:\n got %.200v\nwant %.200v", k, got, whole)
				}
			}
			if got := feed(t, NewParser(0), chunked(in, 1000)...); !sameResult(got, whole) {
				t.Fatalf("in 1000-byte chunks:\n got %.200v\nwant %.200v", got, whole)
			}
		})
	}
}

// TestParser_ArgsSurviveBufferMove is the regression test for arguments kept as slices of an earlier
// buffer: the connection compacts or grows its buffer between calls.
func TestParser_ArgsSurviveBufferMove(t *testing.T) {
	p := NewParser(0)
	first := []byte("*3\r\n$4\r\nECHO\r\n$5\r\nhello\r\n$3\r\nwo")
	if _, n, err := p.Next(first); n != 0 || err != nil {
		t.Fatalf("incomplete command: n=%d err=%v", n, err)
	}
	second := append(append([]byte(nil), first...), "w\r\n"...)
	for i := range first {
		first[i] = 'Z'
	}
	args, n, err := p.Next(second)
	if err != nil || n != len(second) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if got := fmt.Sprintf("%q", args); got != `["ECHO" "hello" "wow"]` {
		t.Fatalf("args = %s", got)
	}
}

func TestParser_Pending(t *testing.T) {
	p := NewParser(0)
	buf := []byte("*2\r\n$4\r\nECHO\r\n$100\r\nab")
	if _, n, err := p.Next(buf); n != 0 || err != nil {
		t.Fatalf("n=%d err=%v", n, err)
	}
	// 20 bytes of headers and first argument, then 100+2 for the bulk: 122 in all, 22 buffered.
	if got := p.Pending(len(buf)); got != 100 {
		t.Fatalf("Pending = %d, want 100", got)
	}
	if got := NewParser(0).Pending(0); got != 0 {
		t.Fatalf("Pending of a fresh parser = %d", got)
	}
}

// genStream builds a random request stream and the commands Redis reads from it: multibulk commands
// with binary arguments, inline commands with quoting, and the empty requests Redis skips.
func genStream(r *rand.Rand) ([]byte, [][]string) {
	var b bytes.Buffer
	var want [][]string
	randArg := func(binary bool) string {
		n := r.IntN(12)
		if r.IntN(20) == 0 {
			n = r.IntN(3000)
		}
		a := make([]byte, n)
		for i := range a {
			if binary {
				a[i] = byte(r.IntN(256))
			} else {
				a[i] = "abcxyzXYZ019-_:{}*$"[r.IntN(19)]
			}
		}
		return string(a)
	}
	for range 1 + r.IntN(8) {
		switch r.IntN(10) {
		case 0:
			b.WriteString([]string{"*0\r\n", "*-1\r\n", "\r\n", "\n", "  \t \r\n"}[r.IntN(5)])
		case 1, 2, 3:
			// inline: plain tokens, double-quoted with escapes, single-quoted
			var line []string
			var cmd []string
			for i := range 1 + r.IntN(5) {
				a := randArg(false)
				if i == 0 && a == "" {
					a = "X"
				}
				switch r.IntN(3) {
				case 0:
					if i == 0 && a[0] == '*' {
						a = "X" + a // a line starting with '*' is a multibulk request
					}
					if a == "" {
						line = append(line, `""`)
					} else {
						line = append(line, a)
					}
					cmd = append(cmd, a)
				case 1:
					raw := randArg(true)
					var q strings.Builder
					q.WriteByte('"')
					for j := 0; j < len(raw); j++ {
						fmt.Fprintf(&q, `\x%02x`, raw[j])
					}
					q.WriteByte('"')
					line = append(line, q.String())
					cmd = append(cmd, raw)
				default:
					line = append(line, "'"+strings.ReplaceAll(a, "'", `\'`)+"'")
					cmd = append(cmd, a)
				}
			}
			b.WriteString(strings.Join(line, []string{" ", "  ", "\t"}[r.IntN(3)]))
			b.WriteString([]string{"\r\n", "\n"}[r.IntN(2)])
			want = append(want, cmd)
		default:
			cmd := make([]string, 1+r.IntN(6))
			for i := range cmd {
				cmd[i] = randArg(true)
			}
			b.WriteString(multibulk(cmd...))
			want = append(want, cmd)
		}
	}
	return b.Bytes(), want
}

// TestParser_SplitProperty: a stream fed byte by byte, in random chunks or whole yields the same
// commands, and those are the ones it encodes.
func TestParser_SplitProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		in, want := genStream(r)
		got := checkSplits(t, 0, in)
		if got.err != "" || got.rest != 0 || !reflect.DeepEqual(got.cmds, want) {
			t.Fatalf("stream %d %q:\n got %v\nwant cmds %q", i, in, got, want)
		}
		var chunks [][]byte
		for rest := in; len(rest) > 0; {
			n := 1 + r.IntN(min(len(rest), 64))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if got2 := feed(t, NewParser(0), chunks...); !sameResult(got2, got) {
			t.Fatalf("stream %d in random chunks:\n got %v\nwant %v", i, got2, got)
		}
	}
}

// TestParser_RedconDifferences documents where qgate's parser, which follows Redis, deliberately
// differs from redcon's on '*' input, and that the Redis side is what qgate does.
func TestParser_RedconDifferences(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		redcon string // redcon.Parse's error ("" when it accepts)
		qgate  result
	}{
		// Redis skips empty and null multibulk requests; redcon calls them invalid.
		{"star zero", "*0\r\n", errMbulkLen, result{}},
		{"star minus one", "*-1\r\n", errMbulkLen, result{}},
		// Redis parses lengths with string2ll; redcon with strconv.Atoi, which takes '+' and zeros.
		{"plus sign", "*+1\r\n$4\r\nPING\r\n", "", result{err: errMbulkLen, rest: 15}},
		{"leading zero", "*1\r\n$04\r\nPING\r\n", "", result{err: errBulkLen, rest: 15}},
		// Redis does not check the bytes after a payload or after a header's '\r'; redcon does.
		{"bulk trailer", "*1\r\n$4\r\nPINGxx", errBulkLen, result{cmds: cmds([]string{"PING"})}},
		{"header lf", "*1\rx$4\r\nPING\r\n", errMbulkLen, result{cmds: cmds([]string{"PING"})}},
		// redcon has no limits; Redis refuses bulks above proto-max-bulk-len (qgate: max_bulk_bytes)
		// and qgate caps the argument count at 1M (Redis 7.0: INT_MAX).
		{"bulk above max", "*1\r\n$536870913\r\n", "incomplete command", result{err: errBulkLen, rest: 16}},
		{"too many args", "*1048577\r\n", "incomplete command", result{err: errMbulkLen, rest: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redcon.Parse([]byte(tt.in))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.redcon {
				t.Errorf("redcon.Parse error = %q, want %q", got, tt.redcon)
			}
			if q := checkSplits(t, 0, []byte(tt.in)); !sameResult(q, tt.qgate) {
				t.Errorf("qgate:\n got %v\nwant %v", q, tt.qgate)
			}
		})
	}
}

// redconCommands reads data with redcon.NewReader and returns its commands when redcon accepts all of
// data as complete commands that are canonical multibulk requests (re-encoding them gives data back);
// ok is false otherwise.
//
// Inputs announcing more arguments than they have bytes are left out: redcon loops once per announced
// argument before it finds the command incomplete, so "*9223372036854775807\r\n" keeps it busy for
// ages (qgate refuses counts above MaxMultibulkLen at once).
func redconCommands(data []byte) (cmds [][]string, ok bool) {
	if len(data) == 0 || data[0] != '*' || hugeCount(data) {
		return nil, false
	}
	rd := redcon.NewReader(bytes.NewReader(data))
	var enc []byte
	for {
		cmd, err := rd.ReadCommand()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false
		}
		args := make([]string, len(cmd.Args))
		for i, a := range cmd.Args {
			args[i] = string(a)
		}
		cmds = append(cmds, args)
		enc = append(enc, multibulk(args...)...)
	}
	return cmds, len(cmds) > 0 && bytes.Equal(enc, data)
}

// hugeCount reports whether some '*' in data is followed by a number larger than len(data).
func hugeCount(data []byte) bool {
	for i, c := range data {
		if c != '*' {
			continue
		}
		j := i + 1
		for j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		k := j
		for k < len(data) && data[k] >= '0' && data[k] <= '9' {
			k++
		}
		if n, err := strconv.ParseUint(string(data[j:k]), 10, 64); k > j && (err != nil || n > uint64(len(data))) {
			return true
		}
	}
	return false
}

func FuzzParser(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n",
		multibulk("RPUSH", "q", "a\r\nb", "") + multibulk("BLPOP", "q", "0.5"),
		"*0\r\n*-1\r\nPING\r\n",
		"ECHO \"\\x41\\n\" 'it\\'s'\r\n",
		"*1\r\n$abc\r\n",
		"*1\rx$4\rxPINGxx",
		"PING\x00x\r\n",
	} {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		k := int(split) % (len(data) + 1)
		for _, maxBulk := range []int64{0, 8} {
			for _, unauth := range []bool{false, true} {
				newParser := func() *Parser {
					p := NewParser(maxBulk)
					p.SetAuthRequired(unauth)
					return p
				}
				whole := feed(t, newParser(), data)
				if got := feed(t, newParser(), data[:k], data[k:]); !sameResult(got, whole) {
					t.Fatalf("max %d, unauth %v, split at %d of %q:\n got %v\nwant %v", maxBulk, unauth, k, data, got, whole)
				}
				if len(data) <= 256 {
					if got := feed(t, newParser(), bytewise(data)...); !sameResult(got, whole) {
						t.Fatalf("max %d, unauth %v, byte by byte %q:\n got %v\nwant %v", maxBulk, unauth, data, got, whole)
					}
				}
			}
		}
		if want, ok := redconCommands(data); ok {
			got := feed(t, NewParser(0), data)
			if got.err != "" || got.rest != 0 || !reflect.DeepEqual(got.cmds, want) {
				t.Fatalf("redcon reads %q from %q; qgate: %v", want, data, got)
			}
		}
	})
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		line string
		want []string // nil: unbalanced quotes
	}{
		{"", []string{}},
		{"   \t", []string{}},
		{"a b  c", []string{"a", "b", "c"}},
		{`"a b" 'c d'`, []string{"a b", "c d"}},
		{`"\x41\x62\x7a\xff"`, []string{"Abz\xff"}},
		{`"\x4"`, []string{"x4"}},
		{`"\n\r\t\b\a\\\"\z"`, []string{"\n\r\t\b\a\\\"z"}},
		{`'\n\'\x'`, []string{`\n'\x`}},
		{`a"b c" d`, []string{"ab c", "d"}},
		{`a"b c"d`, nil},
		{`a'b'`, []string{"ab"}},
		{`""`, []string{""}},
		{`"a"b`, nil},
		{`'a'b`, nil},
		{`"abc`, nil},
		{`'abc`, nil},
		{`"abc\"`, nil},
		{`"abc\`, nil},
		// Redis splits a C string: a NUL byte ends the line.
		{"a\x00b", []string{"a"}},
		{"\"a\x00b\"", nil},
		{"\"a\"\x00b", []string{"a"}},
	}
	for _, tt := range tests {
		args, ok := SplitArgs([]byte(tt.line), nil)
		if tt.want == nil {
			if ok {
				t.Errorf("SplitArgs(%q) = %q, want unbalanced quotes", tt.line, args)
			}
			continue
		}
		got := make([]string, len(args))
		for i, a := range args {
			got[i] = string(a)
		}
		if !ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", tt.line, got, ok, tt.want)
		}
		if ref, rok := refSplitArgs([]byte(tt.line)); !rok || !reflect.DeepEqual(strs(ref), tt.want) {
			t.Errorf("reference splitargs(%q) = %q, %v; want %q", tt.line, strs(ref), rok, tt.want)
		}
	}
}

func strs(b [][]byte) []string {
	out := make([]string, len(b))
	for i, a := range b {
		out[i] = string(a)
	}
	return out
}

// refSplitArgs is a line-by-line transcription of Redis's sdssplitargs (sds.c) over a NUL-terminated
// copy of line, used as the oracle for SplitArgs.
func refSplitArgs(line []byte) ([][]byte, bool) {
	s := append(append(make([]byte, 0, len(line)+1), line...), 0)
	isspace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' }
	ishex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
	hexval := func(c byte) byte {
		v, _ := strconv.ParseUint(string(c), 16, 8)
		return byte(v)
	}
	vector := [][]byte{}
	p := 0
	for {
		for s[p] != 0 && isspace(s[p]) {
			p++
		}
		if s[p] == 0 {
			return vector, true
		}
		inq, insq, done := false, false, false
		current := []byte{}
		for !done {
			switch {
			case inq:
				switch {
				case s[p] == '\\' && s[p+1] == 'x' && ishex(s[p+2]) && ishex(s[p+3]):
					current = append(current, hexval(s[p+2])*16+hexval(s[p+3]))
					p += 3
				case s[p] == '\\' && s[p+1] != 0:
					p++
					c := s[p]
					switch s[p] {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'b':
						c = '\b'
					case 'a':
						c = '\a'
					}
					current = append(current, c)
				case s[p] == '"':
					if s[p+1] != 0 && !isspace(s[p+1]) {
						return nil, false
					}
					done = true
				case s[p] == 0:
					return nil, false
				default:
					current = append(current, s[p])
				}
			case insq:
				switch {
				case s[p] == '\\' && s[p+1] == '\'':
					p++
					current = append(current, '\'')
				case s[p] == '\'':
					if s[p+1] != 0 && !isspace(s[p+1]) {
						return nil, false
					}
					done = true
				case s[p] == 0:
					return nil, false
				default:
					current = append(current, s[p])
				}
			default:
				switch s[p] {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					current = append(current, s[p])
				}
			}
			if s[p] != 0 {
				p++
			}
		}
		vector = append(vector, current)
	}
}

// quoteArg quotes an argument so that SplitArgs reads it back unchanged.
func quoteArg(a []byte) string {
	var q strings.Builder
	q.WriteByte('"')
	for _, c := range a {
		switch {
		case c == '"' || c == '\\':
			q.WriteByte('\\')
			q.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&q, `\x%02x`, c)
		default:
			q.WriteByte(c)
		}
	}
	q.WriteByte('"')
	return q.String()
}

func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{
		`RPUSH q "a b" 'c\'d' "\x41\n"`,
		`"unbalanced`,
		`'a'b`,
		"a\x00b \"c",
		"\t\v\f x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		args, ok := SplitArgs(line, nil)
		ref, rok := refSplitArgs(line)
		if ok != rok || ok && !reflect.DeepEqual(strs(args), strs(ref)) {
			t.Fatalf("SplitArgs(%q) = %q, %v; Redis's splitargs gives %q, %v", line, strs(args), ok, strs(ref), rok)
		}
		if !ok {
			return
		}
		// Quoting each argument and splitting again gives the same arguments.
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = quoteArg(a)
		}
		again, ok := SplitArgs([]byte(strings.Join(quoted, " ")), nil)
		if !ok || !reflect.DeepEqual(strs(again), strs(args)) {
			t.Fatalf("round trip of %q through %q gave %q, %v", strs(args), strings.Join(quoted, " "), strs(again), ok)
		}
	})
}
