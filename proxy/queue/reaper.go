package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// The reaper (README "Retry rules", proxy/DESIGN.md "The reaper's schedule"): every instance reads
// the schedule's due queues, claims each one (one reaper per queue), moves its due delayed items,
// retries its expired leases, returns handed-off items, recovers dead instances' transit records
// there and sets when the queue is due next; it also sweeps its own transit records of pops with
// unknown outcome. Idle queues cost nothing until their recheck. The leases are in lease.go.

// reapBatch bounds the leases, delayed or handed-off items one script call handles (at most
// rdb.Chunk), so a reaper step never blocks Redis for long; a queue with more is handled over
// several calls of the same pass.
const reapBatch = 500

// leasedQueueTTL is how long an idle queue stays registered in its schedule shard
// (rdb.ScheduleRegistryKey) after an instance last noted leasing or popping from it; instances that
// go on note it again every leasedQueueTTL/4. A queue is forgotten only when nothing of it is in
// flight, delayed, handed off or in a transit record, and only if no instance noted it within the
// TTL, so a lease taken while a reaper forgets the queue is always covered by a newer note
// (instances' clocks must agree within leasedQueueTTL/2).
const leasedQueueTTL = time.Hour

// leasedQueueCache bounds the queues one process remembers having noted (older ones are noted again).
const leasedQueueCache = 4096

// Schedule timings (proxy/DESIGN.md "Instances and recovery").
const (
	// scheduleRecheck is when a reaper looks again at a queue it found idle (or whose next deadline
	// is later): the bound on how late a lease is reaped whose schedule entry was lost (an instance
	// died between its pop and its touch), and what an idle registered queue costs.
	scheduleRecheck = 10 * time.Minute
	// scheduleHold is how long a claimed queue waits for its reaper before another one takes it.
	scheduleHold = 30 * time.Second
	// legacySweepEvery is how often the queues of the old registry (rdb.LeasedQueuesKey, written by
	// qgate versions before the schedule) are moved into the schedule.
	legacySweepEvery = time.Minute
	// pendingTouchesMax bounds the touches waiting for the lanes, a 16th of it per shard (more are
	// dropped: the recheck still finds their queues).
	pendingTouchesMax = 1 << 16
	// touchCoalesce is how long the touch loop gathers touches none of which is due within the
	// reaper's interval before it writes them: one sched_touch per shard for every lease pop of that
	// time, not one per pop.
	touchCoalesce = 20 * time.Millisecond
)

// registerQueue notes queue in its schedule shard (due now) before its first pop from this process,
// and again every leasedQueueTTL/4, so every instance's reaper finds its leases and transit records.
func (e *Engine) registerQueue(ctx context.Context, queue string) error {
	now := time.Now()
	if t, ok := e.leasedQueues.Get(queue); ok && now.Sub(t) < e.leasedTTL/4 {
		return nil
	}
	// A script, not plain ZADDs: it is allowed when Redis is at maxmemory (see sched_register.lua).
	ms := now.UnixMilli()
	err := rdb.SchedRegister.Run(ctx, e.client, rdb.ScheduleKeys(rdb.ScheduleShard(queue)), ms, queue, ms).Err()
	if err != nil {
		return fmt.Errorf("register leased queue: %w", err)
	}
	e.leasedQueues.Add(queue, now)
	return nil
}

// unscheduleCmds returns the commands that remove queue from its schedule shard (QPURGE).
func unscheduleCmds(ctx context.Context, queue string) []redis.Cmder {
	k := rdb.ScheduleShard(queue)
	return []redis.Cmder{redis.NewIntCmd(ctx, "zrem", rdb.ScheduleRegistryKey(k), queue),
		redis.NewIntCmd(ctx, "zrem", rdb.ScheduleDueKey(k), queue), redis.NewIntCmd(ctx, "hdel", rdb.ScheduleGenKey(k), queue)}
}

// lane is one schedule shard's reaper: its pending touches and its loop. Each shard has its own
// lane, so a shard whose master is down or frozen holds up only its own queues (proxy/DESIGN.md "The
// reaper's schedule").
type lane struct {
	k       int
	touch   chan struct{} // touches are pending
	reap    chan struct{} // run a pass now
	mu      sync.Mutex
	touches map[string]int64 // queue → earliest time to make it due (ms)
	stuck   map[string]bool  // masters with a queue step still running after reapStepWait (lane only)
}

