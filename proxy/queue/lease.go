package queue

import (
	"cmp"
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// Leases of at-least-once queues (README "Retry rules", proxy/DESIGN.md "Lease receipts"): leased
// pops, acks, nacks, extensions, the close-time requeue, QSTATS, QDEAD and QREDRIVE. The reaper is in
// reaper.go, the blocking lease pop in blocking.go, the scripts in proxy/rdb/scripts.
//
// Receipts. Every leased item gets a receipt (see rdb.InflightKey): a new one for every delivery,
// made of a per-pop prefix (a ULID, so a connection's receipts sort in pop order, then 128 random
// bits, so nobody can guess another delivery's receipt) and the item's position in its pop. The
// receiver gets it in the envelope it receives (envelope.WithReceipt) and its Consumer remembers it
// (ack: next-pop, the requeue on close); acks, nacks and extensions take it, from any connection.
//
// Chunks. No script handles more than rdb.Chunk items: larger pops, acks, redrives and next-pop acks
// are split into several script calls here (so a pop with a large COUNT is not one atomic step).
//
// Backend retries: the backend client never retries by itself (MaxRetries -1), and these calls do
// not retry either. A lease_pop whose reply was lost may have leased items nobody received: they come
// back when the lease expires (or at once when the consumer's connection closes), so nothing is lost
// and retrying could only lease more. Acks and extensions are idempotent but a failure is reported to
// the client, which may simply send them again. A nack is not retried: a second run could count an
// attempt twice if the first one ran. The close-time requeue (Requeue) is retried because it is owner
// checked: once it ran the leases are gone and a repeat does nothing.

// MaxHeldLeases bounds the lease ids a Consumer remembers per queue for its requeue on close (ids
// acked elsewhere or expired stay until then). Leases past the bound are not lost: the reaper
// requeues them when they expire.
const MaxHeldLeases = 65536

// Consumer is a connection's lease state. LeaseOwner marks the leases it holds, so only they are acked
// by its next pop or requeued when it closes.
type Consumer struct {
	LeaseOwner string
	Held       map[string]map[string]struct{} // queue → lease ids this connection holds
	LastPop    map[string][]string            // queue → lease ids of its last pop (ack: next-pop)
}

// AddLeases records lease ids this connection got from queue. With nextPop they are also acked by
// the connection's next pop from queue (together with any not acked yet, for pipelined pops).
func (s *Consumer) AddLeases(queue string, ids []string, nextPop bool) {
	if len(ids) == 0 {
		return
	}
	if s.Held == nil {
		s.Held = map[string]map[string]struct{}{}
	}
	h := s.Held[queue]
	if h == nil {
		h = map[string]struct{}{}
		s.Held[queue] = h
	}
	for _, id := range ids {
		if len(h) < MaxHeldLeases {
			h[id] = struct{}{}
		}
	}
	if nextPop {
		if s.LastPop == nil {
			s.LastPop = map[string][]string{}
		}
		s.LastPop[queue] = append(s.LastPop[queue], ids...)
	}
}

// DropLeases forgets lease ids of queue (acked, nacked or requeued).
func (s *Consumer) DropLeases(queue string, ids []string) {
	if h := s.Held[queue]; h != nil {
		for _, id := range ids {
			delete(h, id)
		}
		if len(h) == 0 {
			delete(s.Held, queue)
		}
	}
	if last := s.LastPop[queue]; len(last) > 0 {
		dropped := func(id string) bool { return slices.Contains(ids, id) }
		if len(ids) > 16 { // a set: a large pop's receipts against a large last pop is quadratic
			set := make(map[string]struct{}, len(ids))
			for _, id := range ids {
				set[id] = struct{}{}
			}
			dropped = func(id string) bool { _, ok := set[id]; return ok }
		}
		kept := last[:0:0]
		for _, id := range last {
			if !dropped(id) {
				kept = append(kept, id)
			}
		}
		if len(kept) == 0 {
			delete(s.LastPop, queue)
		} else {
			s.LastPop[queue] = kept
		}
	}
}

// newReceiptPrefix returns the prefix of the receipts of one lease_pop call: a ULID (monotonic in
// this process, so receipts sort in pop order) and 128 random bits (crypto/rand, base32).
func newReceiptPrefix() string { return envelope.NewID() + crand.Text() }

// sortReceipts sorts receipts this process made into the order their items were leased in.
func sortReceipts(receipts []string) {
	slices.SortFunc(receipts, func(a, b string) int {
		pa, ia := splitReceipt(a)
		pb, ib := splitReceipt(b)
		if c := strings.Compare(pa, pb); c != 0 {
			return c
		}
		return cmp.Compare(ia, ib)
	})
}

// splitReceipt splits a receipt into its pop's prefix and the item's position in that pop.
func splitReceipt(r string) (string, int) {
	i := strings.LastIndexByte(r, '.')
	if i < 0 {
		return r, 0
	}
	n, _ := strconv.Atoi(r[i+1:])
	return r[:i], n
}

// countRetries adds the results of rdb.Nack (one code per receipt) to the counters and reports
// whether any item went to the delayed set.
func (e *Engine) countRetries(codes []int64) (delayed bool) {
	for _, r := range codes {
		switch {
		case r == 1 || r == 2:
			e.leases.Retried.Add(1)
			delayed = delayed || r == 2
		case r >= 3:
			e.leases.Dead.Add(1)
		}
	}
	return delayed
}

// retryArgs returns ARGV[1..9] of rdb.Nack and rdb.RequeueExpired for a queue's rule.
func retryArgs(p *policy.Policy, reason, owner string) []interface{} {
	dead := "0"
	if p.DeadLetter {
		dead = "1"
	}
	return []interface{}{p.MaxAttempts, dead, p.BackoffInitial.Milliseconds(), p.BackoffMax.Milliseconds(),
		strconv.FormatFloat(p.BackoffMultiplier, 'g', -1, 64), strconv.FormatFloat(p.BackoffJitter, 'g', -1, 64),
		strconv.FormatFloat(rand.Float64(), 'g', -1, 64), reason, owner}
}

// evalFallback reads a script's prepared command on the engine's client, falling back to EVAL when the
// backend does not know the script yet (NOSCRIPT).
func (e *Engine) evalFallback(s *rdb.Script, cmd *redis.Cmd, keys []string, args []interface{}) *redis.Cmd {
	if _, err := cmd.Result(); rdb.IsNoScript(err) {
		e.noScript()
		return s.Eval(e.ctx, e.cmds(), keys, args...)
	}
	return cmd
}

// LeasePop pops from an at-least-once queue with rdb.LeasePop: each item is leased in the same
// atomic step, and c records the leases. count < 0 pops one item without COUNT. With ack: next-pop
// the same script first acks c's previous pop from the queue. The result is nil when the list was
// empty; its Receipts go with its Items. A count above rdb.Chunk (or more next-pop acks than that)
// makes a Sync operation: one lease_pop call per rdb.Chunk items, concatenated, until count items or
// a call that returns fewer than it asked for.
func (e *Engine) LeasePop(c *Consumer, key string, left bool, count int64) *Result[*Pop] {
	p := e.Policy(key)
	// Registered before anything of the queue is leased, so every reaper finds the lease.
	if err := e.registerQueue(e.ctx, key); err != nil {
		return failed[*Pop](err)
	}
	n, countArg := int64(1), ""
	if count >= 0 {
		n, countArg = count, strconv.FormatInt(count, 10)
	}
	if n > rdb.Chunk || (p.AckNextPop && len(c.LastPop[key]) > rdb.Chunk) {
		return syncResult(func() (*Pop, error) { return e.leasePopChunks(c, key, left, count, p) })
	}
	var acks []string
	if p.AckNextPop {
		acks = slices.Clone(c.LastPop[key])
	}
	keys, args := leasePopArgs(c.LeaseOwner, key, left, countArg, p, acks)
	cmd := rdb.LeasePop.Cmd(e.ctx, e.cmds(), keys, args...)
	return newResult([]redis.Cmder{cmd}, func() (*Pop, error) {
		res, err := e.evalFallback(rdb.LeasePop, cmd, keys, args).Slice()
		if err == nil && len(res) != 2 {
			err = errUnexpectedReply
		}
		if err != nil {
			return nil, err
		}
		return e.leasePopResult(c, key, left, p, acks, res), nil
	})
}

// leasePopChunks is LeasePop for a COUNT above rdb.Chunk, or after a pop of more than rdb.Chunk
// items with ack: next-pop: the previous pop's leases are acked rdb.Chunk at a time first. Other
// clients may pop between two calls (every item is still leased to one client). A failing call ends
// the pop: the items leased before it are delivered, or the error if there are none (the items of a
// call whose reply was lost come back when their leases end, as always).
func (e *Engine) leasePopChunks(c *Consumer, key string, left bool, count int64, p *policy.Policy) (*Pop, error) {
	acks, err := e.nextPopAcks(c, key, p)
	if err != nil {
		return nil, err
	}
	var out *Pop
	n := count
	if count < 0 {
		n = 1 // no COUNT: one item
	}
	for remaining := n; ; {
		want := min(remaining, rdb.Chunk)
		countArg := strconv.FormatInt(want, 10)
		if count < 0 {
			countArg = ""
		}
		keys, args := leasePopArgs(c.LeaseOwner, key, left, countArg, p, acks)
		res, err := rdb.LeasePop.Run(e.ctx, e.cmds(), keys, args...).Slice()
		if err == nil && len(res) != 2 {
			err = errUnexpectedReply
		}
		if err != nil {
			if out == nil {
				return nil, err
			}
			break
		}
		got := e.leasePopResult(c, key, left, p, acks, res)
		acks = nil
		if got == nil {
			break
		}
		if out == nil {
			out = got
		} else {
			out.Items, out.Receipts = append(out.Items, got.Items...), append(out.Receipts, got.Receipts...)
		}
		remaining -= want
		if count < 0 || int64(len(got.Items)) < want || remaining <= 0 {
			break
		}
	}
	return out, nil
}

// leasePopArgs returns the keys and arguments of rdb.LeasePop for a pop by owner that first acks acks
// (ack: next-pop; at most rdb.Chunk).
func leasePopArgs(owner string, key string, left bool, count string, p *policy.Policy, acks []string) (keys []string, args []interface{}) {
	name := "rpop"
	if left {
		name = "lpop"
	}
	args = make([]interface{}, 0, 5+len(acks))
	args = append(args, name, count, p.VisibilityTimeout.Milliseconds(), owner, newReceiptPrefix())
	for _, r := range acks {
		args = append(args, r)
	}
	return rdb.LeasePopKeys(key), args
}

// nextPopAcks returns the receipts a pop from key acks in its lease_pop call (ack: next-pop): c's
// previous pop's. Beyond rdb.Chunk of them, the oldest are acked here first, in chunks.
func (e *Engine) nextPopAcks(c *Consumer, key string, p *policy.Policy) ([]string, error) {
	last := c.LastPop[key]
	if !p.AckNextPop || len(last) == 0 {
		return nil, nil
	}
	if extra := len(last) - rdb.Chunk; extra > 0 {
		if err := e.ackOwned(c, key, slices.Clone(last[:extra])); err != nil {
			return nil, err
		}
	}
	return slices.Clone(c.LastPop[key]), nil
}

// leasePopResult records the outcome of rdb.LeasePop in c and returns the leased items (nil: nothing
// to pop).
func (e *Engine) leasePopResult(c *Consumer, key string, left bool, p *policy.Policy, acks []string, res []interface{}) *Pop {
	if len(acks) > 0 {
		c.DropLeases(key, acks)
	}
	if n, ok := res[0].(int64); ok && n > 0 {
		e.leases.Acked.Add(n)
		e.countAcked(key, n)
	}
	out := parseLeasePop(key, left, res)
	if out == nil {
		return nil
	}
	c.AddLeases(key, out.Receipts, p.AckNextPop)
	e.schedule(key, time.Now().Add(p.VisibilityTimeout)) // the reaper looks when the leases end
	e.leases.Leased.Add(int64(len(out.Receipts)))
	e.countPopped(key, len(out.Receipts))
	return out
}

// parseLeasePop returns the items rdb.LeasePop's reply res leased (nil: the list was empty).
func parseLeasePop(key string, left bool, res []interface{}) *Pop {
	if res[1] == nil {
		return nil
	}
	flat, _ := res[1].([]interface{})
	out := &Pop{Key: key, Left: left, leased: true, Receipts: make([]string, 0, len(flat)/2), Items: make([]string, 0, len(flat)/2)}
	for i := 0; i+1 < len(flat); i += 2 {
		r, _ := flat[i].(string)
		item, _ := flat[i+1].(string)
		out.Receipts, out.Items = append(out.Receipts, r), append(out.Items, item)
	}
	return out
}

// maxTakeBatch bounds the waiters one take leases for (lease_pop_each pairs; at most rdb.Chunk).
const maxTakeBatch = 64

// maxTakeSizes bounds the keys whose batch size leaseWaits remembers (then it starts afresh).
const maxTakeSizes = 4096

// leaseWaits are the engine's blocked lease pops of one item on one key, in the order they waited,
// so that one waiter's take leases for the waiters behind it in the same script call (proxy/DESIGN.md
// "How the engine uses the Hub", batched takes).
type leaseWaits struct {
	mu   sync.Mutex
	keys map[string][]*leaseWait
	size map[string]int // key → how many waiters its next take leases for (leaseTake; at most maxTakeSizes keys)
}

// leaseWait is one blocked lease pop. Its fields other than owner, key and left are guarded by
// leaseWaits.mu.
type leaseWait struct {
	owner    string
	key      string // its only key; "" when it waits on several or for COUNT items: no take leases for it but its own
	left     bool
	done     bool // its wait ended: a lease made for it now goes back
	inFlight bool // another waiter's take is leasing for it
	got      *Pop // leased for it by another waiter's take, for its own take to return
}

// add registers w, when other waiters' takes may lease for it (w.key set).
func (l *leaseWaits) add(w *leaseWait) {
	if w.key == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string][]*leaseWait{}
	}
	l.keys[w.key] = append(l.keys[w.key], w)
}

