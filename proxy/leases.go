package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// Leases of at-least-once queues: the per-connection requeue on close and the reaper. The pops, QACK,
// QNACK and QEXTEND are in commands/lease_commands.go; the scripts in rdb/scripts.

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

// RegisterLeasedQueue implements commands.Server: it adds queue to rdb.LeasedQueuesKey before its
// first lease from this process, and again every leasedQueueTTL/4, so every instance's reaper finds it.
func (s *Server) RegisterLeasedQueue(ctx context.Context, queue string) error {
	now := time.Now()
	if t, ok := s.leasedQueues.Get(queue); ok && now.Sub(t) < s.leasedTTL/4 {
		return nil
	}
	// A script, not a plain ZADD: it is allowed when Redis is at maxmemory (see register_queue.lua).
	err := rdb.RegisterQueue.Run(ctx, s.backend.Client, []string{rdb.LeasedQueuesKey}, now.UnixMilli(), queue).Err()
	if err != nil {
		return fmt.Errorf("register leased queue: %w", err)
	}
	s.leasedQueues.Add(queue, now)
	return nil
}

// Leases implements commands.Server.
func (s *Server) Leases() *commands.LeaseCounters { return &s.leases }

// KickReaper implements commands.Server: the reaper runs a pass now and then sleeps until the
// earliest delayed item or lease deadline it found, so sub-second delays are kept.
func (s *Server) KickReaper() {
	select {
	case s.reaperKick <- struct{}{}:
	default:
	}
}

// requeueLeases gives back, at once, every lease a closing connection still holds (RabbitMQ-style):
// each counts as a failed attempt with reason "consumer disconnected". The script only touches leases
// this connection owns, and a lease that expired and went to another consumer has a new receipt, so
// both are left alone; a repeat after an unclear failure does nothing: that is why this one is
// retried. The receipts go in the order their items were leased (so the requeued items keep their
// order), rdb.Chunk per script call.
func (s *Server) requeueLeases(sess *commands.Session) {
	for queue, held := range sess.Held {
		if len(held) == 0 {
			continue
		}
		p := s.Policies().Queue(queue)
		receipts := make([]string, 0, len(held))
		for r := range held {
			receipts = append(receipts, r)
		}
		commands.SortReceipts(receipts)
		var err error
		for chunk := range slices.Chunk(receipts, rdb.Chunk) {
			if err = s.requeueChunk(queue, p, sess.LeaseOwner, chunk); err != nil {
				break
			}
		}
		if err != nil {
			// Nothing is lost: the reaper requeues them when their visibility timeout ends.
			s.log.Warn("could not requeue a closed connection's leases; the reaper will", "queue", queue, "leases", len(held), "err", err)
			continue
		}
		s.log.Debug("requeued leases of a closed connection", "queue", queue, "leases", len(held))
	}
	sess.Held, sess.LastPop = nil, nil
}

// requeueChunk runs rdb.Nack for up to rdb.Chunk receipts of a closing connection, retrying errors
// that are not Redis's own replies.
func (s *Server) requeueChunk(queue string, p *policy.Policy, owner string, receipts []string) error {
	args := append(commands.RetryArgs(p, "consumer disconnected", owner), 0)
	for _, r := range receipts {
		args = append(args, r)
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var codes []int64
		codes, err = rdb.Nack.Run(s.bgctx, s.backend.Client, rdb.RetryKeys(queue), args...).Int64Slice()
		if err == nil && commands.CountRetries(&s.leases, codes) {
			s.KickReaper()
		}
		if err == nil || isRedisError(err) {
			return err
		}
		time.Sleep(time.Duration(50<<attempt) * time.Millisecond)
	}
	return err
}

// reaperInterval is how long the reaper sleeps when it knows of nothing due sooner: min(1s, the
// shortest visibility timeout / 4), at least 10ms. Leases and delayed items of this process's reaper
// passes are tracked precisely; the interval bounds how late another instance's are noticed.
func (s *Server) reaperInterval() time.Duration {
	return min(time.Second, max(s.Policies().MinVisibility()/4, 10*time.Millisecond))
}

// minReaperSleep keeps a queue whose items are due at once from spinning the reaper.
const minReaperSleep = 2 * time.Millisecond