// reapStepWait is how long a lane waits for one queue's reaper step before it goes on without it: a
// step stuck on a frozen master must not hold up the shard's queues on other masters (a schedule
// shard's slot range can straddle two masters). The step runs on; the lane skips that master's
// queues until it returns, so one step per lane and master is stuck at most.
const reapStepWait = 500 * time.Millisecond

// stepStuck reports whether a step of the lane on master node has not returned yet.
func (l *lane) stepStuck(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stuck[node]
}

// waitStuck marks node stuck until done is closed.
func (l *lane) waitStuck(node string, done <-chan struct{}) {
	l.mu.Lock()
	l.stuck[node] = true
	l.mu.Unlock()
	go func() {
		<-done
		l.mu.Lock()
		delete(l.stuck, node)
		l.mu.Unlock()
	}()
}

// initLanes creates the engine's lanes (before anything can schedule a queue).
func (e *Engine) initLanes() {
	for k := range e.lanes {
		e.lanes[k] = &lane{k: k, touch: make(chan struct{}, 1), reap: make(chan struct{}, 1), touches: map[string]int64{},
			stuck: map[string]bool{}}
	}
}

// schedule makes queue due for a reaper at the latest at when (a lease deadline, a delayed item's
// time). The touch is written by the shard's lane, batched, right after the step that made it (a
// lease pop, a nack); if the instance dies in between, the queue's recheck finds the work.
func (e *Engine) schedule(queue string, when time.Time) {
	l := e.lanes[rdb.ScheduleShard(queue)]
	l.add(queue, when.UnixMilli())
	kick(l.touch)
}

