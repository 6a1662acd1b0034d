package commands

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

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
		&Spec{Name: "rpush", Arity: -3, Flags: Write | DenyOOM | Fast, Verb: VerbPush, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Appends one or more elements to a list.", Args: elemArgs,
			Run: func(c Conn, args [][]byte) { push(c, "rpush", args) }},
		&Spec{Name: "lpush", Arity: -3, Flags: Write | DenyOOM | Fast, Verb: VerbPush, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Prepends one or more elements to a list.", Args: elemArgs,
			Run: func(c Conn, args [][]byte) { push(c, "lpush", args) }},
		&Spec{Name: "lpop", Arity: -2, Flags: Write | Fast, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Returns the first elements in a list after removing it.", Args: popArgs,
			Run: func(c Conn, args [][]byte) { pop(c, "lpop", true, args) }},
		&Spec{Name: "rpop", Arity: -2, Flags: Write | Fast, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Returns and removes the last elements of a list.", Args: popArgs,
			Run: func(c Conn, args [][]byte) { pop(c, "rpop", false, args) }},
		&Spec{Name: "blpop", Arity: -3, Flags: Write | Blocking, Verb: VerbPop, FirstKey: 1, LastKey: -2, KeyStep: 1,
			Group: "list", Since: "2.0.0", Summary: "Removes and returns the first element in a list. Blocks until an element is available otherwise.", Args: blockArgs,
			Run: func(c Conn, args [][]byte) { blockPop(c, true, args) }},
		&Spec{Name: "brpop", Arity: -3, Flags: Write | Blocking, Verb: VerbPop, FirstKey: 1, LastKey: -2, KeyStep: 1,
			Group: "list", Since: "2.0.0", Summary: "Removes and returns the last element in a list. Blocks until an element is available otherwise.", Args: blockArgs,
			Run: func(c Conn, args [][]byte) { blockPop(c, false, args) }},
		&Spec{Name: "llen", Arity: 2, Flags: ReadOnly | Fast, Verb: VerbPeek, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Returns the length of a list.", Args: []Arg{keyArg},
			Run: llen},
		&Spec{Name: "lrange", Arity: 4, Flags: ReadOnly, Verb: VerbPeek, FirstKey: 1, LastKey: 1, KeyStep: 1,
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
	if p.Dedup() {
		dedupPush(c, name, queue, p, vals, stored)
		return
	}
	cmd := redis.NewIntCmd(c.Context(), append([]interface{}{name, queue}, stored...)...)
	c.Queue(cmd, func(w *resp.Writer) {
		if err := cmd.Err(); err != nil {
			w.Error(backendError(err))
			return
		}
		w.Int(cmd.Val())
	})
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
		if err != nil || len(res) != 2 {
			w.Error(backendError(err))
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
		cmd := redis.NewStringCmd(c.Context(), name, key)
		c.Queue(cmd, func(w *resp.Writer) {
			v, err := cmd.Result()
			switch {
			case err == redis.Nil:
				w.Null()
			case err != nil:
				w.Error(backendError(err))
			default:
				w.BulkString(deliver(c, key, v))
				c.Popped(key, left, []string{v})
			}
		})
		return
	}
	// The count is passed to the backend as given so that Redis itself validates it.
	cmd := redis.NewStringSliceCmd(c.Context(), name, key, args[2])
	c.Queue(cmd, func(w *resp.Writer) {
		vals, err := cmd.Result()
		switch {
		case err == redis.Nil:
			w.NullArray()
		case err != nil:
			w.Error(backendError(err))
		default:
			w.Array(len(vals))
			for _, v := range vals {
				w.BulkString(deliver(c, key, v))
			}
			if len(vals) > 0 {
				c.Popped(key, left, vals)
			}
		}
	})
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
	key, val, ok, err := c.BlockPop(keys, left, timeout)
	w := c.Reply()
	switch {
	case err != nil:
		w.Error(backendError(err))
	case !ok:
		w.NullArray()
	default:
		w.Array(2)
		w.BulkString(key)
		w.BulkString(deliver(c, key, val))
		c.Popped(key, left, []string{val})
	}
}

// ParseTimeout parses a blocking timeout in seconds as Redis does (fractions allowed, rounded up to the
// millisecond; 0 means forever). It returns an error text for a bad value.
func ParseTimeout(arg []byte) (time.Duration, string) {
	s := string(arg)
	if len(s) == 0 || s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\r' || s[0] == '+' && len(s) == 1 {
		return 0, ErrTimeout
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) || math.IsNaN(f) {
		return 0, ErrTimeout
	}
	ms := math.Ceil(f * 1000)
	if ms > math.MaxInt64 {
		return 0, "ERR timeout is out of range"
	}
	if ms < 0 {
		return 0, ErrTimeoutNeg
	}
	if ms > float64(100*365*24*time.Hour/time.Millisecond) {
		return 0, "" // beyond a century: forever, and no deadline arithmetic overflow
	}
	return time.Duration(ms) * time.Millisecond, ""
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
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
