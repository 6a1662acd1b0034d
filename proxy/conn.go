package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/queue"
	"github.com/qgate/qgate/proxy/resp"
)

const (
	minReadBuf = 1024      // a new or idle connection's read buffer
	maxIdleBuf = 64 * 1024 // an idle connection's read buffer shrinks back when it grew past this
	// maxBlockedInput bounds what a blocked client may send before qgate stops reading it (Redis keeps
	// such commands queued too; past this qgate waits for the pop without watching the socket).
	maxBlockedInput = 1 << 20
	// gcAfterInput: when a read buffer this large is given up, a garbage collection runs at once (at
	// most once a second), so that its memory and the copies made from it (envelopes, backend
	// commands) are reused by what comes next, instead of the heap growing to twice its peak before
	// the collector runs.
	gcAfterInput = 32 << 20
)

// lastInputGC is when fill last ran a collection after a huge input (Unix nanoseconds).
var lastInputGC atomic.Int64

var (
	errClientGone = errors.New("client disconnected")
	errOverflow   = errors.New("output buffer limit reached")
	errDraining   = errors.New("shutting down")
	// aLongTimeAgo is a deadline in the past: setting it interrupts a pending Read.
	aLongTimeAgo = time.Unix(1, 0)
)

// queued is an engine operation of the current batch and the function that writes its reply.
type queued struct {
	op   queue.Queued
	done func(w *resp.Writer)
	m    cmdMark // its command's measure (server_admin.go)
	mute bool    // its command's reply is dropped (CLIENT REPLY OFF or SKIP)
}

// conn is one client connection. Its goroutine reads, executes and replies; pub/sub deliveries append
// to its output from other goroutines.
type conn struct {
	srv    *Server
	nc     net.Conn // a *tls.Conn when the listener uses TLS
	id     int64
	sess   commands.Session
	ctx    context.Context
	cancel context.CancelFunc
	parser *resp.Parser

	rbuf       []byte // unparsed input is rbuf[rpos:rend]
	rpos, rend int
	filled     bool // the last read filled all free space in rbuf

	w       resp.Writer    // replies of the current batch
	replies outBuf         // parts of the batch's replies that w handed over (w.Spill)
	spilled bool           // the batch's replies passed the output limit: further parts are dropped
	pending []queued       // engine operations of the current batch
	ops     []queue.Queued // pending's operations, handed to the engine (kept for the next batch)
	popped  []*queue.Pop   // items in replies not yet written
	dead    bool           // the client is gone; nothing more will be written

	proto   atomic.Int32           // the session's protocol, read by pub/sub delivery
	deliver atomic.Pointer[string] // the session's QDELIVERY mode, read by pub/sub delivery

	// Copies of session state for Reload, which runs on another goroutine and must not read sess.
	authUser atomic.Pointer[string] // the verified user ("" or nil: not authenticated)
	lastUser string                 // the value last stored in authUser (connection goroutine only)
	openMode atomic.Bool            // accepted while no users were configured
	subs     atomic.Int32           // channels and patterns subscribed
	ssubs    atomic.Int32           // shard channels subscribed
	obs      connObs                // session state for the HTTP API and CLIENT LIST, command measures (server_admin.go)
	killed   atomic.Bool            // closed by CLIENT KILL (Server.Kill)
	cmdOut   int                    // where the running command's reply starts in w.B (server_admin.go)

	omu      sync.Mutex
	ocond    *sync.Cond
	out      outBuf      // bytes to write, in order
	deferred outBuf      // pub/sub messages that arrived while a batch was running
	inflight int         // bytes handed to the write in progress
	wbufs    net.Buffers // the write in progress's list of buffers (kept for the next write)
	inBatch  bool
	writing  bool
	werr     error

	// Drain (proxy/DESIGN.md "Shutdown"): drainRead is set once the connection reads with the drain's
	// deadline (it held leases or half a command when the drain began); drainStop once it reached a
	// pop during the drain: nothing after it is executed and the connection closes.
	drainRead bool
	drainStop bool

	// CLIENT UNBLOCK (Server.Unblock): unblock is set by another goroutine while the connection is
	// blocked (unblockTimeout or unblockError) and read by Park; unblockCh wakes waitReady.
	// unblocked is what the ended wait's handler reads (Unblocked).
	unblock   atomic.Int32
	unblockCh chan struct{}
	unblocked bool

	// CLIENT REPLY (README "Commands"): while muting, replies go nowhere (beginMute, endMute); mutedPops
	// are the items of dropped replies, delivered at the end of the batch.
	muting    bool
	mutedPops []*queue.Pop
}

