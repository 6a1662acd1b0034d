// Package queue is qgate's queue engine: everything a queue does between a parsed command and the
// backend's keys and scripts (proxy/rdb). Pushes (validation, envelopes, dedup), at-most-once pops
// through the transit record, at-least-once pops through leases and receipts, acks, nacks, the
// reaper, blocked pops (served by the wait.Hub of proxy/queue/wait), and the counters INFO reports. It knows nothing of
// sockets or RESP: the commands package turns its results into replies, the proxy package runs the
// connections (proxy/DESIGN.md, "Layers").
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/queue/wait"
	"github.com/qgate/qgate/proxy/ratelog"
	"github.com/qgate/qgate/proxy/rdb"
)

// Options configure an Engine.
type Options struct {
	// Ctx is the backend's lifetime: cancelled only once the backend closes, so that items taken from
	// Redis can still be given back while the server drains.
	Ctx context.Context
	// Client is the backend's main client; Mux, when not nil, its multiplexer (the batches of all
	// connections are merged into pipelines there).
	Client redis.UniversalClient
	Mux    *Mux
	// Blocking configures the blocked pops' wait.Hub (it uses Client: its pool and one pub/sub
	// connection per master).
	Blocking BlockingOptions
	// Policies returns the current rules (they change on reload).
	Policies func() *policy.Set
	Log      *slog.Logger
	// Instance is this process's random id (transit records, lease owners); InstanceTTL is
	// how old its heartbeat may get before other instances take it for dead.
	Instance    string
	InstanceTTL time.Duration
	// MaxBulk is the backend's proto-max-bulk-len: a larger stored value is refused before it is sent.
	MaxBulk int64
}

// Engine runs the queues of one qgate process.
type Engine struct {
	ctx         context.Context
	log         *slog.Logger
	events      *ratelog.Limiter // item events at info level, bounded per kind (README "Logs")
	client      redis.UniversalClient
	mux         *Mux
	policies    func() *policy.Set
	instance    string
	instanceTTL time.Duration
	maxBulk     int64

	transit *transit
	waits   *wait.Hub // blocked pops (blocking.go)
	hub     *hub      // pub/sub fan-out (pubsub.go)
	shub    *shardHub // sharded pub/sub fan-out (shardpubsub.go)

	leasedQueues *lru.Cache[string, time.Time] // queue → when this process last registered it (reaper.go)
	leasedTTL    time.Duration                 // leasedQueueTTL; shorter in tests
	walks        atomic.Int64                  // finished dead-instance walks (reaper.go)
	leases       LeaseCounters
	leaseWaits   leaseWaits   // blocked lease pops, for batched takes (lease.go)
	fifo         fifo         // global_fifo queues' places (fifo.go)
	reaped       atomic.Int64 // items the reaper moved
	reaperStop   chan struct{}
	reaperDone   chan struct{}
	reaperKick   chan struct{}
	recheck      atomic.Int64 // scheduleRecheck when 0; shorter in tests
	lastLegacy   time.Time    // the reaper's last sweep of the old registry

	lanes [rdb.ScheduleShards]*lane // the reaper's lanes, one per schedule shard (reaper.go)

	returned, lost, blocked atomic.Int64
	reloading               atomic.Bool // noScript's reload is running

	observer atomic.Pointer[observer] // per-queue counters and the queue registry (metrics.go)
}

