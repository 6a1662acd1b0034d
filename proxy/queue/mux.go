package queue

import (
	"context"
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Mux merges the backend commands of concurrent callers into pipelines on a few connections of one
// go-redis client, run by the callers themselves (proxy/DESIGN.md, "Backend multiplexer"). A caller
// queues its batch; while fewer than its leaders bound run a pipeline, the caller becomes a leader:
// it takes the queued batches (its own first), runs them as one go-redis pipeline in its own
// goroutine, hands leadership to the next queued batch's caller and wakes the callers it served.
// Only Process and RunBatch go through it; the embedded client's other methods are the client's own.
type Mux struct {
	redis.UniversalClient

	leaders int // pipelines in flight at most (one pooled connection each, per Cluster node)
	maxCmds int // commands a leader merges at most (its own batch is never split)

	mu      sync.Mutex
	running int         // leaders running
	queue   []*muxBatch // batches waiting, in submission order
}

// Mux bounds.
const (
	// DefaultMuxLeaders is the leaders bound without a pool size.
	DefaultMuxLeaders = 2
	// maxMuxLeaders bounds the leaders whatever the pool size.
	maxMuxLeaders = 4
	// muxMaxCmds bounds the commands of one merged pipeline.
	muxMaxCmds = 512
)

// MuxLeaders returns the leaders bound for a backend pool of poolSize connections (0: the
// default): a quarter of the pool, between 1 and 4.
func MuxLeaders(poolSize int) int {
	if poolSize <= 0 {
		return DefaultMuxLeaders
	}
	return min(max(poolSize/4, 1), maxMuxLeaders)
}

// muxBatch is one caller's commands, queued until a leader runs them.
type muxBatch struct {
	ctx   context.Context
	cmds  []redis.Cmder
	wake  chan bool   // true: lead; false: done (the commands ran)
	group []*muxBatch // as a leader: the batches of its pipeline (reused)
}

var muxBatches = sync.Pool{New: func() any { return &muxBatch{wake: make(chan bool, 1)} }}

// NewMux returns a Mux on c with at most leaders pipelines in flight (MuxLeaders).
func NewMux(c redis.UniversalClient, leaders int) *Mux {
	return &Mux{UniversalClient: c, leaders: max(leaders, 1), maxCmds: muxMaxCmds}
}

// Process runs cmd through the multiplexer and returns its error.
func (m *Mux) Process(ctx context.Context, cmd redis.Cmder) error {
	m.RunBatch(ctx, []redis.Cmder{cmd})
	return cmd.Err()
}

// RunBatch runs cmds, in order and contiguous, in one pipeline with other callers' batches, and returns once
// each of them has its reply or its error. Batches run with the context of their pipeline's leader;
// only batches of the same context share a pipeline.
func (m *Mux) RunBatch(ctx context.Context, cmds []redis.Cmder) {
	if len(cmds) == 0 {
		return
	}
	b := muxBatches.Get().(*muxBatch)
	b.ctx, b.cmds = ctx, cmds
	m.mu.Lock()
	if m.running < m.leaders {
		m.running++
		m.mu.Unlock()
		m.lead(b)
	} else {
		m.queue = append(m.queue, b)
		m.mu.Unlock()
		if <-b.wake {
			m.lead(b)
		}
	}
	b.ctx, b.cmds = nil, nil
	muxBatches.Put(b)
}

// lead runs own and the queued batches of its context as one pipeline, then passes leadership on.
func (m *Mux) lead(own *muxBatch) {
	group := append(own.group[:0], own)
	n := len(own.cmds)
	m.mu.Lock()
	kept := m.queue[:0]
	for _, b := range m.queue {
		if b.ctx == own.ctx && n+len(b.cmds) <= m.maxCmds {
			group = append(group, b)
			n += len(b.cmds)
		} else {
			kept = append(kept, b)
		}
	}
	clear(m.queue[len(kept):])
	m.queue = kept
	m.mu.Unlock()

	defer func() {
		// After the pipeline, or if it panicked: the served callers, then the next leader (the last
		// goroutine readied runs first, so the next pipeline does not wait for the served callers).
		m.mu.Lock()
		var next *muxBatch
		if len(m.queue) > 0 {
			next = m.queue[0]
			copy(m.queue, m.queue[1:])
			m.queue[len(m.queue)-1] = nil
			m.queue = m.queue[:len(m.queue)-1]
		} else {
			m.running--
		}
		m.mu.Unlock()
		r := recover()
		if r != nil {
			for _, b := range group[1:] {
				setErr(b.cmds, errMuxPanic)
			}
		}
		m.finish(group)
		own.group = group[:0]
		if next != nil {
			next.wake <- true
		}
		if r != nil {
			panic(r)
		}
	}()
	m.exec(own.ctx, group, n)
}

// finish wakes the callers of group's batches but the leader's own (group[0]).
func (m *Mux) finish(group []*muxBatch) {
	for i, b := range group[1:] {
		group[i+1] = nil
		b.wake <- false
	}
}

// exec runs the group's n commands: one command on its own, more as one pipeline.
func (m *Mux) exec(ctx context.Context, group []*muxBatch, n int) {
	if n == 1 {
		_ = m.UniversalClient.Process(ctx, group[0].cmds[0])
		return
	}
	pipe := m.UniversalClient.Pipeline()
	for _, b := range group {
		for _, c := range b.cmds {
			_ = pipe.Process(ctx, c)
		}
	}
	_, _ = pipe.Exec(ctx)
}

// setErr sets err on the commands that have no result yet.
func setErr(cmds []redis.Cmder, err error) {
	for _, c := range cmds {
		if c.Err() == nil {
			c.SetErr(err)
		}
	}
}

// errMuxPanic is the error of the commands whose pipeline's leader panicked.
var errMuxPanic = errors.New("backend pipeline aborted by a panic")
