package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/qgate/qgate/proxy/rdb"
)

// The reaper (README "Retry rules", proxy/DESIGN.md "Instances and recovery"): every instance walks
// every registered queue, moves due delayed items, retries expired leases, returns handed-off items,
// sweeps its own transit records of pops with unknown outcome and recovers dead instances' records.
// The leases themselves are in lease.go.

// reapBatch bounds the leases, delayed or handed-off items one script call handles (at most
// rdb.Chunk), so a reaper step never blocks Redis for long; a queue with more is handled over
// several calls of the same pass.
const reapBatch = 500

// leasedQueueTTL is how long an idle queue stays in rdb.LeasedQueuesKey after an instance last
// noted leasing from it; instances that go on leasing note it again every leasedQueueTTL/4. A queue
// is dropped only when nothing of it is in flight, delayed or handed off, and only if no instance
// noted it within the TTL, so a lease taken while a reaper drops the queue is always covered by a
// newer note (instances' clocks must agree within leasedQueueTTL/2).
const leasedQueueTTL = time.Hour

// leasedQueueCache bounds the queues one process remembers having noted (older ones are noted again).
const leasedQueueCache = 4096

// registerQueue adds queue to rdb.LeasedQueuesKey before its first pop from this process, and again
// every leasedQueueTTL/4, so every instance's reaper finds its leases and transit records.
func (e *Engine) registerQueue(ctx context.Context, queue string) error {
	now := time.Now()
	if t, ok := e.leasedQueues.Get(queue); ok && now.Sub(t) < e.leasedTTL/4 {
		return nil
	}
	// A script, not a plain ZADD: it is allowed when Redis is at maxmemory (see register_queue.lua).
	err := rdb.RegisterQueue.Run(ctx, e.client, []string{rdb.LeasedQueuesKey}, now.UnixMilli(), queue).Err()
	if err != nil {
		return fmt.Errorf("register leased queue: %w", err)
	}
	e.leasedQueues.Add(queue, now)
	return nil
}

// KickReaper makes the reaper run a pass now and then sleep until the earliest delayed item or lease
// deadline it found, so sub-second delays are kept.
func (e *Engine) KickReaper() {
	select {
	case e.reaperKick <- struct{}{}:
	default:
	}
}

// reaperInterval is how long the reaper sleeps when it knows of nothing due sooner: min(1s, the
// shortest visibility timeout / 4), at least 10ms. Leases and delayed items of this process's reaper
// passes are tracked precisely; the interval bounds how late another instance's are noticed.
func (e *Engine) reaperInterval() time.Duration {
	return min(time.Second, max(e.policies().MinVisibility()/4, 10*time.Millisecond))
}

// minReaperSleep keeps a queue whose items are due at once from spinning the reaper.
const minReaperSleep = 2 * time.Millisecond

func (e *Engine) startReaper() {
	e.reaperStop, e.reaperDone = make(chan struct{}), make(chan struct{})
	e.reaperKick = make(chan struct{}, 1)
	go func() {
		defer close(e.reaperDone)
		t := time.NewTimer(e.reaperInterval())
		defer t.Stop()
		for {
			select {
			case <-e.reaperStop:
				return
			case <-t.C:
			case <-e.reaperKick:
				if !t.Stop() {
					<-t.C
				}
			}
			next, err := e.reap(e.ctx)
			if err != nil {
				e.log.Warn("lease reaper", "err", err)
			}
			t.Reset(min(e.reaperInterval(), max(next, minReaperSleep)))
		}
	}()
}

func (e *Engine) stopReaper() {
	if e.reaperStop == nil {
		return
	}
	close(e.reaperStop)
	<-e.reaperDone
}

// Reap runs one reaper pass over every queue in rdb.LeasedQueuesKey (all instances'): delayed items
// whose time came move to their ready list, expired leases are retried (backoff, or the dead list past
// max_attempts), items left in handoff lists go back. It returns how many items it moved. Several
// instances may reap at once: every step is one atomic script. Scripts are not retried on errors; the
// next pass does the work.
func (e *Engine) Reap(ctx context.Context) (int, error) {
	before := e.reaped.Load()
	_, err := e.reap(ctx)
	return int(e.reaped.Load() - before), err
}

