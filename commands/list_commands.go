package commands

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
	"github.com/qgate/qgate/proxy/resp"
)

func init() {
	keyArg := Arg{Name: "key", Type: "key"}
	elemArgs := []Arg{keyArg, {Name: "element", Type: "string", Multiple: true}}
	popArgs := []Arg{keyArg, {Name: "count", Type: "integer", Optional: true}}
	blockArgs := []Arg{{Name: "key", Type: "key", Multiple: true}, {Name: "timeout", Type: "double"}}
	register(
		&Spec{Name: "rpush", Arity: -3, Flags: Write | DenyOOM | Fast | Pipelined, Verb: VerbPush, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Appends one or more elements to a list.", Args: elemArgs,
			Run: func(c Conn, args [][]byte) { push(c, "rpush", args) }},
		&Spec{Name: "lpush", Arity: -3, Flags: Write | DenyOOM | Fast | Pipelined, Verb: VerbPush, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Prepends one or more elements to a list.", Args: elemArgs,
			Run: func(c Conn, args [][]byte) { push(c, "lpush", args) }},
		&Spec{Name: "lpop", Arity: -2, Flags: Write | Fast | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Returns the first elements in a list after removing it.", Args: popArgs,
			Run: func(c Conn, args [][]byte) { pop(c, "lpop", true, args) }},
		&Spec{Name: "rpop", Arity: -2, Flags: Write | Fast | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Returns and removes the last elements of a list.", Args: popArgs,
			Run: func(c Conn, args [][]byte) { pop(c, "rpop", false, args) }},
		&Spec{Name: "blpop", Arity: -3, Flags: Write | Blocking, Verb: VerbPop, FirstKey: 1, LastKey: -2, KeyStep: 1,
			Group: "list", Since: "2.0.0", Summary: "Removes and returns the first element in a list. Blocks until an element is available otherwise.", Args: blockArgs,
			Run: func(c Conn, args [][]byte) { blockPop(c, true, args) }},
		&Spec{Name: "brpop", Arity: -3, Flags: Write | Blocking, Verb: VerbPop, FirstKey: 1, LastKey: -2, KeyStep: 1,
			Group: "list", Since: "2.0.0", Summary: "Removes and returns the last element in a list. Blocks until an element is available otherwise.", Args: blockArgs,
			Run: func(c Conn, args [][]byte) { blockPop(c, false, args) }},
		&Spec{Name: "llen", Arity: 2, Flags: ReadOnly | Fast | Pipelined, Verb: VerbPeek, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Returns the length of a list.", Args: []Arg{keyArg},
			Run: llen},
		&Spec{Name: "lrange", Arity: 4, Flags: ReadOnly | Pipelined, Verb: VerbPeek, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Returns a range of elements from a list.",
			Args: []Arg{keyArg, {Name: "start", Type: "integer"}, {Name: "stop", Type: "integer"}},
			Run:  lrange},
	)
}

// push validates every value against the queue's rule (all or nothing), wraps them in envelopes when
// the rule says so, and pushes them in one backend command (one script when deduplicating).
func push(c Conn, name string, args [][]byte) {
	queue := string(args[1])
	p, ok := queuePolicy(c, queue)
	if !ok {
		return
	}
	vals := args[2:]
	for i, v := range vals {
		if err := p.Check(v); err != nil {
			c.Reply().Error(sanitize(fmt.Sprintf("ERR value %d of %d rejected by %s: %v", i+1, len(vals), p.Name(), err)))
			return
		}
	}
	stored := make([]interface{}, len(vals))
	for i, v := range vals {
		if p.Envelope {
			stored[i] = envelope.Append(nil, queue, producer(c), v)
		} else {
			stored[i] = v
		}
	}
	// A value over the backend's proto-max-bulk-len would make Redis drop the connection, and with it
	// the replies of every other client's commands pipelined on it: refuse it here instead.
	limit := c.Server().BackendMaxBulk()
	for i, v := range stored {
		if n := storedLen(v); n > limit {
			c.Reply().Error(fmt.Sprintf("ERR value %d of %d is too large for the backend: %d bytes stored (envelope included), over its proto-max-bulk-len of %d",
				i+1, len(vals), n, limit))
			return
		}
	}
	if p.Dedup() {
		dedupPush(c, name, queue, p, vals, stored)
		return
	}
	cmd := redis.NewIntCmd(c.Context(), append([]interface{}{name, queue}, stored...)...)
	c.Queue(cmd, func(w *resp.Writer) {
		if err := cmd.Err(); err != nil {
			w.Error(writeError(err))
			return
		}
		w.Int(cmd.Val())
	})
}

// storedLen is the length of a value as sent to the backend.
func storedLen(v interface{}) int64 {
	switch x := v.(type) {
	case []byte:
		return int64(len(x))
	case string:
		return int64(len(x))
	}
	return 0
}

// dedupPush pushes the values whose dedup key was not seen within the window, atomically; the reply
// is the list length, as for a plain push (duplicates are acknowledged, not enqueued).
func dedupPush(c Conn, name, queue string, p *policy.Policy, vals [][]byte, stored []interface{}) {
	keys := make([]string, 1, 1+len(vals))
	keys[0] = queue
	for i, v := range vals {
		k, err := p.DedupKey(v)
		if err != nil {
			c.Reply().Error(sanitize(fmt.Sprintf("ERR value %d of %d rejected by %s: %v", i+1, len(vals), p.Name(), err)))
			return
		}
		keys = append(keys, rdb.DedupKey(queue, k))
	}
	args := append([]interface{}{strings.ToUpper(name), p.DedupWindow.Milliseconds()}, stored...)
	cmd := rdb.DedupPush.Cmd(c.Context(), c.Server().Backend(), keys, args...)
	c.Queue(cmd, func(w *resp.Writer) {
		res, err := cmd.Int64Slice()
		if rdb.IsNoScript(err) {
			res, err = rdb.DedupPush.Eval(c.Context(), c.Server().Backend(), keys, args...).Int64Slice()
		}
		if err == nil && len(res) != 2 {
			err = errors.New("unexpected dedup_push reply")
		}
		if err != nil {
			w.Error(writeError(err))
			return
		}
		w.Int(res[0])
	})
}

