package resp

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"unsafe"
)

func TestWriter(t *testing.T) {
	tests := []struct {
		name         string
		write        func(w *Writer)
		resp2, resp3 string
	}{
		{"null", func(w *Writer) { w.Null() }, "$-1\r\n", "_\r\n"},
		{"null array", func(w *Writer) { w.NullArray() }, "*-1\r\n", "_\r\n"},
		{"map", func(w *Writer) {
			w.Map(2)
			w.BulkString("a")
			w.Int(1)
			w.BulkString("b")
			w.Null()
		}, "*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n$-1\r\n", "%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n_\r\n"},
		{"empty map", func(w *Writer) { w.Map(0) }, "*0\r\n", "%0\r\n"},
		{"set", func(w *Writer) {
			w.Set(2)
			w.Simple("write")
			w.Simple("fast")
		}, "*2\r\n+write\r\n+fast\r\n", "~2\r\n+write\r\n+fast\r\n"},
		{"push", func(w *Writer) {
			w.Push(3)
			w.BulkString("message")
			w.BulkString("ch")
			w.Bulk([]byte("hi"))
		}, "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"},
		{"double", func(w *Writer) { w.Double(1.5) }, "$3\r\n1.5\r\n", ",1.5\r\n"},
		{"double integral", func(w *Writer) { w.Double(3) }, "$1\r\n3\r\n", ",3\r\n"},
		// Redis 7.0 formats doubles with "%.17g".
		{"double 17 digits", func(w *Writer) { w.Double(0.1) }, "$19\r\n0.10000000000000001\r\n", ",0.10000000000000001\r\n"},
		{"double exponent", func(w *Writer) { w.Double(1e-5) }, "$22\r\n1.0000000000000001e-05\r\n", ",1.0000000000000001e-05\r\n"},
		{"double big", func(w *Writer) { w.Double(1e21) }, "$5\r\n1e+21\r\n", ",1e+21\r\n"},
		{"double negative zero", func(w *Writer) { w.Double(math.Copysign(0, -1)) }, "$2\r\n-0\r\n", ",-0\r\n"},
		{"double inf", func(w *Writer) { w.Double(math.Inf(1)) }, "$3\r\ninf\r\n", ",inf\r\n"},
		{"double -inf", func(w *Writer) { w.Double(math.Inf(-1)) }, "$4\r\n-inf\r\n", ",-inf\r\n"},
		{"double nan", func(w *Writer) { w.Double(math.NaN()) }, "$3\r\nnan\r\n", ",nan\r\n"},
		{"verbatim", func(w *Writer) { w.Verbatim("# Server\r\nredis_version:7.0.15\r\n") },
			"$32\r\n# Server\r\nredis_version:7.0.15\r\n\r\n", "=36\r\ntxt:# Server\r\nredis_version:7.0.15\r\n\r\n"},
		{"verbatim empty", func(w *Writer) { w.Verbatim("") }, "$0\r\n\r\n", "=4\r\ntxt:\r\n"},
		// The same in both versions.
		{"error", func(w *Writer) { w.Error("ERR bad\r\nthing") }, "-ERR bad  thing\r\n", "-ERR bad  thing\r\n"},
		{"simple", func(w *Writer) { w.Simple("PONG") }, "+PONG\r\n", "+PONG\r\n"},
		{"ok", func(w *Writer) { w.OK() }, "+OK\r\n", "+OK\r\n"},
		{"bulk", func(w *Writer) { w.Bulk([]byte("a\r\n\x00")) }, "$4\r\na\r\n\x00\r\n", "$4\r\na\r\n\x00\r\n"},
		{"empty bulk", func(w *Writer) { w.Bulk(nil) }, "$0\r\n\r\n", "$0\r\n\r\n"},
		{"bulk string", func(w *Writer) { w.BulkString("hello") }, "$5\r\nhello\r\n", "$5\r\nhello\r\n"},
		{"int", func(w *Writer) { w.Int(-42) }, ":-42\r\n", ":-42\r\n"},
		{"array", func(w *Writer) {
			w.Array(2)
			w.BulkString("q")
			w.BulkString("v")
		}, "*2\r\n$1\r\nq\r\n$1\r\nv\r\n", "*2\r\n$1\r\nq\r\n$1\r\nv\r\n"},
		{"empty array", func(w *Writer) { w.Array(0) }, "*0\r\n", "*0\r\n"},
		{"raw", func(w *Writer) { w.Raw([]byte(":1\r\n")) }, ":1\r\n", ":1\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range []struct {
				proto int
				want  string
			}{{2, tt.resp2}, {3, tt.resp3}} {
				w := Writer{Proto: v.proto}
				tt.write(&w)
				if string(w.B) != v.want {
					t.Errorf("RESP%d: got %q, want %q", v.proto, w.B, v.want)
				}
			}
		})
	}
}

func TestWriter_Appends(t *testing.T) {
	w := Writer{B: []byte("+OK\r\n"), Proto: 3}
	w.Null()
	w.Int(1)
	if got := string(w.B); got != "+OK\r\n_\r\n:1\r\n" {
		t.Fatalf("got %q", got)
	}
}

// spilled collects what a Writer hands to Spill, followed by what is left in B.
func spilled(parts [][]byte, w *Writer) []byte {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	return append(all, w.B...)
}

// TestWriter_SpillLargeBulkByReference: a large BulkString is handed over by reference, not copied,
// and the reply's bytes are those of a Writer without Spill.
func TestWriter_SpillLargeBulkByReference(t *testing.T) {
	big := strings.Repeat("v", SpillMin)
	write := func(w *Writer) {
		w.Array(3)
		w.BulkString("key")
		w.BulkString(big)
		w.Int(7)
	}
	var plain Writer
	write(&plain)
	var parts [][]byte
	w := Writer{Spill: func(p []byte) { parts = append(parts, p) }}
	write(&w)
	if got := spilled(parts, &w); !bytes.Equal(got, plain.B) {
		t.Fatalf("bytes differ:\n got %.80q\nwant %.80q", got, plain.B)
	}
	shared := false
	for _, p := range parts {
		shared = shared || len(p) == len(big) && unsafe.SliceData(p) == unsafe.StringData(big)
	}
	if !shared {
		t.Fatal("the large payload was copied")
	}
}

// TestWriter_SpillInsteadOfRegrowing: a reply of many small elements is handed over in parts once B is
// large, instead of B being regrown (and copied) again and again.
func TestWriter_SpillInsteadOfRegrowing(t *testing.T) {
	item := strings.Repeat("i", 1000)
	write := func(w *Writer) {
		w.Array(2000)
		for range 2000 {
			w.BulkString(item)
		}
	}
	var plain Writer
	write(&plain)
	var parts [][]byte
	w := Writer{Spill: func(p []byte) { parts = append(parts, p) }}
	write(&w)
	if got := spilled(parts, &w); !bytes.Equal(got, plain.B) {
		t.Fatal("bytes differ from a Writer without Spill")
	}
	if len(parts) < 2 {
		t.Fatalf("%d parts handed over for a 2 MB reply", len(parts))
	}
	for i, p := range append(parts, w.B) {
		if cap(p) > 2*SpillMin+2*len(item) {
			t.Fatalf("part %d has capacity %d: B was regrown past the spill size", i, cap(p))
		}
	}
}
