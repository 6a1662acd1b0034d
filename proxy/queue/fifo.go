package queue

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qgate/qgate/proxy/queue/wait"
	"github.com/qgate/qgate/proxy/rdb"
)

// Global FIFO (README "Blocked pops across instances", proxy/DESIGN.md "Global FIFO"): on a queue whose
// rule sets global_fifo, every blocked pop has a place in one Redis sorted set of the queue, taken when
// it starts to wait, and its takes first ask fifo_turn whether fewer waiters are ahead than the list
// has items. Without it each instance serves its own waiters in order and the instances race.

const (
	// fifoGrace is how long the waiters entitled to items may hold them back from the waiters behind
	// them (their instance takes, or they lose their places).
	fifoGrace = 250 * time.Millisecond
	// fifoRecheck bounds how long a waiter told to wait its turn waits before asking again (the
	// waiters ahead usually take within a round trip; the queue's next push also wakes it).
	fifoRecheck = 20 * time.Millisecond
	// fifoTTL is the waiters set's expiry, renewed by every turn: a queue nobody waits on any more
	// loses the places of dead instances' clients.
	fifoTTL = 24 * time.Hour
	// fifoLeaveQueue bounds the places waiting to be removed; past it a place stays until fifo_turn
	// drops it (one grace of delay for the waiters behind it, nothing lost).
	fifoLeaveQueue = 4096
	fifoLeaveBatch = 128
)

// fifo is the engine's global-FIFO state: the waiters' sequence and the background removal of places.
type fifo struct {
	seq     atomic.Uint64
	once    sync.Once
	leave   chan fifoPlace
	dropped atomic.Int64 // places fifo_turn removed after a stall
	skipped atomic.Int64 // places not removed (the leave queue was full)
}

// fifoPlace is one waiter's place in a queue's waiters set.
type fifoPlace struct{ key, member string }

// fifoWait gives req's waiter a place on each of its global_fifo keys, orders it among this
// instance's waiters by the place, and makes its takes there wait their turn. It returns the function
// that removes the places; call it once the wait ended. Without a global_fifo key it changes nothing.
func (e *Engine) fifoWait(req *wait.Request) (leave func()) {
	var keys []string
	for _, k := range req.Keys {
		if e.Policy(k).GlobalFIFO && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return func() {}
	}
	member := e.instance + ":" + strconv.FormatUint(e.fifo.seq.Add(1), 10)
	// The place is taken now, before the wait is registered: the order is when clients started to
	// wait, by Redis's clock; every key gets the first key's score. On an error the first turn adds it.
	var score int64
	for _, k := range keys {
		if t, err := e.fifoTurn(k, member, score, true); err == nil && score == 0 {
			score = t.score
		}
	}
	req.Order = score
	// left is set once the wait ended. A take may still be in flight then (the client left: the Hub's
	// Abandon does not wait for it), and its calls may add the place back after the removal that
	// leave queued; such a take queues the removal again once its calls are answered. leave sets left
	// before it queues its removals, so one removal always follows the last add.
	var left atomic.Bool
	take := req.Take
	req.Take = func(ctx context.Context, key string) (any, bool, error) {
		if !slices.Contains(keys, key) {
			return take(ctx, key)
		}
		defer func() {
			if left.Load() {
				e.fifoLeave(fifoPlace{key, member})
			}
		}()
		t, err := e.fifoTurn(key, member, score, false)
		if err == nil && score == 0 {
			score = t.score // the place was added now (fifoWait's failed): keep this score from now on
		}
		switch {
		case err != nil:
			return nil, false, err
		case t.later < 0:
			return nil, false, nil
		case t.later > 0:
			return wait.Later{After: min(t.later, fifoRecheck)}, false, nil
		}
		// Told to take: the place is used. A take that finds nothing (another client was faster)
		// keeps the wait at its place: put back at its score now, not at its next turn, which comes
		// only with the next wake, after waiters behind it have asked for the next item.
		v, ok, err := take(ctx, key)
		if !ok && err == nil {
			_, _ = e.fifoTurn(key, member, score, true)
		}
		return v, ok, err
	}
	return func() {
		left.Store(true)
		for _, k := range keys {
			e.fifoLeave(fifoPlace{k, member})
		}
	}
}

// turn is fifo_turn's answer: later 0 = take now, > 0 = wait that long for the places ahead, < 0 =
// nothing to take; score = the waiter's place.
type turn struct {
	later time.Duration
	score int64
}

// fifoTurn runs fifo_turn for member on key (score 0: its first call; enter: the place only).
func (e *Engine) fifoTurn(key, member string, score int64, enter bool) (turn, error) {
	mode := "turn"
	if enter {
		mode = "enter"
	}
	res, err := rdb.FIFOTurn.Run(e.ctx, e.direct(), rdb.FIFOTurnKeys(key), member,
		fifoGrace.Milliseconds(), fifoTTL.Milliseconds(), score, mode).Int64Slice()
	if err == nil && len(res) != 4 {
		err = errUnexpectedReply
	}
	if err != nil {
		return turn{}, err
	}
	if res[2] > 0 {
		e.fifo.dropped.Add(res[2])
		e.log.Info("global_fifo: waiters that held items back past the grace lost their places",
			"queue", key, "places", res[2])
	}
	t := turn{later: -1, score: res[3]}
	switch res[0] {
	case 1:
		t.later = 0
	case 2:
		t.later = max(time.Duration(res[1])*time.Millisecond, time.Millisecond)
	}
	return t, nil
}

// fifoLeave queues the removal of a place (the wait ended); one goroutine removes them in batches.
func (e *Engine) fifoLeave(p fifoPlace) {
	e.fifo.once.Do(func() {
		e.fifo.leave = make(chan fifoPlace, fifoLeaveQueue)
		go e.fifoLeaveLoop()
	})
	select {
	case e.fifo.leave <- p:
	default:
		e.fifo.skipped.Add(1)
	}
}

// fifoLeaveLoop removes the places of ended waits, up to fifoLeaveBatch in one pipeline, until the
// engine stops. A failed removal leaves a stale place: fifo_turn drops it after one grace.
func (e *Engine) fifoLeaveLoop() {
	batch := make([]fifoPlace, 0, fifoLeaveBatch)
	for {
		select {
		case <-e.ctx.Done():
			return
		case p := <-e.fifo.leave:
			batch = append(batch[:0], p)
		}
	more:
		for len(batch) < fifoLeaveBatch {
			select {
			case p := <-e.fifo.leave:
				batch = append(batch, p)
			default:
				break more
			}
		}
		pipe := e.direct().Pipeline()
		for _, p := range batch {
			pipe.ZRem(e.ctx, rdb.WaitersKey(p.key), p.member)
		}
		_, _ = pipe.Exec(e.ctx)
	}
}
