package proxy

import "net"

const (
	// outChunk bounds the buffers small frames are copied into: past it a new buffer starts, so a
	// large backlog is a list of buffers, never one buffer regrown (and copied) as it fills.
	outChunk = 16 * 1024
	// outShareMin is the size from which a frame is queued by reference instead of copied (a pub/sub
	// frame is encoded once and shared by every subscriber it goes to).
	outShareMin = 1024
	// maxWrite bounds the bytes handed to one write, so that what was written can be freed while a
	// slow client reads the rest.
	maxWrite = 256 * 1024
)

// outBuf is the bytes waiting to be written to a client, in order: a list of buffers that are either
// its own (small frames copied in) or shared (a reply or frame nobody changes until it is written).
type outBuf struct {
	bufs  [][]byte // queued from bufs[head]
	head  int
	n     int    // bytes queued
	owned bool   // the last buffer is its own: later frames may be appended to it
	spare []byte // a small buffer of its own, already written, for the next frame
}

// len is the number of bytes queued.
func (o *outBuf) len() int { return o.n }

// add queues a copy of a small frame, or a large one by reference: the caller must not change it.
func (o *outBuf) add(b []byte) {
	if len(b) >= outShareMin {
		o.share(b)
		return
	}
	o.n += len(b)
	if last := len(o.bufs) - 1; o.owned && len(o.bufs[last])+len(b) <= max(cap(o.bufs[last]), outChunk) {
		o.bufs[last] = append(o.bufs[last], b...)
		return
	}
	o.bufs = append(o.bufs, append(o.spare, b...))
	o.spare = nil
	o.owned = true
}

// share queues b by reference: the caller must not change it until it is written or dropped.
func (o *outBuf) share(b []byte) {
	if len(b) == 0 {
		return
	}
	o.bufs = append(o.bufs, b)
	o.n += len(b)
	o.owned = false
}

// move queues everything in from (by reference) and empties it.
func (o *outBuf) move(from *outBuf) {
	if from.n == 0 {
		return
	}
	o.bufs = append(o.bufs, from.bufs[from.head:]...)
	o.n += from.n
	o.owned = from.owned
	clear(from.bufs)
	from.bufs, from.head, from.n, from.owned = from.bufs[:0], 0, 0, false
}

// take moves the first buffers, about maxWrite bytes of them (at least one buffer), to the end of
// dst, the writer's own list, and returns it with their size. own is the last of them when it is a
// buffer of the queue's own (give it back with recycle once written), else nil.
func (o *outBuf) take(dst net.Buffers) (bufs net.Buffers, n int, own []byte) {
	k := o.head
	for k < len(o.bufs) && (k == o.head || n+len(o.bufs[k]) <= maxWrite) {
		n += len(o.bufs[k])
		k++
	}
	bufs = append(dst, o.bufs[o.head:k]...)
	clear(o.bufs[o.head:k])
	o.head = k
	o.n -= n
	switch {
	case k == len(o.bufs):
		if o.owned {
			own = bufs[len(bufs)-1]
		}
		o.bufs, o.head, o.owned = o.bufs[:0], 0, false
	case o.head >= 64 && 2*o.head >= len(o.bufs):
		// A backlog that never drains: move it to the front rather than let the list grow.
		m := copy(o.bufs, o.bufs[o.head:])
		clear(o.bufs[m:])
		o.bufs, o.head = o.bufs[:m], 0
	}
	return bufs, n, own
}

// recycle keeps a small buffer of its own, now written, for the next frame.
func (o *outBuf) recycle(b []byte) {
	if b != nil && o.spare == nil && cap(b) <= outChunk {
		o.spare = b[:0]
	}
}

// reset drops everything queued.
func (o *outBuf) reset() {
	clear(o.bufs)
	o.bufs, o.head, o.n, o.owned, o.spare = nil, 0, 0, false, nil
}