// CLIENT UNBLOCK's modes (conn.unblock).
const (
	unblockTimeout = 1
	unblockError   = 2
)

func newConn(srv *Server, nc net.Conn, id int64) *conn {
	c := &conn{srv: srv, nc: nc, id: id, parser: resp.NewParser(srv.cfg.MaxBulkBytes), unblockCh: make(chan struct{}, 1)}
	c.ocond = sync.NewCond(&c.omu)
	c.ctx, c.cancel = context.WithCancel(srv.ctx)
	c.sess = commands.Session{ID: id, Addr: nc.RemoteAddr().String(), LocalAddr: nc.LocalAddr().String(),
		Created: time.Now(), Proto: 2, Consumer: queue.Consumer{LeaseOwner: srv.instance + ":" + strconv.FormatInt(id, 10)}}
	c.proto.Store(2)
	c.obs.lastActive.Store(c.sess.Created.UnixNano())
	c.w.Proto = 2
	c.w.Spill = c.spill
	return c
}

// Session implements commands.Conn.
func (c *conn) Session() *commands.Session { return &c.sess }

// Context implements commands.Conn.
func (c *conn) Context() context.Context { return c.ctx }

// Server implements commands.Conn.
func (c *conn) Server() commands.Server { return c.srv }

// Reply implements commands.Conn: queued backend replies are written first so replies stay in order.
func (c *conn) Reply() *resp.Writer {
	c.RunQueued()
	return &c.w
}

// RunQueued implements commands.Conn.
func (c *conn) RunQueued() {
	if len(c.pending) > 0 {
		c.runPending()
	}
}

// Queue implements commands.Conn.
func (c *conn) Queue(op queue.Queued, done func(w *resp.Writer)) {
	if op.Sync() {
		c.RunQueued()
		done(&c.w)
		return
	}
	c.pending = append(c.pending, queued{op: op, done: done})
}

// Popped implements commands.Conn.
func (c *conn) Popped(p *queue.Pop) {
	if len(p.Items) > 0 {
		c.popped = append(c.popped, p)
	}
}

// runPending has the engine run the batch's queued operations in one round trip (queue.Engine.Run)
// and writes their replies, in order.
func (c *conn) runPending() {
	p := c.pending
	c.pending = c.pending[:0]
	ops := c.ops[:0]
	for _, q := range p {
		ops = append(ops, q.op)
	}
	c.srv.engine.Run(ops)
	clear(ops)
	c.ops = ops[:0]
	for i := range p {
		c.doneQueued(&p[i])
		p[i] = queued{}
	}
	c.cmdOut = len(c.w.B) // the replies of earlier commands come before the running command's
}

// serve is the connection's goroutine.
func (c *conn) serve() {
	defer c.close()
	if tc, ok := c.nc.(*tls.Conn); ok && !c.handshake(tc) {
		return
	}
	c.rbuf = make([]byte, minReadBuf)
	for {
		if err := c.fill(); err != nil {
			return
		}
		perr := c.execBuffered()
		c.endBatch()
		if perr != nil {
			c.w.B = c.w.B[:0]
			c.w.Error("ERR " + perr.Error())
			c.srv.log.Debug("client protocol error", "client", c.sess.ID, "addr", c.sess.Addr, "err", perr)
			c.endBatch()
			return
		}
		if c.dead || c.sess.CloseAfter || c.drainStop || c.srv.closing.Load() && c.drainClean() {
			return
		}
	}
}