// remove ends w's wait and returns what another take leased for it that it did not collect (nil:
// nothing), for the caller to give back. A take in flight that leases for w afterwards gives it back.
func (l *leaseWaits) remove(w *leaseWait) *Pop {
	l.mu.Lock()
	defer l.mu.Unlock()
	w.done = true
	got := w.got
	w.got = nil
	if w.key == "" {
		return got
	}
	ws := l.keys[w.key]
	if i := slices.Index(ws, w); i >= 0 {
		ws = slices.Delete(ws, i, i+1)
	}
	if len(ws) == 0 {
		delete(l.keys, w.key)
	} else {
		l.keys[w.key] = ws
	}
	return got
}

// stranded takes back every lease made for a waiter of key that its own take did not collect yet.
func (l *leaseWaits) stranded(key string) (owners []string, pops []*Pop) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.keys[key] {
		if o.got != nil {
			owners, pops = append(owners, o.owner), append(pops, o.got)
			o.got = nil
		}
	}
	return owners, pops
}

// leaseTake is a blocked lease pop's take on key: what another waiter's take leased for w, else a
// lease for w, which for one item (count "") also leases one item for each waiter registered behind
// it on key (lease_pop_each) as far as the list has items: N waiters woken by N pushes cost one
// script call, not N in a row. A take that finds key empty gives back what was leased for waiters it
// did not reach (the Hub serves in its own FIFO order and stops at an empty take), so that a lease
// never waits for a take that may not come. nil: key had nothing.
//
// A batch costs a receipt prefix and two arguments per waiter, used or not, so its size adapts to
// the list: maxTakeBatch for a key's first take, twice as many after a take that leased for all of
// its waiters (the list may hold more), one more than it leased after one that ran short (an empty
// take changes nothing).
func (e *Engine) leaseTake(w *leaseWait, key string, left bool, count string) (*Pop, error) {
	l := &e.leaseWaits
	l.mu.Lock()
	if got := w.got; got != nil {
		w.got = nil
		l.mu.Unlock()
		return got, nil
	}
	var batch []*leaseWait
	if count == "" {
		size, ok := l.size[key]
		if !ok {
			size = maxTakeBatch
		}
		for _, o := range l.keys[key] {
			if len(batch) == size-1 {
				break
			}
			if o != w && !o.done && !o.inFlight && o.got == nil && o.left == left {
				o.inFlight = true
				batch = append(batch, o)
			}
		}
	}
	l.mu.Unlock()
	var got *Pop
	var err error
	if len(batch) == 0 {
		got, err = e.leaseN(w.owner, key, left, count)
	} else {
		owners := make([]string, 1, 1+len(batch))
		owners[0] = w.owner
		for _, o := range batch {
			owners = append(owners, o.owner)
		}
		var pops []*Pop
		pops, err = e.leaseEach(key, left, owners)
		var backOwners []string
		var back []*Pop
		l.mu.Lock()
		if len(pops) > 0 && len(l.keys[key]) > 0 {
			if l.size == nil || len(l.size) >= maxTakeSizes {
				l.size = map[string]int{}
			}
			if len(pops) == len(owners) {
				l.size[key] = min(2*len(owners), maxTakeBatch)
			} else {
				l.size[key] = max(len(pops)+1, 2)
			}
		}
		for i, o := range batch {
			o.inFlight = false
			switch {
			case i+1 >= len(pops):
			case o.done:
				backOwners, back = append(backOwners, o.owner), append(back, pops[i+1])
			default:
				o.got = pops[i+1]
			}
		}
		l.mu.Unlock()
		for i, p := range back {
			e.returnLeases(backOwners[i], p)
		}
		if len(pops) > 0 {
			got = pops[0]
		}
	}
	if err == nil && got == nil {
		owners, pops := l.stranded(key)
		for i, p := range pops {
			e.returnLeases(owners[i], p)
		}
	}
	return got, err
}

