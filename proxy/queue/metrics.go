package queue

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// Per-queue counters and the queue registry (proxy/DESIGN.md, "Observability"). Each push, pop, ack
// or retry costs one lock-free map load and an atomic add; the registry (rdb.QueuesKey) is written by
// a background goroutine, at most once per rdb.QueueNoteInterval per queue and process, never on the
// path of a client's command.

// OtherQueue is the label of the counters of every queue past the cap of named queues.
const OtherQueue = "other"

// DefaultMetricsMaxQueues is how many queues get counters of their own by default.
const DefaultMetricsMaxQueues = 1000

// Rejection reasons of QueueCounts.Rejected.
const (
	RejectedRule     = "rule"      // refused by the queue's rule (schema, size, dedup key)
	RejectedTooLarge = "too_large" // over the backend's proto-max-bulk-len
	RejectedFull     = "full"      // the queue was at max_length with overflow: reject (README "Queue controls")
)

// QueueCounts is a reading of one queue's counters in this process.
type QueueCounts struct {
	Pushed, Popped, Acked, Retried, DeadLettered int64
	RejectedRule, RejectedTooLarge               int64
	RejectedFull, Dropped                        int64 // max_length: pushes refused, items dropped (drop-oldest)
}

type queueCounters struct {
	pushed, popped, acked, retried, dead atomic.Int64
	rejRule, rejLarge                    atomic.Int64
	rejFull, dropped                     atomic.Int64
	noted                                atomic.Int64 // ms when last sent to the registry
}

func (q *queueCounters) read() QueueCounts {
	return QueueCounts{Pushed: q.pushed.Load(), Popped: q.popped.Load(), Acked: q.acked.Load(),
		Retried: q.retried.Load(), DeadLettered: q.dead.Load(), RejectedRule: q.rejRule.Load(), RejectedTooLarge: q.rejLarge.Load(),
		RejectedFull: q.rejFull.Load(), Dropped: q.dropped.Load()}
}

// observer holds an Engine's per-queue counters and feeds the registry.
type observer struct {
	e        *Engine
	max      atomic.Int64
	queues   sync.Map // queue → *queueCounters; at most max entries
	n        atomic.Int64
	other    queueCounters
	overflow *lru.Cache[string, int64] // registry notes of queues past the cap: queue → ms
	notes    chan string
	known    atomic.Int64 // size of the registry at the last write or trim (INFO)
	once     sync.Once
}

func newObserver(e *Engine) *observer {
	o := &observer{e: e, notes: make(chan string, 1024)}
	o.max.Store(DefaultMetricsMaxQueues)
	o.overflow, _ = lru.New[string, int64](leasedQueueCache)
	return o
}

// obs returns the engine's observer (made on first use, so an Engine built by hand works too).
func (e *Engine) obs() *observer {
	if o := e.observer.Load(); o != nil {
		return o
	}
	e.observer.CompareAndSwap(nil, newObserver(e))
	return e.observer.Load()
}

// SetMetricsMaxQueues sets how many queues get counters of their own; the rest share OtherQueue's.
func (e *Engine) SetMetricsMaxQueues(n int) { e.obs().max.Store(int64(max(n, 0))) }

// counters returns queue's counters (OtherQueue's past the cap) and notes the queue in the registry.
func (o *observer) counters(queue string) *queueCounters {
	v, ok := o.queues.Load(queue)
	if !ok {
		if o.n.Load() >= o.max.Load() {
			o.noteOverflow(queue)
			return &o.other
		}
		var loaded bool
		v, loaded = o.queues.LoadOrStore(queue, &queueCounters{})
		if !loaded {
			o.n.Add(1)
		}
	}
	qc := v.(*queueCounters)
	now := time.Now().UnixMilli()
	if last := qc.noted.Load(); now-last >= rdb.QueueNoteInterval.Milliseconds() && qc.noted.CompareAndSwap(last, now) {
		if !o.send(queue) {
			qc.noted.Store(last) // full: noted by a later operation
		}
	}
	return qc
}