// drainClean reports whether a draining connection is at a clean point, where closing it loses
// nothing: every command read has been answered, no command is half read, and it holds no lease it
// could still ack (proxy/DESIGN.md "Shutdown").
func (c *conn) drainClean() bool {
	return c.rpos == c.rend && len(c.sess.Consumer.Held) == 0
}

// drainPop runs instead of a pop that arrives during the drain: it acks the connection's previous
// pops of the keys named (ack: next-pop, as the pop would have), then stops the connection without
// taking anything and without a reply, so the client retries the pop on another instance. The batch's
// earlier commands are answered first.
func (c *conn) drainPop(args [][]byte) {
	c.RunQueued()
	keys := args[1:2]
	if name := commands.Lookup(args[0]).Name; name == "blpop" || name == "brpop" {
		keys = args[1 : len(args)-1]
	}
	for _, k := range keys {
		last := c.sess.Consumer.LastPop[string(k)]
		if len(last) == 0 {
			continue
		}
		res := c.srv.engine.Ack(&c.sess.Consumer, string(k), slices.Clone(last))
		if !res.Sync() {
			c.srv.engine.Run([]queue.Queued{res})
		}
		if _, err := res.Result(); err != nil {
			// The leases stay held: the close requeues them (a redelivery, never a loss).
			c.srv.log.Warn("drain: next-pop ack failed", "client", c.sess.ID, "err", err)
		}
	}
	c.drainStop = true
}

// takesItems reports whether the command named args[0] pops (and so may take items) — the commands a
// draining connection no longer runs.
func takesItems(args [][]byte) bool {
	if len(args) < 2 {
		return false
	}
	spec := commands.Lookup(args[0])
	if spec == nil || spec.Verb != commands.VerbPop {
		return false
	}
	switch spec.Name {
	case "lpop", "rpop", "blpop", "brpop":
		return true
	}
	return false
}

// fill reads more input, growing or compacting the buffer as needed. The commands parsed so far
// have been executed and replied to.
func (c *conn) fill() error {
	c.parser.Release()
	switch {
	case c.rpos == c.rend:
		c.rpos, c.rend = 0, 0
		// A connection that has not logged in keeps no more than the smallest buffer between
		// requests; others keep theirs up to maxIdleBuf, for pipelines.
		if len(c.rbuf) > maxIdleBuf || len(c.rbuf) > minReadBuf && c.authRequired() {
			huge := len(c.rbuf) >= gcAfterInput
			c.rbuf = make([]byte, minReadBuf)
			if huge {
				collectAfterHugeInput()
			}
		}
	case len(c.rbuf) > maxIdleBuf && c.rend-c.rpos <= len(c.rbuf)/4:
		// A large buffer that now holds little (the start of the next command): give it back.
		nb := make([]byte, max(minReadBuf, 2*(c.rend-c.rpos)))
		c.rend = copy(nb, c.rbuf[c.rpos:c.rend])
		c.rbuf, c.rpos = nb, 0
	case c.rpos > 0:
		c.rend = copy(c.rbuf, c.rbuf[c.rpos:c.rend])
		c.rpos = 0
	}
	// Grow when the buffer is full, and also when the last read filled all the free space: more input
	// is probably waiting, and reading a deep pipeline a few commands at a time would cost a reply
	// write per few commands.
	if c.rend == len(c.rbuf) || c.filled && len(c.rbuf) < maxIdleBuf {
		c.grow(c.parser.Pending(c.rend))
	}
	for {
		if !c.drainRead && c.srv.closing.Load() {
			// The drain began: close at a clean point, else read on until the drain's deadline.
			if c.drainClean() {
				return errDraining
			}
			c.drainRead = true
			_ = c.nc.SetReadDeadline(c.srv.drainDeadline())
		}
		free := len(c.rbuf) - c.rend
		n, err := c.nc.Read(c.rbuf[c.rend:])
		c.rend += n
		c.filled = n == free
		if n > 0 {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if !c.srv.closing.Load() {
				// A delivery that raced with the end of a blocked pop may leave a past deadline behind;
				// the drain's check at the top of the loop sees a shutdown that began meanwhile.
				_ = c.nc.SetReadDeadline(time.Time{})
				continue
			}
			if !c.drainRead {
				continue // Shutdown's wake-up: the check at the top of the loop decides
			}
			if time.Now().Before(c.srv.drainDeadline()) {
				// Shutdown's wake-up, after this connection had begun its drain read.
				_ = c.nc.SetReadDeadline(c.srv.drainDeadline())
				continue
			}
		}
		return err
	}
}

