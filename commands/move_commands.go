package commands

import (
	"time"

	"github.com/qgate/qgate/proxy/queue"
	"github.com/qgate/qgate/proxy/resp"
)

// Moves and multi-pops (README "Moving items"): LMOVE, RPOPLPUSH, BLMOVE, BRPOPLPUSH, LMPOP, BLMPOP.
// A move needs the pop right on its source and the push right on its destination; the engine moves
// the item as stored with Redis's own LMOVE (proxy/queue/move.go).

func init() {
	src := Arg{Name: "source", Type: "key"}
	dst := Arg{Name: "destination", Type: "key"}
	end := func(name string) Arg {
		return Arg{Name: name, Type: "oneof", Sub: []Arg{{Name: "left", Type: "pure-token", Token: "LEFT"}, {Name: "right", Type: "pure-token", Token: "RIGHT"}}}
	}
	timeoutArg := Arg{Name: "timeout", Type: "double"}
	mpopArgs := []Arg{{Name: "numkeys", Type: "integer"}, {Name: "key", Type: "key", Multiple: true}, end("where"),
		{Name: "count", Type: "integer", Token: "COUNT", Optional: true}}
	register(
		&Spec{Name: "lmove", Arity: 5, Flags: Write | DenyOOM | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 2, KeyStep: 1,
			Targets: argAt(1), PushTargets: argAt(2),
			Group: "list", Since: "6.2.0", Summary: "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.",
			Args: []Arg{src, dst, end("wherefrom"), end("whereto")},
			Run:  lmove},
		&Spec{Name: "rpoplpush", Arity: 3, Flags: Write | DenyOOM | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 2, KeyStep: 1,
			Targets: argAt(1), PushTargets: argAt(2),
			Group: "list", Since: "1.2.0", Summary: "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.",
			Args: []Arg{src, dst},
			Run:  func(c Conn, args [][]byte) { move(c, args[1], args[2], false, true) }},
		&Spec{Name: "blmove", Arity: 6, Flags: Write | DenyOOM | Blocking, Verb: VerbPop, FirstKey: 1, LastKey: 2, KeyStep: 1,
			Targets: argAt(1), PushTargets: argAt(2),
			Group: "list", Since: "6.2.0", Summary: "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.",
			Args: []Arg{src, dst, end("wherefrom"), end("whereto"), timeoutArg},
			Run:  blmove},
		&Spec{Name: "brpoplpush", Arity: 4, Flags: Write | DenyOOM | Blocking, Verb: VerbPop, FirstKey: 1, LastKey: 2, KeyStep: 1,
			Targets: argAt(1), PushTargets: argAt(2),
			Group: "list", Since: "2.2.0", Summary: "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.",
			Args: []Arg{src, dst, timeoutArg},
			Run:  func(c Conn, args [][]byte) { blockMove(c, args[1], args[2], false, true, args[3]) }},
		&Spec{Name: "lmpop", Arity: -4, Flags: Write | Pipelined, Verb: VerbPop, Targets: mpopKeys(1),
			Group: "list", Since: "7.0.0", Summary: "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.",
			Args: mpopArgs, Run: lmpop},
		&Spec{Name: "blmpop", Arity: -5, Flags: Write | Blocking, Verb: VerbPop, Targets: mpopKeys(2),
			Group: "list", Since: "7.0.0", Summary: "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.",
			Args: append([]Arg{timeoutArg}, mpopArgs...), Run: blmpop},
	)
}

// parseLeftRight reads LEFT or RIGHT (any case), as Redis's getListPositionFromObjectOrReply.
func parseLeftRight(arg []byte) (left, ok bool) {
	switch {
	case equalFold(arg, "left"):
		return true, true
	case equalFold(arg, "right"):
		return false, true
	}
	return false, false
}

func lmove(c Conn, args [][]byte) {
	from, ok1 := parseLeftRight(args[3])
	to, ok2 := parseLeftRight(args[4])
	if !ok1 || !ok2 {
		c.Reply().Error(ErrSyntax)
		return
	}
	move(c, args[1], args[2], from, to)
}

