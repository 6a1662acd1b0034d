package queue

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// At-most-once pops never hold an item only in qgate's memory: transit_pop moves it from the ready list
// into this instance's transit record in one step; the record is deleted once the reply is written
// (done) and its items are given back when it cannot be (giveBack), when the pop's reply was lost
// (the queue is swept), or when this instance died (another instance's reaper recovers the record).
// proxy/DESIGN.md, "Delivery without loss", has the whole design.

const (
	// transitChunk bounds the items one transit script call moves.
	transitChunk = 1000
	// cleanSweeps is how many clean sweeps in a row clear a queue that had a pop of unknown outcome.
	cleanSweeps = 3
	// touchedQueues bounds the queues an instance remembers having popped from (for its last sweep).
	touchedQueues = 4096
)

// transit is this instance's book of at-most-once pops whose items are in its transit records.
type transit struct {
	e        *Engine
	instance string
	seq      atomic.Uint64

	gmu  sync.Mutex
	open map[bkey]*popGroup // groups of single pops still open for other connections' pops (share)

	mu      sync.Mutex
	live    map[uint64]struct{}   // pops whose items may be in a record and are accounted for
	dirty   map[string]*dirtyInfo // queues with a pop of unknown outcome, swept until clean
	touched *lru.Cache[string, struct{}]
	alive   map[string]bool // instances with a fresh heartbeat (nil: not known yet or after a gap)
	// walk: every registered queue must be checked for dead instances' records (an instance went,
	// or alive became known); lastWalk: when that last ran.
	walk     bool
	lastWalk time.Time

	dmu      sync.Mutex
	pending  map[string][]*transitPop // delivered pops whose record is not deleted yet
	kick     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}

	// Counters (INFO; items given back count in Engine.returned): items recovered from dead
	// instances' records, and done-deletes that found their record gone because another instance took
	// this one for dead (those items may be delivered twice).
	recovered, raced atomic.Int64
}

type dirtyInfo struct{ clean int }

// bkey is a queue and the end it is popped from.
type bkey struct {
	key  string
	left bool
}