// leaseEach leases one item of key for each owner, in order, in one lease_pop_each call: one Pop per
// item leased (fewer than owners when the list ran short, none when it was empty). Counted as leased
// here; each waiter's connection records its own lease.
func (e *Engine) leaseEach(key string, left bool, owners []string) ([]*Pop, error) {
	if err := e.registerQueue(e.ctx, key); err != nil {
		return nil, err
	}
	pol := e.Policy(key)
	name := "rpop"
	if left {
		name = "lpop"
	}
	args := make([]interface{}, 0, 2+2*len(owners))
	args = append(args, name, pol.VisibilityTimeout.Milliseconds())
	for _, o := range owners {
		args = append(args, o, newReceiptPrefix())
	}
	res, err := rdb.LeasePopEach.Run(e.ctx, e.direct(), rdb.LeasePopKeys(key), args...).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	pops := make([]*Pop, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		r, _ := res[i].(string)
		item, _ := res[i+1].(string)
		pops = append(pops, &Pop{Key: key, Left: left, leased: true, Receipts: []string{r}, Items: []string{item}})
	}
	if len(pops) > 0 {
		e.schedule(key, time.Now().Add(pol.VisibilityTimeout)) // the reaper looks when the leases end
		e.leases.Leased.Add(int64(len(pops)))
		e.countPopped(key, len(pops))
	}
	return pops, nil
}

