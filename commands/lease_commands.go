package commands

import (
	"cmp"
	crand "crypto/rand"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
	"github.com/qgate/qgate/proxy/resp"
)

// Leases of at-least-once queues (README "Retry rules", proxy/DESIGN.md "Lease receipts"): leased pops, QACK, QNACK and QEXTEND.
//
// Receipts. Every leased item gets a receipt (see rdb.InflightKey): a new one for every delivery,
// made of a per-pop prefix (a ULID, so a connection's receipts sort in pop order, then 128 random
// bits, so nobody can guess another delivery's receipt) and the item's position in its pop. The
// receiver gets it in the envelope it receives (envelope.WithReceipt) and its connection remembers it
// (ack: next-pop, the requeue on close); QACK, QNACK and QEXTEND take it, from any connection.
//
// Chunks. No script handles more than rdb.Chunk items: larger pops, QACKs, QREDRIVEs and next-pop
// acks are split into several script calls here (so a pop with a large COUNT is not one atomic step).
//
// Backend retries: the backend client never retries by itself (MaxRetries -1), and these handlers do
// not retry either. A lease_pop whose reply was lost may have leased items nobody received: they come
// back when the lease expires (or at once when this connection closes), so nothing is lost and
// retrying could only lease more. QACK and QEXTEND are idempotent but a failure is reported to the
// client, which may simply send them again. QNACK is not retried: a second run could count an attempt
// twice if the first one ran. The close-time requeue (proxy/leases.go) is retried because it is owner
// checked: once it ran the leases are gone and a repeat does nothing.

func init() {
	queueArg := Arg{Name: "queue", Type: "key"}
	receiptArg := Arg{Name: "receipt", Type: "string"}
	register(
		&Spec{Name: "qack", Arity: -3, Flags: Write | Fast | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Acknowledges leased items of an at-least-once queue by their receipts; returns how many were leased.",
			Args: []Arg{queueArg, {Name: "receipt", Type: "string", Multiple: true}}, Run: qack},
		&Spec{Name: "qnack", Arity: -3, Flags: Write | Fast | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Gives a leased item back for another attempt, after delay-ms or the queue's backoff; returns 1 if the receipt was leased.",
			Args: []Arg{queueArg, receiptArg, {Name: "delay-ms", Type: "integer", Optional: true}}, Run: qnack},
		&Spec{Name: "qextend", Arity: 4, Flags: Write | Fast | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Sets a lease's deadline to ms milliseconds from now; returns 1 if the receipt was leased.",
			Args: []Arg{queueArg, receiptArg, {Name: "ms", Type: "integer"}}, Run: qextend},
		&Spec{Name: "qstats", Arity: 2, Flags: ReadOnly | Fast | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Returns a queue's ready, in-flight, delayed, dead and handoff counts and the oldest ready item's age in ms (-1: none).",
			Args: []Arg{queueArg}, Run: qstats},
		&Spec{Name: "qdead", Arity: -2, Flags: ReadOnly | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Lists up to count (default 10) dead items of a queue, oldest first, as JSON records.",
			Args: []Arg{queueArg, {Name: "count", Type: "integer", Optional: true}}, Run: qdead},
		&Spec{Name: "qredrive", Arity: -2, Flags: Write | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Moves up to count (default all) dead items back to the ready list with attempts reset; returns how many.",
			Args: []Arg{queueArg, {Name: "count", Type: "integer", Optional: true}}, Run: qredrive},
	)
}

// errUnexpectedReply reports a script reply of the wrong shape.
var errUnexpectedReply = errors.New("unexpected reply from a lease script")

// newReceiptPrefix returns the prefix of the receipts of one lease_pop call: a ULID (monotonic in
// this process, so receipts sort in pop order) and 128 random bits (crypto/rand, base32).
func newReceiptPrefix() string { return envelope.NewID() + crand.Text() }