// add notes a pending touch (the earliest time kept), within the shard's share of pendingTouchesMax.
func (l *lane) add(queue string, ms int64) {
	l.mu.Lock()
	if old, ok := l.touches[queue]; !ok || ms < old {
		if ok || len(l.touches) < pendingTouchesMax/rdb.ScheduleShards {
			l.touches[queue] = ms
		}
	}
	l.mu.Unlock()
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// soon reports whether a pending touch of l is due within the reaper's interval (written at once).
func (e *Engine) soon(l *lane) bool {
	horizon := time.Now().Add(e.reaperInterval()).UnixMilli()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ms := range l.touches {
		if ms <= horizon {
			return true
		}
	}
	return false
}

// flushTouches writes l's pending touches, rdb.Chunk queues per sched_touch call. It reports whether
// one is due within the reaper interval; touches that failed on a transport error stay pending (the
// error is returned), those Redis refused are dropped (the recheck finds their queues).
func (e *Engine) flushTouches(ctx context.Context, l *lane) (soon bool, err error) {
	l.mu.Lock()
	batch := l.touches
	l.touches = map[string]int64{}
	l.mu.Unlock()
	if len(batch) == 0 {
		return false, nil
	}
	horizon := time.Now().Add(e.reaperInterval()).UnixMilli()
	args := make([]interface{}, 0, 2*len(batch))
	for q, ms := range batch {
		soon = soon || ms <= horizon
		args = append(args, ms, q)
	}
	for len(args) > 0 {
		n := min(len(args), 2*rdb.Chunk)
		err := rdb.SchedTouch.Run(ctx, e.client, rdb.ScheduleTouchKeys(l.k), args[:n]...).Err()
		if err != nil {
			if isRedisError(err) || ctx.Err() != nil {
				e.log.Warn("reaper schedule not updated; the recheck will find the queues", "shard", l.k, "err", err)
				return soon, nil
			}
			for i := 0; i+1 < len(args); i += 2 {
				l.add(args[i+1].(string), args[i].(int64))
			}
			return soon, fmt.Errorf("touch schedule: %w", err)
		}
		args = args[n:]
	}
	return soon, nil
}

// KickReaper makes every lane run a pass now and then sleep until the earliest delayed item or lease
// deadline it found, so sub-second delays are kept.
func (e *Engine) KickReaper() {
	for _, l := range e.lanes {
		kick(l.reap)
	}
	kick(e.reaperKick)
}

// reaperInterval is how long the reaper sleeps when it knows of nothing due sooner; each wake of a
// lane reads its schedule shard once. Leases, nacks and extends of this process make the lane look at
// once when their time is within the interval, and every pass sleeps until the earliest entry it saw
// within the interval, so sub-second deadlines are kept; the interval bounds how late another
// instance's work is noticed when that instance died before reaping it.
func (e *Engine) reaperInterval() time.Duration { return time.Second }

// minReaperSleep keeps a queue whose items are due at once from spinning the reaper.
const minReaperSleep = 2 * time.Millisecond

// startReaper starts one lane per schedule shard and the loop of the steps that are not per shard
// (the sweep of this instance's transit records, the rare steps of reapSlow).
func (e *Engine) startReaper() {
	e.reaperStop, e.reaperDone = make(chan struct{}), make(chan struct{})
	var lanes sync.WaitGroup
	for _, l := range e.lanes {
		lanes.Add(1)
		go func() {
			defer lanes.Done()
			e.laneLoop(l, e.reaperStop)
		}()
	}
	go func() {
		defer close(e.reaperDone)
		defer lanes.Wait()
		t := time.NewTimer(e.reaperInterval())
		defer t.Stop()
		for {
			select {
			case <-e.reaperStop:
				return
			case <-t.C:
			case <-e.reaperKick:
			}
			if err := e.transit.sweep(e.ctx, false); err != nil {
				e.log.Warn("sweep transit records of pops with unknown outcome", "err", err)
			}
			if err := e.reapSlow(e.ctx); err != nil {
				e.log.Warn("lease reaper", "err", err)
			}
			t.Reset(e.reaperInterval())
		}
	}()
}

// laneLoop writes l's touches and runs l's passes until stop (then writes the touches once more).
func (e *Engine) laneLoop(l *lane, stop <-chan struct{}) {
	t := time.NewTimer(e.reaperInterval())
	defer t.Stop()
	var b backoff
	failures := 0
	for {
		pass := false
		select {
		case <-stop:
			_, _ = e.flushTouches(e.ctx, l)
			return
		case <-t.C:
			pass = true
		case <-l.reap:
			pass = true
		case <-l.touch:
			if !e.soon(l) {
				// Gather the touches of the next touchCoalesce: one sched_touch per shard for the
				// lease pops of that time, not one per pop.
				c := time.NewTimer(touchCoalesce)
				select {
				case <-c.C:
				case <-stop:
					c.Stop()
					_, _ = e.flushTouches(e.ctx, l)
					return
				}
			}
		}
		soon, err := e.flushTouches(e.ctx, l)
		if err != nil {
			if !b.wait(stop) {
				return
			}
			kick(l.touch)
		} else {
			b.reset()
		}
		if !pass && !soon {
			continue // the timer runs on
		}
		next, err := e.reapShard(e.ctx, l.k, l)
		if err != nil {
			// One warning per outage of the shard's master, then one a minute.
			if failures++; failures == 1 || failures%60 == 0 {
				e.log.Warn("lease reaper", "shard", l.k, "err", err, "failed_passes", failures)
			}
		} else {
			failures = 0
		}
		t.Reset(min(e.reaperInterval(), max(next, minReaperSleep)))
	}
}

func (e *Engine) stopReaper() {
	if e.reaperStop == nil {
		return
	}
	close(e.reaperStop)
	<-e.reaperDone
}

// SetScheduleRecheck changes scheduleRecheck (tests).
func (e *Engine) SetScheduleRecheck(d time.Duration) { e.recheck.Store(int64(d)) }

// SetDeleteIdle sets how long a delivered pop's transit fields wait for the queue's next pop to
// delete them before the delete loop does (deleteIdle), for tests.
func (e *Engine) SetDeleteIdle(d time.Duration) {
	e.transit.dmu.Lock()
	defer e.transit.dmu.Unlock()
	e.transit.idle = d
}

func (e *Engine) recheckAfter() time.Duration {
	if d := e.recheck.Load(); d > 0 {
		return time.Duration(d)
	}
	return scheduleRecheck
}

// Reap runs one full reaper pass: every registered queue (every schedule shard's registry, and the
// old registry rdb.LeasedQueuesKey) is made due now and handled: delayed items whose time came move
// to their ready list, expired leases are retried (backoff, or the dead list past max_attempts),
// items left in handoff lists go back, dead instances' transit records are given back, idle queues
// past the TTL are forgotten. It returns how many items it moved. The background reaper handles only
// the queues that are due, each shard in its lane (laneLoop). Several instances may reap at once:
// every step is one atomic script. Scripts are not retried on errors; the next pass does the work.
func (e *Engine) Reap(ctx context.Context) (int, error) {
	before := e.reaped.Load()
	if err := e.reapLegacy(ctx); err != nil {
		return 0, err
	}
	now := time.Now().UnixMilli()
	for k := 0; k < rdb.ScheduleShards; k++ {
		queues, err := e.client.ZRange(ctx, rdb.ScheduleRegistryKey(k), 0, -1).Result()
		if err != nil {
			return 0, err
		}
		for chunk := range slices.Chunk(queues, rdb.Chunk) {
			args := make([]interface{}, 0, 2*len(chunk))
			for _, q := range chunk {
				args = append(args, now, q)
			}
			if err := rdb.SchedTouch.Run(ctx, e.client, rdb.ScheduleTouchKeys(k), args...).Err(); err != nil {
				return 0, err
			}
		}
	}
	err := e.reapDue(ctx)
	return int(e.reaped.Load() - before), err
}

// reapDue handles the due queues of every shard, one after another, paging on until none is left
// due (Reap); the background reaper runs each shard in its own lane instead.
func (e *Engine) reapDue(ctx context.Context) error {
	if err := e.transit.sweep(ctx, false); err != nil {
		e.log.Warn("sweep transit records of pops with unknown outcome", "err", err)
	}
	var firstErr error
	for k := 0; k < rdb.ScheduleShards; k++ {
		if _, err := e.reapShard(ctx, k, nil); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// reapShard handles the queues of shard k whose schedule entry is due: in lane l, one ZRANGE, each
// queue's step waited for at most reapStepWait (reapStep); without a lane (Reap), every step waited
// for, paging on until none is left due. It returns how long until the earliest entry it saw that is
// due within the reaper interval (a large value when none).
func (e *Engine) reapShard(ctx context.Context, k int, l *lane) (time.Duration, error) {
	all := l == nil
	horizon := time.Now().Add(e.reaperInterval()).UnixMilli()
	next := time.Hour
	var firstErr error
	zs, err := e.client.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: rdb.ScheduleDueKey(k), ByScore: true,
		Start: "-inf", Stop: strconv.FormatInt(horizon, 10), Count: reapBatch}).Result()
	for err == nil {
		handled := 0
		for _, z := range zs {
			q, _ := z.Member.(string)
			now := time.Now()
			if at := time.UnixMilli(int64(z.Score)); at.After(now) {
				next = min(next, at.Sub(now))
				continue
			}
			due, herr := e.reapStep(ctx, l, k, q, now)
			next = min(next, due)
			if herr != nil && firstErr == nil {
				firstErr = herr
			}
			handled++
		}
		if !all || handled == 0 || len(zs) < reapBatch || ctx.Err() != nil {
			break
		}
		zs, err = e.client.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: rdb.ScheduleDueKey(k), ByScore: true,
			Start: "-inf", Stop: strconv.FormatInt(time.Now().UnixMilli(), 10), Count: reapBatch}).Result()
	}
	if err != nil && firstErr == nil {
		firstErr = err
	}
	return next, firstErr
}

