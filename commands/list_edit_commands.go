package commands

import (
	"math"

	"github.com/qgate/qgate/proxy/resp"
)

// The list edits (README "List edits"): LINDEX, LPOS, LSET, LINSERT, LREM, LTRIM, LPUSHX, RPUSHX.
// Each is one engine operation (proxy/queue/edit.go) on the queue's ready list.

func init() {
	keyArg := Arg{Name: "key", Type: "key"}
	elemArgs := []Arg{keyArg, {Name: "element", Type: "string", Multiple: true}}
	list := func(s *Spec) *Spec {
		s.FirstKey, s.LastKey, s.KeyStep, s.Group = 1, 1, 1, "list"
		s.Flags |= Pipelined
		return s
	}
	register(
		list(&Spec{Name: "lindex", Arity: 3, Flags: ReadOnly, Verb: VerbPeek, Since: "1.0.0",
			Summary: "Returns an element from a list by its index.",
			Args:    []Arg{keyArg, {Name: "index", Type: "integer"}}, Run: lindex}),
		list(&Spec{Name: "lpos", Arity: -3, Flags: ReadOnly, Verb: VerbPeek, Since: "6.0.6",
			Summary: "Returns the index of matching elements in a list.",
			Args: []Arg{keyArg, {Name: "element", Type: "string"},
				{Name: "rank", Type: "integer", Token: "RANK", Optional: true},
				{Name: "num-matches", Type: "integer", Token: "COUNT", Optional: true},
				{Name: "len", Type: "integer", Token: "MAXLEN", Optional: true}},
			Run: lpos}),
		list(&Spec{Name: "lset", Arity: 4, Flags: Write | DenyOOM, Verb: VerbPush, Since: "1.0.0",
			Summary: "Sets the value of an element in a list by its index.",
			Args:    []Arg{keyArg, {Name: "index", Type: "integer"}, {Name: "element", Type: "string"}}, Run: lset}),
		list(&Spec{Name: "linsert", Arity: 5, Flags: Write | DenyOOM, Verb: VerbPush, Since: "2.2.0",
			Summary: "Inserts an element before or after another element in a list.",
			Args: []Arg{keyArg, {Name: "where", Type: "oneof", Sub: []Arg{{Name: "before", Type: "pure-token", Token: "BEFORE"},
				{Name: "after", Type: "pure-token", Token: "AFTER"}}}, {Name: "pivot", Type: "string"}, {Name: "element", Type: "string"}},
			Run: linsert}),
		list(&Spec{Name: "lrem", Arity: 4, Flags: Write, Verb: VerbPop, Since: "1.0.0",
			Summary: "Removes elements from a list. Deletes the list if the last element was removed.",
			Args:    []Arg{keyArg, {Name: "count", Type: "integer"}, {Name: "element", Type: "string"}}, Run: lrem}),
		list(&Spec{Name: "ltrim", Arity: 4, Flags: Write, Verb: VerbPop, Since: "1.0.0",
			Summary: "Removes elements from both ends a list. Deletes the list if all elements were trimmed.",
			Args:    []Arg{keyArg, {Name: "start", Type: "integer"}, {Name: "stop", Type: "integer"}}, Run: ltrim}),
		list(&Spec{Name: "lpushx", Arity: -3, Flags: Write | DenyOOM | Fast, Verb: VerbPush, Since: "2.2.0",
			Summary: "Prepends one or more elements to a list only when the list exists.", Args: elemArgs,
			Run: func(c Conn, args [][]byte) { pushx(c, true, args) }}),
		list(&Spec{Name: "rpushx", Arity: -3, Flags: Write | DenyOOM | Fast, Verb: VerbPush, Since: "2.2.0",
			Summary: "Appends an element to a list only when the list exists.", Args: elemArgs,
			Run: func(c Conn, args [][]byte) { pushx(c, false, args) }}),
	)
}

// lindex shows the item as a consumer would receive it, like LRANGE.
func lindex(c Conn, args [][]byte) {
	key := string(args[1])
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	op := c.Server().Queues().Index(key, args[2])
	c.Queue(op, func(w *resp.Writer) {
		v, err := op.Result()
		switch {
		case err != nil:
			w.Error(backendError(err))
		case v == nil:
			w.Null()
		default:
			w.BulkString(deliver(c, key, *v))
		}
	})
}