// ackPrevious acks c's previous pop from key when the rule acks on the next pop, for a pop that does
// not run lease_pop on key (which would ack them itself).
func (e *Engine) ackPrevious(c *Consumer, key string, p *policy.Policy) error {
	if !p.AckNextPop || len(c.LastPop[key]) == 0 {
		return nil
	}
	return e.ackOwned(c, key, slices.Clone(c.LastPop[key]))
}

// ackOwned acks receipts of key that c holds, rdb.Chunk per script call.
func (e *Engine) ackOwned(c *Consumer, key string, receipts []string) error {
	keys := []string{rdb.InflightKey(key), rdb.LeasesKey(key)}
	for chunk := range slices.Chunk(receipts, rdb.Chunk) {
		argv := make([]interface{}, 0, 1+len(chunk))
		argv = append(argv, c.LeaseOwner)
		for _, r := range chunk {
			argv = append(argv, r)
		}
		n, err := rdb.Ack.Run(e.ctx, e.cmds(), keys, argv...).Int64()
		if err != nil {
			return err
		}
		c.DropLeases(key, chunk)
		e.leases.Acked.Add(n)
		e.countAcked(key, n)
	}
	return nil
}

// Ack ends the leases of receipts on queue, whoever holds them (the receipt is proof enough); the
// result is how many were leased. More than rdb.Chunk receipts make a Sync operation.
func (e *Engine) Ack(c *Consumer, queue string, receipts []string) *Result[int64] {
	keys := []string{rdb.InflightKey(queue), rdb.LeasesKey(queue)}
	argv := func(chunk []string) []interface{} {
		out := make([]interface{}, 1, 1+len(chunk))
		out[0] = "" // any owner
		for _, r := range chunk {
			out = append(out, r)
		}
		return out
	}
	if len(receipts) > rdb.Chunk {
		return syncResult(func() (int64, error) {
			total := int64(0)
			for chunk := range slices.Chunk(receipts, rdb.Chunk) {
				n, err := rdb.Ack.Run(e.ctx, e.cmds(), keys, argv(chunk)...).Int64()
				if err != nil {
					return 0, err
				}
				c.DropLeases(queue, chunk)
				e.leases.Acked.Add(n)
				e.countAcked(queue, n)
				total += n
			}
			return total, nil
		})
	}
	a := argv(receipts)
	cmd := rdb.Ack.Cmd(e.ctx, e.cmds(), keys, a...)
	return newResult([]redis.Cmder{cmd}, func() (int64, error) {
		n, err := e.evalFallback(rdb.Ack, cmd, keys, a).Int64()
		if err != nil {
			return 0, err
		}
		c.DropLeases(queue, receipts)
		e.leases.Acked.Add(n)
		e.countAcked(queue, n)
		return n, nil
	})
}

