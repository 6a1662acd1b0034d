package queue

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// Pushes, peeks and publishes: the rule's checks, envelopes and dedup (README "Queue and channel
// rules", "Envelope").

// RejectedError is a value refused by its queue's or channel's rule (Index counts from 1).
type RejectedError struct {
	Index, Count int
	Rule         string // the rule's name, as policy.Policy.Name
	Err          error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("value %d of %d rejected by %s: %v", e.Index, e.Count, e.Rule, e.Err)
}

func (e *RejectedError) Unwrap() error { return e.Err }

// TooLargeError is a value whose stored form (envelope included) is over the backend's
// proto-max-bulk-len: Redis would drop the connection, and with it the replies of every other
// client's commands pipelined on it, so it is refused before it is sent.
type TooLargeError struct {
	Index, Count int
	Size, Limit  int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("value %d of %d is too large for the backend: %d bytes stored (envelope included), over its proto-max-bulk-len of %d",
		e.Index, e.Count, e.Size, e.Limit)
}

// Push validates every value against the queue's rule (all or nothing), wraps them in envelopes
// naming producer when the rule says so, and pushes them in one backend command (one script when
// deduplicating); the result is the list length. A refused value is a *RejectedError or a
// *TooLargeError, and nothing is sent. A backend failure whose OutcomeUnknown may have pushed.
// With replicas: in the rule, the push waits for replicas (replicas.go) after the push command.
func (e *Engine) Push(queue string, left bool, producer string, vals [][]byte) (*Result[int64], error) {
	p := e.Policy(queue)
	r, err := e.push(p, queue, left, producer, vals)
	if err != nil {
		return nil, err
	}
	return withReplicas(p, queue, r), nil
}

// pushVerbs are the plain push's command names, boxed once (an interface holding a string variable
// would be an allocation per push).
var pushVerbs = [2]interface{}{"rpush", "lpush"}

func (e *Engine) push(p *policy.Policy, queue string, left bool, producer string, vals [][]byte) (*Result[int64], error) {
	// The plain push's arguments: its name, the queue, then the stored values, in one allocation
	// (with the whole operation for a push of one value).
	var o *pushOp
	var args []interface{}
	if len(vals) == 1 {
		o = new(pushOp)
		args = o.args[:2:3]
	} else {
		args = make([]interface{}, 2, 2+len(vals))
	}
	args[0], args[1] = pushVerbs[0], queue
	if left {
		args[0] = pushVerbs[1]
	}
	args, err := e.appendStored(args, p, queue, producer, vals)
	if err != nil {
		return nil, err
	}
	stored := args[2:]
	if p.Controlled() {
		// max_length or a delay (controls.go); every other queue keeps the plain path below.
		r, err := e.controlPush(p, queue, left, p.Delay, vals, stored)
		if err != nil {
			return nil, err
		}
		return newResult(r.cmds, func() (int64, error) {
			res, err := r.Result()
			return res.Len, err
		}), nil
	}
	if !p.Dedup() {
		if o != nil {
			o.e, o.queue, o.cmd = e, queue, *redis.NewIntCmd(e.ctx, args...)
			o.cmds[0] = &o.cmd
			o.Result.cmds, o.src = o.cmds[:], o
			return &o.Result, nil
		}
		cmd := redis.NewIntCmd(e.ctx, args...)
		return newResult([]redis.Cmder{cmd}, func() (int64, error) {
			n, err := cmd.Result()
			if err == nil {
				e.wake(queue) // waiters here are served at once, whatever the notification mode
				e.countPushed(queue, len(vals))
			}
			return n, err
		}), nil
	}
	// The values whose dedup key was not seen within the window are pushed, atomically; the reply is
	// the list length, as for a plain push (duplicates are acknowledged, not enqueued).
	keys := make([]string, 1, 1+len(vals))
	keys[0] = queue
	for i, v := range vals {
		k, err := p.DedupKey(v)
		if err != nil {
			e.countRejected(queue, err)
			return nil, &RejectedError{Index: i + 1, Count: len(vals), Rule: p.Name(), Err: err}
		}
		keys = append(keys, rdb.DedupKey(queue, k))
	}
	verb := "RPUSH"
	if left {
		verb = "LPUSH"
	}
	dargs := append([]interface{}{verb, p.DedupWindow.Milliseconds()}, stored...)
	cmd := rdb.DedupPush.Cmd(e.ctx, e.cmds(), keys, dargs...)
	return newResult([]redis.Cmder{cmd}, func() (int64, error) {
		res, err := e.evalFallback(rdb.DedupPush, cmd, keys, dargs).Int64Slice()
		if err == nil && len(res) != 2 {
			err = errors.New("unexpected dedup_push reply")
		}
		if err != nil {
			return 0, err
		}
		if res[1] > 0 {
			e.wake(queue)
		}
		e.countPushed(queue, len(vals))
		return res[0], nil
	}), nil
}

