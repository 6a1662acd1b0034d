package queue

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/queue/wait"
	"github.com/qgate/qgate/proxy/rdb"
)

// Blocked pops (proxy/DESIGN.md, "Blocked pops") wait in the engine's wait.Hub: nothing is popped
// while a client waits. The Hub learns that a key may have items (keyspace notifications, Wake after
// the engine's own pushes and requeues, polls) and then calls the waiters' takes in FIFO order. A take
// is the same recoverable pop a non-blocking pop makes: transit_pop for at-most-once queues (the item
// is in the transit record until the reply is written: Settle), lease_pop for at-least-once queues
// (the item is leased). An item taken for a client that left at that instant is given back
// (transit_return, lease_return) to the end it came from. No backend connection is held per queue or
// per client: takes use the ordinary pool, the Hub one pub/sub connection per master.

// WaitStats are the Hub's counters (INFO).
type WaitStats = wait.Stats

// Waiter is one blocked client's wait.
type Waiter struct{ w *wait.Waiter }

// Done reports whether the wait ended (served, failed, stopped).
func (w *Waiter) Done() bool {
	select {
	case <-w.w.Done():
		return true
	default:
		return false
	}
}

// Ready is closed once the wait ended.
func (w *Waiter) Ready() <-chan struct{} { return w.w.Done() }

// Parker is a blocked client's side of a wait: its connection watches the socket meanwhile, so a
// disconnect is noticed at once and no goroutine or timer is needed per blocked client.
type Parker interface {
	// Park returns true once w is Done, false when the deadline (zero: none) passed, the client left
	// or the server is shutting down (then Gone reports true for the last two).
	Park(w *Waiter, deadline time.Time) bool
	// Wake interrupts Park from another goroutine; called once the wait it parks for is done. It must
	// not block (it is called with the Hub's lock held).
	Wake()
	// Gone reports whether the client left, or is disconnected without a reply at shutdown: what was
	// popped for it goes back.
	Gone() bool
}

// waitConfig turns Options into the Hub's configuration.
func waitConfig(o Options) wait.Config {
	return wait.Config{
		Client:               o.Client,
		PollInterval:         o.Blocking.PollInterval,
		SafetyInterval:       o.Blocking.SafetyInterval,
		AssumeKeyspaceEvents: o.Blocking.KeyspaceEvents == KeyspaceAssume,
		PollOnly:             o.Blocking.KeyspaceEvents == KeyspaceOff,
		Logger:               o.Log,
	}
}

// Keyspace-notification modes of BlockingOptions.KeyspaceEvents.
const (
	KeyspaceAuto   = "auto"   // read notify-keyspace-events and add the missing flags (Kgl); poll where refused
	KeyspaceAssume = "assume" // CONFIG is disabled but the flags are set (managed Redis): subscribe, trust them
	KeyspaceOff    = "off"    // no notifications: poll every PollInterval (and Wake after qgate's own pushes)
)

// BlockingOptions configure the blocked pops' wait.Hub (zero values: the Hub's defaults).
type BlockingOptions struct {
	PollInterval   time.Duration // poll of waited keys where notifications are off (100 ms)
	SafetyInterval time.Duration // re-check of every waited key in keyspace mode (5 s)
	KeyspaceEvents string        // KeyspaceAuto (""), KeyspaceAssume or KeyspaceOff
}

// wake tells the Hub that queue may have items now (after a push, requeue, redrive or give-back the
// engine made); cheap and in-process, a no-op when nobody waits on queue.
func (e *Engine) wake(queue string) {
	if e.waits != nil {
		e.waits.Wake(queue)
	}
}

// tryPop pops from the first non-empty key without blocking (into the transit record). Keys that
// already have waiters count as empty: an item arriving there belongs to the clients blocked first
// (Redis's FIFO rule, one FIFO per key for both ends).
func (e *Engine) tryPop(keys []string, left bool, count string) (*Pop, error) {
	for _, key := range keys {
		if e.waits.HasWaiters(key) {
			continue
		}
		p, err := e.transit.popN(e.ctx, key, left, count)
		if err != nil || p != nil {
			return p, err
		}
	}
	return nil, nil
}

// BlockPop is BLPOP/BRPOP on at-most-once queues: a pop through the transit record from the first
// non-empty key (keys other clients wait on count as empty: Redis's FIFO rule), else the client waits
// until the Hub takes an item for it, with the same transit pop. nil when the wait ended without an
// item (timeout, client gone, shutdown). Pass a non-nil Pop to Settle with its reply.
func (e *Engine) BlockPop(keys []string, left bool, timeout time.Duration, p Parker) (*Pop, error) {
	return e.blockPop(keys, left, "", timeout, p)
}

