package queue

import (
	"context"
	"errors"
	"strings"
	"sync"
	"unicode"

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
	cluster *redis.ClusterClient // set on a Cluster: one lane per master

	leaders int // pipelines in flight at most per lane (one pooled connection each)
	maxCmds int // commands a leader merges at most (its own batch is never split)

	lane muxLane // the only lane outside a Cluster; on a Cluster, commands without a key

	lanesMu sync.Mutex
	lanes   map[*redis.Client]*muxLane // Cluster: per master node client (MasterForKey)
}

// muxLane is one set of leaders and their queue: the whole client outside a Cluster, one master's
// commands on a Cluster, so that a master that stops answering holds up only its own commands
// (proxy/DESIGN.md "Backend multiplexer").
type muxLane struct {
	m       *Mux
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

// NewMux returns a Mux on c with at most leaders pipelines in flight (MuxLeaders) per lane.
func NewMux(c redis.UniversalClient, leaders int) *Mux {
	m := &Mux{UniversalClient: c, leaders: max(leaders, 1), maxCmds: muxMaxCmds}
	m.lane.m = m
	if cc, ok := c.(*redis.ClusterClient); ok {
		m.cluster, m.lanes = cc, map[*redis.Client]*muxLane{}
	}
	return m
}

// Process runs cmd through the multiplexer and returns its error.
func (m *Mux) Process(ctx context.Context, cmd redis.Cmder) error {
	m.RunBatch(ctx, []redis.Cmder{cmd})
	return cmd.Err()
}

// RunBatch runs cmds, in order and contiguous, in one pipeline with other callers' batches, and returns once
// each of them has its reply or its error. Batches run with the context of their pipeline's leader;
// only batches of the same context share a pipeline. On a Cluster the commands for each master run in
// that master's lane (in order, contiguous), the lanes at the same time.
func (m *Mux) RunBatch(ctx context.Context, cmds []redis.Cmder) {
	if len(cmds) == 0 {
		return
	}
	if m.cluster == nil {
		m.lane.run(ctx, cmds)
		return
	}
	m.runCluster(ctx, cmds)
}

// runCluster splits cmds by the master of each command's key (order kept within each master's part,
// as go-redis's Cluster pipeline does) and runs each part in its master's lane, all at once.
func (m *Mux) runCluster(ctx context.Context, cmds []redis.Cmder) {
	first := m.laneOf(ctx, cmds[0])
	i := 1
	for i < len(cmds) && m.laneOf(ctx, cmds[i]) == first {
		i++
	}
	if i == len(cmds) { // one master: the common case
		first.run(ctx, cmds)
		return
	}
	var order []*muxLane
	parts := map[*muxLane][]redis.Cmder{first: cmds[:i:i]}
	order = append(order, first)
	for _, c := range cmds[i:] {
		l := m.laneOf(ctx, c)
		if _, ok := parts[l]; !ok {
			order = append(order, l)
		}
		parts[l] = append(parts[l], c)
	}
	var wg sync.WaitGroup
	for _, l := range order[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx, parts[l])
		}()
	}
	first.run(ctx, parts[first])
	wg.Wait()
}

// laneOf returns the lane of the master that owns cmd's first key in the client's cached slot map;
// the keyless lane for a command without a key or when the map has no master for it.
func (m *Mux) laneOf(ctx context.Context, cmd redis.Cmder) *muxLane {
	key, ok := cmdKey(cmd.Args())
	if !ok {
		return &m.lane
	}
	node, err := m.cluster.MasterForKey(ctx, key)
	if err != nil {
		return &m.lane
	}
	m.lanesMu.Lock()
	defer m.lanesMu.Unlock()
	l := m.lanes[node]
	if l == nil {
		l = &muxLane{m: m}
		m.lanes[node] = l
	}
	return l
}

// cmdKey returns the first key of a command the engine sends: the first key of EVAL/EVALSHA (none when
// numkeys is 0), else the first argument, except for the commands that take none.
func cmdKey(args []any) (string, bool) {
	if len(args) < 2 {
		return "", false
	}
	name, _ := args[0].(string)
	if strings.ContainsFunc(name, unicode.IsUpper) {
		name = strings.ToLower(name)
	}
	switch name {
	case "evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro":
		if len(args) < 4 {
			return "", false
		}
		switch n := args[2].(type) {
		case int:
			if n == 0 {
				return "", false
			}
		case int64:
			if n == 0 {
				return "", false
			}
		case string:
			if n == "0" {
				return "", false
			}
		}
		return keyString(args[3])
	case "ping", "wait", "publish", "info", "config", "script", "client", "hello", "select", "time",
		"cluster", "command", "echo", "auth", "dbsize", "role", "memory", "pubsub", "keys", "scan":
		return "", false
	}
	return keyString(args[1])
}

func keyString(a any) (string, bool) {
	switch k := a.(type) {
	case string:
		return k, true
	case []byte:
		return string(k), true
	}
	return "", false
}

// run is RunBatch within the lane.
func (l *muxLane) run(ctx context.Context, cmds []redis.Cmder) {
	b := muxBatches.Get().(*muxBatch)
	b.ctx, b.cmds = ctx, cmds
	l.mu.Lock()
	if l.running < l.m.leaders {
		l.running++
		l.mu.Unlock()
		l.lead(b)
	} else {
		l.queue = append(l.queue, b)
		l.mu.Unlock()
		if <-b.wake {
			l.lead(b)
		}
	}
	b.ctx, b.cmds = nil, nil
	muxBatches.Put(b)
}

// lead runs own and the queued batches of its context as one pipeline, then passes leadership on.
func (l *muxLane) lead(own *muxBatch) {
	m := l.m
	group := append(own.group[:0], own)
	n := len(own.cmds)
	l.mu.Lock()
	kept := l.queue[:0]
	for _, b := range l.queue {
		if b.ctx == own.ctx && n+len(b.cmds) <= m.maxCmds {
			group = append(group, b)
			n += len(b.cmds)
		} else {
			kept = append(kept, b)
		}
	}
	clear(l.queue[len(kept):])
	l.queue = kept
	l.mu.Unlock()

	defer func() {
		// After the pipeline, or if it panicked: the served callers, then the next leader (the last
		// goroutine readied runs first, so the next pipeline does not wait for the served callers).
		l.mu.Lock()
		var next *muxBatch
		if len(l.queue) > 0 {
			next = l.queue[0]
			copy(l.queue, l.queue[1:])
			l.queue[len(l.queue)-1] = nil
			l.queue = l.queue[:len(l.queue)-1]
		} else {
			l.running--
		}
		l.mu.Unlock()
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
