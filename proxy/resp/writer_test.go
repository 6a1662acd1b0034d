package resp

import (
	"math"
	"testing"
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
