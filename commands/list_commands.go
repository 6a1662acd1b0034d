package commands

import (
	"errors"
	"strconv"
	"strings"

	"github.com/qgate/qgate/proxy/queue"
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
			Run: func(c Conn, args [][]byte) { push(c, false, args) }},
		&Spec{Name: "lpush", Arity: -3, Flags: Write | DenyOOM | Fast | Pipelined, Verb: VerbPush, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "list", Since: "1.0.0", Summary: "Prepends one or more elements to a list.", Args: elemArgs,
			Run: func(c Conn, args [][]byte) { push(c, true, args) }},
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

// push validates every value against the queue's rule and pushes them all or nothing (queue.Engine.Push).
func push(c Conn, left bool, args [][]byte) {
	queue := string(args[1])
	if !validQueue(c, queue) {
		return
	}
	op, err := c.Server().Queues().Push(queue, left, producer(c), args[2:])
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

// refused is the error reply for a value the engine refused before sending anything.
func refused(err error) string {
	var rej *queue.RejectedError
	var big *queue.TooLargeError
	switch {
	case errors.As(err, &rej):
		return sanitize("ERR " + rej.Error())
	case errors.As(err, &big):
		return "ERR " + big.Error()
	}
	return backendError(err)
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
		leasePop(c, key, left, args)
		return
	}
	if len(args) == 2 {
		op := c.Server().Queues().Pop(key, left, -1)
		c.Queue(op, func(w *resp.Writer) {
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
	op := c.Server().Queues().Pop(key, left, count)
	c.Queue(op, func(w *resp.Writer) {
		p, err := op.Result()
		switch {
		case err != nil:
			w.Error(backendError(err))
			return
		case p == nil:
			w.NullArray()
			return
		}
		w.Array(len(p.Items))
		for _, v := range p.Items {
			w.BulkString(deliver(c, key, v))
		}
		c.Popped(p)
	})
}

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
	timeout, errText := c.Session().blockTimeout(args[len(args)-1])
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
	if alo > 0 && alo < len(keys) {
		c.Reply().Error("ERR " + strings.ToUpper(string(args[0])) + " cannot wait on at-least-once and at-most-once queues at once")
		return
	}
	var p *queue.Pop
	var err error
	if alo > 0 {
		p, err = c.BlockLeasePop(keys, left, timeout)
	} else {
		p, err = c.BlockPop(keys, left, timeout)
	}
	w := c.Reply()
	switch {
	case err != nil:
		w.Error(backendError(err))
	case p == nil:
		timedOut(c, w)
	case alo > 0:
		w.Array(2)
		w.BulkString(p.Key)
		w.BulkString(deliverLeased(c, p.Key, p.Items[0], p.Receipts[0]))
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
	op := c.Server().Queues().Len(string(args[1]))
	c.Queue(op, func(w *resp.Writer) {
		n, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Int(n)
	})
}

// lrange peeks at a queue; items are shown as a consumer would receive them.
func lrange(c Conn, args [][]byte) {
	key := string(args[1])
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	op := c.Server().Queues().Range(key, args[2], args[3])
	c.Queue(op, func(w *resp.Writer) {
		vals, err := op.Result()
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

// timedOut writes a blocking command's reply when its wait ended without an item: a nil array, as on
// timeout, or ErrUnblocked after CLIENT UNBLOCK ... ERROR.
func timedOut(c Conn, w *resp.Writer) {
	if c.Unblocked() {
		w.Error(ErrUnblocked)
		return
	}
	w.NullArray()
}