// collectAfterHugeInput runs a garbage collection, at most once a second (see gcAfterInput).
func collectAfterHugeInput() {
	now, last := time.Now().UnixNano(), lastInputGC.Load()
	if now-last > int64(time.Second) && lastInputGC.CompareAndSwap(last, now) {
		runtime.GC()
	}
}

// grow doubles the read buffer, keeping its contents. Memory follows the bytes that arrived: a bulk
// header alone never makes qgate allocate the length it announces. pending is how many more bytes the
// bulk string being read needs (Parser.Pending; 0 if unknown): a large buffer grows to exactly its end
// when that is nearer than double (or a little further, so that a value of a round size, which ends
// just past a power of two, does not take one more step), so a large argument ends up in a buffer of
// its own size.
func (c *conn) grow(pending int) {
	size := 2 * len(c.rbuf)
	if end := c.rend + pending; end > maxIdleBuf && end > len(c.rbuf) && end <= size+size/4 {
		size = end
	}
	nb := make([]byte, size)
	copy(nb, c.rbuf[:c.rend])
	c.rbuf = nb
}

// execBuffered executes every complete command in the read buffer. It returns a protocol error after
// executing the commands before it.
func (c *conn) execBuffered() error {
	c.omu.Lock()
	c.inBatch = true
	c.omu.Unlock()
	// A batch whose replies passed the output limit stops: the client is being closed (Redis runs no
	// more of its commands either).
	for c.rpos < c.rend && !c.dead && !c.sess.CloseAfter && !c.spilled && !c.drainStop {
		c.parser.SetAuthRequired(c.authRequired())
		args, n, err := c.parser.Next(c.rbuf[c.rpos:c.rend])
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		c.rpos += n
		if len(args) == 0 {
			continue
		}
		if c.srv.closing.Load() && takesItems(args) {
			c.drainPop(args) // no new item is taken once the drain began
			return nil
		}
		c.srv.stats.commands.Add(1)
		s := &c.sess
		mayMute := s.ReplyOff || s.ReplySkip
		var mm muteMark
		if mayMute {
			mm = c.beginMute()
		}
		mark := c.beginCmd()
		spec, out := commands.Exec(c, args)
		muted := mayMute && (s.ReplyOff || s.ReplySkip)
		s.ReplySkip, s.ReplySkipNext = s.ReplySkipNext, false
		if muted {
			for i := mark.queued; i < len(c.pending); i++ {
				c.pending[i].mute = true
			}
		}
		c.endCmd(mark, spec, out)
		if mayMute {
			c.endMute(mm, muted)
		}
		if c.sess.AuthUser != c.lastUser {
			c.setAuthUser(c.sess.AuthUser)
		}
		// Stored only when changed: a store is a locked instruction, a load is not.
		if n := int32(c.sess.Subscriptions()); n != c.subs.Load() {
			c.subs.Store(n)
		}
		if n := int32(c.sess.ShardSubscriptions()); n != c.ssubs.Load() {
			c.ssubs.Store(n)
		}
		if p := int32(c.sess.Proto); p != c.proto.Load() {
			c.proto.Store(p)
		}
		if m := c.deliver.Load(); m == nil || *m != c.sess.Deliver {
			mode := c.sess.Deliver
			c.deliver.Store(&mode)
		}
		c.w.Proto = c.sess.Proto
	}
	return nil
}