// Nack gives a leased item back for another attempt: after delay ms, or the rule's backoff when
// delay < 0. The result is 1 if the receipt was leased, else 0.
func (e *Engine) Nack(c *Consumer, queue, receipt string, delay int64) *Result[int64] {
	keys := rdb.RetryKeys(queue)
	argv := append(retryArgs(e.Policy(queue), "nack", ""), delay, receipt)
	cmd := rdb.Nack.Cmd(e.ctx, e.cmds(), keys, argv...)
	return newResult([]redis.Cmder{cmd}, func() (int64, error) {
		res, err := e.evalFallback(rdb.Nack, cmd, keys, argv).Int64Slice()
		if err == nil && len(res) != 1 {
			err = errUnexpectedReply
		}
		if err != nil {
			return 0, err
		}
		c.DropLeases(queue, []string{receipt})
		e.countQueueRetries(queue, res)
		e.logDeadCodes(queue, res, "nack")
		if e.countRetries(res) {
			e.schedule(queue, time.Now()) // the reaper learns the delayed item's time
		}
		if res[0] == 1 {
			e.wake(queue) // back in the ready list
		}
		if res[0] != 0 {
			return 1, nil
		}
		return 0, nil
	})
}

// Extend sets a lease's deadline to ms from now; the result is 1 if the receipt was leased.
func (e *Engine) Extend(queue, receipt string, ms int64) *Result[int64] {
	keys := []string{rdb.InflightKey(queue), rdb.LeasesKey(queue)}
	argv := []interface{}{receipt, ms}
	cmd := rdb.Extend.Cmd(e.ctx, e.cmds(), keys, argv...)
	return newResult([]redis.Cmder{cmd}, func() (int64, error) {
		n, err := e.evalFallback(rdb.Extend, cmd, keys, argv).Int64()
		if err == nil && n == 1 {
			e.schedule(queue, time.Now().Add(time.Duration(ms)*time.Millisecond)) // may be sooner
		}
		return n, err
	})
}