// blockPop is BlockPop of up to count items ("": one, without COUNT; BLMPOP passes its COUNT).
func (e *Engine) blockPop(keys []string, left bool, count string, timeout time.Duration, p Parker) (*Pop, error) {
	deadline := deadlineOf(timeout)
	if got, err := e.tryPop(keys, left, count); err != nil || got != nil {
		return got, err
	}
	req := wait.Request{
		Keys: keys,
		Take: func(_ context.Context, key string) (any, bool, error) {
			return e.take(key, left, count)
		},
		GiveBack: func(_ string, res any) { e.Settle([]*Pop{res.(*Pop)}, false) },
		Notify:   p.Wake,
	}
	defer e.fifoWait(&req)()
	res, err := e.park(req, deadline, p)
	if err != nil || res == nil {
		return nil, err
	}
	got := res.(*Pop)
	if p.Gone() {
		e.Settle([]*Pop{got}, false)
		return nil, nil
	}
	return got, nil
}

// take is a plain blocked pop's take: popN's transit pop, with an LLEN of key in the same round trip.
// A result taken from a key that LLEN then found empty is a wait.Last: the Hub ends the key's pass
// there instead of making a take for the next waiter that would find nothing (proxy/DESIGN.md "How
// the engine uses the Hub").
func (e *Engine) take(key string, left bool, count string) (any, bool, error) {
	p, err := e.transit.newPop(e.ctx, key, left, count)
	if err != nil {
		return nil, false, err
	}
	llen := redis.NewIntCmd(e.ctx, "llen", key)
	pipe := e.direct().Pipeline()
	_ = pipe.Process(e.ctx, p.cmd)
	_ = pipe.Process(e.ctx, llen)
	_, _ = pipe.Exec(e.ctx) // each command keeps its own error: p.result reads the pop's
	items, err := p.result()
	if err != nil || len(items) == 0 {
		return nil, false, err
	}
	got := &Pop{Key: key, Left: left, Items: items, parts: []*transitPop{p}}
	if n, err := llen.Result(); err == nil && n == 0 {
		return wait.Last{Value: got}, true, nil
	}
	return got, true, nil
}

// BlockLeasePop is BLPOP/BRPOP on at-least-once queues. It tries to lease from each key in order,
// skipping keys other clients are blocked on (an item there is theirs first: Redis's FIFO rule; with
// ack: next-pop the pop still acks c's previous pop from that key); if none has an item the client
// waits until the Hub leases one for it with the same lease_pop. An item is in the ready list or
// leased at every instant, so no crash can lose it; one leased for a client that left at that instant
// goes back to the end it came from (lease_return, no attempt counted). The result holds one item,
// or is nil when the wait ended without one.
func (e *Engine) BlockLeasePop(c *Consumer, keys []string, left bool, timeout time.Duration, p Parker) (*Pop, error) {
	return e.blockLeasePop(c, keys, left, "", timeout, p)
}

// blockLeasePop is BlockLeasePop of up to count items ("": one, without COUNT; BLMPOP passes its COUNT).
func (e *Engine) blockLeasePop(c *Consumer, keys []string, left bool, count string, timeout time.Duration, p Parker) (*Pop, error) {
	deadline := deadlineOf(timeout)
	for _, key := range keys {
		pol := e.Policy(key)
		if e.waits.HasWaiters(key) {
			// Not our turn on this key, but this pop still acks the previous one (ack: next-pop).
			if err := e.ackPrevious(c, key, pol); err != nil {
				return nil, err
			}
			continue
		}
		if err := e.registerQueue(e.ctx, key); err != nil {
			return nil, err
		}
		acks, err := e.nextPopAcks(c, key, pol)
		if err != nil {
			return nil, err
		}
		// Through the pipelined path, as non-blocking pops: many clients' first tries at once would
		// otherwise each hold a pooled connection, and the pool keeps only a few idle ones.
		k, args := leasePopArgs(c.LeaseOwner, key, left, count, pol, acks)
		res, err := rdb.LeasePop.Run(e.ctx, e.cmds(), k, args...).Slice()
		if err == nil && len(res) != 2 {
			err = errUnexpectedReply
		}
		if err != nil {
			return nil, err
		}
		if got := e.leasePopResult(c, key, left, pol, acks, res); got != nil && len(got.Items) > 0 {
			return got, nil
		}
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return nil, nil
	}
	// Every key's previous pop is acked now (by lease_pop or ackPrevious above), so the takes ack
	// nothing. They run on a Hub goroutine while this one is parked, and may still run after it
	// returned (client gone): they must not touch c, only the owner captured here.
	// A single-key wait for one item is registered in e.leaseWaits, so other waiters' takes may lease
	// for it too (leaseTake); what they leased and its take did not collect goes back when it ends.
	owner := c.LeaseOwner
	lw := &leaseWait{owner: owner, left: left}
	if len(keys) == 1 && count == "" && !e.Policy(keys[0]).GlobalFIFO { // each global_fifo waiter takes its turn
		lw.key = keys[0]
	}
	e.leaseWaits.add(lw)
	req := wait.Request{
		Keys: keys,
		Take: func(_ context.Context, key string) (any, bool, error) {
			got, err := e.leaseTake(lw, key, left, count)
			return got, got != nil, err
		},
		GiveBack: func(_ string, res any) { e.returnLeases(owner, res.(*Pop)) },
		Notify:   p.Wake,
	}
	leave := e.fifoWait(&req)
	res, err := e.park(req, deadline, p)
	leave()
	if stray := e.leaseWaits.remove(lw); stray != nil {
		e.returnLeases(owner, stray)
	}
	if err != nil || res == nil {
		return nil, err
	}
	got := res.(*Pop)
	if p.Gone() {
		e.returnLeases(owner, got)
		return nil, nil
	}
	pol := e.Policy(got.Key)
	c.AddLeases(got.Key, got.Receipts, pol.AckNextPop)
	return got, nil
}

