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

// A minimal RESP2 client (copied in spirit from bench/resp.go): the chaos test must tell an
// integer reply (acknowledged) from an error reply (retry) from a broken connection (reconnect,
// retry), which is easiest with the replies in hand.

// redisError is an error reply ("-ERR ...") from the server.
type redisError string

func (e redisError) Error() string { return string(e) }

var errProtocol = errors.New("protocol error in reply")

// rconn is one client connection.
type rconn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func dial(addr string, timeout time.Duration) (*rconn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &rconn{nc: nc, r: bufio.NewReaderSize(nc, 16<<10), w: bufio.NewWriterSize(nc, 16<<10)}, nil
}

func (c *rconn) Close() error { return c.nc.Close() }

// do sends one command and reads its reply within timeout. The reply is a string (simple or
// bulk), an int64, nil, or []any; an error reply is returned as a redisError.
func (c *rconn) do(timeout time.Duration, args ...string) (any, error) {
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	if _, err := c.w.Write(appendCmd(nil, args...)); err != nil {
		return nil, err
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	return c.read()
}

// isRedisError reports whether err is an error reply (the connection is still usable).
func isRedisError(err error) bool {
	var re redisError
	return errors.As(err, &re)
}

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
		return strconv.ParseInt(string(line[1:]), 10, 64)
	case '$':
		n, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.ParseInt(string(line[1:]), 10, 64)
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
