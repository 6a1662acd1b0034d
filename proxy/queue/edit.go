package queue

import (
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/rdb"
)

// List edits and key commands (README "List edits"): LINDEX, LPOS, LSET, LINSERT, LREM, LTRIM,
// LPUSHX, RPUSHX, DEL, UNLINK, EXISTS, TYPE and QPURGE. Each is one backend command or one script
// call, so they pipeline like pushes. They act on a queue's ready list only: the items of an
// at-least-once queue that are leased, delayed or dead are in other keys (QPURGE removes those too).
//
// An element argument (LPOS, LREM, the LINSERT pivot) matches an item whose stored bytes are the
// element, or an envelope whose payload is the element; the scripts decode envelopes themselves
// (proxy/rdb/scripts/list_match.lua), so finding and editing are one atomic step.

// Index is LINDEX of a queue's ready list: the item as stored, or nil when there is none. index
// goes to Redis as it is (it parses it).
func (e *Engine) Index(queue string, index []byte) *Result[*string] {
	cmd := redis.NewStringCmd(e.ctx, "lindex", queue, index)
	return newResult([]redis.Cmder{cmd}, func() (*string, error) {
		v, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return &v, nil
	})
}

// Pos is LPOS of elem in a queue's ready list (rdb.ListPos): the positions of the matches, skipping
// the first |rank|-1 (rank < 0 scans from the tail), at most count of them (0: all), comparing at most
// maxlen items (0: all). Empty when there is no match or no list. rank must not be 0 and count,
// maxlen not negative (the caller checks them as Redis does).
func (e *Engine) Pos(queue string, elem []byte, rank, count, maxlen int64) *Result[[]int64] {
	keys := []string{queue}
	args := []interface{}{elem, envelope.Tail(elem), rank, count, maxlen}
	cmd := rdb.ListPos.Cmd(e.ctx, e.cmds(), keys, args...)
	return newResult([]redis.Cmder{cmd}, func() ([]int64, error) {
		return e.evalFallback(rdb.ListPos, cmd, keys, args).Int64Slice()
	})
}

// Set is LSET: the item at index becomes val, checked and enveloped as a push (Push). index goes
// to Redis as it is. A refused value is a *RejectedError or a *TooLargeError, and nothing is sent.
func (e *Engine) Set(queue string, index []byte, producer string, val []byte) (*Result[string], error) {
	stored, err := e.store(e.Policy(queue), queue, producer, [][]byte{val})
	if err != nil {
		return nil, err
	}
	cmd := redis.NewStatusCmd(e.ctx, "lset", queue, index, stored[0])
	return newResult([]redis.Cmder{cmd}, cmd.Result), nil
}

// Insert is LINSERT (rdb.ListInsert): val, checked and enveloped as a push, goes before or after the
// first item from the head that matches pivot. The result is the list length, -1 when nothing
// matches, 0 when there is no list. A refused value is a *RejectedError or a *TooLargeError.
func (e *Engine) Insert(queue string, before bool, pivot []byte, producer string, val []byte) (*Result[int64], error) {
	stored, err := e.store(e.Policy(queue), queue, producer, [][]byte{val})
	if err != nil {
		return nil, err
	}
	where := "AFTER"
	if before {
		where = "BEFORE"
	}
	keys := []string{queue}
	args := []interface{}{pivot, envelope.Tail(pivot), where, stored[0], tombstone()}
	cmd := rdb.ListInsert.Cmd(e.ctx, e.cmds(), keys, args...)
	return newResult([]redis.Cmder{cmd}, func() (int64, error) {
		n, err := e.evalFallback(rdb.ListInsert, cmd, keys, args).Int64()
		if err == nil && n > 0 {
			e.wake(queue)
			e.countPushed(queue, 1)
		}
		return n, err
	}), nil
}

// Rem is LREM (rdb.ListRem): removes the first count items matching elem from the head (count > 0),
// from the tail (count < 0), or all of them (0); the result is how many.
func (e *Engine) Rem(queue string, count int64, elem []byte) *Result[int64] {
	keys := []string{queue}
	args := []interface{}{elem, envelope.Tail(elem), count, tombstone()}
	cmd := rdb.ListRem.Cmd(e.ctx, e.cmds(), keys, args...)
	return newResult([]redis.Cmder{cmd}, func() (int64, error) {
		return e.evalFallback(rdb.ListRem, cmd, keys, args).Int64()
	})
}

// Trim is LTRIM of a queue's ready list; start and stop go to Redis as they are.
func (e *Engine) Trim(queue string, start, stop []byte) *Result[string] {
	cmd := redis.NewStatusCmd(e.ctx, "ltrim", queue, start, stop)
	return newResult([]redis.Cmder{cmd}, cmd.Result)
}