// Redis 7.0's LPOS error texts.
const (
	errRankZero      = "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"
	errCountNegative = "ERR COUNT can't be negative"
	errMaxLenNeg     = "ERR MAXLEN can't be negative"
)

// lpos parses the options exactly as Redis 7.0's lposCommand (errors before the key is looked at;
// a repeated option: the last one wins).
func lpos(c Conn, args [][]byte) {
	key := string(args[1])
	rank, count, maxlen := int64(1), int64(-1), int64(0)
	for j := 3; j < len(args); j++ {
		more := j < len(args)-1
		switch {
		case equalFold(args[j], "rank") && more:
			j++
			n, ok := ParseLong(args[j])
			if !ok {
				c.Reply().Error(ErrNotInteger)
				return
			}
			if n == 0 {
				c.Reply().Error(errRankZero)
				return
			}
			rank = n
		case equalFold(args[j], "count") && more:
			j++
			n, ok := ParseLong(args[j])
			if !ok || n < 0 {
				c.Reply().Error(errCountNegative)
				return
			}
			count = n
		case equalFold(args[j], "maxlen") && more:
			j++
			n, ok := ParseLong(args[j])
			if !ok || n < 0 {
				c.Reply().Error(errMaxLenNeg)
				return
			}
			maxlen = n
		default:
			c.Reply().Error(ErrSyntax)
			return
		}
	}
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	want := count
	if rank == math.MinInt64 {
		// Redis 7.0 negates RANK in a long: -LONG_MIN stays LONG_MIN, so every match from the tail
		// counts (the first without COUNT) and COUNT never stops the scan.
		rank = -1
		if count > 0 {
			want = 0
		}
	}
	if count < 0 {
		want = 1
	}
	op := c.Server().Queues().Pos(key, args[2], rank, want, maxlen)
	c.Queue(op, func(w *resp.Writer) {
		pos, err := op.Result()
		switch {
		case err != nil:
			w.Error(backendError(err))
		case count < 0 && len(pos) == 0:
			w.Null()
		case count < 0:
			w.Int(pos[0])
		default:
			w.Array(len(pos))
			for _, p := range pos {
				w.Int(p)
			}
		}
	})
}

// lset stores the value as a push would (rule, envelope); Redis checks the key, then the index.
func lset(c Conn, args [][]byte) {
	key := string(args[1])
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	op, err := c.Server().Queues().Set(key, args[2], producer(c), args[3])
	if err != nil {
		c.Reply().Error(refused(err))
		return
	}
	c.Queue(op, func(w *resp.Writer) {
		if _, err := op.Result(); err != nil {
			w.Error(writeError(err))
			return
		}
		w.OK()
	})
}

func linsert(c Conn, args [][]byte) {
	key := string(args[1])
	var before bool
	switch {
	case equalFold(args[2], "before"):
		before = true
	case equalFold(args[2], "after"):
	default:
		c.Reply().Error(ErrSyntax)
		return
	}
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	op, err := c.Server().Queues().Insert(key, before, args[3], producer(c), args[4])
	if err != nil {
		c.Reply().Error(refused(err))
		return
	}
	c.Queue(op, func(w *resp.Writer) {
		n, err := op.Result()
		if err != nil {
			w.Error(writeError(err))
			return
		}
		w.Int(n)
	})
}

func lrem(c Conn, args [][]byte) {
	key := string(args[1])
	count, ok := ParseLong(args[2])
	if !ok {
		c.Reply().Error(ErrNotInteger)
		return
	}
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	op := c.Server().Queues().Rem(key, count, args[3])
	c.Queue(op, func(w *resp.Writer) {
		n, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Int(n)
	})
}

func ltrim(c Conn, args [][]byte) {
	key := string(args[1])
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	op := c.Server().Queues().Trim(key, args[2], args[3])
	c.Queue(op, func(w *resp.Writer) {
		if _, err := op.Result(); err != nil {
			w.Error(backendError(err))
			return
		}
		w.OK()
	})
}

// pushx is push onto a list that exists: every value checked first, all or nothing.
func pushx(c Conn, left bool, args [][]byte) {
	key := string(args[1])
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	op, err := c.Server().Queues().PushX(key, left, producer(c), args[2:])
	if err != nil {
		c.Reply().Error(refused(err))
		return
	}
	c.Queue(op, func(w *resp.Writer) {
		n, err := op.Result()
		if err != nil {
			w.Error(writeError(err))
			return
		}
		w.Int(n)
	})
}
