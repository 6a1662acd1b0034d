package queue

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// Queue controls (README "Queue controls", proxy/DESIGN.md "Queue controls"): max_length with
// overflow reject or drop-oldest, delayed pushes (QPUSH and the rule's delay), QPAUSE and QRESUME.

// PushResult is what a controlled push did.
type PushResult struct {
	Len     int64 // the ready list's length after the push
	Stored  int64 // values stored (not suppressed as duplicates)
	Dropped int64 // items dropped from the ready list (overflow: drop-oldest)
}

// PushDelayed is QPUSH: it pushes vals to the tail of queue after delay (0: at once), with the rule's
// checks, envelope, dedup and max_length, in one script call. The result's Stored is QPUSH's reply.
func (e *Engine) PushDelayed(queue, producer string, delay time.Duration, vals [][]byte) (*Result[PushResult], error) {
	p := e.Policy(queue)
	stored, err := e.store(p, queue, producer, vals)
	if err != nil {
		return nil, err
	}
	return e.controlPush(p, queue, false, delay, vals, stored)
}

// controlPush runs rdb.ControlPush for values already checked and wrapped (stored).
func (e *Engine) controlPush(p *policy.Policy, queue string, left bool, delay time.Duration, vals [][]byte,
	stored []interface{}) (*Result[PushResult], error) {
	keys := rdb.ControlPushKeys(queue)
	window := ""
	if p.Dedup() {
		window = fmt.Sprint(p.DedupWindow.Milliseconds())
		for i, v := range vals {
			k, err := p.DedupKey(v)
			if err != nil {
				e.countRejected(queue, err)
				return nil, &RejectedError{Index: i + 1, Count: len(vals), Rule: p.Name(), Err: err}
			}
			keys = append(keys, rdb.DedupKey(queue, k))
		}
	}
	rawPrefix := ""
	if delay > 0 {
		// The reapers of every instance move due items: the queue must be in their list.
		if err := e.registerQueue(e.ctx, queue); err != nil {
			return nil, err
		}
		if !p.Envelope {
			rawPrefix = rdb.DelayedRawPrefix + envelope.NewID() + "."
		}
	}
	name, overflow := "RPUSH", "reject"
	if left {
		name = "LPUSH"
	}
	if p.DropOldest {
		overflow = "drop-oldest"
	}
	args := make([]interface{}, 0, 6+len(stored))
	args = append(args, name, p.MaxLength, overflow, window, delay.Milliseconds(), rawPrefix)
	args = append(args, stored...)
	cmd := rdb.ControlPush.Cmd(e.ctx, e.cmds(), keys, args...)
	return newResult([]redis.Cmder{cmd}, func() (PushResult, error) {
		res, err := e.evalFallback(rdb.ControlPush, cmd, keys, args).Int64Slice()
		if err == nil && len(res) != 3 {
			err = errors.New("unexpected control_push reply")
		}
		if err != nil {
			// A full queue (overflow: reject) is control_push.lua's error reply, relayed as it is.
			if msg, ok := RedisError(err); ok && strings.HasPrefix(msg, "ERR queue ") && strings.Contains(msg, " is full (max_length ") {
				e.obs().counters(queue).rejFull.Add(1)
			}
			return PushResult{}, err
		}
		r := PushResult{Len: res[0], Stored: res[1], Dropped: res[2]}
		if r.Stored > 0 {
			if delay > 0 {
				// The reapers' schedule learns when the item is due (a queue noted long ago would
				// otherwise wait for its recheck); a touch due within a second kicks this reaper.
				e.schedule(queue, time.Now().Add(delay))
			} else {
				e.wake(queue)
			}
		}
		e.countPushed(queue, len(vals))
		if r.Dropped > 0 {
			e.obs().counters(queue).dropped.Add(r.Dropped)
		}
		return r, nil
	}), nil
}

// Pause pauses queue on every instance sharing the backend: pops find it empty until Resume.
func (e *Engine) Pause(queue string) *Result[bool] {
	cmd := redis.NewStringCmd(e.ctx, "set", rdb.PausedKey(queue), "1")
	return newResult([]redis.Cmder{cmd}, func() (bool, error) {
		if err := cmd.Err(); err != nil {
			return false, fmt.Errorf("pause queue: %w", err)
		}
		return true, nil
	})
}

// Resume ends queue's pause; the result says whether it was paused. Waiters here are woken at once,
// those of other instances by the list's keyspace event that rdb.Resume raises (or their safety
// poll).
func (e *Engine) Resume(queue string) *Result[bool] {
	keys := rdb.ResumeKeys(queue)
	cmd := rdb.Resume.Cmd(e.ctx, e.cmds(), keys)
	return newResult([]redis.Cmder{cmd}, func() (bool, error) {
		n, err := e.evalFallback(rdb.Resume, cmd, keys, nil).Int64()
		if err != nil {
			return false, fmt.Errorf("resume queue: %w", err)
		}
		e.wake(queue)
		return n == 1, nil
	})
}

// Paused reports whether queue is paused.
func (e *Engine) Paused(queue string) *Result[bool] {
	cmd := redis.NewIntCmd(e.ctx, "exists", rdb.PausedKey(queue))
	return newResult([]redis.Cmder{cmd}, func() (bool, error) {
		n, err := cmd.Result()
		return n == 1, err
	})
}