// authRequired reports whether the connection must still log in (users are configured and it has
// not authenticated), as Redis's authRequired: its requests are then held to Redis's limits for
// unauthenticated clients. A logged-in user that is removed or disabled has its connection closed
// by Reload, so a non-empty AuthUser is enough.
func (c *conn) authRequired() bool {
	return c.sess.AuthUser == "" && c.srv.auth.Store().Required()
}

// muteMark is where a command whose reply may be dropped began (beginMute).
type muteMark struct {
	spill func([]byte)
	from  int // len(c.popped)
}

// beginMute starts a command, or a queued operation's reply, that may be dropped (CLIENT REPLY OFF
// or SKIP): the replies before it are written first and handed over, so that dropping touches only
// its own, and w's parts go nowhere until endMute.
func (c *conn) beginMute() muteMark {
	c.RunQueued()
	if len(c.w.B) > 0 {
		c.spill(c.w.B)
		c.w.B = c.w.B[len(c.w.B):] // the handed-over bytes are never written again
	}
	m := muteMark{spill: c.w.Spill, from: len(c.popped)}
	c.w.Spill = func([]byte) {}
	c.muting = true
	return m
}

// endMute ends what beginMute started: it drops the reply, or keeps it (CLIENT REPLY ON ran). Items
// in a dropped reply are delivered: Redis popped them and discarded the reply (README "Commands").
func (c *conn) endMute(m muteMark, drop bool) {
	c.w.Spill = m.spill
	c.muting = false
	if !drop {
		return
	}
	c.w.B = c.w.B[:0]
	c.cmdOut = 0
	from := min(m.from, len(c.popped)) // a blocking command wrote and settled the earlier ones
	c.mutedPops = append(c.mutedPops, c.popped[from:]...)
	clear(c.popped[from:])
	c.popped = c.popped[:from]
}

// endBatch writes the batch's replies. Items whose reply could not be written go back to their list.
func (c *conn) endBatch() {
	if len(c.pending) > 0 {
		c.runPending()
	}
	if c.muting {
		c.w.B = c.w.B[:0] // a muted command blocks: nothing of its reply is written
	}
	if len(c.mutedPops) > 0 {
		c.srv.engine.Settle(c.mutedPops, true)
		clear(c.mutedPops)
		c.mutedPops = c.mutedPops[:0]
	}
	if len(c.popped) > 0 && !c.dead && peerGone(c.nc) {
		c.dead = true
	}
	err := c.flush(c.w.B)
	if cap(c.w.B) > maxIdleBuf {
		c.w.B = nil
	} else {
		c.w.B = c.w.B[:0]
	}
	c.cmdOut = 0
	if len(c.popped) > 0 {
		c.srv.engine.Settle(c.popped, err == nil)
		clear(c.popped)
		c.popped = c.popped[:0]
	}
}

// flush appends the batch's replies (the parts w handed over, then b) and the messages deferred
// during the batch to the output, and waits until all of it is written. It returns an error if any
// of it could not be written, or if the output passed the client's limit (the connection is then
// closed, as Redis does).
func (c *conn) flush(b []byte) error {
	c.omu.Lock()
	defer c.omu.Unlock()
	c.inBatch = false
	c.spilled = false
	if c.dead && c.werr == nil {
		c.werr = errClientGone
	}
	if c.werr != nil {
		c.replies.reset()
		return c.werr
	}
	// The replies are queued by reference, not copied: flush returns only once they are written or
	// dropped.
	c.out.move(&c.replies)
	c.out.share(b)
	c.out.move(&c.deferred)
	c.overLimitLocked(0)
	for c.werr == nil && (c.writing || c.out.len() > 0) {
		if c.writing {
			c.ocond.Wait()
			continue
		}
		c.writeOutLocked()
	}
	for c.writing { // after an error an asynchronous write may still hold some of them
		c.ocond.Wait()
	}
	if c.werr != nil {
		c.out.reset()
		c.deferred.reset()
	}
	return c.werr
}

