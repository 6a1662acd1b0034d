package proxy

import (
	"context"
	"errors"
	"sort"

	"github.com/redis/go-redis/v9"
	"time"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/rdb"
)

// Leases of at-least-once queues: the per-connection requeue on close and the reaper. The pops, QACK,
// QNACK and QEXTEND are in commands/lease_commands.go; the scripts in rdb/scripts.

// reapBatch bounds the leases or delayed items one script call handles, so a reaper step never blocks
// Redis for long; a queue with more is handled over several calls of the same pass.
const reapBatch = 500

// NoteLeasedQueue implements commands.Server.
func (s *Server) NoteLeasedQueue(queue string) bool {
	_, loaded := s.leasedQueues.LoadOrStore(queue, struct{}{})
	return !loaded
}

// Leases implements commands.Server.
func (s *Server) Leases() *commands.LeaseCounters { return &s.leases }

// ForgetLeasedQueue implements commands.Server.
func (s *Server) ForgetLeasedQueue(queue string) { s.leasedQueues.Delete(queue) }

// requeueLeases gives back, at once, every lease a closing connection still holds (RabbitMQ-style):
// each counts as a failed attempt with reason "consumer disconnected". The script only touches leases
// this connection owns, so a lease that expired and went to another consumer is left alone, and a
// repeat after an unclear failure does nothing: that is why this one is retried.
func (s *Server) requeueLeases(sess *commands.Session) {
	for queue, held := range sess.Held {
		if len(held) == 0 {
			continue
		}
		p := s.Policies().Queue(queue)
		args := append(commands.RetryArgs(p, "consumer disconnected", sess.LeaseOwner), 0)
		ids := make([]string, 0, len(held))
		for id := range held {
			ids = append(ids, id)
		}
		sort.Strings(ids) // envelope ids are ULIDs: oldest first, so the requeued items keep their order
		for _, id := range ids {
			args = append(args, id)
		}
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			var codes []int64
			codes, err = rdb.Nack.Run(s.bgctx, s.backend.Client, rdb.RetryKeys(queue), args...).Int64Slice()
			if err == nil {
				commands.CountRetries(&s.leases, codes)
			}
			if err == nil || isRedisError(err) {
				break
			}
			time.Sleep(time.Duration(50<<attempt) * time.Millisecond)
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

// reaperInterval is min(1s, the shortest visibility timeout / 4), at least 10ms.
func (s *Server) reaperInterval() time.Duration {
	return min(time.Second, max(s.Policies().MinVisibility()/4, 10*time.Millisecond))
}

func (s *Server) startReaper() {
	s.reaperStop, s.reaperDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.reaperDone)
		t := time.NewTimer(s.reaperInterval())
		defer t.Stop()
		for {
			select {
			case <-s.reaperStop:
				return
			case <-t.C:
			}
			if _, err := s.Reap(s.bgctx); err != nil {
				s.log.Warn("lease reaper", "err", err)
			}
			t.Reset(s.reaperInterval())
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

// Reap runs one reaper pass over every queue that ever leased (on any instance, from
// rdb.LeasedQueuesKey, plus this process's own): delayed items whose time came move to their ready
// list, expired leases are retried (backoff, or the dead list past max_attempts). It returns how many
// items it moved. Several instances may reap at once: every step is one atomic script. Scripts are not
// retried on errors; the next pass does the work.
func (s *Server) Reap(ctx context.Context) (int, error) {
	queues := map[string]struct{}{}
	s.leasedQueues.Range(func(k, _ any) bool {
		queues[k.(string)] = struct{}{}
		return true
	})
	names, err := s.backend.Client.SMembers(ctx, rdb.LeasedQueuesKey).Result()
	if err != nil {
		return 0, err
	}
	for _, n := range names {
		queues[n] = struct{}{}
	}
	moved := 0
	var firstErr error
	for q := range queues {
		n, err := s.reapQueue(ctx, q)
		moved += n
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return moved, firstErr
}

func (s *Server) reapQueue(ctx context.Context, queue string) (int, error) {
	p := s.Policies().Queue(queue)
	moved := 0
	for i := 0; i < 20; i++ { // bounded: a pass never spins on one queue
		res, err := rdb.RequeueExpired.Run(ctx, s.backend.Client, rdb.RetryKeys(queue),
			append(commands.RetryArgs(p, "lease expired", ""), reapBatch)...).Int64Slice()
		if err == nil && len(res) != 3 {
			err = errors.New("unexpected requeue_expired reply")
		}
		if err != nil {
			return moved, err
		}
		n1 := int(res[0])
		s.leases.Retried.Add(res[1])
		s.leases.Dead.Add(res[2])
		n2, err := rdb.PromoteDelayed.Run(ctx, s.backend.Client, []string{rdb.DelayedKey(queue), queue}, reapBatch).Int()
		if err != nil {
			return moved, err
		}
		// Items left in the handoff list (a listener's waiter left, or qgate died between BLMOVE and
		// the lease) go back to the head of the ready list. A waiter about to lease one finds it there.
		n3 := 0
		for ; n3 < reapBatch; n3++ {
			err := s.backend.Client.LMove(ctx, rdb.HandoffKey(queue), queue, "RIGHT", "LEFT").Err()
			if err == redis.Nil {
				break
			}
			if err != nil {
				return moved, err
			}
		}
		moved += n1 + n2 + n3
		if n1 < reapBatch && n2 < reapBatch && n3 < reapBatch {
			break
		}
	}
	return moved, nil
}