// New starts the engine: it records the instance's first heartbeat (before any pop: a record of an
// instance that never beat would be taken for a dead one's), then the heartbeat, the delete loop of
// delivered transit records, the reaper and the blocked pops' wait.Hub (which checks, and where
// allowed sets, notify-keyspace-events on every master).
func New(o Options) (*Engine, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Ctx == nil {
		o.Ctx = context.Background()
	}
	e := &Engine{ctx: o.Ctx, log: o.Log, client: o.Client, mux: o.Mux, policies: o.Policies,
		instance: o.Instance, instanceTTL: o.InstanceTTL, maxBulk: o.MaxBulk, leasedTTL: leasedQueueTTL,
		reaperKick: make(chan struct{}, 1)}
	e.initLanes()
	e.events = ratelog.New(o.Log, 0, 0)
	e.leasedQueues, _ = lru.New[string, time.Time](leasedQueueCache)
	e.transit = newTransit(e)
	e.hub = newHub(e)
	e.shub = newShardHub(e)
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := rdb.LoadAll(ctx, e.cmds()); err != nil {
		e.log.Warn("scripts not loaded up front; the first pipelined call of each falls back to EVAL", "err", err)
	}
	if err := e.transit.beat(ctx); err != nil {
		e.transit.close(ctx)
		return nil, fmt.Errorf("register instance: %w", err)
	}
	waits, err := wait.New(ctx, waitConfig(o))
	if err != nil {
		e.transit.close(ctx)
		return nil, fmt.Errorf("start blocked-pop waits: %w", err)
	}
	e.waits = waits
	go e.transit.heartbeatLoop()
	e.startReaper()
	return e, nil
}

// noScript reloads every script in the background after the backend answered NOSCRIPT (it restarted
// or its script cache was flushed), so that later batches find them (rdb.LoadAll).
func (e *Engine) noScript() {
	if !e.reloading.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.reloading.Store(false)
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		if err := rdb.LoadAll(ctx, e.cmds()); err != nil {
			e.log.Warn("reload scripts after NOSCRIPT", "err", err)
		}
	}()
}

// Instance returns this process's id.
func (e *Engine) Instance() string { return e.instance }

// Policy returns the rule of a queue.
func (e *Engine) Policy(queue string) *policy.Policy { return e.policies().Queue(queue) }

// SetLeasedQueueTTL changes how long idle queues stay in the reapers' set (tests).
func (e *Engine) SetLeasedQueueTTL(d time.Duration) { e.leasedTTL = d }

// Stop ends the engine's background work at a clean shutdown, once no connection is left: the
// blocked pops' wait.Hub (waited for until hard), the reaper, the last deletes of delivered records,
// then a sweep of this instance's transit records (nothing is in flight any more) and, if it
// succeeded, the removal of its heartbeat. ctx bounds the backend calls.
func (e *Engine) Stop(ctx context.Context, hard time.Time) {
	e.stopWaits(hard)
	e.stopReaper()
	e.transit.close(ctx)
	if err := e.transit.sweep(ctx, true); err == nil {
		_ = e.transit.unregister(ctx)
	}
}

// Abandon ends the engine's background work when the backend did not answer in time at shutdown:
// the records stay in Redis, for another instance or the next start. Forget follows once the
// connections are gone.
func (e *Engine) Abandon() {
	go func() { _ = e.waits.Close() }()
}

// Forget ends an abandoned engine: the last deletes of delivered pops' records are sent (those carried
// by pops that never got their reply included), waiting for their replies within ctx. A frozen
// backend that resumes later still runs them, so another instance does not give those items back.
func (e *Engine) Forget(ctx context.Context) {
	e.transit.close(ctx)
}

// Stats are the engine's counters (INFO).
type Stats struct {
	Returned       int64     // popped items put back because their reply could not be written
	Lost           int64     // popped items that could not be put back (must stay 0)
	Recovered      int64     // items of dead instances' transit records given back
	RedeliveryRisk int64     // delivered items another instance gave back meanwhile
	Blocked        int       // clients waiting in a blocked pop
	Wait           WaitStats // the blocked pops' wait.Hub
	FIFODropped    int64     // global_fifo places dropped after holding items back past the grace
	FIFOUnremoved  int64     // global_fifo places of ended waits not removed (removal queue full)
	Leases         LeaseSnapshot
}

// LeaseCounters count at-least-once transitions made through this process (INFO Qgate).
type LeaseCounters struct {
	Leased   atomic.Int64 // items leased by pops
	Acked    atomic.Int64 // leases ended by QACK or next-pop
	Retried  atomic.Int64 // leases given back for another attempt (nack, expiry, disconnect)
	Dead     atomic.Int64 // items past max_attempts (dead-lettered or dropped)
	Redriven atomic.Int64 // dead items moved back by QREDRIVE
}