// moveQueues validates both queue names; on a bad one it replies with the error.
func moveQueues(c Conn, srcArg, dstArg []byte) (src, dst string, ok bool) {
	src, dst = string(srcArg), string(dstArg)
	if _, ok := queuePolicy(c, src); !ok {
		return "", "", false
	}
	if _, ok := queuePolicy(c, dst); !ok {
		return "", "", false
	}
	return src, dst, true
}

// move is LMOVE and RPOPLPUSH: the moved item as the client's delivery mode shows items of the
// source (payload or envelope, without a receipt: a move takes no lease), or nil.
func move(c Conn, srcArg, dstArg []byte, from, to bool) {
	src, dst, ok := moveQueues(c, srcArg, dstArg)
	if !ok {
		return
	}
	op := c.Server().Queues().Move(src, dst, from, to)
	c.Queue(op, func(w *resp.Writer) {
		v, err := op.Result()
		switch {
		case err != nil:
			w.Error(backendError(err))
		case v == nil:
			w.Null()
		default:
			w.BulkString(deliver(c, src, *v))
		}
	})
}

func blmove(c Conn, args [][]byte) {
	from, ok1 := parseLeftRight(args[3])
	to, ok2 := parseLeftRight(args[4])
	if !ok1 || !ok2 {
		c.Reply().Error(ErrSyntax)
		return
	}
	blockMove(c, args[1], args[2], from, to, args[5])
}

// blockMove is BLMOVE and BRPOPLPUSH: the client waits in the engine's wait hub
// (queue.Engine.BlockMove); on timeout the reply is a nil array, as Redis 7.0 replies (*-1 in RESP2).
func blockMove(c Conn, srcArg, dstArg []byte, from, to bool, timeoutArg []byte) {
	timeout, errText := c.Session().blockTimeout(timeoutArg)
	if errText != "" {
		c.Reply().Error(errText)
		return
	}
	src, dst, ok := moveQueues(c, srcArg, dstArg)
	if !ok {
		return
	}
	var v *string
	var err error
	c.Block(func(p queue.Parker) { v, err = c.Server().Queues().BlockMove(src, dst, from, to, timeout, p) })
	w := c.Reply()
	switch {
	case err != nil:
		w.Error(backendError(err))
	case v == nil && c.Session().InExec:
		w.Null() // inside EXEC Redis runs it as LMOVE: a nil bulk string
	case v == nil:
		timedOut(c, w)
	default:
		w.BulkString(deliver(c, src, *v))
	}
}

// Redis's LMPOP/BLMPOP error texts.
const (
	ErrNumKeys = "ERR numkeys should be greater than 0"
	ErrCount   = "ERR count should be greater than 0"
)

// mpopArgs are LMPOP's parsed arguments.
type mpopArgs struct {
	keys  []string
	left  bool
	count int64
}

// parseMPop parses "numkeys key... LEFT|RIGHT [COUNT n]" from args[at], in Redis 7.0's order
// (lmpopGenericCommand): numkeys, the end, then the options; the error text or "".
func parseMPop(args [][]byte, at int) (mpopArgs, string) {
	var m mpopArgs
	n, ok := ParseLong(args[at])
	if !ok || n < 1 {
		return m, ErrNumKeys
	}
	if n >= int64(len(args)-at-1) {
		return m, ErrSyntax // no room for the end after the keys
	}
	whereAt := at + 1 + int(n)
	if m.left, ok = parseLeftRight(args[whereAt]); !ok {
		return m, ErrSyntax
	}
	m.count = -1
	for j := whereAt + 1; j < len(args); j++ {
		if m.count == -1 && equalFold(args[j], "count") && j+1 < len(args) {
			j++
			if m.count, ok = ParseLong(args[j]); !ok || m.count < 1 {
				return m, ErrCount
			}
			continue
		}
		return m, ErrSyntax
	}
	if m.count == -1 {
		m.count = 1
	}
	m.keys = make([]string, n)
	for i := range m.keys {
		m.keys[i] = string(args[at+1+i])
	}
	return m, ""
}