func newTransit(e *Engine) *transit {
	t := &transit{e: e, instance: e.instance, live: map[uint64]struct{}{}, dirty: map[string]*dirtyInfo{}, open: map[bkey]*popGroup{},
		pending: map[string][]*transitPop{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	t.touched, _ = lru.New[string, struct{}](touchedQueues)
	go t.deleteLoop()
	return t
}

// transitPop is one pop into the transit record: the command to queue and, once it ran, its items.
type transitPop struct {
	t     *transit
	ctx   context.Context
	key   string
	left  bool
	seq   uint64
	count string
	cmd   *redis.Cmd
	keys  []string
	args  []interface{}
	items []string
	group *popGroup // set when the batch merged this pop with its neighbours (Engine.Run)
	idx   int       // this pop's entry in group
}

// single reports whether the pop is a plain LPOP/RPOP without COUNT.
func (p *transitPop) single() bool { return p.count == "" }

// popGroup is adjacent single pops of one queue in one batch, run as one transit_pop_each call.
type popGroup struct {
	t    *transit
	ctx  context.Context
	cmd  *redis.Cmd
	keys []string
	args []interface{}
	sent chan struct{} // closed once cmd ran
	once sync.Once
	res  []interface{}
	err  error
}

// mergePops returns the command that runs ops (adjacent single pops of one queue) in one script
// call; their Result then reads their own entry of its reply.
func (t *transit) mergePops(ops []*transitPop) redis.Cmder {
	first := ops[0]
	g := &popGroup{t: t, ctx: first.ctx, keys: first.keys}
	g.args = make([]interface{}, 0, len(ops)+2)
	g.args = append(g.args, first.args[0], t.instance)
	for i, op := range ops {
		g.args = append(g.args, op.prefix())
		op.group, op.idx = g, i
	}
	g.cmd = rdb.TransitPopEach.Cmd(first.ctx, t.e.cmds(), g.keys, g.args...)
	g.sent = closedChan
	return g.cmd
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// share runs ops (a batch made only of single pops of one queue: a worker's LPOP) together with the
// same pops of other connections arriving at the same moment, in one transit_pop_each call run
// through the multiplexer: the first connection opens the group, lets the others run once
// (runtime.Gosched) and runs it; they only wait for its reply. A group holds at most transitChunk
// pops.
func (t *transit) share(m *Mux, ops []*transitPop) {
	k := bkey{ops[0].key, ops[0].left}
	t.gmu.Lock()
	g := t.open[k]
	leader := g == nil
	if leader {
		g = &popGroup{t: t, ctx: ops[0].ctx, keys: ops[0].keys, sent: make(chan struct{})}
		g.args = append(make([]interface{}, 0, 16), ops[0].args[0], t.instance)
		t.open[k] = g
	}
	for _, op := range ops {
		op.group, op.idx = g, len(g.args)-2
		g.args = append(g.args, op.prefix())
	}
	if len(g.args)-2 >= transitChunk && t.open[k] == g {
		delete(t.open, k) // full: the next pops open a new group
	}
	t.gmu.Unlock()
	if !leader {
		return
	}
	runtime.Gosched()
	t.gmu.Lock()
	if t.open[k] == g {
		delete(t.open, k)
	}
	t.gmu.Unlock()
	g.cmd = rdb.TransitPopEach.Cmd(g.ctx, m, g.keys, g.args...)
	m.RunBatch(g.ctx, []redis.Cmder{g.cmd})
	close(g.sent)
}

// wait waits for the group's reply.
func (g *popGroup) wait() {
	<-g.sent
	_ = g.cmd.Err()
}

// result returns pop i's entry of the group's reply.
func (g *popGroup) result(i int) (interface{}, error) {
	g.once.Do(func() {
		g.res, g.err = g.cmd.Slice()
		if rdb.IsNoScript(g.err) {
			g.t.e.noScript()
			g.res, g.err = rdb.TransitPopEach.Eval(g.ctx, g.t.e.cmds(), g.keys, g.args...).Slice()
		}
		if g.err == nil && len(g.res) != len(g.args)-2 {
			g.err = errors.New("unexpected transit_pop_each reply")
		}
	})
	if g.err != nil {
		return nil, g.err
	}
	if g.res[i] == nil {
		return nil, redis.Nil
	}
	return g.res[i], nil
}

// prefix is the fields' common part: "L12." for the left pop number 12.
func (p *transitPop) prefix() string {
	end := "R"
	if p.left {
		end = "L"
	}
	return end + strconv.FormatUint(p.seq, 10) + "."
}

// fields returns the record's fields, most recently popped first (the order to give them back in).
func (p *transitPop) fields() []string {
	pre := p.prefix()
	out := make([]string, len(p.items))
	for i := range p.items {
		out[len(out)-1-i] = pre + strconv.Itoa(i+1)
	}
	return out
}

// newPop prepares a pop of count items ("" = one, without COUNT) from key. The caller validated count
// (0 <= count <= transitChunk). The queue is registered first, so every reaper finds its records.
func (t *transit) newPop(ctx context.Context, key string, left bool, count string) (*transitPop, error) {
	if err := t.e.registerQueue(ctx, key); err != nil {
		return nil, err
	}
	p := &transitPop{t: t, ctx: ctx, key: key, left: left, count: count, seq: t.seq.Add(1)}
	name := "RPOP"
	if left {
		name = "LPOP"
	}
	p.keys = rdb.TransitPopKeys(key, t.instance)
	p.args = []interface{}{name, count, p.prefix(), t.instance}
	p.cmd = rdb.TransitPop.Cmd(ctx, t.e.cmds(), p.keys, p.args...)
	t.mu.Lock()
	t.live[p.seq] = struct{}{}
	t.mu.Unlock()
	t.touched.Add(key, struct{}{})
	return p, nil
}

// result reads the pop's reply once its command ran: the items, or none (nil) when the list was
// empty. A pop without items has no record any more and is settled here.
func (p *transitPop) result() ([]string, error) {
	var res interface{}
	var err error
	if p.group != nil {
		res, err = p.group.result(p.idx)
	} else {
		res, err = p.cmd.Result()
		if rdb.IsNoScript(err) {
			p.t.e.noScript()
			res, err = rdb.TransitPop.Eval(p.ctx, p.t.e.cmds(), p.keys, p.args...).Result()
		}
	}
	switch {
	case err == redis.Nil:
		p.t.settle(p, false)
		return nil, nil
	case err != nil:
		p.t.settle(p, OutcomeUnknown(err))
		return nil, err
	}
	switch v := res.(type) {
	case string:
		p.items = []string{v}
	case []interface{}:
		p.items = make([]string, len(v))
		for i, x := range v {
			p.items[i], _ = x.(string)
		}
	}
	if p.items == nil {
		p.items = []string{}
	}
	if len(p.items) == 0 {
		p.t.settle(p, false)
	}
	return p.items, nil
}

// settle ends the book-keeping of a pop that has no record any more (or whose outcome is unknown).
func (t *transit) settle(p *transitPop, unknown bool) {
	t.mu.Lock()
	delete(t.live, p.seq)
	if unknown {
		t.dirty[p.key] = &dirtyInfo{}
	}
	t.mu.Unlock()
}

// done forgets the records of delivered pops (batched: one script per queue per round trip).
func (t *transit) done(p *transitPop) {
	t.dmu.Lock()
	t.pending[p.key] = append(t.pending[p.key], p)
	t.dmu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// deleteLoop deletes the records of delivered pops, retrying until it succeeds or the backend closes.
func (t *transit) deleteLoop() {
	defer close(t.stopped)
	var b backoff
	for {
		select {
		case <-t.kick:
		case <-t.stop:
			t.flushDone() // one last try
			return
		}
		for !t.flushDone() {
			if !b.wait(t.stop) {
				return
			}
		}
		b.reset()
	}
}

// flushDone runs the pending deletes; false if some failed on a transport error (they stay pending).
func (t *transit) flushDone() bool {
	t.dmu.Lock()
	batch := t.pending
	t.pending = map[string][]*transitPop{}
	t.dmu.Unlock()
	if len(batch) == 0 {
		return true
	}
	ctx := t.e.ctx
	type sent struct {
		pops []*transitPop
		cmd  *redis.IntCmd
		n    int
	}
	var cmds []sent
	for key, pops := range batch {
		for len(pops) > 0 {
			var chunk []*transitPop
			args := []interface{}{"hdel", rdb.TransitKey(key, t.instance)}
			for len(pops) > 0 && len(args) < transitChunk {
				chunk = append(chunk, pops[0])
				for _, f := range pops[0].fields() {
					args = append(args, f)
				}
				pops = pops[1:]
			}
			// A plain HDEL (allowed under OOM): the instance stays in the owners set while it lives.
			cmd := redis.NewIntCmd(ctx, args...)
			_ = t.e.direct().Process(ctx, cmd)
			cmds = append(cmds, sent{chunk, cmd, len(args) - 2})
		}
	}
	ok := true
	for _, s := range cmds {
		n, err := s.cmd.Result()
		if err != nil && !isRedisError(err) && ctx.Err() == nil {
			ok = false
			t.dmu.Lock()
			t.pending[s.pops[0].key] = append(t.pending[s.pops[0].key], s.pops...)
			t.dmu.Unlock()
			continue
		}
		if err != nil {
			t.e.log.Error("forget delivered items' transit record", "queue", s.pops[0].key, "err", err)
		} else if lost := int64(s.n) - n; lost > 0 {
			t.raced.Add(lost)
			t.e.log.Warn("delivered items were given back by another instance meanwhile (it took this one for dead); they may be delivered twice",
				"queue", s.pops[0].key, "items", lost)
		}
		for _, p := range s.pops {
			t.settle(p, false)
		}
	}
	return ok
}

// giveBack returns the items of pops whose reply could not be written, most recent pop first, retrying
// on transport errors until the backend closes (then the records stay, and the sweep of the next start
// or another instance's reaper gives them back).
func (t *transit) giveBack(pops []*transitPop) {
	var b backoff
	for i := len(pops) - 1; i >= 0; i-- {
		p := pops[i]
		args := append([]interface{}{t.instance}, stringsToArgs(p.fields())...)
		for {
			n, err := rdb.TransitReturn.Run(t.e.ctx, t.e.client, p.keys, args...).Int64()
			if err == nil {
				t.e.returned.Add(n)
				if n > 0 {
					t.e.wake(p.key)
				}
				break
			}
			if isRedisError(err) {
				// Still in the record: the sweep gives it back later.
				t.e.log.Error("give undelivered items back", "queue", p.key, "items", len(p.items), "err", err)
				t.mu.Lock()
				t.dirty[p.key] = &dirtyInfo{}
				t.mu.Unlock()
				break
			}
			if !b.wait(t.e.ctx.Done()) {
				break // shutting down: the record stays in Redis, another instance or the next start takes it
			}
		}
		b.reset()
		t.settle(p, false)
	}
}

func stringsToArgs(ss []string) []interface{} {
	out := make([]interface{}, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// sweep gives back the items of this instance's records on queues with pops of unknown outcome (or on
// every queue it popped from, when all is set: at shutdown, when nothing is in flight any more).
func (t *transit) sweep(ctx context.Context, all bool) error {
	t.mu.Lock()
	queues := make([]string, 0, len(t.dirty))
	for q := range t.dirty {
		queues = append(queues, q)
	}
	t.mu.Unlock()
	if all {
		for _, q := range t.touched.Keys() {
			if !slices.Contains(queues, q) {
				queues = append(queues, q)
			}
		}
	}
	var firstErr error
	for _, q := range queues {
		found, err := t.sweepQueue(ctx, q)
		t.mu.Lock()
		if d := t.dirty[q]; d != nil {
			switch {
			case err != nil:
				d.clean = 0
			case found > 0:
				d.clean = 0
			default:
				if d.clean++; d.clean >= cleanSweeps {
					delete(t.dirty, q)
				}
			}
		}
		t.mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// sweepQueue gives back the items of this instance's record on q that no pop in progress accounts for.
func (t *transit) sweepQueue(ctx context.Context, q string) (int, error) {
	fields, err := t.e.client.HKeys(ctx, rdb.TransitKey(q, t.instance)).Result()
	if err != nil {
		return 0, err
	}
	var orphans []string
	t.mu.Lock()
	for _, f := range fields {
		if seq, ok := fieldSeq(f); ok {
			if _, live := t.live[seq]; live {
				continue
			}
		}
		orphans = append(orphans, f)
	}
	t.mu.Unlock()
	if len(orphans) == 0 {
		return 0, nil
	}
	sortFieldsNewestFirst(orphans)
	total := 0
	for len(orphans) > 0 {
		n := min(len(orphans), transitChunk)
		args := append([]interface{}{t.instance}, stringsToArgs(orphans[:n])...)
		got, err := rdb.TransitReturn.Run(ctx, t.e.client, rdb.TransitKeys(q, t.instance), args...).Int64()
		if err != nil {
			return total, err
		}
		total += int(got)
		orphans = orphans[n:]
	}
	t.e.returned.Add(int64(total))
	t.e.wake(q)
	t.e.log.Warn("gave back items of pops whose outcome was unknown", "queue", q, "items", total)
	return total, nil
}

// fieldSeq parses the sequence number of a transit field ("L12.3" -> 12).
func fieldSeq(f string) (uint64, bool) {
	if len(f) < 2 {
		return 0, false
	}
	num, _, ok := strings.Cut(f[1:], ".")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	return n, err == nil
}

func sortFieldsNewestFirst(fields []string) {
	pos := func(f string) (uint64, int) {
		s, _ := fieldSeq(f)
		_, i, _ := strings.Cut(f, ".")
		n, _ := strconv.Atoi(i)
		return s, n
	}
	slices.SortFunc(fields, func(a, b string) int {
		sa, ia := pos(a)
		sb, ib := pos(b)
		if sa != sb {
			if sa > sb {
				return -1
			}
			return 1
		}
		return ib - ia
	})
}

// beat records this instance's heartbeat and learns which instances are alive (nil after a gap in
// this instance's own heartbeats: then nobody is taken for dead until the next beat).
func (t *transit) beat(ctx context.Context) error {
	ttl := t.e.instanceTTL
	res, err := rdb.Heartbeat.Run(ctx, t.e.client, []string{rdb.InstancesKey},
		t.instance, ttl.Milliseconds(), leasedQueueTTL.Milliseconds()).Slice()
	if err != nil {
		return err
	}
	var alive map[string]bool
	if len(res) > 0 && res[0] == int64(0) {
		alive = map[string]bool{t.instance: true}
		for _, x := range res[1:] {
			if s, ok := x.(string); ok {
				alive[s] = true
			}
		}
	}
	t.mu.Lock()
	if alive != nil {
		gone := t.alive == nil
		for inst := range t.alive {
			gone = gone || !alive[inst]
		}
		t.walk = t.walk || gone
	}
	t.alive = alive
	t.mu.Unlock()
	return nil
}

// walkDue reports whether the reaper should check every registered queue for dead instances'
// records now (an instance went, alive just became known, or every has passed since the last
// walk), and notes that it does. Never while alive is unknown.
func (t *transit) walkDue(now time.Time, every time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.alive == nil || (!t.walk && now.Sub(t.lastWalk) < every) {
		return false
	}
	t.walk, t.lastWalk = false, now
	return true
}

// walkAgain asks for another walk (the last one failed).
func (t *transit) walkAgain() {
	t.mu.Lock()
	t.walk = true
	t.mu.Unlock()
}

// recoverQueue gives back the transit records of dead instances on queue; it reports whether any
// instance still has items in a record there (the queue then stays registered).
func (t *transit) recoverQueue(ctx context.Context, queue string) (owned bool, err error) {
	owners, err := t.e.client.SMembers(ctx, rdb.TransitOwnersKey(queue)).Result()
	if err != nil || len(owners) == 0 {
		return false, err
	}
	t.mu.Lock()
	alive := t.alive
	t.mu.Unlock()
	if alive == nil {
		return true, nil
	}
	for _, o := range owners {
		if alive[o] {
			// A live instance stays an owner; the queue is idle when its record is empty.
			if n, err := t.e.client.HLen(ctx, rdb.TransitKey(queue, o)).Result(); err != nil || n > 0 {
				owned = true
			}
			continue
		}
		for i := 0; i < 20; i++ { // bounded per pass; the next pass goes on
			n, err := rdb.TransitRecover.Run(ctx, t.e.client, rdb.TransitKeys(queue, o), o, transitChunk).Int64()
			if err != nil {
				return true, err
			}
			if n > 0 {
				t.recovered.Add(n)
				t.e.wake(queue)
				t.e.log.Warn("gave back items a dead qgate instance had popped but not delivered", "queue", queue, "instance", o, "items", n)
			}
			if n < transitChunk {
				break
			}
			owned = i == 19 // more than this pass gives back: the next pass goes on
		}
	}
	return owned, nil
}

// heartbeatLoop beats every InstanceTTL/5 until stop is closed.
func (t *transit) heartbeatLoop() {
	tick := time.NewTicker(t.e.instanceTTL / 5)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			if err := t.beat(t.e.ctx); err != nil && t.e.ctx.Err() == nil {
				t.e.log.Warn("instance heartbeat", "err", err)
			}
		}
	}
}

// unregister removes this instance from the instances set at the end of a clean shutdown: any record
// it still has is then given back by the next reaper pass of any instance.
func (t *transit) unregister(ctx context.Context) error {
	return t.e.client.ZRem(ctx, rdb.InstancesKey, t.instance).Err()
}

// close stops the heartbeat and, after its last try, the delete loop.
func (t *transit) close() {
	t.stopOnce.Do(func() { close(t.stop) })
	<-t.stopped
}

// backoff is a capped exponential wait between retries of a backend step.
type backoff struct{ n int }

func (b *backoff) reset() { b.n = 0 }

// wait sleeps 10ms, 20ms, … up to 1s; false if done closed first.
func (b *backoff) wait(done <-chan struct{}) bool {
	d := time.Duration(10<<min(b.n, 7)) * time.Millisecond
	b.n++
	t := time.NewTimer(min(d, time.Second))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