// PushX is LPUSHX/RPUSHX: Push, but only onto a list that exists (the result is then 0 and nothing
// is pushed). With dedup, one rdb.ListPushX call checks the list, the dedup keys and pushes.
func (e *Engine) PushX(queue string, left bool, producer string, vals [][]byte) (*Result[int64], error) {
	p := e.Policy(queue)
	stored, err := e.store(p, queue, producer, vals)
	if err != nil {
		return nil, err
	}
	name := "rpush"
	if left {
		name = "lpush"
	}
	if !p.Dedup() {
		cmd := redis.NewIntCmd(e.ctx, append([]interface{}{name + "x", queue}, stored...)...)
		return newResult([]redis.Cmder{cmd}, func() (int64, error) {
			n, err := cmd.Result()
			if err == nil && n > 0 {
				e.wake(queue)
				e.countPushed(queue, len(vals))
			}
			return n, err
		}), nil
	}
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
	args := append([]interface{}{strings.ToUpper(name), p.DedupWindow.Milliseconds()}, stored...)
	cmd := rdb.ListPushX.Cmd(e.ctx, e.cmds(), keys, args...)
	return newResult([]redis.Cmder{cmd}, func() (int64, error) {
		res, err := e.evalFallback(rdb.ListPushX, cmd, keys, args).Int64Slice()
		if err == nil && len(res) != 2 {
			err = errors.New("unexpected list_pushx reply")
		}
		if err != nil {
			return 0, err
		}
		if res[1] > 0 {
			e.wake(queue)
			e.countPushed(queue, int(res[1]))
		}
		return res[0], nil
	}), nil
}

// tombstone is a value no list holds: list_rem.lua and list_insert.lua put it in place of the items
// they remove or insert next to.
func tombstone() string { return "\x00qgate:tombstone:" + envelope.NewID() }

// Del is DEL (or UNLINK) of queues' ready lists: the keys themselves, as Redis would; the result is
// how many existed. Exists is EXISTS (a name given twice counts twice). On a Cluster the keys are
// sent in one command per hash slot and the counts summed (Redis itself would answer CROSSSLOT), so
// a multi-slot DEL is not one atomic step there.
func (e *Engine) Del(unlink bool, keys []string) *Result[int64] {
	name := "del"
	if unlink {
		name = "unlink"
	}
	return e.perSlot(name, keys)
}

// Exists is EXISTS (see Del).
func (e *Engine) Exists(keys []string) *Result[int64] { return e.perSlot("exists", keys) }

func (e *Engine) perSlot(name string, keys []string) *Result[int64] {
	_, cluster := e.client.(*redis.ClusterClient)
	groups := slotGroups(keys, cluster)
	cmds := make([]redis.Cmder, len(groups))
	ints := make([]*redis.IntCmd, len(groups))
	for i, g := range groups {
		args := make([]interface{}, 0, 1+len(g))
		args = append(args, name)
		for _, k := range g {
			args = append(args, k)
		}
		ints[i] = redis.NewIntCmd(e.ctx, args...)
		cmds[i] = ints[i]
	}
	return newResult(cmds, func() (int64, error) {
		var sum int64
		for _, c := range ints {
			n, err := c.Result()
			if err != nil {
				return 0, err
			}
			sum += n
		}
		return sum, nil
	})
}

// slotGroups splits keys by hash slot on a Cluster (in order of first appearance, each group in
// argument order), else returns them as one group.
func slotGroups(keys []string, cluster bool) [][]string {
	if !cluster {
		return [][]string{keys}
	}
	var groups [][]string
	at := map[uint16]int{}
	for _, k := range keys {
		s := rdb.Slot(k)
		i, ok := at[s]
		if !ok {
			i = len(groups)
			at[s] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], k)
	}
	return groups
}

// Type is TYPE of a key: "list", "none", or whatever the key holds.
func (e *Engine) Type(key string) *Result[string] {
	cmd := redis.NewStatusCmd(e.ctx, "type", key)
	return newResult([]redis.Cmder{cmd}, cmd.Result)
}

// Purge is QPURGE: for each queue, one rdb.Purge call deletes its ready list and every key qgate
// derived for it in its slot (leases, delayed, dead, handoff, every instance's transit record),
// then its entries in the registries (rdb.QueuesKey, rdb.LeasedQueuesKey, the reaper's schedule shard; outside the queue's slot:
// not in the same atomic step). Dedup keys are left to expire. The result is the items removed.
func (e *Engine) Purge(queues []string) *Result[int64] {
	type call struct {
		cmd  *redis.Cmd
		keys []string
		args []interface{}
	}
	calls := make([]call, len(queues))
	cmds := make([]redis.Cmder, 0, 2*len(queues))
	for i, q := range queues {
		keys := rdb.PurgeKeys(q)
		args := []interface{}{rdb.PurgeTransitPrefix(q)}
		calls[i] = call{rdb.Purge.Cmd(e.ctx, e.cmds(), keys, args...), keys, args}
		cmds = append(cmds, calls[i].cmd)
	}
	for _, q := range queues {
		cmds = append(cmds, redis.NewIntCmd(e.ctx, "zrem", rdb.QueuesKey, q), redis.NewIntCmd(e.ctx, "zrem", rdb.LeasedQueuesKey, q))
		cmds = append(cmds, unscheduleCmds(e.ctx, q)...)
	}
	return newResult(cmds, func() (int64, error) {
		var sum int64
		for _, c := range calls {
			n, err := e.evalFallback(rdb.Purge, c.cmd, c.keys, c.args).Int64()
			if err != nil {
				return sum, err
			}
			sum += n
		}
		for _, q := range queues {
			e.leasedQueues.Remove(q)
		}
		for _, c := range cmds[len(calls):] {
			if err := c.Err(); err != nil {
				return sum, err
			}
		}
		return sum, nil
	})
}