func (o *observer) noteOverflow(queue string) {
	now := time.Now().UnixMilli()
	if last, ok := o.overflow.Get(queue); ok && now-last < rdb.QueueNoteInterval.Milliseconds() {
		return
	}
	if o.send(queue) {
		o.overflow.Add(queue, now)
	}
}

// send hands a queue to the registry writer without waiting.
func (o *observer) send(queue string) bool {
	o.once.Do(func() { go o.writer() })
	select {
	case o.notes <- queue:
		return true
	default:
		return false
	}
}

// registryTrimEvery is how often the writer drops idle entries and trims the registry to its cap.
const registryTrimEvery = 5 * time.Minute

// writer writes noted queues to the registry, a batch per ZADD, until the engine's context ends.
func (o *observer) writer() {
	ctx := o.e.ctx
	o.trim(ctx)
	trim := time.NewTicker(registryTrimEvery)
	defer trim.Stop()
	batch := make([]string, 0, 64)
	for {
		select {
		case <-ctx.Done():
			return
		case <-trim.C:
			o.trim(ctx)
			continue
		case q := <-o.notes:
			batch = append(batch[:0], q)
		}
	drain:
		for len(batch) < 512 {
			select {
			case q := <-o.notes:
				batch = append(batch, q)
			default:
				break drain
			}
		}
		now := float64(time.Now().UnixMilli())
		zs := make([]redis.Z, len(batch))
		for i, q := range batch {
			zs[i] = redis.Z{Score: now, Member: q}
		}
		if n, err := o.e.zaddQueues(ctx, zs); err != nil {
			o.e.log.Debug("queue registry", "err", err)
		} else {
			o.known.Store(n)
		}
	}
}

// trim drops registry entries idle for rdb.QueueIdleTTL and the least recently noted past
// rdb.QueuesMax.
func (o *observer) trim(ctx context.Context) {
	n, err := o.e.TrimRegistry(ctx)
	if err != nil {
		o.e.log.Debug("queue registry trim", "err", err)
		return
	}
	o.known.Store(n)
}

// QueueCounts returns the per-queue counters of this process, OtherQueue's included when not zero.
func (e *Engine) QueueCounts() map[string]QueueCounts {
	o := e.obs()
	out := map[string]QueueCounts{}
	o.queues.Range(func(k, v any) bool {
		out[k.(string)] = v.(*queueCounters).read()
		return true
	})
	if c := o.other.read(); c != (QueueCounts{}) {
		out[OtherQueue] = c
	}
	return out
}

// RegistrySize is how many queues the registry held at its last write or trim by this process.
func (e *Engine) RegistrySize() int64 { return e.obs().known.Load() }

// Hooks of the engine's operations (one map load and atomic add each).

func (e *Engine) countPushed(queue string, n int) { e.obs().counters(queue).pushed.Add(int64(n)) }
func (e *Engine) countPopped(queue string, n int) { e.obs().counters(queue).popped.Add(int64(n)) }
func (e *Engine) countAcked(queue string, n int64) {
	if n > 0 {
		e.obs().counters(queue).acked.Add(n)
	}
}

func (e *Engine) countRejected(queue string, err error) {
	e.logRejected(queue, err)
	qc := e.obs().counters(queue)
	if _, ok := err.(*TooLargeError); ok {
		qc.rejLarge.Add(1)
	} else {
		qc.rejRule.Add(1)
	}
}

// countQueueRetries adds rdb.Nack's codes (one per receipt) to queue's counters.
func (e *Engine) countQueueRetries(queue string, codes []int64) {
	qc := e.obs().counters(queue)
	for _, r := range codes {
		switch {
		case r == 1 || r == 2:
			qc.retried.Add(1)
		case r >= 3:
			qc.dead.Add(1)
		}
	}
}

func (e *Engine) countReaped(queue string, retried, dead int64) {
	if retried == 0 && dead == 0 {
		return
	}
	qc := e.obs().counters(queue)
	qc.retried.Add(retried)
	qc.dead.Add(dead)
}