// QueueStats are a queue's counts (QSTATS).
type QueueStats struct {
	Ready, InFlight, Delayed, Dead, Handoff int64
	OldestReadyAgeMs                        int64 // the oldest enveloped item at either end of the ready list; -1: none
	Paused                                  bool  // QPAUSE (README "Queue controls")
	Dropped                                 int64 // items this instance dropped for max_length (overflow: drop-oldest)
}

// QueueStats counts a queue's ready, in-flight, delayed, dead and handed-off items.
func (e *Engine) QueueStats(queue string) *Result[QueueStats] {
	ctx := e.ctx
	counts := []*redis.IntCmd{
		redis.NewIntCmd(ctx, "llen", queue),
		redis.NewIntCmd(ctx, "zcard", rdb.InflightKey(queue)),
		redis.NewIntCmd(ctx, "zcard", rdb.DelayedKey(queue)),
		redis.NewIntCmd(ctx, "llen", rdb.DeadKey(queue)),
		redis.NewIntCmd(ctx, "llen", rdb.HandoffKey(queue)),
		redis.NewIntCmd(ctx, "exists", rdb.PausedKey(queue)),
	}
	head := redis.NewStringCmd(ctx, "lindex", queue, 0)
	tail := redis.NewStringCmd(ctx, "lindex", queue, -1)
	cmds := make([]redis.Cmder, 0, len(counts)+2)
	for _, c := range counts {
		cmds = append(cmds, c)
	}
	cmds = append(cmds, head, tail)
	return newResult(cmds, func() (QueueStats, error) {
		var vals [6]int64
		for i, cmd := range counts {
			v, err := cmd.Result()
			if err != nil {
				return QueueStats{}, err
			}
			vals[i] = v
		}
		age := int64(-1)
		for _, end := range []*redis.StringCmd{head, tail} {
			if env, ok := envelope.Decode([]byte(end.Val())); ok {
				if a := time.Since(env.EnqueuedAt).Milliseconds(); a > age {
					age = max(a, 0)
				}
			}
		}
		return QueueStats{Ready: vals[0], InFlight: vals[1], Delayed: vals[2], Dead: vals[3], Handoff: vals[4], OldestReadyAgeMs: age,
			Paused: vals[5] == 1, Dropped: e.obs().counters(queue).dropped.Load()}, nil
	})
}