// leaseN is a waiter's take on an at-least-once queue: lease_pop of up to count items ("": one,
// without COUNT) for owner (no acks).
// The lease is counted here; the caller records it in its Consumer.
func (e *Engine) leaseN(owner, key string, left bool, count string) (*Pop, error) {
	if err := e.registerQueue(e.ctx, key); err != nil {
		return nil, err
	}
	pol := e.Policy(key)
	k, args := leasePopArgs(owner, key, left, count, pol, nil)
	res, err := rdb.LeasePop.Run(e.ctx, e.direct(), k, args...).Slice()
	if err == nil && len(res) != 2 {
		err = errUnexpectedReply
	}
	if err != nil {
		return nil, err
	}
	got := parseLeasePop(key, left, res)
	if got == nil || len(got.Items) == 0 {
		return nil, nil
	}
	e.schedule(key, time.Now().Add(pol.VisibilityTimeout)) // the reaper looks when the lease ends
	e.leases.Leased.Add(int64(len(got.Receipts)))
	e.countPopped(key, len(got.Receipts))
	return got, nil
}

// returnLeases gives back the items leased for a waiter whose client left (lease_return: no attempt
// counted, to the end they came from). On failure the leases stay and the reaper requeues them when
// they expire (counting an attempt): nothing is lost.
func (e *Engine) returnLeases(owner string, p *Pop) {
	verb := "RPUSH"
	if p.Left {
		verb = "LPUSH"
	}
	args := make([]interface{}, 0, 2+len(p.Receipts))
	args = append(args, owner, verb)
	for i := len(p.Receipts) - 1; i >= 0; i-- {
		args = append(args, p.Receipts[i])
	}
	var b backoff
	for {
		n, err := rdb.LeaseReturn.Run(e.ctx, e.client, rdb.LeaseReturnKeys(p.Key), args...).Int64()
		if err == nil {
			e.leases.Leased.Add(-n)
			e.returned.Add(n)
			e.wake(p.Key)
			return
		}
		if isRedisError(err) || !b.wait(e.ctx.Done()) {
			e.log.Warn("give back an item leased for a client that left; it comes back when its lease expires",
				"queue", p.Key, "err", err)
			return
		}
	}
}

// park registers the wait in the Hub and parks the client until it ends. It returns the take's
// result (nil: timeout, client gone, shutdown) or the wait's error (a take's error reply, e.g.
// WRONGTYPE when a waited key holds another type). A result taken while the client left is given
// back by the Hub (GiveBack); the caller gives back one it got but cannot deliver (Parker.Gone).
func (e *Engine) park(req wait.Request, deadline time.Time, p Parker) (any, error) {
	hw, err := e.waits.Add(req)
	if errors.Is(err, wait.ErrClosed) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e.blocked.Add(1)
	defer e.blocked.Add(-1)
	w := &Waiter{w: hw}
	for !w.Done() {
		if !p.Park(w, deadline) {
			if p.Gone() {
				hw.Abandon() // what a take in flight gets goes back
				return nil, nil
			}
			// The timeout passed: a take in flight still decides (Redis would have served the client
			// at that instant).
			break
		}
	}
	res, ok, err := hw.Stop()
	switch {
	case errors.Is(err, wait.ErrClosed):
		return nil, nil
	case err != nil:
		return nil, err
	case !ok:
		return nil, nil
	}
	return res.Value, nil
}

func deadlineOf(timeout time.Duration) time.Time {
	if timeout > 0 {
		return time.Now().Add(timeout)
	}
	return time.Time{}
}

// stopWaits closes the Hub within the shutdown bound: waits still registered end (their clients are
// disconnected by then), its pub/sub connections close.
func (e *Engine) stopWaits(hard time.Time) {
	done := make(chan error, 1)
	go func() { done <- e.waits.Close() }()
	select {
	case err := <-done:
		if err != nil {
			e.log.Warn("blocked waits did not stop in time", "err", err)
		}
	case <-time.After(time.Until(hard)):
		e.log.Warn("blocked waits did not stop in time")
	}
}
