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
	// deleteIdle is how long delivered pops' fields wait for the queue's next transit_pop_each to
	// delete them before the delete loop sends an HDEL of its own (DESIGN.md "The transit record").
	deleteIdle = 5 * time.Millisecond
)

// transit is this instance's book of at-most-once pops whose items are in its transit records.
type transit struct {
	e        *Engine
	instance string
	seq      atomic.Uint64

	gmu  sync.Mutex
	open map[bkey]*popGroup // groups of single pops still open for other connections' pops (share)

	mu      sync.Mutex
	live    map[uint64]struct{}          // pops whose items may be in a record and are accounted for
	dirty   map[string]*dirtyInfo        // queues with a pop of unknown outcome, swept until clean
	touched *lru.Cache[string, []string] // and their transit_pop KEYS
	alive   map[string]bool              // instances with a fresh heartbeat (nil: not known yet or after a gap)
	// walk: every registered queue must be checked for dead instances' records (an instance went,
	// or alive became known); lastWalk: when that last ran.
	walk     bool
	lastWalk time.Time

	dmu      sync.Mutex
	idle     time.Duration                    // deleteIdle (tests set it before the first pop)
	pending  map[string]*delivered            // delivered pops whose fields are not deleted yet, per queue
	carrying map[*popGroup]struct{}           // groups carrying delivered pops' deletes, not answered yet
	flushing map[string]map[string]*delivered // masters whose delete pipeline runs ("" outside a Cluster): its pops by queue
	armed    bool                             // the delete loop is awake or has its timer set for pending
	kick     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	lastCtx  context.Context // the delete loop's last flush (set by close, before stop is closed)
	stopped  chan struct{}

	// Counters (INFO; items given back count in Engine.returned): items recovered from dead
	// instances' records, and done-deletes that found their record gone because another instance took
	// this one for dead (those items may be delivered twice).
	recovered, raced atomic.Int64
}

type dirtyInfo struct{ clean int }

// delivered is a queue's delivered pops whose fields are still in the record: the next
// transit_pop_each of the queue carries them (deletes them right after its pops), or the delete
// loop deletes them once they waited deleteIdle.
type delivered struct {
	pops   []*transitPop
	fields int       // the pops' items
	since  time.Time // when the oldest was added
	now    bool      // delete at once (a carrying call failed with a Redis error)
}

// bkey is a queue and the end it is popped from.
type bkey struct {
	key  string
	left bool
}