func pop(c Conn, name string, left bool, args [][]byte) {
	if len(args) > 3 {
		c.Reply().Error(WrongArgs(name))
		return
	}
	key := string(args[1])
	p, ok := queuePolicy(c, key)
	if !ok {
		return
	}
	if p.AtLeastOnce {
		var countArg []byte
		if len(args) == 3 {
			countArg = args[2]
		}
		leasePop(c, name, key, countArg, p)
		return
	}
	if len(args) == 2 {
		op, err := c.Server().TransitPop(key, left, "")
		if err != nil {
			c.Reply().Error(backendError(err))
			return
		}
		c.Queue(op.Cmd(), func(w *resp.Writer) {
			p, err := op.Result()
			switch {
			case err != nil:
				w.Error(backendError(err))
			case p == nil:
				w.Null()
			default:
				w.BulkString(deliver(c, key, p.Items[0]))
				c.Popped(p)
			}
		})
		return
	}
	count, ok := ParseLong(args[2])
	if !ok || count < 0 {
		c.Reply().Error(ErrNotPositive)
		return
	}
	// A large COUNT runs as several scripts of at most MaxPopChunk items each (never one long script
	// that blocks Redis for everyone); the first is pipelined with the batch, the rest follow it.
	op, err := c.Server().TransitPop(key, left, strconv.FormatInt(min(count, MaxPopChunk), 10))
	if err != nil {
		c.Reply().Error(backendError(err))
		return
	}
	c.Queue(op.Cmd(), func(w *resp.Writer) {
		p, err := op.Result()
		switch {
		case err != nil:
			w.Error(backendError(err))
			return
		case p == nil:
			w.NullArray()
			return
		}
		pops := []*Pop{p}
		got := int64(len(p.Items))
		for got < count && len(pops[len(pops)-1].Items) == MaxPopChunk {
			next, err := c.Server().TransitPop(key, left, strconv.FormatInt(min(count-got, MaxPopChunk), 10))
			if err != nil {
				break
			}
			_ = c.Server().Backend().Process(c.Context(), next.Cmd())
			np, err := next.Result()
			if err != nil || np == nil {
				break // what was popped so far is the reply; the rest stays in the list
			}
			pops = append(pops, np)
			got += int64(len(np.Items))
		}
		w.Array(int(got))
		for _, p := range pops {
			for _, v := range p.Items {
				w.BulkString(deliver(c, key, v))
			}
			c.Popped(p)
		}
	})
}

// MaxPopChunk bounds the items one backend script pops (a larger COUNT takes several steps).
const MaxPopChunk = 1000

// ParseLong parses an integer argument exactly as Redis's string2ll does: optional '-', no '+', no
// spaces, no leading zeros, within int64.
func ParseLong(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	d := b
	if neg {
		d = b[1:]
	}
	if len(d) == 0 || d[0] < '1' || d[0] > '9' {
		return 0, false
	}
	for _, ch := range d {
		if ch < '0' || ch > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

func blockPop(c Conn, left bool, args [][]byte) {
	timeout, errText := ParseTimeout(args[len(args)-1])
	if errText != "" {
		c.Reply().Error(errText)
		return
	}
	keys := make([]string, len(args)-2)
	alo := 0
	for i := range keys {
		keys[i] = string(args[i+1])
		p, ok := queuePolicy(c, keys[i])
		if !ok {
			return
		}
		if p.AtLeastOnce {
			alo++
		}
	}
	switch alo {
	case 0:
	case len(keys):
		blockLeasePop(c, left, keys, timeout)
		return
	default:
		c.Reply().Error("ERR " + strings.ToUpper(string(args[0])) + " cannot wait on at-least-once and at-most-once queues at once")
		return
	}
	p, err := c.BlockPop(keys, left, timeout)
	w := c.Reply()
	switch {
	case err != nil:
		w.Error(backendError(err))
	case p == nil:
		w.NullArray()
	default:
		w.Array(2)
		w.BulkString(p.Key)
		w.BulkString(deliver(c, p.Key, p.Items[0]))
		c.Popped(p)
	}
}

func llen(c Conn, args [][]byte) {
	if _, ok := queuePolicy(c, string(args[1])); !ok {
		return
	}
	cmd := redis.NewIntCmd(c.Context(), "llen", args[1])
	c.Queue(cmd, func(w *resp.Writer) {
		if err := cmd.Err(); err != nil {
			w.Error(backendError(err))
			return
		}
		w.Int(cmd.Val())
	})
}

// lrange peeks at a queue; items are shown as a consumer would receive them.
func lrange(c Conn, args [][]byte) {
	key := string(args[1])
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	cmd := redis.NewStringSliceCmd(c.Context(), "lrange", args[1], args[2], args[3])
	c.Queue(cmd, func(w *resp.Writer) {
		vals, err := cmd.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Array(len(vals))
		for _, v := range vals {
			w.BulkString(deliver(c, key, v))
		}
	})
}