func (s *Server) startReaper() {
	s.reaperStop, s.reaperDone = make(chan struct{}), make(chan struct{})
	s.reaperKick = make(chan struct{}, 1)
	go func() {
		defer close(s.reaperDone)
		t := time.NewTimer(s.reaperInterval())
		defer t.Stop()
		for {
			select {
			case <-s.reaperStop:
				return
			case <-t.C:
			case <-s.reaperKick:
				if !t.Stop() {
					<-t.C
				}
			}
			next, err := s.reap(s.bgctx)
			if err != nil {
				s.log.Warn("lease reaper", "err", err)
			}
			t.Reset(min(s.reaperInterval(), max(next, minReaperSleep)))
		}
	}()
}

func (s *Server) stopReaper() {
	if s.reaperStop == nil {
		return
	}
	close(s.reaperStop)
	<-s.reaperDone
}

// Reap runs one reaper pass over every queue in rdb.LeasedQueuesKey (all instances'): delayed items
// whose time came move to their ready list, expired leases are retried (backoff, or the dead list past
// max_attempts), items left in handoff lists go back. It returns how many items it moved. Several
// instances may reap at once: every step is one atomic script. Scripts are not retried on errors; the
// next pass does the work.
func (s *Server) Reap(ctx context.Context) (int, error) {
	before := s.reaped.Load()
	_, err := s.reap(ctx)
	return int(s.reaped.Load() - before), err
}

// reap is Reap; it returns how long until the earliest lease deadline or delayed item it saw is due
// (a large value when none).
func (s *Server) reap(ctx context.Context) (time.Duration, error) {
	queues, err := s.backend.Client.ZRangeWithScores(ctx, rdb.LeasedQueuesKey, 0, -1).Result()
	if err != nil {
		return time.Hour, err
	}
	next := time.Hour
	cutoff := time.Now().Add(-s.leasedTTL).UnixMilli()
	var firstErr error
	if err := s.transit.sweep(ctx, false); err != nil {
		s.log.Warn("sweep transit records of pops with unknown outcome", "err", err)
	}
	for _, z := range queues {
		q, _ := z.Member.(string)
		due, idle, err := s.reapQueue(ctx, q)
		next = min(next, due)
		if owned, rerr := s.transit.recoverQueue(ctx, q); rerr != nil || owned {
			idle = false
			if err == nil {
				err = rerr
			}
		}
		if err == nil && idle && int64(z.Score) < cutoff {
			var n int64
			n, err = rdb.ForgetQueue.Run(ctx, s.backend.Client, []string{rdb.LeasedQueuesKey}, q, cutoff).Int64()
			if n == 1 {
				s.log.Debug("reaper: dropped an idle queue from the leased queues", "queue", q)
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
func (s *Server) reapQueue(ctx context.Context, queue string) (next time.Duration, idle bool, err error) {
	p := s.Policies().Queue(queue)
	next = time.Hour
	for i := 0; i < 20; i++ { // bounded: a pass never spins on one queue
		res, err := rdb.RequeueExpired.Run(ctx, s.backend.Client, rdb.RetryKeys(queue),
			append(commands.RetryArgs(p, "lease expired", ""), reapBatch)...).Int64Slice()
		if err == nil && len(res) != 4 {
			err = errors.New("unexpected requeue_expired reply")
		}
		if err != nil {
			return next, false, err
		}
		s.leases.Retried.Add(res[1])
		s.leases.Dead.Add(res[2])
		pd, err := rdb.PromoteDelayed.Run(ctx, s.backend.Client, []string{rdb.DelayedKey(queue), queue}, reapBatch).Int64Slice()
		if err == nil && len(pd) != 2 {
			err = errors.New("unexpected promote_delayed reply")
		}
		if err != nil {
			return next, false, err
		}
		// Items left in the handoff list (a listener's waiter left, or qgate died between BLMOVE and
		// the lease) go back to the head of the ready list. A waiter about to lease one finds it there.
		n3, err := rdb.HandoffBack.Run(ctx, s.backend.Client, rdb.HandoffBackKeys(queue), reapBatch).Int64()
		if err != nil {
			return next, false, err
		}
		s.reaped.Add(res[0] + pd[0] + n3)
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
