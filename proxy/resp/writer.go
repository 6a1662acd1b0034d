package resp

import (
	"math"
	"strconv"
	"unsafe"

	"github.com/tidwall/redcon"
)

// SpillMin is the size from which a full reply buffer is handed to Writer.Spill rather than regrown,
// and from which a BulkString payload is handed over by reference rather than copied.
const SpillMin = 64 * 1024

// headerRoom is room for the longest header or short element ("$" or ":" and 20 digits, CRLF).
const headerRoom = 24

// Writer appends replies for one client to a buffer, in the client's protocol version (2 or 3).
type Writer struct {
	B     []byte
	Proto int
	// Spill, when set, takes over parts of the reply so that a large reply is never copied again as
	// it grows: B once it holds at least SpillMin bytes and is full (the Writer goes on in a new
	// buffer), and the payload of a BulkString of at least SpillMin bytes, by reference. The parts
	// come in order and precede what is left in B; nothing changes them afterwards.
	Spill func(part []byte)
}

// room makes room for n more bytes in B, handing a large full B to Spill instead of regrowing it.
func (w *Writer) room(n int) {
	if w.Spill == nil || len(w.B)+n <= cap(w.B) || len(w.B) < SpillMin {
		return
	}
	w.Spill(w.B)
	w.B = make([]byte, 0, max(n, SpillMin))
}

// Error appends an error reply; msg must start with its code (ERR, WRONGTYPE, NOAUTH …).
func (w *Writer) Error(msg string) {
	w.room(len(msg) + 3)
	w.B = redcon.AppendError(w.B, msg)
}

// Simple appends a simple string (+OK).
func (w *Writer) Simple(s string) {
	w.room(len(s) + 3)
	w.B = redcon.AppendString(w.B, s)
}

// OK appends +OK.
func (w *Writer) OK() {
	w.room(5)
	w.B = append(w.B, "+OK\r\n"...)
}

// Bulk appends a bulk string.
func (w *Writer) Bulk(b []byte) {
	w.room(len(b) + headerRoom + 2)
	w.B = redcon.AppendBulk(w.B, b)
}

// BulkString appends a bulk string. With Spill set, a large payload is handed over, not copied.
func (w *Writer) BulkString(s string) {
	if w.Spill == nil || len(s) < SpillMin {
		w.room(len(s) + headerRoom + 2)
		w.B = redcon.AppendBulkString(w.B, s)
		return
	}
	w.room(headerRoom)
	w.B = appendHeader(w.B, '$', len(s))
	w.Spill(w.B)
	w.Spill(unsafe.Slice(unsafe.StringData(s), len(s))) // a string's bytes never change
	w.B = append([]byte(nil), '\r', '\n')
}

// Int appends an integer.
func (w *Writer) Int(n int64) {
	w.room(headerRoom)
	w.B = redcon.AppendInt(w.B, n)
}

// Null appends a null bulk string ($-1, or _ in RESP3).
func (w *Writer) Null() {
	w.room(5)
	if w.Proto == 3 {
		w.B = append(w.B, "_\r\n"...)
		return
	}
	w.B = append(w.B, "$-1\r\n"...)
}

// NullArray appends a null array (*-1, or _ in RESP3), as BLPOP does on timeout.
func (w *Writer) NullArray() {
	w.room(5)
	if w.Proto == 3 {
		w.B = append(w.B, "_\r\n"...)
		return
	}
	w.B = append(w.B, "*-1\r\n"...)
}

// Array appends an array header of n elements.
func (w *Writer) Array(n int) {
	w.room(headerRoom)
	w.B = redcon.AppendArray(w.B, n)
}

// Map appends a map header of n key/value pairs (a flat array of 2n in RESP2).
func (w *Writer) Map(n int) {
	w.room(headerRoom)
	if w.Proto == 3 {
		w.B = appendHeader(w.B, '%', n)
		return
	}
	w.B = redcon.AppendArray(w.B, 2*n)
}

// Set appends a set header (an array in RESP2).
func (w *Writer) Set(n int) {
	w.room(headerRoom)
	if w.Proto == 3 {
		w.B = appendHeader(w.B, '~', n)
		return
	}
	w.B = redcon.AppendArray(w.B, n)
}

// Push appends an out-of-band push header (an array in RESP2), used for pub/sub messages.
func (w *Writer) Push(n int) {
	w.room(headerRoom)
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
		w.room(len(s) + 3)
		w.B = append(append(append(w.B, ','), s...), '\r', '\n')
		return
	}
	w.BulkString(s)
}

// Verbatim appends a verbatim text string (txt) in RESP3 and a bulk string in RESP2, as INFO does.
func (w *Writer) Verbatim(s string) {
	if w.Proto == 3 {
		w.room(len(s) + headerRoom + 6)
		w.B = appendHeader(w.B, '=', len(s)+4)
		w.B = append(append(append(w.B, "txt:"...), s...), '\r', '\n')
		return
	}
	w.BulkString(s)
}

// Raw appends pre-encoded bytes.
func (w *Writer) Raw(b []byte) {
	w.room(len(b))
	w.B = append(w.B, b...)
}

func appendHeader(b []byte, c byte, n int) []byte {
	b = append(b, c)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}
