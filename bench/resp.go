package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// A deliberately small RESP2 client: the load generator shares two cores with Redis and the
// proxies, so the hot paths (skip) do not allocate, and idle connections are plain net.Conns.

// redisError is an error reply ("-ERR ...") from the server.
type redisError string

func (e redisError) Error() string { return string(e) }

var errProtocol = errors.New("protocol error in reply")

// rconn is one client connection with buffered reads and writes.
type rconn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func dial(addr string) (*rconn, error) { return dialSize(addr, 16<<10) }

// dialSize dials addr with read/write buffers of bufSize bytes.
func dialSize(addr string, bufSize int) (*rconn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &rconn{nc: nc, r: bufio.NewReaderSize(nc, bufSize), w: bufio.NewWriterSize(nc, bufSize)}, nil
}

func (c *rconn) Close() error { return c.nc.Close() }

// appendCmd appends one command in RESP array form.
func appendCmd(buf []byte, args ...string) []byte {
	buf = append(buf, '*')
	buf = strconv.AppendInt(buf, int64(len(args)), 10)
	buf = append(buf, '\r', '\n')
	for _, a := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(a)), 10)
		buf = append(buf, '\r', '\n')
		buf = append(buf, a...)
		buf = append(buf, '\r', '\n')
	}
	return buf
}

// do sends one command and reads its reply.
func (c *rconn) do(args ...string) (any, error) {
	if _, err := c.w.Write(appendCmd(nil, args...)); err != nil {
		return nil, err
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	return c.read()
}

// send writes raw pre-encoded commands and flushes.
func (c *rconn) send(b []byte) error {
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *rconn) line() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, errProtocol
	}
	return line[:len(line)-2], nil
}

func parseInt(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, errProtocol
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, errProtocol
		}
		n = n*10 + int64(ch-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// skip reads one whole reply without allocating. It returns the reply's type byte and whether it
// was a null; an error reply is returned as a redisError.
func (c *rconn) skip() (kind byte, null bool, err error) {
	line, err := c.line()
	if err != nil {
		return 0, false, err
	}
	kind = line[0]
	switch kind {
	case '+', ':':
		return kind, false, nil
	case '-':
		return kind, false, redisError(line[1:])
	case '$':
		n, err := parseInt(line[1:])
		if err != nil {
			return kind, false, err
		}
		if n < 0 {
			return kind, true, nil
		}
		_, err = c.r.Discard(int(n) + 2)
		return kind, false, err
	case '*':
		n, err := parseInt(line[1:])
		if err != nil {
			return kind, false, err
		}
		if n < 0 {
			return kind, true, nil
		}
		for i := int64(0); i < n; i++ {
			if _, _, err := c.skip(); err != nil {
				return kind, false, err
			}
		}
		return kind, false, nil
	}
	return kind, false, fmt.Errorf("%w: type %q", errProtocol, kind)
}

// read reads one reply: string (simple or bulk), int64, nil, []any; an error reply is returned as
// a redisError error.
func (c *rconn) read() (any, error) {
	line, err := c.line()
	if err != nil {
		return nil, err
	}
	switch line[0] {
	case '+':
		return string(line[1:]), nil
	case '-':
		return nil, redisError(line[1:])
	case ':':
		return parseInt(line[1:])
	case '$':
		n, err := parseInt(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := parseInt(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = c.read(); err != nil {
				return nil, err
			}
		}
		return arr, nil
	}
	return nil, fmt.Errorf("%w: type %q", errProtocol, line[0])
}

// infoField returns one "name:value" field of an INFO reply.
func infoField(info, name string) (string, bool) {
	for len(info) > 0 {
		i := 0
		for i < len(info) && info[i] != '\n' {
			i++
		}
		line := info[:i]
		if i < len(info) {
			info = info[i+1:]
		} else {
			info = ""
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) > len(name) && line[:len(name)] == name && line[len(name)] == ':' {
			return line[len(name)+1:], true
		}
	}
	return "", false
}

// infoInt returns an integer INFO field of the server at c.
func infoInt(c *rconn, section, name string) (int64, error) {
	v, err := c.do("INFO", section)
	if err != nil {
		return 0, err
	}
	s, _ := v.(string)
	f, ok := infoField(s, name)
	if !ok {
		return 0, fmt.Errorf("INFO %s has no %s", section, name)
	}
	return strconv.ParseInt(f, 10, 64)
}

// infoFloat returns a float INFO field of the server at c.
func infoFloat(c *rconn, section, name string) (float64, error) {
	v, err := c.do("INFO", section)
	if err != nil {
		return 0, err
	}
	s, _ := v.(string)
	f, ok := infoField(s, name)
	if !ok {
		return 0, fmt.Errorf("INFO %s has no %s", section, name)
	}
	return strconv.ParseFloat(f, 64)
}

// bulk reads one bulk string and passes it to fn without copying when it fits the read buffer;
// the slice is only valid during the call.
func (c *rconn) bulk(fn func([]byte)) error {
	line, err := c.line()
	if err != nil {
		return err
	}
	if line[0] == '-' {
		return redisError(line[1:])
	}
	if line[0] != '$' {
		return fmt.Errorf("%w: want a bulk string, got %q", errProtocol, line)
	}
	n, err := parseInt(line[1:])
	if err != nil || n < 0 {
		return fmt.Errorf("%w: bulk length %q", errProtocol, line)
	}
	if int(n)+2 <= c.r.Size() {
		b, err := c.r.Peek(int(n) + 2)
		if err != nil {
			return err
		}
		fn(b[:n])
		_, err = c.r.Discard(int(n) + 2)
		return err
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return err
	}
	fn(buf[:n])
	return nil
}

// message reads one pub/sub frame ["message", channel, payload] and passes payload to fn.
func (c *rconn) message(fn func(payload []byte)) error {
	line, err := c.line()
	if err != nil {
		return err
	}
	if string(line) != "*3" {
		return fmt.Errorf("%w: want a 3-element message frame, got %q", errProtocol, line)
	}
	kindOK := false
	if err := c.bulk(func(b []byte) { kindOK = string(b) == "message" }); err != nil {
		return err
	}
	if !kindOK {
		return fmt.Errorf("%w: frame is not a message", errProtocol)
	}
	if err := c.bulk(func([]byte) {}); err != nil {
		return err
	}
	return c.bulk(fn)
}
