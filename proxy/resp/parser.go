// Package resp parses client requests and encodes replies in RESP2 and RESP3.
//
// The parser follows Redis's own request reader (networking.c) so that limits,
// inline commands and protocol error texts are the ones Redis clients expect.
// Replies are built with github.com/tidwall/redcon's append helpers.
package resp

import (
	"bytes"
	"errors"
	"math"
	"strconv"
)

// Limits Redis applies to requests (networking.c).
const (
	// MaxInlineSize bounds an inline request and a multibulk or bulk header line (PROTO_INLINE_MAX_SIZE).
	MaxInlineSize = 64 * 1024
	// MaxMultibulkLen bounds the number of arguments of one command (Redis: INT_MAX; 1M is plenty and bounds memory).
	MaxMultibulkLen = 1024 * 1024
	// DefaultMaxBulkLen is Redis's proto-max-bulk-len default.
	DefaultMaxBulkLen = 512 * 1024 * 1024
	// UnauthMaxMultibulkLen and UnauthMaxBulkLen bound the requests of a client that has not
	// authenticated while authentication is required (Redis's authRequired): a larger header is
	// refused before any of the data it announces arrives.
	UnauthMaxMultibulkLen = 10
	UnauthMaxBulkLen      = 16384
)

// ProtocolError is a malformed request; Redis answers "ERR Protocol error: …" and closes the connection.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

// IsProtocolError reports whether err is a *ProtocolError.
func IsProtocolError(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}

var (
	errTooBigInline    = &ProtocolError{"too big inline request"}
	errTooBigMbulk     = &ProtocolError{"too big mbulk count string"}
	errTooBigBulk      = &ProtocolError{"too big bulk count string"}
	errInvalidMbulkLen = &ProtocolError{"invalid multibulk length"}
	errInvalidBulkLen  = &ProtocolError{"invalid bulk length"}
	errUnauthMbulkLen  = &ProtocolError{"unauthenticated multibulk length"}
	errUnauthBulkLen   = &ProtocolError{"unauthenticated bulk length"}
	errUnbalanced      = &ProtocolError{"unbalanced quotes in request"}
)

// Parser splits a byte stream into commands. Its zero value is not usable: use NewParser.
type Parser struct {
	// MaxBulkLen is the largest bulk string accepted (proto-max-bulk-len).
	MaxBulkLen int64
	// authRequired applies the unauthenticated limits to the headers parsed from now on.
	authRequired bool
	args         [][]byte
	// multibulk state carried across calls so a large command is not rescanned from its start
	// (offsets are relative to the start of the command, which does not move between calls; the
	// command's bytes may, since the caller may compact or grow its buffer, so arguments are kept as
	// offsets and sliced from the buffer of the call that completes the command).
	want    int   // arguments announced by the multibulk header, 0 when not inside a command
	pos     int   // bytes of the current command parsed so far
	bulkLen int   // length of the next bulk when known, -1 otherwise
	offs    []int // start offset of each complete argument so far (its end is start+length)
	lens    []int
}

// NewParser returns a parser that accepts bulk strings up to maxBulkLen bytes.
func NewParser(maxBulkLen int64) *Parser {
	if maxBulkLen <= 0 {
		maxBulkLen = DefaultMaxBulkLen
	}
	return &Parser{MaxBulkLen: maxBulkLen, bulkLen: -1}
}

// SetAuthRequired says whether the client still has to authenticate. While it does, headers parsed
// afterwards are held to Redis's limits for unauthenticated clients (UnauthMaxMultibulkLen arguments,
// UnauthMaxBulkLen bytes per argument), with Redis's errors. The connection calls it before each
// command, since a command can log the client in.
func (p *Parser) SetAuthRequired(required bool) { p.authRequired = required }

// Next parses one command from the start of buf. It returns the arguments (slices of buf, valid until buf
// is modified), the number of bytes consumed, and an error for a malformed request. n == 0 with a nil
// error means buf holds no complete command yet; args may be empty with n > 0 for requests Redis ignores
// (an empty inline line, "*0"). Between calls that return n == 0 the caller must pass the same bytes
// again (with more appended) at the start of buf.
func (p *Parser) Next(buf []byte) (args [][]byte, n int, err error) {
	if len(buf) == 0 {
		return nil, 0, nil
	}
	if buf[0] == '*' {
		return p.multibulk(buf)
	}
	return p.inline(buf)
}

