package commands

import (
	"math"
	"strconv"
	"strings"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/queue"
	"github.com/qgate/qgate/proxy/resp"
)

// qgate's commands for at-least-once queues (README "Retry rules"): QACK, QNACK, QEXTEND, QSTATS,
// QDEAD, QREDRIVE, and the replies of leased pops. The leases themselves are the engine's
// (proxy/queue/lease.go).

func init() {
	queueArg := Arg{Name: "queue", Type: "key"}
	receiptArg := Arg{Name: "receipt", Type: "string"}
	register(
		&Spec{Name: "qack", Arity: -3, Flags: Write | Fast | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Acknowledges leased items of an at-least-once queue by their receipts; returns how many were leased.",
			Args: []Arg{queueArg, {Name: "receipt", Type: "string", Multiple: true}}, Run: qack},
		&Spec{Name: "qnack", Arity: -3, Flags: Write | Fast | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Gives a leased item back for another attempt, after delay-ms or the queue's backoff; returns 1 if the receipt was leased.",
			Args: []Arg{queueArg, receiptArg, {Name: "delay-ms", Type: "integer", Optional: true}}, Run: qnack},
		&Spec{Name: "qextend", Arity: 4, Flags: Write | Fast | Pipelined, Verb: VerbPop, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Sets a lease's deadline to ms milliseconds from now; returns 1 if the receipt was leased.",
			Args: []Arg{queueArg, receiptArg, {Name: "ms", Type: "integer"}}, Run: qextend},
		&Spec{Name: "qstats", Arity: 2, Flags: ReadOnly | Fast | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Returns a queue's ready, in-flight, delayed, dead and handoff counts, the oldest ready item's age in ms (-1: none), whether it is paused and the items this instance dropped for max_length.",
			Args: []Arg{queueArg}, Run: qstats},
		&Spec{Name: "qdead", Arity: -2, Flags: ReadOnly | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Lists up to count (default 10) dead items of a queue, oldest first, as JSON records.",
			Args: []Arg{queueArg, {Name: "count", Type: "integer", Optional: true}}, Run: qdead},
		&Spec{Name: "qredrive", Arity: -2, Flags: Write | Pipelined, Verb: VerbAdmin, FirstKey: 1, LastKey: 1, KeyStep: 1,
			Group: "qgate", Since: "qgate 0.1", Summary: "Moves up to count (default all) dead items back to the ready list with attempts reset; returns how many.",
			Args: []Arg{queueArg, {Name: "count", Type: "integer", Optional: true}}, Run: qredrive},
	)
}

// deliverLeased returns what the client receives for an item it leased: with envelopes, the envelope
// with its receipt; otherwise what deliver gives (the payload, or a raw item as it is).
func deliverLeased(c Conn, queue, item, receipt string) string {
	if envelope.Is([]byte(item)) && WantsEnvelope(c.Session().Deliver, c.Server().Policies().Queue(queue)) {
		return envelope.WithReceipt(item, receipt)
	}
	return deliver(c, queue, item)
}

// leasePop is LPOP/RPOP on an at-least-once queue (queue.Engine.LeasePop): a bulk string or nil
// without COUNT, else an array or a nil array.
func leasePop(c Conn, key string, left bool, args [][]byte) {
	count := int64(-1)
	if len(args) == 3 {
		n, ok := ParseLong(args[2]) // as LPOP's COUNT on any queue: Redis's string2ll, no '+' or leading zeros
		if !ok || n < 0 {
			c.Reply().Error(ErrNotPositive)
			return
		}
		count = n
	}
	op := c.Server().Queues().LeasePop(&c.Session().Consumer, key, left, count)
	c.Queue(op, func(w *resp.Writer) {
		p, err := op.Result()
		single := count < 0
		switch {
		case err != nil:
			w.Error(backendError(err))
		case single && (p == nil || len(p.Items) != 1):
			w.Null()
		case single:
			w.BulkString(deliverLeased(c, key, p.Items[0], p.Receipts[0]))
		case p == nil:
			w.NullArray()
		default:
			w.Array(len(p.Items))
			for i, item := range p.Items {
				w.BulkString(deliverLeased(c, key, item, p.Receipts[i]))
			}
		}
	})
}

// writeInt queues op and writes its integer result.
func writeInt(c Conn, op *queue.Result[int64]) {
	c.Queue(op, func(w *resp.Writer) {
		n, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Int(n)
	})
}

func qack(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	receipts := make([]string, len(args)-2)
	for i, a := range args[2:] {
		receipts[i] = string(a)
	}
	writeInt(c, c.Server().Queues().Ack(&c.Session().Consumer, queue, receipts))
}

func qnack(c Conn, args [][]byte) {
	if len(args) > 4 {
		c.Reply().Error(WrongArgs("qnack"))
		return
	}
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	delay := int64(-1)
	if len(args) == 4 {
		d, err := strconv.ParseInt(string(args[3]), 10, 64)
		if err != nil || d < 0 {
			c.Reply().Error("ERR QNACK delay-ms must be an integer >= 0")
			return
		}
		delay = d
	}
	writeInt(c, c.Server().Queues().Nack(&c.Session().Consumer, queue, string(args[2]), delay))
}

func qextend(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	ms, err := strconv.ParseInt(string(args[3]), 10, 64)
	if err != nil || ms <= 0 {
		c.Reply().Error("ERR QEXTEND ms must be a positive integer")
		return
	}
	writeInt(c, c.Server().Queues().Extend(queue, string(args[2]), ms))
}

// optCount parses an optional positive count argument (args[i]); def when absent.
func optCount(c Conn, name string, args [][]byte, i int, def int64) (int64, bool) {
	if len(args) > i+1 {
		c.Reply().Error(WrongArgs(name))
		return 0, false
	}
	if len(args) <= i {
		return def, true
	}
	n, err := strconv.ParseInt(string(args[i]), 10, 64)
	if err != nil || n <= 0 {
		c.Reply().Error("ERR " + strings.ToUpper(name) + " count must be a positive integer")
		return 0, false
	}
	return n, true
}

func qstats(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	op := c.Server().Queues().QueueStats(queue)
	c.Queue(op, func(w *resp.Writer) {
		st, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		paused := int64(0)
		if st.Paused {
			paused = 1
		}
		w.Map(8)
		for _, f := range []struct {
			name string
			v    int64
		}{{"ready", st.Ready}, {"in_flight", st.InFlight}, {"delayed", st.Delayed}, {"dead", st.Dead}, {"handoff", st.Handoff},
			{"oldest_ready_age_ms", st.OldestReadyAgeMs}, {"paused", paused}, {"dropped", st.Dropped}} {
			w.BulkString(f.name)
			w.Int(f.v)
		}
	})
}

func qdead(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	n, ok := optCount(c, "qdead", args, 2, 10)
	if !ok {
		return
	}
	op := c.Server().Queues().Dead(queue, n)
	c.Queue(op, func(w *resp.Writer) {
		vals, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Array(len(vals))
		for _, v := range vals {
			w.BulkString(v)
		}
	})
}

func qredrive(c Conn, args [][]byte) {
	queue := string(args[1])
	if _, ok := queuePolicy(c, queue); !ok {
		return
	}
	n, ok := optCount(c, "qredrive", args, 2, math.MaxInt64)
	if !ok {
		return
	}
	writeInt(c, c.Server().Queues().RedriveVia(queue, n, "resp"))
}
