package queue

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/queue/wait"
)

// Moves and multi-pops (README "Moving items", proxy/DESIGN.md "Blocked pops", "Blocking moves").
//
// A move (LMOVE, RPOPLPUSH and the takes of BLMOVE, BRPOPLPUSH) is Redis's own LMOVE: one atomic
// step, the item is in the source or in the destination at every instant, so it needs no transit
// record and no lease (the destination list is the recoverable hand-off: the reliable-queue
// pattern). Items move as stored (an envelope stays an envelope). LMOVE keeps Redis's exact
// semantics: the type checks and their order, rotation (source = destination), CROSSSLOT on a
// Cluster when the two keys are in different slots, and OOM under maxmemory (LMOVE is denyoom).
//
// A multi-pop (LMPOP, BLMPOP) is the pop of its queue's delivery mode: through the transit record
// (at-most-once) or leased (at-least-once), from the first key with items.

// Move is LMOVE src dst: the moved item, or nil when src is empty (or missing).
func (e *Engine) Move(src, dst string, fromLeft, toLeft bool) *Result[*string] {
	cmd := moveCmd(e.ctx, src, dst, fromLeft, toLeft)
	return newResult([]redis.Cmder{cmd}, func() (*string, error) {
		return e.moveResult(src, dst, cmd)
	})
}

func moveCmd(ctx context.Context, src, dst string, fromLeft, toLeft bool) *redis.StringCmd {
	return redis.NewStringCmd(ctx, "lmove", src, dst, moveEnd(fromLeft), moveEnd(toLeft))
}

func moveEnd(left bool) string {
	if left {
		return "left"
	}
	return "right"
}

// moveResult reads an LMOVE's reply, counts it and wakes the destination's waiters.
func (e *Engine) moveResult(src, dst string, cmd *redis.StringCmd) (*string, error) {
	v, err := cmd.Result()
	if err == redis.Nil {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e.countPopped(src, 1)
	e.countPushed(dst, 1)
	e.wake(dst)
	return &v, nil
}

// moveOne runs one LMOVE now, outside any batch (a blocking move's first try and its takes).
func (e *Engine) moveOne(src, dst string, fromLeft, toLeft bool) (*string, error) {
	cmd := moveCmd(e.ctx, src, dst, fromLeft, toLeft)
	_ = e.direct().Process(e.ctx, cmd)
	return e.moveResult(src, dst, cmd)
}

// BlockMove is BLMOVE/BRPOPLPUSH: an LMOVE at once unless src is empty or other clients already wait
// on it (Redis's FIFO rule), else the client waits in the wait.Hub, whose take is the same LMOVE. The
// result is the moved item, nil when the wait ended without one (timeout, client gone, shutdown). A
// take that ran while the client was leaving leaves the item in dst, as Redis does for a client that
// disconnects after being served: nothing is given back, nothing is lost.
func (e *Engine) BlockMove(src, dst string, fromLeft, toLeft bool, timeout time.Duration, p Parker) (*string, error) {
	deadline := deadlineOf(timeout)
	if !e.waits.HasWaiters(src) {
		if v, err := e.moveOne(src, dst, fromLeft, toLeft); err != nil || v != nil {
			return v, err
		}
	}
	req := wait.Request{
		Keys: []string{src},
		Take: func(_ context.Context, key string) (any, bool, error) {
			v, err := e.moveOne(key, dst, fromLeft, toLeft)
			return v, v != nil, err
		},
		GiveBack: func(string, any) {}, // the item is in dst: the hand-off itself
		Notify:   p.Wake,
	}
	defer e.fifoWait(&req)()
	res, err := e.park(req, deadline, p)
	if err != nil || res == nil {
		return nil, err
	}
	return res.(*string), nil
}

// MPop is LMPOP: up to count items (count >= 1) from the first of keys that has any, each key popped
// the way its queue's rule says: through the transit record like LPOP with COUNT (at-most-once; pass
// the result to Settle) or leased for c like LeasePop (at-least-once; with ack: next-pop the pop acks
// c's previous pop from that key). One key is one pipelined pop; several keys are a Sync operation
// that pops key after key until one has items (as Redis, a key holding another type fails the
// command when it is reached). The result is nil when every key was empty.
func (e *Engine) MPop(c *Consumer, keys []string, left bool, count int64) *Result[*Pop] {
	pop := func(key string) *Result[*Pop] {
		if e.Policy(key).AtLeastOnce {
			return e.LeasePop(c, key, left, count)
		}
		return e.Pop(key, left, count)
	}
	if len(keys) == 1 {
		return pop(keys[0])
	}
	return syncResult(func() (*Pop, error) {
		for _, key := range keys {
			r := pop(key)
			e.Run([]Queued{r})
			if p, err := r.Result(); err != nil || (p != nil && len(p.Items) > 0) {
				return p, err
			}
		}
		return nil, nil
	})
}

// blockMPopCount is the COUNT argument of a blocked multi-pop's pops: at most MaxPopChunk items per pop,
// so that a take is one atomic script call.
func blockMPopCount(count int64) string {
	return strconv.FormatInt(min(max(count, 1), MaxPopChunk), 10)
}

// BlockMPop is BLMPOP on at-most-once queues: BlockPop with COUNT (at most MaxPopChunk items).
func (e *Engine) BlockMPop(keys []string, left bool, count int64, timeout time.Duration, p Parker) (*Pop, error) {
	return e.blockPop(keys, left, blockMPopCount(count), timeout, p)
}

// BlockLeaseMPop is BLMPOP on at-least-once queues: BlockLeasePop with COUNT (at most MaxPopChunk).
func (e *Engine) BlockLeaseMPop(c *Consumer, keys []string, left bool, count int64, timeout time.Duration, p Parker) (*Pop, error) {
	return e.blockLeasePop(c, keys, left, blockMPopCount(count), timeout, p)
}

// popN pops up to count items ("" = one, without COUNT) from key into the transit record now (a
// blocking pop's first try and its takes).
func (t *transit) popN(ctx context.Context, key string, left bool, count string) (*Pop, error) {
	p, err := t.newPop(ctx, key, left, count)
	if err != nil {
		return nil, err
	}
	_ = t.e.direct().Process(ctx, p.cmd)
	items, err := p.result()
	if err != nil || len(items) == 0 {
		return nil, err
	}
	return &Pop{Key: key, Left: left, Items: items, parts: []*transitPop{p}}, nil
}