// Pending returns how many bytes the command being parsed still needs at least to complete the bulk
// string it is reading, when its header has been read; 0 otherwise. buffered is how many bytes of the
// command the caller holds. Callers use it to size their buffer to the end of a large argument; it
// is only a bound once the bytes arrive, never a reason to allocate ahead of them.
func (p *Parser) Pending(buffered int) int {
	if p.want == 0 || p.bulkLen < 0 {
		return 0
	}
	need := p.pos + p.bulkLen + 2 - buffered
	if need < 0 {
		return 0
	}
	return need
}

// Release drops the parser's own references to the arguments it returned (they stay valid for whoever
// holds them), and the room it kept for a command with many arguments. The caller calls it once it is
// done with the commands parsed so far, so that the buffer they point into can be freed while the
// parser waits for the next command.
func (p *Parser) Release() {
	if cap(p.args) > keepArgs {
		p.args = nil
	} else {
		clear(p.args[:cap(p.args)])
	}
	if p.want == 0 && cap(p.offs) > keepArgs {
		p.offs, p.lens = nil, nil
	}
}

// keepArgs is how many arguments' room the parser keeps between commands.
const keepArgs = 64

func (p *Parser) reset() {
	p.want, p.pos, p.bulkLen = 0, 0, -1
	p.args = p.args[:0]
	p.offs, p.lens = p.offs[:0], p.lens[:0]
}

func (p *Parser) multibulk(buf []byte) ([][]byte, int, error) {
	if p.want == 0 {
		nl := indexLine(buf, '\r')
		if nl < 0 {
			if len(buf) > MaxInlineSize {
				return nil, 0, errTooBigMbulk
			}
			return nil, 0, nil
		}
		if nl > MaxInlineSize {
			return nil, 0, errTooBigMbulk
		}
		if nl+1 >= len(buf) {
			return nil, 0, nil // Redis waits for the byte after '\r' (and does not check it is '\n')
		}
		// Redis's order: invalid above INT_MAX, then the unauthenticated limit; qgate's own cap last, so
		// an unauthenticated client gets Redis's error whatever the count.
		ll, ok := parseInt(buf[1:nl])
		switch {
		case !ok || ll > math.MaxInt32:
			return nil, 0, errInvalidMbulkLen
		case ll > UnauthMaxMultibulkLen && p.authRequired:
			return nil, 0, errUnauthMbulkLen
		case ll > MaxMultibulkLen:
			return nil, 0, errInvalidMbulkLen
		}
		if ll <= 0 {
			// Redis silently skips "*0" and "*-1".
			return nil, nl + 2, nil
		}
		p.reset()
		p.want = int(ll)
		p.pos = nl + 2
	}
	for len(p.offs) < p.want {
		if p.bulkLen < 0 {
			rest := buf[p.pos:]
			nl := indexLine(rest, '\r')
			if nl < 0 {
				if len(rest) > MaxInlineSize {
					p.reset()
					return nil, 0, errTooBigBulk
				}
				return nil, 0, nil
			}
			if nl > MaxInlineSize {
				p.reset()
				return nil, 0, errTooBigBulk
			}
			if nl+1 >= len(rest) {
				return nil, 0, nil
			}
			if rest[0] != '$' {
				c := rest[0]
				p.reset()
				return nil, 0, &ProtocolError{"expected '$', got '" + string(c) + "'"}
			}
			ll, ok := parseInt(rest[1:nl])
			if !ok || ll < 0 || ll > p.MaxBulkLen {
				p.reset()
				return nil, 0, errInvalidBulkLen
			}
			if ll > UnauthMaxBulkLen && p.authRequired {
				p.reset()
				return nil, 0, errUnauthBulkLen
			}
			p.bulkLen = int(ll)
			p.pos += nl + 2
		}
		// Redis skips the two bytes after the bulk payload without checking they are CRLF.
		if len(buf)-p.pos < p.bulkLen+2 {
			return nil, 0, nil
		}
		p.offs = append(p.offs, p.pos)
		p.lens = append(p.lens, p.bulkLen)
		p.pos += p.bulkLen + 2
		p.bulkLen = -1
	}
	args := p.args[:0]
	for i, off := range p.offs {
		end := off + p.lens[i]
		args = append(args, buf[off:end:end])
	}
	n := p.pos
	p.reset()
	p.args = args[:0]
	return args, n, nil
}