// pushOp is a plain push of one value with all it needs in one allocation: its result, its command and
// the command's arguments (a producer's RPUSH is the hot path).
type pushOp struct {
	Result[int64]
	e     *Engine
	queue string
	cmd   redis.IntCmd
	cmds  [1]redis.Cmder
	args  [3]interface{}
}

// value is the list's length after the push; waiters on the queue are woken.
func (o *pushOp) value() (int64, error) {
	n, err := o.cmd.Result()
	if err == nil {
		o.e.wake(o.queue) // waiters here are served at once, whatever the notification mode
		o.e.countPushed(o.queue, 1)
	}
	return n, err
}

// store checks values against the queue's rule p (all or nothing) and returns what to store: each in
// an envelope naming producer when the rule says so. A refused value is a *RejectedError or a
// *TooLargeError. Every command that adds items (pushes and the list edits, edit.go) stores through it.
func (e *Engine) store(p *policy.Policy, queue, producer string, vals [][]byte) ([]interface{}, error) {
	return e.appendStored(make([]interface{}, 0, len(vals)), p, queue, producer, vals)
}

// appendStored is store appending what to store to dst.
func (e *Engine) appendStored(dst []interface{}, p *policy.Policy, queue, producer string, vals [][]byte) ([]interface{}, error) {
	for i, v := range vals {
		if err := p.Check(v); err != nil {
			e.countRejected(queue, err)
			return nil, &RejectedError{Index: i + 1, Count: len(vals), Rule: p.Name(), Err: err}
		}
	}
	for i, v := range vals {
		if p.Envelope {
			v = envelope.Append(nil, queue, producer, v)
		}
		if n := int64(len(v)); n > e.maxBulk {
			err := &TooLargeError{Index: i + 1, Count: len(vals), Size: n, Limit: e.maxBulk}
			e.countRejected(queue, err)
			return nil, err
		}
		dst = append(dst, v)
	}
	return dst, nil
}

// Len is LLEN of a queue's ready list.
func (e *Engine) Len(queue string) *Result[int64] {
	cmd := redis.NewIntCmd(e.ctx, "llen", queue)
	return newResult([]redis.Cmder{cmd}, cmd.Result)
}

// Range is LRANGE of a queue's ready list; start and stop go to Redis as they are (it parses them).
// The items are as stored (envelopes included).
func (e *Engine) Range(queue string, start, stop []byte) *Result[[]string] {
	cmd := redis.NewStringSliceCmd(e.ctx, "lrange", queue, start, stop)
	return newResult([]redis.Cmder{cmd}, cmd.Result)
}

// Publish checks a message against its channel's rule, wraps it in an envelope naming producer when
// the rule says so, and publishes it; the result is the backend's receiver count. A refused message is
// a *RejectedError.
func (e *Engine) Publish(channel, producer string, msg []byte) (*Result[int64], error) {
	cmd, err := e.publishCmd("publish", channel, producer, msg)
	if err != nil {
		return nil, err
	}
	return newResult([]redis.Cmder{cmd}, cmd.Result), nil
}

// publishCmd checks msg against its channel's rule and returns the verb (PUBLISH, SPUBLISH) of it,
// wrapped in an envelope naming producer when the rule says so. A refused message is a *RejectedError.
func (e *Engine) publishCmd(verb, channel, producer string, msg []byte) (*redis.IntCmd, error) {
	p := e.policies().Channel(channel)
	if err := p.Check(msg); err != nil {
		return nil, &RejectedError{Index: 1, Count: 1, Rule: p.Name(), Err: err}
	}
	var m interface{} = msg
	if p.Envelope {
		m = envelope.Append(nil, channel, producer, msg)
	}
	return redis.NewIntCmd(e.ctx, verb, channel, m), nil
}

// PubSubChannels is PUBSUB CHANNELS [pattern] on the backend (pattern nil: none).
func (e *Engine) PubSubChannels(pattern []byte) *Result[[]string] {
	return e.pubsubList("channels", pattern)
}

// pubsubList is PUBSUB sub [pattern] on the backend (pattern nil: none), sub CHANNELS or SHARDCHANNELS.
func (e *Engine) pubsubList(sub string, pattern []byte) *Result[[]string] {
	args := []interface{}{"pubsub", sub}
	if pattern != nil {
		args = append(args, pattern)
	}
	cmd := redis.NewStringSliceCmd(e.ctx, args...)
	return newResult([]redis.Cmder{cmd}, cmd.Result)
}

// PubSubNumSub is PUBSUB NUMSUB on the backend: each channel's subscriber count there.
func (e *Engine) PubSubNumSub(channels [][]byte) *Result[map[string]int64] {
	args := []interface{}{"pubsub", "numsub"}
	for _, c := range channels {
		args = append(args, c)
	}
	cmd := redis.NewMapStringIntCmd(e.ctx, args...)
	return newResult([]redis.Cmder{cmd}, cmd.Result)
}

// PubSubNumPat is PUBSUB NUMPAT on the backend.
func (e *Engine) PubSubNumPat() *Result[int64] {
	cmd := redis.NewIntCmd(e.ctx, "pubsub", "numpat")
	return newResult([]redis.Cmder{cmd}, cmd.Result)
}