// Dead returns up to n dead records of queue, oldest first.
func (e *Engine) Dead(queue string, n int64) *Result[[]string] {
	cmd := redis.NewStringSliceCmd(e.ctx, "lrange", rdb.DeadKey(queue), 0, n-1)
	return newResult([]redis.Cmder{cmd}, cmd.Result)
}

// Redrive moves up to n dead items back to the ready list with attempts reset; the result is how
// many. More than rdb.Chunk makes a Sync operation: rdb.Chunk items per call, until n or a call that
// finds the dead list empty.
func (e *Engine) Redrive(queue string, n int64) *Result[int64] { return e.RedriveVia(queue, n, "") }

// RedriveVia is Redrive that logs the operator's action once it ran, naming the interface it came
// through (via: "resp", "http").
func (e *Engine) RedriveVia(queue string, n int64, via string) *Result[int64] {
	logged := func(moved int64, err error) (int64, error) {
		if err == nil && via != "" {
			e.log.Info("dead letters redriven", "queue", queue, "items", moved, "via", via)
		}
		return moved, err
	}
	keys := []string{queue, rdb.DeadKey(queue)}
	if n > rdb.Chunk {
		return syncResult(func() (int64, error) { return logged(e.redriveChunks(queue, keys, n)) })
	}
	cmd := rdb.Redrive.Cmd(e.ctx, e.cmds(), keys, n)
	return newResult([]redis.Cmder{cmd}, func() (int64, error) {
		moved, err := e.evalFallback(rdb.Redrive, cmd, keys, []interface{}{n}).Int64()
		if err != nil {
			return logged(0, err)
		}
		e.leases.Redriven.Add(moved)
		if moved > 0 {
			e.wake(queue)
		}
		return logged(moved, nil)
	})
}

