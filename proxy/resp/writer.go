package resp

import (
	"math"
	"strconv"

	"github.com/tidwall/redcon"
)

// Writer appends replies for one client to a buffer, in the client's protocol version (2 or 3).
type Writer struct {
	B     []byte
	Proto int
}

// Error appends an error reply; msg must start with its code (ERR, WRONGTYPE, NOAUTH …).
func (w *Writer) Error(msg string) { w.B = redcon.AppendError(w.B, msg) }

// Simple appends a simple string (+OK).
func (w *Writer) Simple(s string) { w.B = redcon.AppendString(w.B, s) }

// OK appends +OK.
func (w *Writer) OK() { w.B = append(w.B, "+OK\r\n"...) }

// Bulk appends a bulk string.
func (w *Writer) Bulk(b []byte) { w.B = redcon.AppendBulk(w.B, b) }

// BulkString appends a bulk string.
func (w *Writer) BulkString(s string) { w.B = redcon.AppendBulkString(w.B, s) }

// Int appends an integer.
func (w *Writer) Int(n int64) { w.B = redcon.AppendInt(w.B, n) }

// Null appends a null bulk string ($-1, or _ in RESP3).
func (w *Writer) Null() {
	if w.Proto == 3 {
		w.B = append(w.B, "_\r\n"...)
		return
	}
	w.B = append(w.B, "$-1\r\n"...)
}

// NullArray appends a null array (*-1, or _ in RESP3), as BLPOP does on timeout.
func (w *Writer) NullArray() {
	if w.Proto == 3 {
		w.B = append(w.B, "_\r\n"...)
		return
	}
	w.B = append(w.B, "*-1\r\n"...)
}

// Array appends an array header of n elements.
func (w *Writer) Array(n int) { w.B = redcon.AppendArray(w.B, n) }

// Map appends a map header of n key/value pairs (a flat array of 2n in RESP2).
func (w *Writer) Map(n int) {
	if w.Proto == 3 {
		w.B = appendHeader(w.B, '%', n)
		return
	}
	w.B = redcon.AppendArray(w.B, 2*n)
}

// Set appends a set header (an array in RESP2).
func (w *Writer) Set(n int) {
	if w.Proto == 3 {
		w.B = appendHeader(w.B, '~', n)
		return
	}
	w.B = redcon.AppendArray(w.B, n)
}

// Push appends an out-of-band push header (an array in RESP2), used for pub/sub messages.
func (w *Writer) Push(n int) {
	if w.Proto == 3 {
		w.B = appendHeader(w.B, '>', n)
		return
	}
	w.B = redcon.AppendArray(w.B, n)
}

// Double appends a double (a bulk string in RESP2), formatted like Redis 7.0's "%.17g" with its
// spellings "inf", "-inf" and "nan".
func (w *Writer) Double(f float64) {
	var s string
	switch {
	case math.IsInf(f, 1):
		s = "inf"
	case math.IsInf(f, -1):
		s = "-inf"
	case math.IsNaN(f):
		s = "nan"
	default:
		s = strconv.FormatFloat(f, 'g', 17, 64)
	}
	if w.Proto == 3 {
		w.B = append(append(append(w.B, ','), s...), '\r', '\n')
		return
	}
	w.BulkString(s)
}

// Verbatim appends a verbatim text string (txt) in RESP3 and a bulk string in RESP2, as INFO does.
func (w *Writer) Verbatim(s string) {
	if w.Proto == 3 {
		w.B = appendHeader(w.B, '=', len(s)+4)
		w.B = append(append(append(w.B, "txt:"...), s...), '\r', '\n')
		return
	}
	w.BulkString(s)
}

// Raw appends pre-encoded bytes.
func (w *Writer) Raw(b []byte) { w.B = append(w.B, b...) }

func appendHeader(b []byte, c byte, n int) []byte {
	b = append(b, c)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}
