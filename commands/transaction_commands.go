package commands

import (
	"time"

	"github.com/qgate/qgate/proxy/queue"
)

// MULTI, EXEC, DISCARD, WATCH and UNWATCH (README "Transactions", proxy/DESIGN.md "Transactions"):
// Redis 7.0's queueing, replies and error texts. EXEC runs the queued commands in order, with no
// other command of the connection in between; it is not isolated from other clients.

// Limits of a transaction's queue: past either, the command is refused and EXEC aborts, so a client
// cannot make qgate hold an unbounded queue.
const (
	MaxMultiCommands = 100_000
	MaxMultiBytes    = 64 << 20
)

// Multi is a transaction being queued (Session.Multi).
type Multi struct {
	cmds  []queuedCmd
	bytes int
	// Dirty: a command was refused while queueing (unknown, arity, NOAUTH, NOPERM): EXEC aborts.
	Dirty bool
}

type queuedCmd struct {
	spec *Spec
	args [][]byte
}

// Len returns the number of commands queued.
func (m *Multi) Len() int { return len(m.cmds) }

// ErrExecAbort is EXEC's reply after a command was refused while queueing.
const ErrExecAbort = "EXECABORT Transaction discarded because of previous errors."

// ErrUnblocked is the reply of a blocked command ended by CLIENT UNBLOCK ... ERROR.
const ErrUnblocked = "UNBLOCKED client unblocked via CLIENT UNBLOCK"

func init() {
	tx := Loading | Stale | Fast
	register(
		&Spec{Name: "multi", Arity: 1, Flags: tx, Group: "transactions", Since: "1.2.0",
			Summary: "Starts a transaction.", Run: multiCmd},
		&Spec{Name: "exec", Arity: 1, Flags: Loading | Stale, Group: "transactions", Since: "1.2.0",
			Summary: "Executes all commands in a transaction.", Run: execCmd},
		&Spec{Name: "discard", Arity: 1, Flags: tx, Group: "transactions", Since: "2.0.0",
			Summary: "Discards a transaction.", Run: discardCmd},
		&Spec{Name: "watch", Arity: -2, Flags: tx, Group: "transactions", Since: "2.2.0", FirstKey: 1, LastKey: -1, KeyStep: 1,
			Summary: "Refused: qgate does not support optimistic locking (WATCH).",
			Args:    []Arg{{Name: "key", Type: "key", Multiple: true}}, Run: watchCmd},
		&Spec{Name: "unwatch", Arity: 1, Flags: tx, Group: "transactions", Since: "2.2.0",
			Summary: "Accepted: nothing is ever watched.", Run: func(c Conn, _ [][]byte) { c.Reply().OK() }},
	)
}

// runsInMulti reports whether a command runs at once inside MULTI instead of being queued (Redis's
// processCommand list).
func runsInMulti(spec *Spec) bool {
	switch spec.Name {
	case "exec", "discard", "multi", "watch", "quit", "reset":
		return true
	}
	return false
}

// queueInMulti copies the command into the transaction and replies +QUEUED; past the limits the
// command is refused and the transaction marked.
func queueInMulti(c Conn, spec *Spec, args [][]byte) {
	m := c.Session().Multi
	n := 0
	for _, a := range args {
		n += len(a)
	}
	if len(m.cmds) >= MaxMultiCommands || m.bytes+n > MaxMultiBytes {
		m.Dirty = true
		c.Reply().Error("ERR transaction too large for qgate (README \"Transactions\")")
		return
	}
	buf := make([]byte, 0, n)
	cp := make([][]byte, len(args))
	for i, a := range args {
		buf = append(buf, a...)
		cp[i] = buf[len(buf)-len(a):]
	}
	m.cmds = append(m.cmds, queuedCmd{spec: spec, args: cp})
	m.bytes += n
	c.Reply().Simple("QUEUED")
}

func multiCmd(c Conn, _ [][]byte) {
	s := c.Session()
	if s.Multi != nil {
		c.Reply().Error("ERR MULTI calls can not be nested")
		return
	}
	s.Multi = &Multi{}
	c.Reply().OK()
}

func discardCmd(c Conn, _ [][]byte) {
	s := c.Session()
	if s.Multi == nil {
		c.Reply().Error("ERR DISCARD without MULTI")
		return
	}
	s.Multi = nil
	c.Reply().OK()
}

func watchCmd(c Conn, _ [][]byte) {
	if c.Session().Multi != nil {
		c.Reply().Error("ERR WATCH inside MULTI is not allowed")
		return
	}
	c.Reply().Error("ERR WATCH is not supported by qgate")
}

// execCmd runs the queued commands in order; their replies form EXEC's array. Pipelined commands
// share the batch's round trip; blocking commands do not wait (Session.InExec), as in Redis.
func execCmd(c Conn, _ [][]byte) {
	s := c.Session()
	m := s.Multi
	if m == nil {
		c.Reply().Error("ERR EXEC without MULTI")
		return
	}
	s.Multi = nil
	if m.Dirty {
		c.Reply().Error(ErrExecAbort)
		return
	}
	c.Reply().Array(len(m.cmds))
	s.InExec = true
	defer func() { s.InExec = false }()
	for i := range m.cmds {
		q := &m.cmds[i]
		if q.spec.Flags&Pipelined == 0 {
			c.RunQueued()
		}
		q.spec.Run(c, q.args)
	}
}

// NoWait is the queue.Parker of a blocking command inside EXEC: it never waits, so the command
// replies as on timeout when nothing is there (Redis runs blocking commands in MULTI that way). A
// take already in flight still decides, so an item it got is delivered.
var NoWait queue.Parker = noWait{}

type noWait struct{}

func (noWait) Park(*queue.Waiter, time.Time) bool { return false }
func (noWait) Wake()                              {}
func (noWait) Gone() bool                         { return false }
