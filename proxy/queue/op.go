package queue

import (
	"sync"

	"github.com/redis/go-redis/v9"
)

// Operations of a client's batch (proxy/DESIGN.md, "Layers"). A pipelined engine call returns a
// *Result: the backend commands to send with the batch, and the function that turns their replies
// into a typed result. The connection collects a batch's operations and hands them to Engine.Run,
// which sends them in one round trip (merging and sharing single pops, see transit.go); then the
// caller reads each Result. A synchronous operation (a pop, ack or redrive larger than one script
// call, rdb.Chunk) has no commands: the connection runs the batch's earlier operations first, then
// reads it, and it runs its steps while being read.

// Queued is an operation for a client's batch: a *Result.
type Queued interface {
	// Sync reports an operation without backend commands of its own, which runs its steps when its
	// result is read; the batch's earlier operations must have run by then.
	Sync() bool
	op() *Op
}

// Op is the backend side of an operation.
type Op struct {
	cmds []redis.Cmder
	pop  *transitPop // an at-most-once pop (grouped with its neighbours and other clients')
	sync bool
	wait *replicaWait // a push that replicas must acknowledge (replicas.go)
}

func (o *Op) op() *Op { return o }

// commands returns the operation's backend commands; an at-most-once pop builds its own on first use
// (a pop grouped with others never needs it).
func (o *Op) commands() []redis.Cmder {
	if o.cmds == nil && o.pop != nil {
		o.cmds = []redis.Cmder{o.pop.command()}
	}
	return o.cmds
}

// Sync implements Queued.
func (o *Op) Sync() bool { return o.sync }

// Result is an operation and its typed result.
type Result[T any] struct {
	Op
	read func() (T, error)
	src  resultSource[T] // read without a closure: an operation that holds its result's state (popOp)
	once sync.Once
	val  T
	err  error
}

// reader returns how r reads its result, for a wrapper of it (withReplicas).
func (r *Result[T]) reader() func() (T, error) {
	if r.src != nil {
		return r.src.value
	}
	return r.read
}

// resultSource reads an operation's result, as Result.read does.
type resultSource[T any] interface{ value() (T, error) }

// Result returns the operation's result; call it once the batch ran (Engine.Run), or at once for a
// Sync operation.
func (r *Result[T]) Result() (T, error) {
	r.once.Do(func() {
		if r.src != nil {
			r.val, r.err = r.src.value()
		} else {
			r.val, r.err = r.read()
		}
	})
	return r.val, r.err
}

func newResult[T any](cmds []redis.Cmder, read func() (T, error)) *Result[T] {
	return &Result[T]{Op: Op{cmds: cmds}, read: read}
}

// syncResult is an operation that runs its steps when it is read.
func syncResult[T any](read func() (T, error)) *Result[T] {
	return &Result[T]{Op: Op{sync: true}, read: read}
}

// failed is an operation that sends nothing and fails with err.
func failed[T any](err error) *Result[T] {
	return syncResult(func() (T, error) { var zero T; return zero, err })
}

// Run sends the backend commands of a batch's operations in one round trip and waits for their
// replies. Backend calls use the engine's context, not the client's: a command that reached Redis
// must have its result handled (a popped item given back) even when the client is already gone.
func (e *Engine) Run(batch []Queued) {
	ops := make([]*Op, 0, len(batch))
	for _, q := range batch {
		if o := q.op(); !o.sync {
			ops = append(ops, o)
		}
	}
	if len(ops) == 0 {
		return
	}
	if waited(ops) {
		e.runWaited(ops) // the batch and its WAIT on one connection (replicas.go)
		return
	}
	if m := e.mux; m != nil {
		if pops := singlePops(ops); pops != nil {
			e.transit.share(m, pops) // the batch is a worker's LPOP(s): group with other clients'
			waitOps(ops)
			return
		}
	}
	cmds := e.batchCmds(ops)
	if m := e.mux; m != nil {
		// The multiplexer merges the batch, contiguous, with other clients' batches into pipelines on
		// a few connections (mux.go).
		m.RunBatch(e.ctx, cmds)
	} else if len(cmds) == 1 {
		_ = e.client.Process(e.ctx, cmds[0])
	} else {
		pipe := e.client.Pipeline()
		for _, cmd := range cmds {
			_ = pipe.Process(e.ctx, cmd)
		}
		_, _ = pipe.Exec(e.ctx)
	}
	waitOps(ops)
}

// waitOps waits for every operation's replies (a shared pop group's run by another connection).
func waitOps(ops []*Op) {
	for _, o := range ops {
		if o.pop != nil && o.pop.group != nil {
			o.pop.group.wait()
			continue
		}
		for _, c := range o.commands() {
			_ = c.Err()
		}
	}
}

// singlePops returns the batch's pops when it is made only of single pops (no COUNT) of one queue
// from one end, else nil.
func singlePops(ops []*Op) []*transitPop {
	first := ops[0].pop
	if first == nil || !first.single() {
		return nil
	}
	pops := make([]*transitPop, 0, len(ops))
	for _, o := range ops {
		p := o.pop
		if p == nil || !p.single() || p.key != first.key || p.left != first.left {
			return nil
		}
		pops = append(pops, p)
	}
	return pops
}

// batchCmds returns the backend commands of a batch: adjacent single pops of one queue (a worker's
// pipelined LPOPs, or one) become one transit_pop_each call, the rest go as they are.
func (e *Engine) batchCmds(ops []*Op) []redis.Cmder {
	cmds := make([]redis.Cmder, 0, len(ops))
	for i := 0; i < len(ops); {
		if p := ops[i].pop; p != nil && p.single() {
			j := i + 1
			for ; j < len(ops); j++ {
				next := ops[j].pop
				if next == nil || !next.single() || next.key != p.key || next.left != p.left {
					break
				}
			}
			// Even a lone pop: transit_pop_each carries the deletes of the queue's delivered fields.
			pops := make([]*transitPop, 0, j-i)
			for _, o := range ops[i:j] {
				pops = append(pops, o.pop)
			}
			cmds = append(cmds, e.transit.mergePops(pops))
			i = j
			continue
		}
		cmds = append(cmds, ops[i].commands()...)
		i++
	}
	return cmds
}