// reap is Reap; it returns how long until the earliest lease deadline or delayed item it saw is due
// (a large value when none).
func (e *Engine) reap(ctx context.Context) (time.Duration, error) {
	queues, err := e.client.ZRangeWithScores(ctx, rdb.LeasedQueuesKey, 0, -1).Result()
	if err != nil {
		return time.Hour, err
	}
	next := time.Hour
	cutoff := time.Now().Add(-e.leasedTTL).UnixMilli()
	var firstErr error
	if err := e.transit.sweep(ctx, false); err != nil {
		e.log.Warn("sweep transit records of pops with unknown outcome", "err", err)
	}
	for _, z := range queues {
		q, _ := z.Member.(string)
		due, idle, err := e.reapQueue(ctx, q)
		next = min(next, due)
		if owned, rerr := e.transit.recoverQueue(ctx, q); rerr != nil || owned {
			idle = false
			if err == nil {
				err = rerr
			}
		}
		if err == nil && idle && int64(z.Score) < cutoff {
			var n int64
			n, err = rdb.ForgetQueue.Run(ctx, e.client, []string{rdb.LeasedQueuesKey}, q, cutoff).Int64()
			if n == 1 {
				e.log.Debug("reaper: dropped an idle queue from the leased queues", "queue", q)
			}
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return next, firstErr
}

// reapQueue runs the reaper's steps on one queue. It returns how long until its next lease deadline or
// delayed item, and whether it was idle (nothing in flight, delayed or handed off).
func (e *Engine) reapQueue(ctx context.Context, queue string) (next time.Duration, idle bool, err error) {
	p := e.policies().Queue(queue)
	next = time.Hour
	for i := 0; i < 20; i++ { // bounded: a pass never spins on one queue
		res, err := rdb.RequeueExpired.Run(ctx, e.client, rdb.RetryKeys(queue),
			append(retryArgs(p, "lease expired", ""), reapBatch)...).Int64Slice()
		if err == nil && len(res) != 4 {
			err = errors.New("unexpected requeue_expired reply")
		}
		if err != nil {
			return next, false, err
		}
		e.leases.Retried.Add(res[1])
		e.leases.Dead.Add(res[2])
		e.countReaped(queue, res[1], res[2])
		if res[1]+res[2] > 0 {
			e.events.Log(slog.LevelInfo, "leases expired", "queue", queue, "items", res[1]+res[2], "retried", res[1],
				"dead_lettered", res[2], "max_attempts", p.MaxAttempts)
		}
		if res[2] > 0 {
			e.events.Log(slog.LevelWarn, "items dead-lettered", "queue", queue, "items", res[2],
				"max_attempts", p.MaxAttempts, "cause", "lease expired")
		}
		pd, err := rdb.PromoteDelayed.Run(ctx, e.client, []string{rdb.DelayedKey(queue), queue}, reapBatch).Int64Slice()
		if err == nil && len(pd) != 2 {
			err = errors.New("unexpected promote_delayed reply")
		}
		if err != nil {
			return next, false, err
		}
		// Items left in a handoff list by a qgate version before the wait hub (its blocked-pop
		// listeners moved items there with BLMOVE) go back to the head of the ready list. Nothing
		// writes handoff lists any more; this drains old ones (one cheap script call per queue).
		n3, err := rdb.HandoffBack.Run(ctx, e.client, rdb.HandoffBackKeys(queue), reapBatch).Int64()
		if err != nil {
			return next, false, err
		}
		e.reaped.Add(res[0] + pd[0] + n3)
		if res[0]+pd[0]+n3 > 0 {
			e.wake(queue) // items moved to the ready list (or at least maybe: wakes are cheap)
		}
		if res[0] < reapBatch && pd[0] < reapBatch && n3 < reapBatch {
			next, idle = time.Hour, res[3] < 0 && pd[1] < 0 && n3 == 0
			for _, ms := range []int64{res[3], pd[1]} {
				if ms >= 0 {
					next = min(next, time.Duration(ms)*time.Millisecond)
				}
			}
			return next, idle, nil
		}
	}
	return 0, false, nil // more to do: the next pass comes at once
}