// LeaseSnapshot is a reading of LeaseCounters.
type LeaseSnapshot struct{ Leased, Acked, Retried, Dead, Redriven int64 }

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Returned:       e.returned.Load(),
		Lost:           e.lost.Load(),
		Recovered:      e.transit.recovered.Load(),
		RedeliveryRisk: e.transit.raced.Load(),
		Blocked:        int(e.blocked.Load()),
		Wait:           e.waits.Stats(),
		FIFODropped:    e.fifo.dropped.Load(),
		FIFOUnremoved:  e.fifo.skipped.Load(),
		Leases: LeaseSnapshot{Leased: e.leases.Leased.Load(), Acked: e.leases.Acked.Load(), Retried: e.leases.Retried.Load(),
			Dead: e.leases.Dead.Load(), Redriven: e.leases.Redriven.Load()},
	}
}

// direct returns the pooled client without the multiplexer, for calls made one at a time outside a
// client's batch (blocked pops' takes, their first try, the transit delete loop).
func (e *Engine) direct() redis.UniversalClient { return e.client }

// cmds is the client for the engine's own backend calls: the multiplexer when there is one, so a
// burst of synchronous calls from many connections shares a few connections instead of dialling
// (the main pool keeps few idle connections); never for blocking commands.
func (e *Engine) cmds() redis.UniversalClient {
	if e.mux != nil {
		return e.mux
	}
	return e.client
}

// errUnexpectedReply reports a script reply of the wrong shape.
var errUnexpectedReply = errors.New("unexpected reply from a lease script")

// RedisError returns the backend's own error reply in err, if it is one (not a transport failure).
func RedisError(err error) (string, bool) {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return rerr.Error(), true
	}
	return "", false
}

// Logs of what happens to items (README "Operations", "Logs"): queue, rule and counts, never a
// payload. Lines at info level go through e.events, which bounds each kind.

// Logger is the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }

// Events is the engine's bounded logger of item events (the connections' disconnect lines use it too).
func (e *Engine) Events() *ratelog.Limiter { return e.events }

// rejectReason names why a pushed value was refused, from qgate's own error texts (the texts
// themselves may quote the value: a schema pattern or a JSON syntax error).
func rejectReason(err error) string {
	var tl *TooLargeError
	if errors.As(err, &tl) {
		return "too_large"
	}
	msg := err.Error()
	var re *RejectedError
	if errors.As(err, &re) {
		msg = re.Err.Error()
	}
	for _, r := range []struct{ prefix, reason string }{
		{"value is ", "max_bytes"}, {"not JSON", "not_json"}, {"schema ", "schema"}, {"dedup key", "dedup_key"},
	} {
		if strings.HasPrefix(msg, r.prefix) {
			return r.reason
		}
	}
	return "rule"
}

// logRejected logs a refused push: queue, rule, reason (and sizes for a value over the backend's
// limit).
func (e *Engine) logRejected(queue string, err error) {
	args := []any{"queue", queue, "rule", e.Policy(queue).Name(), "reason", rejectReason(err)}
	var tl *TooLargeError
	if errors.As(err, &tl) {
		args = append(args, "bytes", tl.Size, "limit_bytes", tl.Limit)
	}
	e.events.Log(slog.LevelInfo, "push rejected", args...)
}

// logDeadCodes logs the items rdb.Nack's codes (one per receipt) sent to the dead list.
func (e *Engine) logDeadCodes(queue string, codes []int64, cause string) {
	n := 0
	for _, r := range codes {
		if r >= 3 {
			n++
		}
	}
	if n > 0 {
		e.events.Log(slog.LevelWarn, "items dead-lettered", "queue", queue, "items", n,
			"max_attempts", e.Policy(queue).MaxAttempts, "cause", cause)
	}
}

func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// OutcomeUnknown reports whether a failed backend command may have run: anything but a Redis error
// reply, or a failure to get a connection or to dial (then the command was never sent).
func OutcomeUnknown(err error) bool {
	if err == nil || err == redis.Nil {
		return false
	}
	if isRedisError(err) {
		return false
	}
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolExhausted) {
		return false
	}
	var op *net.OpError
	return !(errors.As(err, &op) && op.Op == "dial")
}