// mpopKeys returns the Targets of LMPOP (numkeys at position at) and BLMPOP: the keys numkeys names,
// none when numkeys is not a number or leaves no room for the end (the command then fails with
// Redis's error, not with a NOPERM naming "LEFT").
func mpopKeys(at int) func([][]byte) [][]byte {
	return func(args [][]byte) [][]byte {
		n, ok := ParseLong(args[at])
		if !ok || n < 1 || n >= int64(len(args)-at-1) {
			return nil
		}
		return args[at+1 : at+1+int(n)]
	}
}

// mpopPolicies validates the keys' names and counts the at-least-once queues among them; on a bad
// name it replies with the error.
func mpopPolicies(c Conn, keys []string) (alo int, ok bool) {
	for _, k := range keys {
		p, ok := queuePolicy(c, k)
		if !ok {
			return 0, false
		}
		if p.AtLeastOnce {
			alo++
		}
	}
	return alo, true
}

// lmpop is LMPOP: [key, [items]] from the first key with items, each popped the way its queue's rule
// says (transit record or lease), or a nil array.
func lmpop(c Conn, args [][]byte) {
	m, errText := parseMPop(args, 1)
	if errText != "" {
		c.Reply().Error(errText)
		return
	}
	if _, ok := mpopPolicies(c, m.keys); !ok {
		return
	}
	op := c.Server().Queues().MPop(&c.Session().Consumer, m.keys, m.left, m.count)
	c.Queue(op, func(w *resp.Writer) {
		p, err := op.Result()
		switch {
		case err != nil:
			w.Error(backendError(err))
		case p == nil || len(p.Items) == 0:
			w.NullArray()
		default:
			writeMPop(c, w, p)
		}
	})
}

// writeMPop writes an LMPOP/BLMPOP reply for p and records its transit pop for Settle.
func writeMPop(c Conn, w *resp.Writer, p *queue.Pop) {
	w.Array(2)
	w.BulkString(p.Key)
	w.Array(len(p.Items))
	leased := p.Receipts != nil // only leased pops carry receipts
	for i, v := range p.Items {
		if leased {
			w.BulkString(deliverLeased(c, p.Key, v, p.Receipts[i]))
		} else {
			w.BulkString(deliver(c, p.Key, v))
		}
	}
	if !leased {
		c.Popped(p)
	}
}

// blmpop is BLMPOP: as LMPOP, waiting in the engine's wait hub like BLPOP (at most
// queue.MaxPopChunk items per pop); one delivery mode per wait.
func blmpop(c Conn, args [][]byte) {
	m, errText := parseMPop(args, 2)
	if errText == "" {
		var timeout time.Duration
		if timeout, errText = c.Session().blockTimeout(args[1]); errText == "" {
			blockMPop(c, m, timeout)
			return
		}
	}
	c.Reply().Error(errText)
}

func blockMPop(c Conn, m mpopArgs, timeout time.Duration) {
	alo, ok := mpopPolicies(c, m.keys)
	if !ok {
		return
	}
	if alo > 0 && alo < len(m.keys) {
		c.Reply().Error("ERR BLMPOP cannot wait on at-least-once and at-most-once queues at once")
		return
	}
	var p *queue.Pop
	var err error
	e := c.Server().Queues()
	c.Block(func(pk queue.Parker) {
		if alo > 0 {
			p, err = e.BlockLeaseMPop(&c.Session().Consumer, m.keys, m.left, m.count, timeout, pk)
		} else {
			p, err = e.BlockMPop(m.keys, m.left, m.count, timeout, pk)
		}
	})
	w := c.Reply()
	switch {
	case err != nil:
		w.Error(backendError(err))
	case p == nil || len(p.Items) == 0:
		timedOut(c, w)
	default:
		writeMPop(c, w, p)
	}
}