// redriveChunks is a redrive over rdb.Chunk: rdb.Chunk items per call.
func (e *Engine) redriveChunks(queue string, keys []string, n int64) (int64, error) {
	total := int64(0)
	for total < n {
		want := min(n-total, rdb.Chunk)
		moved, err := rdb.Redrive.Run(e.ctx, e.cmds(), keys, want).Int64()
		if err != nil {
			return 0, err
		}
		e.leases.Redriven.Add(moved)
		total += moved
		if moved > 0 {
			e.wake(queue)
		}
		if moved < want {
			break
		}
	}
	return total, nil
}

// Requeue gives back, at once, every lease a closing connection's Consumer still holds
// (RabbitMQ-style): each counts as a failed attempt with reason "consumer disconnected". The script
// only touches leases this consumer owns, and a lease that expired and went to another consumer has
// a new receipt, so both are left alone; a repeat after an unclear failure does nothing: that is why
// this one is retried. The receipts go in the order their items were leased (so the requeued items
// keep their order), rdb.Chunk per script call.
func (e *Engine) Requeue(c *Consumer) {
	for queue, held := range c.Held {
		if len(held) == 0 {
			continue
		}
		p := e.Policy(queue)
		receipts := make([]string, 0, len(held))
		for r := range held {
			receipts = append(receipts, r)
		}
		sortReceipts(receipts)
		var err error
		for chunk := range slices.Chunk(receipts, rdb.Chunk) {
			if err = e.requeueChunk(queue, p, c.LeaseOwner, chunk); err != nil {
				break
			}
		}
		if err != nil {
			// Nothing is lost: the reaper requeues them when their visibility timeout ends.
			e.log.Warn("could not requeue a closed connection's leases; the reaper will", "queue", queue, "leases", len(held), "err", err)
			continue
		}
		e.log.Debug("requeued leases of a closed connection", "queue", queue, "leases", len(held))
	}
	c.Held, c.LastPop = nil, nil
}

// requeueChunk runs rdb.Nack for up to rdb.Chunk receipts of a closing connection, retrying errors
// that are not Redis's own replies.
func (e *Engine) requeueChunk(queue string, p *policy.Policy, owner string, receipts []string) error {
	args := append(retryArgs(p, "consumer disconnected", owner), 0)
	for _, r := range receipts {
		args = append(args, r)
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var codes []int64
		codes, err = rdb.Nack.Run(e.ctx, e.client, rdb.RetryKeys(queue), args...).Int64Slice()
		if err == nil {
			e.countQueueRetries(queue, codes)
			e.logDeadCodes(queue, codes, "consumer disconnected")
		}
		if err == nil && e.countRetries(codes) {
			e.schedule(queue, time.Now()) // the reaper learns the delayed items' time
		}
		if err == nil {
			e.wake(queue)
		}
		if err == nil || isRedisError(err) {
			return err
		}
		time.Sleep(time.Duration(50<<attempt) * time.Millisecond)
	}
	return err
}