// spill keeps a part of the batch's replies handed over by w until flush. Once they pass the output
// limit the connection is closed (as Redis does when a reply passes it) and the rest is dropped.
func (c *conn) spill(part []byte) {
	if c.spilled {
		return
	}
	c.replies.share(part)
	c.omu.Lock()
	over := c.werr != nil || c.overLimitLocked(c.replies.len())
	c.omu.Unlock()
	if over {
		c.spilled = true
		c.replies.reset()
	}
}

// writeOutLocked writes the first part of the output with omu released during the write; the caller
// holds omu and no write is in progress.
func (c *conn) writeOutLocked() {
	bufs, n, own := c.out.take(c.wbufs[:0])
	c.inflight = n
	c.writing = true
	c.omu.Unlock()
	var err error
	if len(bufs) == 1 {
		_, err = c.nc.Write(bufs[0])
	} else {
		rest := bufs
		_, err = rest.WriteTo(c.nc)
	}
	clear(bufs) // drop the references: what was written can be freed
	c.omu.Lock()
	c.wbufs = bufs[:0]
	c.out.recycle(own)
	c.writing = false
	c.inflight = 0
	if err != nil && c.werr == nil {
		c.werr = err
	}
	c.ocond.Broadcast()
}

// overLimitLocked closes the connection when its unwritten output (queued, deferred, being written
// and extra bytes the caller holds) exceeds the limit of its class, as Redis's
// client-output-buffer-limit: pubsub_output_limit while it is subscribed, client_output_limit (0:
// none) otherwise. The caller holds omu.
func (c *conn) overLimitLocked(extra int) bool {
	limit, class := c.srv.cfg.ClientOutputLimit, "normal"
	if c.subscribed() {
		limit, class = c.srv.cfg.PubSubOutputLimit, "pubsub"
	}
	if limit <= 0 || int64(c.out.len()+c.deferred.len()+c.inflight+extra) <= limit {
		return false
	}
	c.werr = errOverflow
	c.out.reset()
	c.deferred.reset()
	msg := "closing client: output buffer limit reached"
	if class == "pubsub" {
		msg = "closing slow subscriber: output buffer limit reached"
	}
	c.srv.log.Warn(msg, "class", class, "client", c.sess.ID, "addr", c.sess.Addr, "limit_bytes", limit)
	c.kill()
	return true
}

// push queues an out-of-band frame (a pub/sub message) without blocking the caller. A large frame is
// queued by reference: it must not change afterwards (it may be shared by every subscriber). A
// client whose unwritten output exceeds its limit is disconnected.
func (c *conn) push(frame []byte) {
	c.omu.Lock()
	defer c.omu.Unlock()
	if c.werr != nil {
		return
	}
	if c.inBatch {
		c.deferred.add(frame)
	} else {
		c.out.add(frame)
	}
	if c.overLimitLocked(0) {
		return
	}
	if !c.writing && !c.inBatch && c.out.len() > 0 {
		c.writing = true
		go c.asyncFlush()
	}
}

// asyncFlush writes pushed frames until the output is empty.
func (c *conn) asyncFlush() {
	c.omu.Lock()
	defer c.omu.Unlock()
	c.writing = false
	for c.out.len() > 0 && c.werr == nil {
		c.writeOutLocked()
	}
	c.ocond.Broadcast()
}

// BlockPop implements commands.Conn (queue.Engine.BlockPop), with the connection as the Parker.
func (c *conn) BlockPop(keys []string, left bool, timeout time.Duration) (*queue.Pop, error) {
	if c.sess.InExec {
		return c.srv.engine.BlockPop(keys, left, timeout, commands.NoWait)
	}
	if !c.beginBlock() {
		return nil, nil
	}
	defer c.endBlock()
	return c.srv.engine.BlockPop(keys, left, timeout, c)
}

// BlockLeasePop implements commands.Conn (queue.Engine.BlockLeasePop).
func (c *conn) BlockLeasePop(keys []string, left bool, timeout time.Duration) (*queue.Pop, error) {
	if c.sess.InExec {
		return c.srv.engine.BlockLeasePop(&c.sess.Consumer, keys, left, timeout, commands.NoWait)
	}
	if !c.beginBlock() {
		return nil, nil
	}
	defer c.endBlock()
	return c.srv.engine.BlockLeasePop(&c.sess.Consumer, keys, left, timeout, c)
}