func (p *Parser) inline(buf []byte) ([][]byte, int, error) {
	nl := indexLine(buf, '\n')
	if nl < 0 {
		if len(buf) > MaxInlineSize {
			return nil, 0, errTooBigInline
		}
		return nil, 0, nil
	}
	if nl > MaxInlineSize {
		return nil, 0, errTooBigInline
	}
	line := buf[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, ok := SplitArgs(line, p.args[:0])
	if !ok {
		return nil, 0, errUnbalanced
	}
	p.args = args[:0]
	return args, nl + 1, nil
}

// SplitArgs splits an inline request like Redis's sdssplitargs: blanks separate arguments, "double
// quotes" support \n \r \t \b \a and \xHH escapes (any other escaped byte stands for itself), 'single
// quotes' support \'. A closing quote must be followed by a blank or the end of the line. ok is false
// for unbalanced quotes.
//
// Redis splits a C string, so a NUL byte ends the line (the parser never passes one: see indexLine).
func SplitArgs(line []byte, dst [][]byte) (args [][]byte, ok bool) {
	args = dst
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	at := func(i int) byte { // the line is NUL-terminated in Redis
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	p := 0
	for {
		for p < len(line) && isSpace(line[p]) {
			p++
		}
		if p >= len(line) {
			return args, true
		}
		cur := []byte{}
		inq, insq, done := false, false, false
		for !done {
			c := at(p)
			switch {
			case inq:
				switch {
				case c == '\\' && at(p+1) == 'x' && isHex(at(p+2)) && isHex(at(p+3)):
					cur = append(cur, hexVal(at(p+2))<<4|hexVal(at(p+3)))
					p += 3
				case c == '\\' && at(p+1) != 0:
					p++
					e := at(p)
					switch e {
					case 'n':
						e = '\n'
					case 'r':
						e = '\r'
					case 't':
						e = '\t'
					case 'b':
						e = '\b'
					case 'a':
						e = '\a'
					}
					cur = append(cur, e)
				case c == '"':
					if n := at(p + 1); n != 0 && !isSpace(n) {
						return nil, false
					}
					done = true
				case p >= len(line):
					return nil, false
				default:
					cur = append(cur, c)
				}
			case insq:
				switch {
				case c == '\\' && at(p+1) == '\'':
					p++
					cur = append(cur, '\'')
				case c == '\'':
					if n := at(p + 1); n != 0 && !isSpace(n) {
						return nil, false
					}
					done = true
				case p >= len(line):
					return nil, false
				default:
					cur = append(cur, c)
				}
			default:
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					cur = append(cur, c)
				}
			}
			if p < len(line) {
				p++
			}
		}
		args = append(args, cur)
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f' || c == 0
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// indexLine returns the index of c in buf, or -1 when there is none before the first NUL byte. Redis
// finds line ends with strchr on its NUL-terminated query buffer, so a NUL before the end of a header
// or inline line makes it wait for more input until the line limit is reached; qgate does the same.
func indexLine(buf []byte, c byte) int {
	i := bytes.IndexByte(buf, c)
	if i < 0 {
		return -1
	}
	if bytes.IndexByte(buf[:i], 0) >= 0 {
		return -1
	}
	return i
}

// parseInt parses a Redis length like Redis's string2ll: an optional '-' and decimal digits, without
// a leading '+', spaces or leading zeros ("0" alone is fine, "-0" and "01" are not).
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	d := b
	if d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || d[0] < '1' || d[0] > '9' {
		return 0, false
	}
	for _, c := range d[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}
