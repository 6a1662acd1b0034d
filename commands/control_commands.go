package commands

import (
	"strconv"
	"time"

	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/resp"
)

// Queue controls (README "Queue controls"): QPUSH (delayed push), QPAUSE and QRESUME. max_length and
// the rule's delay apply to RPUSH/LPUSH in the engine (proxy/queue/controls.go).

func init() {
	queueArg := Arg{Name: "queue", Type: "key"}
	register(
		&Spec{Name: "qpush", Arity: -4, Flags: Write | DenyOOM | Fast | Pipelined, Verb: VerbPush, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Pushes elements to the tail of a queue, visible to pops after delay-ms; returns how many were stored (not suppressed as duplicates).",
			Args: []Arg{queueArg, {Name: "delay-ms", Type: "integer"}, {Name: "element", Type: "string", Multiple: true}}, Run: qpush},
		&Spec{Name: "qpause", Arity: 2, Flags: Write | Fast | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Pauses a queue on every qgate instance: pops find it empty until QRESUME; pushes go on.",
			Args: []Arg{queueArg}, Run: qpause},
		&Spec{Name: "qresume", Arity: 2, Flags: Write | Fast | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Ends a queue's pause and wakes the pops waiting on it; returns 1 if it was paused, else 0.",
			Args: []Arg{queueArg}, Run: qresume},
	)
}

func qpush(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	ms, ok := ParseLong(args[2]) // Redis's string2ll: no '+', no leading zeros
	if !ok || ms < 0 || ms > policy.MaxDelay.Milliseconds() {
		c.Reply().Error("ERR QPUSH delay-ms must be an integer between 0 and " + strconv.FormatInt(policy.MaxDelay.Milliseconds(), 10))
		return
	}
	op, err := c.Server().Queues().PushDelayed(queue, producer(c), time.Duration(ms)*time.Millisecond, args[3:])
	if err != nil {
		c.Reply().Error(refused(err))
		return
	}
	c.Queue(op, func(w *resp.Writer) {
		r, err := op.Result()
		if err != nil {
			w.Error(writeError(err))
			return
		}
		w.Int(r.Stored)
	})
}

func qpause(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	op := c.Server().Queues().Pause(queue)
	c.Queue(op, func(w *resp.Writer) {
		if _, err := op.Result(); err != nil {
			w.Error(backendError(err))
			return
		}
		w.OK()
	})
}

func qresume(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	op := c.Server().Queues().Resume(queue)
	c.Queue(op, func(w *resp.Writer) {
		was, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		if was {
			w.Int(1)
		} else {
			w.Int(0)
		}
	})
}