// reapStep runs reapScheduled; in lane l, it waits at most reapStepWait and skips queues on a master
// whose earlier step has not returned (they are looked at again within the reaper interval).
func (e *Engine) reapStep(ctx context.Context, l *lane, k int, q string, now time.Time) (time.Duration, error) {
	if l == nil {
		return e.reapScheduled(ctx, k, q, now)
	}
	node := e.masterOf(ctx, q)
	if l.stepStuck(node) {
		return e.reaperInterval(), nil
	}
	var due time.Duration
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		due, err = e.reapScheduled(ctx, k, q, now)
	}()
	t := time.NewTimer(reapStepWait)
	defer t.Stop()
	select {
	case <-done:
		return due, err
	case <-t.C:
		l.waitStuck(node, done)
		return e.reaperInterval(), fmt.Errorf("reap queue: no reply within %s from its master %s", reapStepWait, node)
	}
}

// masterOf names the Cluster master of q's slot ("" on other backends, or when unknown).
func (e *Engine) masterOf(ctx context.Context, q string) string {
	cc, ok := e.client.(*redis.ClusterClient)
	if !ok {
		return ""
	}
	c, err := cc.MasterForKey(ctx, q)
	if err != nil {
		return ""
	}
	return c.Options().Addr
}

// reapScheduled claims a due queue of shard k (another reaper may have it), handles it and sets when
// it is due next; it returns how long until then.
func (e *Engine) reapScheduled(ctx context.Context, k int, q string, now time.Time) (time.Duration, error) {
	gen, err := rdb.SchedClaim.Run(ctx, e.client, rdb.ScheduleTouchKeys(k), now.UnixMilli(),
		scheduleHold.Milliseconds(), q).Int64()
	if err != nil || gen < 0 {
		return time.Hour, err
	}
	due, idle, err := e.reapQueue(ctx, q)
	if owned, rerr := e.transit.recoverQueue(ctx, q); rerr != nil || owned {
		idle = false
		if err == nil {
			err = rerr
		}
	}
	if err != nil {
		return time.Hour, err // the hold ends, and a reaper looks again
	}
	due = min(due, e.recheckAfter())
	at := time.Now().Add(due)
	idleArg, cutoff := "0", time.Now().Add(-e.leasedTTL).UnixMilli()
	if idle {
		idleArg = "1"
	}
	n, err := rdb.SchedDone.Run(ctx, e.client, rdb.ScheduleKeys(k), q, gen, at.UnixMilli(), idleArg, cutoff).Int64()
	if n == 2 {
		e.log.Debug("reaper: forgot an idle queue", "queue", q)
	}
	return due, err
}