func newTransit(e *Engine) *transit {
	t := &transit{e: e, instance: e.instance, live: map[uint64]struct{}{}, dirty: map[string]*dirtyInfo{}, open: map[bkey]*popGroup{},
		idle: deleteIdle, pending: map[string]*delivered{}, carrying: map[*popGroup]struct{}{}, flushing: map[string]map[string]*delivered{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	t.touched, _ = lru.New[string, []string](touchedQueues)
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
	field string      // the first item's field ("L12.1"); the prefix is all of it but the last byte
	arg   interface{} // field as a script argument, boxed once (a grouped pop's and its delete's)
	one   [1]string   // items of a single pop (no allocation of its own)
	keys  []string    // KEYS of transit_pop (shared by the queue's pops: read only)
	cmd   *redis.Cmd  // built on first use (command): a grouped pop never needs its own
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
	key  string
	cmd  *redis.Cmd
	keys []string
	args []interface{} // "LPOP"/"RPOP", instance, number of pops, the pops' prefixes, carried fields
	sent chan struct{} // closed once cmd ran
	once sync.Once
	res  []interface{}
	err  error
	n    int // the number of pops, once built
	// carry: delivered pops of the queue whose fields the call deletes (carryN of them).
	carry  []*transitPop
	carryN int
}

// groupArgs starts a group's ARGV: the pop, the instance and a place for the number of pops.
func (t *transit) groupArgs(name interface{}, n int) []interface{} {
	args := make([]interface{}, 0, max(n, 16)+3)
	return append(args, name, t.instance, 0)
}

// pops is the number of pops in the group while it is open (before build).
func (g *popGroup) pops() int { return len(g.args) - 3 }

// build completes the group's ARGV (the number of pops, the queue's delivered fields to delete) and
// its command, on client c.
func (g *popGroup) build(c redis.UniversalClient) {
	g.n = g.pops()
	g.args[2] = g.n
	g.t.takeDelivered(g)
	for _, p := range g.carry {
		g.args = p.appendFields(g.args)
	}
	g.cmd = rdb.TransitPopEach.Cmd(g.ctx, c, g.keys, g.args...)
}

// mergePops returns the command that runs ops (adjacent single pops of one queue) in one script
// call; their Result then reads their own entry of its reply.
func (t *transit) mergePops(ops []*transitPop) redis.Cmder {
	first := ops[0]
	g := &popGroup{t: t, ctx: first.ctx, key: first.key, keys: first.keys}
	g.args = t.groupArgs(first.name(), len(ops))
	for i, op := range ops {
		g.args = append(g.args, op.arg)
		op.group, op.idx = g, i
	}
	g.build(t.e.cmds())
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
		g = &popGroup{t: t, ctx: ops[0].ctx, key: k.key, keys: ops[0].keys, sent: make(chan struct{})}
		g.args = t.groupArgs(ops[0].name(), len(ops))
		t.open[k] = g
	}
	for _, op := range ops {
		op.group, op.idx = g, g.pops()
		g.args = append(g.args, op.arg)
	}
	if g.pops() >= transitChunk && t.open[k] == g {
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
	g.build(m)
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
		var deleted int64
		if g.err == nil {
			ok := len(g.res) == g.n+1
			if ok {
				deleted, ok = g.res[len(g.res)-1].(int64)
			}
			if !ok {
				g.err = errors.New("unexpected transit_pop_each reply")
			}
		}
		if len(g.carry) > 0 {
			g.t.carried(g, deleted, g.err)
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
func (p *transitPop) prefix() string { return p.field[:len(p.field)-1] }

// name is the pop's command, as a script argument.
func (p *transitPop) name() interface{} {
	if p.left {
		return lpopArg
	}
	return rpopArg
}

var lpopArg, rpopArg interface{} = "LPOP", "RPOP"

// command returns the pop's own transit_pop call, built on first use.
func (p *transitPop) command() *redis.Cmd {
	if p.cmd == nil {
		p.args = []interface{}{p.name(), p.count, p.prefix(), p.t.instance}
		p.cmd = rdb.TransitPop.Cmd(p.ctx, p.t.e.cmds(), p.keys, p.args...)
	}
	return p.cmd
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

// appendFields appends the record's fields of the pop to args, in pop order.
func (p *transitPop) appendFields(args []interface{}) []interface{} {
	if len(p.items) == 1 {
		return append(args, p.arg)
	}
	pre := p.prefix()
	for i := range p.items {
		args = append(args, pre+strconv.Itoa(i+1))
	}
	return args
}

// newPop prepares a pop of count items ("" = one, without COUNT) from key, with its command. The
// caller validated count (0 <= count <= transitChunk).
func (t *transit) newPop(ctx context.Context, key string, left bool, count string) (*transitPop, error) {
	p, err := t.preparePop(ctx, key, left, count)
	if err == nil {
		p.command()
	}
	return p, err
}

// preparePop is newPop without the command, which a pop grouped with others (Engine.Run) never
// needs.
func (t *transit) preparePop(ctx context.Context, key string, left bool, count string) (*transitPop, error) {
	p := new(transitPop)
	if err := t.initPop(p, ctx, key, left, count); err != nil {
		return nil, err
	}
	return p, nil
}

// initPop prepares p (zero) as preparePop does. The queue is registered first, so every reaper finds
// its records.
func (t *transit) initPop(p *transitPop, ctx context.Context, key string, left bool, count string) error {
	if err := t.e.registerQueue(ctx, key); err != nil {
		return err
	}
	*p = transitPop{t: t, ctx: ctx, key: key, left: left, count: count, seq: t.seq.Add(1)}
	var b [24]byte
	f := append(b[:0], 'R')
	if left {
		f[0] = 'L'
	}
	f = strconv.AppendUint(f, p.seq, 10)
	p.field = string(append(f, '.', '1'))
	p.arg = p.field
	keys, ok := t.touched.Get(key)
	if !ok {
		keys = rdb.TransitPopKeys(key, t.instance)
		t.touched.Add(key, keys)
	}
	p.keys = keys
	t.mu.Lock()
	t.live[p.seq] = struct{}{}
	t.mu.Unlock()
	return nil
}

// result reads the pop's reply once its command ran: the items, or none (nil) when the list was
// empty. A pop without items has no record any more and is settled here.
func (p *transitPop) result() ([]string, error) {
	var res interface{}
	var err error
	if p.group != nil {
		res, err = p.group.result(p.idx)
	} else {
		res, err = p.command().Result()
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
		p.one[0] = v
		p.items = p.one[:]
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

// done forgets the records of delivered pops: the queue's next transit_pop_each deletes their
// fields, or the delete loop does once they waited deleteIdle.
func (t *transit) done(pops []*transitPop) {
	var now time.Time
	t.dmu.Lock()
	for _, p := range pops {
		d := t.pending[p.key]
		if d == nil {
			if now.IsZero() {
				now = time.Now()
			}
			d = &delivered{since: now}
			t.pending[p.key] = d
		}
		d.pops = append(d.pops, p)
		d.fields += len(p.items)
	}
	wake := !t.armed
	t.armed = true
	t.dmu.Unlock()
	if wake {
		t.wake()
	}
}

func (t *transit) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// takeDelivered gives g's transit_pop_each call the queue's delivered pops to delete their fields (at
// most transitChunk fields; the rest wait): g.carry and their number of fields, g.carryN. g carries
// them until carried: the last flush deletes them too, as g may never reach Redis.
func (t *transit) takeDelivered(g *popGroup) {
	t.dmu.Lock()
	defer t.dmu.Unlock()
	d := t.pending[g.key]
	if d == nil {
		return
	}
	if d.fields <= transitChunk {
		delete(t.pending, g.key)
		g.carry, g.carryN = d.pops, d.fields
		t.carrying[g] = struct{}{}
		return
	}
	n, i := 0, 0
	for ; i < len(d.pops) && n+len(d.pops[i].items) <= transitChunk; i++ {
		n += len(d.pops[i].items)
	}
	if i == 0 { // one pop larger than a chunk: the delete loop's HDEL takes it
		return
	}
	g.carry, g.carryN = d.pops[:i:i], n
	d.pops = d.pops[i:]
	d.fields -= n
	t.carrying[g] = struct{}{}
}

// carried settles the delivered pops whose fields g's transit_pop_each call was to delete: deleted
// of their fields were, unless err. On a transport error they wait again (HDEL is idempotent);
// after a Redis error (nothing deleted) the delete loop deletes them at once.
func (t *transit) carried(g *popGroup, deleted int64, err error) {
	t.dmu.Lock()
	delete(t.carrying, g)
	t.dmu.Unlock()
	if err != nil {
		t.requeue(g.key, g.carry, isRedisError(err))
		return
	}
	t.deletedFields(g.key, g.carryN, deleted)
	for _, p := range g.carry {
		t.settle(p, false)
	}
}

// deletedFields accounts for a delete of n fields of which deleted were there: the others were given
// back by another instance that took this one for dead (they may be delivered twice).
func (t *transit) deletedFields(key string, n int, deleted int64) {
	if lost := int64(n) - deleted; lost > 0 {
		t.raced.Add(lost)
		t.e.log.Warn("delivered items were given back by another instance meanwhile (it took this one for dead); they may be delivered twice",
			"queue", key, "items", lost)
	}
}

// requeue puts delivered pops back to wait for their delete (now: the delete loop's next pass).
func (t *transit) requeue(key string, pops []*transitPop, now bool) {
	n := 0
	for _, p := range pops {
		n += len(p.items)
	}
	t.dmu.Lock()
	d := t.pending[key]
	if d == nil {
		d = &delivered{since: time.Now()}
		t.pending[key] = d
	}
	d.pops = append(d.pops, pops...)
	d.fields += n
	d.now = d.now || now
	wake := now || !t.armed
	t.armed = true
	t.dmu.Unlock()
	if wake {
		t.wake()
	}
}

// deleteLoop deletes the fields of delivered pops that no transit_pop_each carried within
// deleteIdle, retrying until it succeeds or close asks for the last try.
func (t *transit) deleteLoop() {
	defer close(t.stopped)
	var b backoff
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-t.kick:
		case <-timer.C:
		case <-t.stop:
			t.flushDone(t.lastCtx, true)
			return
		}
		for {
			ok, next := t.flushDone(t.e.ctx, false)
			if ok {
				b.reset()
				if next > 0 {
					timer.Reset(next)
				}
				break
			}
			if !b.wait(t.stop) {
				t.flushDone(t.lastCtx, true)
				return
			}
		}
	}
}

// flushDone deletes the fields of the delivered pops that waited deleteIdle; false if some failed on
// a transport error (they wait again). next is when the oldest of the rest is due (0: none is left,
// and the loop sleeps until done wakes it). The last flush (all) deletes every delivered pop's fields,
// those carried by transit_pop_each calls not answered yet included: such a call may be stuck behind
// a frozen backend, or never sent; HDEL after it is harmless. Sent commands run in Redis even when
// their reply never comes (a frozen backend that resumes after this instance stopped).
//
// The deletes go in one pipeline per master (one in all outside a Cluster), the masters' at once. A
// master whose pipeline has not answered within flushWait is left to it: the loop goes on with the
// others, and that master's deletes wait (skipped by the next flushes) until its pipeline ends and
// wakes the loop, so a frozen master holds only its own queues' deletes (proxy/DESIGN.md "Lanes").
func (t *transit) flushDone(ctx context.Context, all bool) (ok bool, next time.Duration) {
	now := time.Now()
	batch := map[string]map[string]*delivered{} // master → queue → pops
	t.dmu.Lock()
	for key, d := range t.pending {
		node := t.e.masterOf(ctx, key)
		if _, busy := t.flushing[node]; busy && !all {
			continue // its flush wakes the loop when it ends
		}
		if wait := t.idle - now.Sub(d.since); all || d.now || wait <= 0 {
			if batch[node] == nil {
				batch[node] = map[string]*delivered{}
			}
			batch[node][key] = d
			delete(t.pending, key)
		} else if next == 0 || wait < next {
			next = wait
		}
	}
	var inFlight map[string]bool // queues whose batch holds pops deleted elsewhere too: HDEL may find fewer fields
	if all {
		// The pops that calls not answered yet carry, or that earlier flushes still wait for: those
		// may be stuck behind a frozen node, or never sent.
		add := func(key string, pops []*transitPop) {
			node := t.e.masterOf(ctx, key)
			if batch[node] == nil {
				batch[node] = map[string]*delivered{}
			}
			d := batch[node][key]
			if d == nil {
				d = &delivered{}
				batch[node][key] = d
			}
			d.pops = append(d.pops, pops...)
			if inFlight == nil {
				inFlight = map[string]bool{}
			}
			inFlight[key] = true
		}
		for g := range t.carrying {
			add(g.key, g.carry)
		}
		clear(t.carrying)
		for _, queues := range t.flushing {
			for key, d := range queues {
				add(key, d.pops)
			}
		}
	} else {
		for node, queues := range batch {
			t.flushing[node] = queues
		}
	}
	t.armed = next > 0
	t.dmu.Unlock()
	if len(batch) == 0 {
		return true, next
	}
	results := make(chan bool, len(batch))
	for node, queues := range batch {
		go func() {
			ok := t.flushNode(ctx, queues, inFlight)
			if !all {
				t.dmu.Lock()
				delete(t.flushing, node)
				t.dmu.Unlock()
				t.wake() // its queues' deletes were skipped meanwhile
			}
			results <- ok
		}()
	}
	var wait <-chan time.Time
	if !all {
		timer := time.NewTimer(flushWait)
		defer timer.Stop()
		wait = timer.C
	}
	ok = true
	for range batch {
		select {
		case r := <-results:
			ok = ok && r
		case <-wait:
			return ok, next // the rest still run: they requeue what fails and wake the loop
		case <-ctx.Done():
			return false, next
		}
	}
	return ok, next
}

// flushWait is how long the delete loop waits for one master's deletes before going on without them.
const flushWait = 500 * time.Millisecond

// flushNode deletes the fields of one master's queues' delivered pops in one pipeline; false if some
// failed on a transport error (they wait again).
func (t *transit) flushNode(ctx context.Context, queues map[string]*delivered, inFlight map[string]bool) bool {
	type sent struct {
		key  string
		pops []*transitPop
		cmd  *redis.IntCmd
		n    int
	}
	var cmds []sent
	pipe := t.e.direct().Pipeline()
	for key, d := range queues {
		pops := d.pops
		for len(pops) > 0 {
			var chunk []*transitPop
			args := []interface{}{"hdel", rdb.TransitKey(key, t.instance)}
			for len(pops) > 0 && len(args) < transitChunk {
				chunk = append(chunk, pops[0])
				args = pops[0].appendFields(args)
				pops = pops[1:]
			}
			// A plain HDEL (allowed under OOM): the instance stays in the owners set while it lives.
			cmd := redis.NewIntCmd(ctx, args...)
			_ = pipe.Process(ctx, cmd)
			cmds = append(cmds, sent{key, chunk, cmd, len(args) - 2})
		}
	}
	_, _ = pipe.Exec(ctx) // each command keeps its own error
	ok := true
	for _, s := range cmds {
		n, err := s.cmd.Result()
		if err != nil && !isRedisError(err) && ctx.Err() == nil {
			ok = false
			t.requeue(s.key, s.pops, false)
			continue
		}
		if err != nil {
			t.e.log.Error("forget delivered items' transit record", "queue", s.key, "err", err)
		} else if !inFlight[s.key] {
			t.deletedFields(s.key, s.n, n)
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

// close stops the heartbeat and the delete loop, and sends the last deletes of delivered pops' fields
// (flushDone with all), waiting for their replies within ctx. It returns when the loop stopped or ctx
// is done: the loop may be stuck on a backend that does not answer, with a flush it already sent.
func (t *transit) close(ctx context.Context) {
	t.stopOnce.Do(func() {
		t.lastCtx = ctx
		close(t.stop)
	})
	t.flushDone(ctx, true)
	select {
	case <-t.stopped:
	case <-ctx.Done():
	}
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