// Block implements commands.Conn (BLMOVE, BLMPOP), with the connection as the Parker.
func (c *conn) Block(wait func(p queue.Parker)) {
	if c.sess.InExec {
		wait(commands.NoWait) // blocking commands in EXEC do not wait, as in Redis
		return
	}
	if !c.beginBlock() {
		return
	}
	defer c.endBlock()
	wait(c)
}

// beginBlock writes the batch's replies so far before a blocking pop; false if the client is gone.
func (c *conn) beginBlock() bool {
	c.unblocked = false
	// An unblock that raced with the end of the previous wait must not end this one.
	c.unblock.Store(0)
	select {
	case <-c.unblockCh:
	default:
	}
	c.obs.blocked.Store(true)
	c.endBatch()
	c.obs.blockStart = time.Now()
	return !c.dead
}

// endBlock lets the handler go on writing this batch's reply.
func (c *conn) endBlock() {
	c.obs.blocked.Store(false)
	// An unblock that came after the wait ended (or before it parked) still counts: the handler
	// replies as it says when it got no item.
	c.unblocked = c.unblock.Swap(0) == unblockError
	select {
	case <-c.unblockCh:
	default:
	}
	c.obs.blockedFor += time.Since(c.obs.blockStart)
	c.omu.Lock()
	c.inBatch = true
	c.omu.Unlock()
}

// Park implements queue.Parker: it waits for w by reading the socket with the deadline, so a
// disconnect is noticed at once. At shutdown the client is disconnected without a reply, as Redis
// does when it shuts down: a nil reply would be a timeout, which a client blocked with timeout 0
// never expects.
func (c *conn) Park(w *queue.Waiter, deadline time.Time) bool {
	if c.rpos == c.rend && len(c.rbuf) > minReadBuf {
		c.rbuf, c.rpos, c.rend = make([]byte, minReadBuf), 0, 0 // a blocked client is idle: keep it small
	}
	reading := true
	for !w.Done() {
		// CLIENT UNBLOCK ends the wait as its timeout does (Server.Unblock).
		expired := !deadline.IsZero() && !time.Now().Before(deadline) || c.unblock.Load() != 0
		closing := c.srv.closing.Load()
		if c.dead || expired || closing {
			_ = c.nc.SetReadDeadline(time.Time{})
			if closing {
				c.dead = true // disconnected without a reply
			}
			return false
		}
		if !reading {
			c.waitReady(w, deadline)
			continue
		}
		_ = c.nc.SetReadDeadline(deadline)
		if w.Done() || c.srv.closing.Load() || c.unblock.Load() != 0 {
			continue // checked after setting the deadline, so a wake-up in between is not lost
		}
		if c.rend == len(c.rbuf) {
			if c.rend-c.rpos >= maxBlockedInput {
				reading = false
				continue
			}
			c.grow(0)
		}
		n, err := c.nc.Read(c.rbuf[c.rend:])
		c.rend += n
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			c.dead = true // the client went away while blocked
		}
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if c.srv.closing.Load() {
		c.dead = true // no reply is written during shutdown: the item goes back to its list
	}
	return true
}

// Unblocked implements commands.Conn.
func (c *conn) Unblocked() bool { return c.unblocked }

// Gone implements queue.Parker.
func (c *conn) Gone() bool { return c.dead }

// waitReady waits for a delivery, the deadline or shutdown without reading the socket.
func (c *conn) waitReady(w *queue.Waiter, deadline time.Time) {
	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-w.Ready():
	case <-timer:
	case <-c.srv.ctx.Done():
	case <-c.unblockCh:
	}
}

// Wake implements queue.Parker: it interrupts the connection's blocked read so it notices a delivery.
func (c *conn) Wake() { _ = c.nc.SetReadDeadline(aLongTimeAgo) }