// reapSlow runs the reaper's rare steps when they are due: the old registry's queues move into the
// schedule (every legacySweepEvery), and every registered queue is checked for dead instances'
// transit records when an instance died (the heartbeat saw one go) and every leasedQueueTTL/4.
func (e *Engine) reapSlow(ctx context.Context) error {
	now := time.Now()
	var firstErr error
	if now.Sub(e.lastLegacy) >= legacySweepEvery {
		if err := e.reapLegacy(ctx); err != nil {
			firstErr = err
		} else {
			e.lastLegacy = now
		}
	}
	if e.transit.walkDue(now, e.leasedTTL/4) {
		if err := e.recoverAll(ctx); err != nil {
			e.transit.walkAgain()
			if firstErr == nil {
				firstErr = err
			}
		} else {
			e.walks.Add(1)
		}
	}
	return firstErr
}

// DeadInstanceWalks returns how many walks of every registered queue for dead instances' transit
// records this engine finished (one once the live instances are first known, then one per instance
// that went, and the periodic backstop).
func (e *Engine) DeadInstanceWalks() int64 { return e.walks.Load() }

// reapLegacy moves the queues of the old registry rdb.LeasedQueuesKey (qgate versions before the
// schedule register there) into the schedule, due now, keeping their note time, and drops them from
// the old registry unless an old instance noted them again meanwhile.
func (e *Engine) reapLegacy(ctx context.Context) error {
	zs, err := e.client.ZRangeWithScores(ctx, rdb.LeasedQueuesKey, 0, -1).Result()
	if err != nil {
		return fmt.Errorf("read old leased-queues registry: %w", err)
	}
	now := time.Now().UnixMilli()
	for _, z := range zs {
		q, _ := z.Member.(string)
		if err := rdb.CheckName(q); err != nil {
			continue
		}
		noted := int64(z.Score)
		if err := rdb.SchedRegister.Run(ctx, e.client, rdb.ScheduleKeys(rdb.ScheduleShard(q)), noted, q, now).Err(); err != nil {
			return fmt.Errorf("move queue to the schedule: %w", err)
		}
		if err := rdb.ForgetQueue.Run(ctx, e.client, []string{rdb.LeasedQueuesKey}, q, noted+1).Err(); err != nil {
			return fmt.Errorf("move queue to the schedule: %w", err)
		}
	}
	return nil
}

// recoverAll gives back the transit records of dead instances on every registered queue.
func (e *Engine) recoverAll(ctx context.Context) error {
	var firstErr error
	for k := 0; k < rdb.ScheduleShards; k++ {
		queues, err := e.client.ZRange(ctx, rdb.ScheduleRegistryKey(k), 0, -1).Result()
		if err != nil {
			return err
		}
		for _, q := range queues {
			if _, err := e.transit.recoverQueue(ctx, q); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
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