// SortReceipts sorts receipts this process made into the order their items were leased in.
func SortReceipts(receipts []string) {
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

// CountRetries adds the results of rdb.Nack (one code per receipt) to the counters and reports
// whether any item went to the delayed set.
func CountRetries(lc *LeaseCounters, codes []int64) (delayed bool) {
	for _, r := range codes {
		switch {
		case r == 1 || r == 2:
			lc.Retried.Add(1)
			delayed = delayed || r == 2
		case r >= 3:
			lc.Dead.Add(1)
		}
	}
	return delayed
}

// RetryArgs returns ARGV[1..9] of rdb.Nack and rdb.RequeueExpired for a queue's rule.
func RetryArgs(p *policy.Policy, reason, owner string) []interface{} {
	dead := "0"
	if p.DeadLetter {
		dead = "1"
	}
	return []interface{}{p.MaxAttempts, dead, p.BackoffInitial.Milliseconds(), p.BackoffMax.Milliseconds(),
		strconv.FormatFloat(p.BackoffMultiplier, 'g', -1, 64), strconv.FormatFloat(p.BackoffJitter, 'g', -1, 64),
		strconv.FormatFloat(rand.Float64(), 'g', -1, 64), reason, owner}
}

// deliverLeased returns what the client receives for an item it leased: with envelopes, the envelope
// with its receipt; otherwise what deliver gives (the payload, or a raw item as it is).
func deliverLeased(c Conn, queue, item, receipt string) string {
	if envelope.Is([]byte(item)) && WantsEnvelope(c.Session().Deliver, c.Server().Policies().Queue(queue)) {
		return envelope.WithReceipt(item, receipt)
	}
	return deliver(c, queue, item)
}

// leasePop pops from an at-least-once queue with rdb.LeasePop: each item is leased in the same atomic
// step. countArg is nil for a pop without COUNT. With ack: next-pop the same script first acks this
// connection's previous pop from the queue. A COUNT above rdb.Chunk (or more next-pop acks than
// that) goes to leasePopChunks.
func leasePop(c Conn, name string, key string, countArg []byte, p *policy.Policy) {
	s := c.Session()
	count, n := "", int64(1)
	if countArg != nil {
		var err error
		n, err = strconv.ParseInt(string(countArg), 10, 64)
		if err != nil || n < 0 {
			c.Reply().Error("ERR value is out of range, must be positive")
			return
		}
		count = strconv.FormatInt(n, 10)
	}
	// Registered before anything of the queue is leased, so every reaper finds the lease.
	if err := c.Server().RegisterLeasedQueue(c.Context(), key); err != nil {
		c.Reply().Error(backendError(err))
		return
	}
	if n > rdb.Chunk || (p.AckNextPop && len(s.LastPop[key]) > rdb.Chunk) {
		leasePopChunks(c, name, key, countArg, n, p)
		return
	}
	var acks []string
	if p.AckNextPop {
		acks = slices.Clone(s.LastPop[key])
	}
	keys, args := leasePopArgs(s, name, key, count, p, acks)
	be := c.Server().Backend()
	cmd := rdb.LeasePop.Cmd(c.Context(), be, keys, args...)
	c.Queue(cmd, func(w *resp.Writer) {
		res, err := cmd.Slice()
		if rdb.IsNoScript(err) {
			res, err = rdb.LeasePop.Eval(c.Context(), be, keys, args...).Slice()
		}
		if err == nil && len(res) != 2 {
			err = errUnexpectedReply
		}
		if err != nil {
			w.Error(backendError(err))
			return
		}
		items, receipts, isNil := leasePopResult(c, key, p, acks, res)
		writeLeased(c, w, key, countArg == nil, items, receipts, isNil)
	})
}

// writeLeased writes the reply of a leasing LPOP or RPOP: a bulk string or nil without COUNT
// (single), else an array or a nil array.
func writeLeased(c Conn, w *resp.Writer, key string, single bool, items, receipts []string, isNil bool) {
	switch {
	case single && (isNil || len(items) != 1):
		w.Null()
	case single:
		w.BulkString(deliverLeased(c, key, items[0], receipts[0]))
	case isNil:
		w.NullArray()
	default:
		w.Array(len(items))
		for i, item := range items {
			w.BulkString(deliverLeased(c, key, item, receipts[i]))
		}
	}
}

// leasePopChunks is leasePop for a COUNT above rdb.Chunk, or after a pop of more than rdb.Chunk
// items with ack: next-pop: the previous pop's leases are acked rdb.Chunk at a time, then it runs
// one lease_pop call per rdb.Chunk items and concatenates their items, until count items or a call
// that returns fewer than it asked for. So a large COUNT is not one atomic step: other clients may
// pop between two calls (every item is still leased to one client). A failing call ends the pop: the
// items leased before it are delivered, or the error if there are none (the items of a call whose
// reply was lost come back when their leases end, as always).
func leasePopChunks(c Conn, name, key string, countArg []byte, count int64, p *policy.Policy) {
	s := c.Session()
	c.Reply() // run the batch's earlier backend commands first, in order
	acks, err := nextPopAcks(c, key, p)
	if err != nil {
		c.Reply().Error(backendError(err))
		return
	}
	var items, receipts []string
	isNil := true
	for left := count; ; {
		want := min(left, rdb.Chunk)
		countStr := strconv.FormatInt(want, 10)
		if countArg == nil {
			countStr = ""
		}
		keys, args := leasePopArgs(s, name, key, countStr, p, acks)
		res, err := rdb.LeasePop.Run(c.Context(), c.Server().Backend(), keys, args...).Slice()
		if err == nil && len(res) != 2 {
			err = errUnexpectedReply
		}
		if err != nil {
			if isNil {
				c.Reply().Error(backendError(err))
				return
			}
			break
		}
		got, gotReceipts, gotNil := leasePopResult(c, key, p, acks, res)
		acks = nil
		if gotNil {
			break
		}
		isNil = false
		items, receipts = append(items, got...), append(receipts, gotReceipts...)
		left -= want
		if countArg == nil || int64(len(got)) < want || left <= 0 {
			break
		}
	}
	writeLeased(c, c.Reply(), key, countArg == nil, items, receipts, isNil)
}

// leasePopArgs returns the keys and arguments of rdb.LeasePop for a pop by the session s that first
// acks acks (ack: next-pop; at most rdb.Chunk).
func leasePopArgs(s *Session, name, key, count string, p *policy.Policy, acks []string) (keys []string, args []interface{}) {
	args = make([]interface{}, 0, 5+len(acks))
	args = append(args, name, count, p.VisibilityTimeout.Milliseconds(), s.LeaseOwner, newReceiptPrefix())
	for _, r := range acks {
		args = append(args, r)
	}
	return rdb.LeasePopKeys(key), args
}

// nextPopAcks returns the receipts a pop from key acks in its lease_pop call (ack: next-pop): the
// session's previous pop's. Beyond rdb.Chunk of them, the oldest are acked here first, in chunks.
func nextPopAcks(c Conn, key string, p *policy.Policy) ([]string, error) {
	last := c.Session().LastPop[key]
	if !p.AckNextPop || len(last) == 0 {
		return nil, nil
	}
	if extra := len(last) - rdb.Chunk; extra > 0 {
		if err := ackOwned(c, key, slices.Clone(last[:extra])); err != nil {
			return nil, err
		}
	}
	return slices.Clone(c.Session().LastPop[key]), nil
}

// leasePopResult records the outcome of rdb.LeasePop in the session and returns the items and their
// receipts; isNil reports a nil reply (nothing to pop).
func leasePopResult(c Conn, key string, p *policy.Policy, acks []string, res []interface{}) (items, receipts []string, isNil bool) {
	s := c.Session()
	if len(acks) > 0 {
		s.DropLeases(key, acks)
	}
	if n, ok := res[0].(int64); ok && n > 0 {
		c.Server().Leases().Acked.Add(n)
	}
	if res[1] == nil {
		return nil, nil, true
	}
	flat, _ := res[1].([]interface{})
	receipts = make([]string, 0, len(flat)/2)
	items = make([]string, 0, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		r, _ := flat[i].(string)
		item, _ := flat[i+1].(string)
		receipts, items = append(receipts, r), append(items, item)
	}
	s.AddLeases(key, receipts, p.AckNextPop)
	c.Server().Leases().Leased.Add(int64(len(receipts)))
	return items, receipts, false
}

// blockLeasePop is BLPOP/BRPOP on at-least-once queues. It tries to lease from each key in order,
// skipping keys other clients are blocked on (an item there is theirs first: Redis's FIFO rule); if
// none has an item it waits in qgate's blocker, whose listener for such a key moves one item per waiter
// with BLMOVE from the ready list to the queue's handoff list (never out of Redis) and wakes the
// waiter, which then leases with lease_pop (handoff list first). If another client leased that item
// first, the waiter waits again. An item is in the ready list, the handoff list or leased at every
// instant, so no crash can lose it; items left in a handoff list are served first by the next pop
// and moved back to the ready list by the reaper.
func blockLeasePop(c Conn, left bool, keys []string, timeout time.Duration) {
	name := "rpop"
	if left {
		name = "lpop"
	}
	s := c.Session()
	c.Reply() // run the batch's earlier backend commands first, in order
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	woken := "" // the key the blocker woke us for: its handoff list holds an item for us
	for {
		for _, key := range keys {
			p := c.Server().Policies().Queue(key)
			if key != woken && c.Server().HasWaiters(key, left) {
				// Not our turn on this key, but this pop still acks the previous one (ack: next-pop).
				if err := ackPrevious(c, key, p); err != nil {
					c.Reply().Error(backendError(err))
					return
				}
				continue
			}
			if err := c.Server().RegisterLeasedQueue(c.Context(), key); err != nil {
				c.Reply().Error(backendError(err))
				return
			}
			acks, err := nextPopAcks(c, key, p)
			if err != nil {
				c.Reply().Error(backendError(err))
				return
			}
			k, args := leasePopArgs(s, name, key, "", p, acks)
			res, err := rdb.LeasePop.Run(c.Context(), c.Server().Backend(), k, args...).Slice()
			if err == nil && len(res) != 2 {
				err = errUnexpectedReply
			}
			if err != nil {
				c.Reply().Error(backendError(err))
				return
			}
			if items, receipts, isNil := leasePopResult(c, key, p, acks, res); !isNil && len(items) == 1 {
				w := c.Reply()
				w.Array(2)
				w.BulkString(key)
				w.BulkString(deliverLeased(c, key, items[0], receipts[0]))
				return
			}
		}
		wait := time.Duration(0)
		if !deadline.IsZero() {
			if wait = time.Until(deadline); wait <= 0 {
				c.Reply().NullArray()
				return
			}
		}
		key, ok, err := c.BlockWait(keys, left, wait)
		switch {
		case err != nil:
			c.Reply().Error(backendError(err))
			return
		case !ok:
			c.Reply().NullArray()
			return
		}
		// Try the key that has an item for us first.
		woken = key
		ordered := make([]string, 0, len(keys))
		ordered = append(ordered, key)
		for _, k := range keys {
			if k != key {
				ordered = append(ordered, k)
			}
		}
		keys = ordered
	}
}

// ackPrevious acks the session's previous pop from key when the rule acks on the next pop, for a
// pop that does not run lease_pop on key (which would ack them itself).
func ackPrevious(c Conn, key string, p *policy.Policy) error {
	if !p.AckNextPop || len(c.Session().LastPop[key]) == 0 {
		return nil
	}
	return ackOwned(c, key, slices.Clone(c.Session().LastPop[key]))
}

// ackOwned acks receipts of key that this connection holds, rdb.Chunk per script call.
func ackOwned(c Conn, key string, receipts []string) error {
	s := c.Session()
	keys := []string{rdb.InflightKey(key), rdb.LeasesKey(key)}
	for chunk := range slices.Chunk(receipts, rdb.Chunk) {
		argv := make([]interface{}, 0, 1+len(chunk))
		argv = append(argv, s.LeaseOwner)
		for _, r := range chunk {
			argv = append(argv, r)
		}
		n, err := rdb.Ack.Run(c.Context(), c.Server().Backend(), keys, argv...).Int64()
		if err != nil {
			return err
		}
		s.DropLeases(key, chunk)
		c.Server().Leases().Acked.Add(n)
	}
	return nil
}

func qack(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	receipts := make([]string, len(args)-2)
	for i, a := range args[2:] {
		receipts[i] = string(a)
	}
	keys := []string{rdb.InflightKey(queue), rdb.LeasesKey(queue)}
	be := c.Server().Backend()
	argv := func(chunk []string) []interface{} {
		out := make([]interface{}, 1, 1+len(chunk))
		out[0] = "" // any owner: the receipt is proof enough
		for _, r := range chunk {
			out = append(out, r)
		}
		return out
	}
	if len(receipts) > rdb.Chunk {
		c.Reply() // run the batch's earlier backend commands first, in order
		total := int64(0)
		for chunk := range slices.Chunk(receipts, rdb.Chunk) {
			n, err := rdb.Ack.Run(c.Context(), be, keys, argv(chunk)...).Int64()
			if err != nil {
				c.Reply().Error(backendError(err))
				return
			}
			c.Session().DropLeases(queue, chunk)
			c.Server().Leases().Acked.Add(n)
			total += n
		}
		c.Reply().Int(total)
		return
	}
	a := argv(receipts)
	cmd := rdb.Ack.Cmd(c.Context(), be, keys, a...)
	c.Queue(cmd, func(w *resp.Writer) {
		n, err := cmd.Int64()
		if rdb.IsNoScript(err) {
			n, err = rdb.Ack.Eval(c.Context(), be, keys, a...).Int64()
		}
		if err != nil {
			w.Error(backendError(err))
			return
		}
		c.Session().DropLeases(queue, receipts)
		c.Server().Leases().Acked.Add(n)
		w.Int(n)
	})
}

func qnack(c Conn, args [][]byte) {
	if len(args) > 4 {
		c.Reply().Error(WrongArgs("qnack"))
		return
	}
	queue := string(args[1])
	p, ok := queuePolicy(c, queue)
	if !ok {
		return
	}
	delay := int64(-1)
	if len(args) == 4 {
		d, err := strconv.ParseInt(string(args[3]), 10, 64)
		if err != nil || d < 0 {
			c.Reply().Error("ERR QNACK delay-ms must be an integer >= 0")
			return
		}
		delay = d
	}
	receipt := string(args[2])
	keys := rdb.RetryKeys(queue)
	argv := append(RetryArgs(p, "nack", ""), delay, receipt)
	be := c.Server().Backend()
	cmd := rdb.Nack.Cmd(c.Context(), be, keys, argv...)
	c.Queue(cmd, func(w *resp.Writer) {
		res, err := cmd.Int64Slice()
		if rdb.IsNoScript(err) {
			res, err = rdb.Nack.Eval(c.Context(), be, keys, argv...).Int64Slice()
		}
		if err == nil && len(res) != 1 {
			err = errUnexpectedReply
		}
		if err != nil {
			w.Error(backendError(err))
			return
		}
		c.Session().DropLeases(queue, []string{receipt})
		if CountRetries(c.Server().Leases(), res) {
			c.Server().KickReaper()
		}
		if res[0] != 0 {
			w.Int(1)
		} else {
			w.Int(0)
		}
	})
}

func qextend(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	ms, err := strconv.ParseInt(string(args[3]), 10, 64)
	if err != nil || ms <= 0 {
		c.Reply().Error("ERR QEXTEND ms must be a positive integer")
		return
	}
	keys := []string{rdb.InflightKey(queue), rdb.LeasesKey(queue)}
	argv := []interface{}{string(args[2]), ms}
	be := c.Server().Backend()
	cmd := rdb.Extend.Cmd(c.Context(), be, keys, argv...)
	c.Queue(cmd, func(w *resp.Writer) {
		n, err := cmd.Int64()
		if rdb.IsNoScript(err) {
			n, err = rdb.Extend.Eval(c.Context(), be, keys, argv...).Int64()
		}
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Int(n)
	})
}

// optCount parses an optional positive count argument (args[i]); def when absent.
func optCount(c Conn, name string, args [][]byte, i int, def int64) (int64, bool) {
	if len(args) > i+1 {
		c.Reply().Error(WrongArgs(name))
		return 0, false
	}
	if len(args) <= i {
		return def, true
	}
	n, err := strconv.ParseInt(string(args[i]), 10, 64)
	if err != nil || n <= 0 {
		c.Reply().Error("ERR " + strings.ToUpper(name) + " count must be a positive integer")
		return 0, false
	}
	return n, true
}

func qstats(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	ctx := c.Context()
	cmds := []redis.Cmder{
		redis.NewIntCmd(ctx, "llen", queue),
		redis.NewIntCmd(ctx, "zcard", rdb.InflightKey(queue)),
		redis.NewIntCmd(ctx, "zcard", rdb.DelayedKey(queue)),
		redis.NewIntCmd(ctx, "llen", rdb.DeadKey(queue)),
		redis.NewIntCmd(ctx, "llen", rdb.HandoffKey(queue)),
	}
	head := redis.NewStringCmd(ctx, "lindex", queue, 0)
	tail := redis.NewStringCmd(ctx, "lindex", queue, -1)
	for _, cmd := range cmds {
		c.Queue(cmd, func(*resp.Writer) {})
	}
	c.Queue(head, func(*resp.Writer) {})
	c.Queue(tail, func(w *resp.Writer) {
		names := []string{"ready", "in_flight", "delayed", "dead", "handoff"}
		vals := make([]int64, len(cmds))
		for i, cmd := range cmds {
			v, err := cmd.(*redis.IntCmd).Result()
			if err != nil {
				w.Error(backendError(err))
				return
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
		w.Map(len(names) + 1)
		for i, n := range names {
			w.BulkString(n)
			w.Int(vals[i])
		}
		w.BulkString("oldest_ready_age_ms")
		w.Int(age)
	})
}

func qdead(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	n, ok := optCount(c, "qdead", args, 2, 10)
	if !ok {
		return
	}
	cmd := redis.NewStringSliceCmd(c.Context(), "lrange", rdb.DeadKey(queue), 0, n-1)
	c.Queue(cmd, func(w *resp.Writer) {
		vals, err := cmd.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Array(len(vals))
		for _, v := range vals {
			w.BulkString(v)
		}
	})
}

func qredrive(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	n, ok := optCount(c, "qredrive", args, 2, math.MaxInt64)
	if !ok {
		return
	}
	keys := []string{queue, rdb.DeadKey(queue)}
	be := c.Server().Backend()
	if n > rdb.Chunk {
		// rdb.Chunk items per call, until n or a call that finds the dead list empty.
		c.Reply() // run the batch's earlier backend commands first, in order
		total := int64(0)
		for total < n {
			want := min(n-total, rdb.Chunk)
			moved, err := rdb.Redrive.Run(c.Context(), be, keys, want).Int64()
			if err != nil {
				c.Reply().Error(backendError(err))
				return
			}
			c.Server().Leases().Redriven.Add(moved)
			total += moved
			if moved < want {
				break
			}
		}
		c.Reply().Int(total)
		return
	}
	cmd := rdb.Redrive.Cmd(c.Context(), be, keys, n)
	c.Queue(cmd, func(w *resp.Writer) {
		moved, err := cmd.Int64()
		if rdb.IsNoScript(err) {
			moved, err = rdb.Redrive.Eval(c.Context(), be, keys, n).Int64()
		}
		if err != nil {
			w.Error(backendError(err))
			return
		}
		c.Server().Leases().Redriven.Add(moved)
		w.Int(moved)
	})
}