func (c *conn) close() {
	c.cancel()
	commands.UnsubscribeAll(c)
	c.omu.Lock()
	if c.werr == nil {
		c.werr = errClientGone
	}
	c.omu.Unlock()
	if c.srv.closing.Load() {
		c.lingerClose()
	}
	_ = c.nc.Close()
	for queue, held := range c.sess.Held {
		if len(held) > 0 {
			c.srv.engine.Events().Log(slog.LevelInfo, "consumer disconnected holding leases", "queue", queue, "leases", len(held),
				"client", c.id, "addr", c.sess.Addr, "killed", c.killed.Load())
		}
	}
	c.srv.engine.Requeue(&c.sess.Consumer)
	c.srv.removeConn(c)
}

// drainLinger bounds how long a connection closed by the drain waits for its client to close.
const drainLinger = time.Second

// lingerClose ends a connection the drain closes without losing the replies already written: it
// half-closes (the client reads its replies, then EOF) and reads and discards what the client still
// sends, never executing it, until the client closes or drainLinger passes. Closing outright with
// unread input would make the kernel send a reset, which may destroy replies the client has not read
// yet: a push that ran would then look unanswered and be sent again (proxy/DESIGN.md "Shutdown").
func (c *conn) lingerClose() {
	until := time.Now().Add(drainLinger)
	if d := c.srv.drainDeadline(); d.Before(until) {
		until = d
	}
	_ = c.nc.SetWriteDeadline(until)
	var err error
	switch nc := c.nc.(type) {
	case *net.TCPConn:
		err = nc.CloseWrite()
	case *tls.Conn:
		err = nc.CloseWrite()
	default:
		return
	}
	if err != nil {
		return
	}
	_ = c.nc.SetReadDeadline(until)
	buf := c.rbuf[:cap(c.rbuf)]
	if len(buf) < minReadBuf {
		buf = make([]byte, minReadBuf)
	}
	for {
		if _, err := c.nc.Read(buf); err != nil {
			return
		}
	}
}

// handshakeTimeout bounds a TLS handshake.
const handshakeTimeout = 10 * time.Second

// handshake runs the TLS handshake and, with tls.cert_user, authenticates the connection as the user
// named by its verified client certificate's CN. It reports whether the connection can go on.
func (c *conn) handshake(tc *tls.Conn) bool {
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	err := tc.HandshakeContext(c.ctx)
	_ = tc.SetDeadline(time.Time{})
	if err != nil {
		c.srv.log.Debug("TLS handshake failed", "client", c.id, "addr", c.sess.Addr, "err", err)
		return false
	}
	st := tc.ConnectionState()
	if !c.srv.cfg.TLS.CertUser || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return true
	}
	cn := st.PeerCertificates[0].Subject.CommonName
	if u := c.srv.auth.Store().Lookup(cn); u != nil && u.Enabled {
		c.sess.CertUser, c.sess.AuthUser, c.sess.User, c.sess.Authed = u.Name, u.Name, u.Name, true
		c.setAuthUser(u.Name)
		c.srv.log.Debug("authenticated by client certificate", "client", c.id, "user", u.Name, "addr", c.sess.Addr)
	} else {
		c.srv.log.Info("client certificate names no enabled user; the connection must AUTH", "client", c.id, "addr", c.sess.Addr)
	}
	return true
}

// setAuthUser records the verified user for Reload; called on the connection's goroutine.
func (c *conn) setAuthUser(name string) {
	c.lastUser = name
	c.authUser.Store(&name)
}

// authUserName returns the verified user ("" if none); safe from any goroutine.
func (c *conn) authUserName() string {
	if p := c.authUser.Load(); p != nil {
		return *p
	}
	return ""
}

// kill closes the connection from another goroutine (Reload); its goroutine notices and cleans up,
// returning any item it holds. A TLS connection is cut at the socket, without waiting to send a
// close_notify.
func (c *conn) kill() {
	if tc, ok := c.nc.(*tls.Conn); ok {
		_ = tc.NetConn().Close()
		return
	}
	_ = c.nc.Close()
}
