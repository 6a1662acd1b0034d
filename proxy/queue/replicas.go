package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// Replicated pushes (README "Replicated pushes", proxy/DESIGN.md "Replicated pushes"). A push to a
// queue whose rule sets replicas: N is followed by WAIT N timeout on the same backend connection: WAIT
// counts the replicas that acknowledged every write of that connection, so the batch and its WAIT go
// in one pipeline on one connection of the plain client (never the multiplexer, which spreads
// commands over connections it shares with other clients). One WAIT per batch, not per push.

// replicaWait is a push's share of its batch's WAIT.
type replicaWait struct {
	queue   string // the queue's name: on a Cluster, its node takes the push and the WAIT
	n       int
	timeout time.Duration
	acked   int64 // the WAIT's reply, once the batch ran
	err     error // the WAIT's failure
	ran     bool
}

// ReplicasError is a push that fewer replicas than its rule asks for acknowledged in time: it is in the
// master, and may be lost if the master fails before it replicates. Its outcome is unknown to the
// client (OutcomeUnknown), never a success; a dedup rule makes the retry safe.
type ReplicasError struct {
	Queue   string
	Acked   int64
	Want    int
	Timeout time.Duration
	Err     error // the WAIT's own failure, if any
}

func (e *ReplicasError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("wait for %d replicas of the push to %s: %v", e.Want, e.Queue, e.Err)
	}
	return fmt.Sprintf("wait for replicas: %d of %d replicas acknowledged the push to %s within %s", e.Acked, e.Want, e.Queue, e.Timeout)
}

func (e *ReplicasError) Unwrap() error { return e.Err }

// withReplicas makes r, a push to queue under rule p, wait for p.Replicas replicas: its result is a
// *ReplicasError when fewer acknowledged it in time. A rule without replicas leaves r as it is.
func withReplicas[T any](p *policy.Policy, queue string, r *Result[T]) *Result[T] {
	if p.Replicas <= 0 || r.sync {
		return r
	}
	w := &replicaWait{queue: queue, n: p.Replicas, timeout: p.ReplicasTimeout}
	r.wait = w
	read := r.reader()
	r.src, r.read = nil, func() (T, error) {
		v, err := read()
		if err != nil {
			return v, err
		}
		if len(r.cmds) > 0 && rdb.IsNoScript(r.cmds[0].Err()) {
			// The script ran again with EVAL on another connection than the batch's WAIT
			// (evalFallback): the WAIT says nothing about it.
			var zero T
			return zero, &ReplicasError{Queue: queue, Want: w.n, Timeout: w.timeout,
				Err: errors.New("the push ran after NOSCRIPT on another connection than its WAIT")}
		}
		if err := w.check(); err != nil {
			var zero T
			return zero, err
		}
		return v, nil
	}
	return r
}

// check reports whether the push's WAIT saw enough replicas.
func (w *replicaWait) check() error {
	switch {
	case !w.ran:
		return &ReplicasError{Queue: w.queue, Want: w.n, Timeout: w.timeout, Err: errors.New("no WAIT was sent")}
	case w.err != nil:
		return &ReplicasError{Queue: w.queue, Want: w.n, Timeout: w.timeout, Err: w.err}
	case w.acked < int64(w.n):
		return &ReplicasError{Queue: w.queue, Acked: w.acked, Want: w.n, Timeout: w.timeout}
	}
	return nil
}

// waited reports whether a batch holds a push that waits for replicas.
func waited(ops []*Op) bool {
	for _, o := range ops {
		if o.wait != nil {
			return true
		}
	}
	return false
}

// runWaited runs a batch holding replicated pushes. On one Redis (standalone, Sentinel) the whole
// batch and one WAIT go in one pipeline on one connection. On a Cluster each replicated push goes with
// its WAIT to its node, and the rest of the batch between them as usual, in batch order.
func (e *Engine) runWaited(ops []*Op) {
	cc, ok := e.client.(*redis.ClusterClient)
	if !ok {
		pipelineWait(e.ctx, e.client, e.batchCmds(ops), ops)
		return
	}
	for i := 0; i < len(ops); {
		if ops[i].wait == nil {
			j := i + 1
			for j < len(ops) && ops[j].wait == nil {
				j++
			}
			pipe := e.client.Pipeline()
			for _, cmd := range e.batchCmds(ops[i:j]) {
				_ = pipe.Process(e.ctx, cmd)
			}
			_, _ = pipe.Exec(e.ctx)
			i = j
			continue
		}
		o := ops[i]
		node, err := cc.MasterForKey(e.ctx, o.wait.queue)
		if err != nil {
			err = fmt.Errorf("find node of %s: %w", o.wait.queue, err)
			for _, cmd := range o.commands() {
				cmd.SetErr(err)
			}
			o.wait.ran, o.wait.err = true, err
		} else {
			pipelineWait(e.ctx, node, o.commands(), ops[i:i+1])
		}
		i++
	}
}

// pipelineWait sends cmds and one WAIT (the most replicas and the longest timeout of ops' waits) in
// one pipeline of c, which runs it on one connection, and records the WAIT's reply in ops' waits.
func pipelineWait(ctx context.Context, c redis.Cmdable, cmds []redis.Cmder, ops []*Op) {
	n, timeout := 0, time.Duration(0)
	for _, o := range ops {
		if o.wait != nil {
			n, timeout = max(n, o.wait.n), max(timeout, o.wait.timeout)
		}
	}
	wait := redis.NewIntCmd(ctx, "wait", n, timeout.Milliseconds())
	pipe := c.Pipeline()
	for _, cmd := range cmds {
		_ = pipe.Process(ctx, cmd)
	}
	_ = pipe.Process(ctx, wait)
	_, _ = pipe.Exec(ctx)
	acked, err := wait.Result()
	for _, o := range ops {
		if o.wait != nil {
			o.wait.ran, o.wait.acked, o.wait.err = true, acked, err
		}
	}
}
