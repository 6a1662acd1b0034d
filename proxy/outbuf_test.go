package proxy

import (
	"bytes"
	"net"
	"testing"
)

// drain takes everything from o, write by write, checking each write's bound.
func drain(t *testing.T, o *outBuf) []byte {
	t.Helper()
	var got []byte
	for o.len() > 0 {
		bufs, n, own := o.take(nil)
		if own != nil && &own[:1][0] != &bufs[len(bufs)-1][:1][0] {
			t.Fatal("own is not the last buffer taken")
		}
		o.recycle(own)
		m := 0
		for _, b := range bufs {
			m += len(b)
			got = append(got, b...)
		}
		if m != n {
			t.Fatalf("take reported %d bytes, returned %d", n, m)
		}
		if len(bufs) > 1 && n > maxWrite {
			t.Fatalf("one write of %d bytes in %d buffers, bound %d", n, len(bufs), maxWrite)
		}
	}
	return got
}

func TestOutBuf_KeepsOrder(t *testing.T) {
	var o, deferred outBuf
	var want []byte
	small := func(c byte) []byte { return bytes.Repeat([]byte{c}, 100) }
	large := func(c byte) []byte { return bytes.Repeat([]byte{c}, 3*outShareMin) }
	for i := range 300 {
		b := small(byte('a' + i%26))
		if i%7 == 0 {
			b = large(byte('A' + i%26))
		}
		o.add(b)
		want = append(want, b...)
	}
	reply := bytes.Repeat([]byte("r"), 5000)
	o.share(reply)
	want = append(want, reply...)
	deferred.add(small('d'))
	deferred.add(large('D'))
	want = append(append(want, small('d')...), large('D')...)
	o.move(&deferred)
	if deferred.len() != 0 {
		t.Fatalf("deferred still holds %d bytes after move", deferred.len())
	}
	o.add(small('z')) // appended after the moved frames
	want = append(want, small('z')...)
	if got, w := o.len(), len(want); got != w {
		t.Fatalf("len() = %d, want %d", got, w)
	}
	if got := drain(t, &o); !bytes.Equal(got, want) {
		t.Fatalf("bytes out differ from bytes in (%d vs %d bytes)", len(got), len(want))
	}
}

// TestOutBuf_CopiesSmallSharesLarge: a small frame is copied (the caller may reuse it), a large one is
// queued by reference (a pub/sub frame is shared by all subscribers), and copies go into buffers of at
// most outChunk bytes, so a backlog is never one buffer regrown as it fills.
func TestOutBuf_CopiesSmallSharesLarge(t *testing.T) {
	var o outBuf
	small := bytes.Repeat([]byte("s"), 100)
	large := bytes.Repeat([]byte("L"), outShareMin)
	o.add(small)
	small[0] = 'X' // the caller reuses its buffer
	o.add(large)
	for range 1000 {
		o.add(bytes.Repeat([]byte("t"), 100))
	}
	if &o.bufs[1][0] != &large[0] {
		t.Fatal("a large frame was copied")
	}
	if o.bufs[0][0] != 's' {
		t.Fatal("a small frame was not copied")
	}
	for i, b := range o.bufs {
		if i != 1 && cap(b) > outChunk {
			t.Fatalf("buffer %d has capacity %d, bound %d", i, cap(b), outChunk)
		}
	}
}

func TestOutBuf_ResetDropsEverything(t *testing.T) {
	var o outBuf
	o.add([]byte("abc"))
	o.share(bytes.Repeat([]byte("x"), 4096))
	o.reset()
	if o.len() != 0 || o.bufs != nil {
		t.Fatalf("after reset: len %d, %d buffers", o.len(), len(o.bufs))
	}
	o.add([]byte("after"))
	if got := string(drain(t, &o)); got != "after" {
		t.Fatalf("got %q", got)
	}
}

// TestOutBuf_SteadyStateAllocatesNothing: a connection that gets a small frame, writes it and gets the
// next reuses its buffer and list (pub/sub delivery to an idle subscriber, one frame at a time).
func TestOutBuf_SteadyStateAllocatesNothing(t *testing.T) {
	var o outBuf
	var w net.Buffers
	frame := bytes.Repeat([]byte("f"), 100)
	cycle := func() {
		o.add(frame)
		bufs, _, own := o.take(w[:0])
		clear(bufs)
		w = bufs[:0]
		o.recycle(own)
	}
	cycle()
	if n := testing.AllocsPerRun(100, cycle); n != 0 {
		t.Fatalf("%.1f allocations per frame, want 0", n)
	}
}

// TestOutBuf_BacklogDoesNotGrowTheList: a backlog that is written as fast as it grows but never
// drains keeps its list of buffers bounded.
func TestOutBuf_BacklogDoesNotGrowTheList(t *testing.T) {
	var o outBuf
	frame := bytes.Repeat([]byte("F"), 64<<10) // shared: one list entry each
	for range 8 {
		o.share(frame)
	}
	for range 10000 {
		o.share(frame)
		o.take(nil)
	}
	if got := cap(o.bufs); got > 256 {
		t.Fatalf("list capacity %d for a backlog of %d buffers", got, len(o.bufs)-o.head)
	}
}
