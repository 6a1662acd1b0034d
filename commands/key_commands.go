package commands

import "github.com/qgate/qgate/proxy/resp"

// Key commands on queue names (README "List edits"): DEL, UNLINK, EXISTS, TYPE, and qgate's QPURGE.

func init() {
	keys := []Arg{{Name: "key", Type: "key", Multiple: true}}
	register(
		&Spec{Name: "del", Arity: -2, Flags: Write | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: -1, KeyStep: 1,
			Group: "generic", Since: "1.0.0", Summary: "Deletes one or more keys.", Args: keys,
			Run: func(c Conn, args [][]byte) { del(c, false, args) }},
		&Spec{Name: "unlink", Arity: -2, Flags: Write | Fast | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: -1, KeyStep: 1,
			Group: "generic", Since: "4.0.0", Summary: "Asynchronously deletes one or more keys.", Args: keys,
			Run: func(c Conn, args [][]byte) { del(c, true, args) }},
		&Spec{Name: "exists", Arity: -2, Flags: ReadOnly | Fast | Pipelined, Verb: VerbPeek, FirstKey: 1, LastKey: -1, KeyStep: 1,
			Group: "generic", Since: "1.0.0", Summary: "Determines whether one or more keys exist.", Args: keys,
			Run: exists},
		&Spec{Name: "type", Arity: 2, Flags: ReadOnly | Fast | Pipelined, Verb: VerbPeek, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "generic", Since: "1.0.0", Summary: "Determines the type of value stored at a key.",
			Args: []Arg{{Name: "key", Type: "key"}}, Run: typeCmd},
		&Spec{Name: "qpurge", Arity: -2, Flags: Write | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: -1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Deletes queues with every key qgate keeps for them (leases, delayed, dead, transit records); returns the items removed.",
			Args: keys, Run: qpurge},
	)
}

// queueNames checks every name (ERR invalid queue name …) and returns them.
func queueNames(c Conn, args [][]byte) ([]string, bool) {
	names := make([]string, len(args))
	for i, a := range args {
		names[i] = string(a)
		if _, ok := queuePolicy(c, names[i]); !ok {
			return nil, false
		}
	}
	return names, true
}

func intReply(op interface {
	Result() (int64, error)
}) func(w *resp.Writer) {
	return func(w *resp.Writer) {
		n, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Int(n)
	}
}

func del(c Conn, unlink bool, args [][]byte) {
	names, ok := queueNames(c, args[1:])
	if !ok {
		return
	}
	op := c.Server().Queues().Del(unlink, names)
	c.Queue(op, intReply(op))
}

func exists(c Conn, args [][]byte) {
	names, ok := queueNames(c, args[1:])
	if !ok {
		return
	}
	op := c.Server().Queues().Exists(names)
	c.Queue(op, intReply(op))
}

func typeCmd(c Conn, args [][]byte) {
	key := string(args[1])
	if _, ok := queuePolicy(c, key); !ok {
		return
	}
	op := c.Server().Queues().Type(key)
	c.Queue(op, func(w *resp.Writer) {
		t, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Simple(t)
	})
}

func qpurge(c Conn, args [][]byte) {
	names, ok := queueNames(c, args[1:])
	if !ok {
		return
	}
	op := c.Server().Queues().Purge(names)
	c.Queue(op, intReply(op))
}
