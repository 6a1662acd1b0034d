package admin

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qgate/qgate/proxy/queue"
)

// Metrics is qgate's Prometheus registry. Most series are read at scrape time from counters qgate
// keeps anyway (INFO's, the engine's per-queue counters); only the command counters and latencies
// are recorded here, by the connections.
type Metrics struct {
	reg      *prometheus.Registry
	Commands *CommandMetrics
}

// NewMetrics returns a registry with the Go and process collectors and the command metrics.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{reg: reg, Commands: newCommandMetrics()}
	reg.MustRegister(m.Commands.dur)
	return m
}

// Registry returns the registry (tests, extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) register(src Source, smp *sampler, maxQueues int) {
	m.reg.MustRegister(&collector{src: src, smp: smp, cmds: m.Commands})
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: nil})
}

// CommandMetrics are qgate_commands_total and qgate_command_duration_seconds.
type CommandMetrics struct {
	// Totals reads qgate_commands_total at scrape time from the server's command counters, the ones
	// INFO commandstats shows (nil: no series).
	Totals func() []CommandTotal
	dur    *prometheus.HistogramVec
	series sync.Map // command name → *CommandSeries

	backendErrs atomic.Int64 // replies "ERR backend unavailable…" (NoteBackendError)
}

// NoteBackendError counts a command that failed on a backend transport error (not a Redis reply).
func (m *CommandMetrics) NoteBackendError() { m.backendErrs.Add(1) }

// CommandTotal is one command's qgate_commands_total: replies by result.
type CommandTotal struct {
	Command   string
	OK, Error int64
}

// CommandSeries are one command's latency series, resolved once (the connections' hot path only adds).
type CommandSeries struct {
	dur prometheus.Observer
}

// durationBuckets span a pipelined command's sub-millisecond latency to a long blocked pop.
var durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newCommandMetrics() *CommandMetrics {
	return &CommandMetrics{
		dur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "qgate_command_duration_seconds",
			Help:    "Time from a command's parsing to its reply being ready (blocked pops include their wait).",
			Buckets: durationBuckets}, []string{"command"}),
	}
}

// Series returns the series of a command (its lower-case name, from a bounded table: "unknown" for
// names qgate does not know).
func (m *CommandMetrics) Series(command string) *CommandSeries {
	if v, ok := m.series.Load(command); ok {
		return v.(*CommandSeries)
	}
	s := &CommandSeries{dur: m.dur.WithLabelValues(command)}
	v, _ := m.series.LoadOrStore(command, s)
	return v.(*CommandSeries)
}

// Observe records one command's latency.
func (s *CommandSeries) Observe(d time.Duration) { s.dur.Observe(d.Seconds()) }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dCommands        = desc("qgate_commands_total", "Commands executed, by command and result (ok or error reply).", "command", "result")
	dConnections     = desc("qgate_connections", "Connected clients.")
	dConnsTotal      = desc("qgate_connections_received_total", "Client connections accepted.")
	dRejectedConns   = desc("qgate_rejected_connections_total", "Client connections refused (max_clients).")
	dBlocked         = desc("qgate_blocked_clients", "Clients waiting in a blocked pop.")
	dSubscriptions   = desc("qgate_subscriptions", "Clients subscribed to channels or patterns.")
	dBackendErrors   = desc("qgate_backend_errors_total", "Commands that failed on a backend transport error or timeout (ERR backend unavailable), and failed queue samples.")
	dLost            = desc("qgate_lost_items_total", "Popped items that could not be given back (must stay 0).")
	dReturned        = desc("qgate_returned_items_total", "Popped items given back because their reply could not be written.")
	dRecovered       = desc("qgate_recovered_items_total", "Items of dead instances' transit records given back.")
	dAuthFailures    = desc("qgate_auth_failures_total", "Failed AUTH, HELLO AUTH and HTTP Basic logins.")
	dDenied          = desc("qgate_denied_total", "NOPERM replies, by kind (queue or channel).", "kind")
	dLeases          = desc("qgate_lease_transitions_total", "At-least-once transitions made through this instance, by kind (leased, acked, retried, dead, redriven).", "kind")
	dKnownQueues     = desc("qgate_queues_known", "Queues in the shared registry at the last sample.")
	dSampleAge       = desc("qgate_queue_sample_age_seconds", "Age of the queue gauges' last successful sample.")
	dReady           = desc("qgate_queue_ready", "Items in a queue's ready list (sampled).", "queue")
	dInFlight        = desc("qgate_queue_in_flight", "Leased items of an at-least-once queue (sampled).", "queue")
	dDelayed         = desc("qgate_queue_delayed", "Items waiting for their retry backoff (sampled).", "queue")
	dDead            = desc("qgate_queue_dead", "Dead letters (sampled).", "queue")
	dPushed          = desc("qgate_pushed_total", "Items pushed through this instance.", "queue")
	dPopped          = desc("qgate_popped_total", "Items delivered by pops through this instance.", "queue")
	dAcked           = desc("qgate_acked_total", "Leases acked through this instance.", "queue")
	dRetried         = desc("qgate_retried_total", "Leases given back for another attempt (nack, expiry, disconnect).", "queue")
	dDeadLettered    = desc("qgate_dead_lettered_total", "Items past max_attempts.", "queue")
	dRejected        = desc("qgate_rejected_total", "Pushed values refused, by reason (rule, too_large, full).", "queue", "reason")
	dDropped         = desc("qgate_dropped_total", "Items dropped by overflow: drop-oldest (README \"Queue controls\").", "queue")
	dResubscribes    = desc("qgate_pubsub_resubscribes_total", "Pub/sub backend subscriptions restored after their connection was lost (README \"Pub/sub across failures\").")
	dPubSubGap       = desc("qgate_pubsub_gap_seconds_total", "Time without a pub/sub backend subscription: messages published meanwhile did not reach this instance's subscribers.")
	dPubSubMissed    = desc("qgate_pubsub_missed_messages_total", "Messages published through this instance, while it had no pub/sub backend subscription, to channels it has subscribers of.")
	dMetricsMaxQueue = desc("qgate_metrics_max_queues", "Queues with series of their own; the rest are counted as queue=\"other\".")
)

// collector reads qgate's counters at scrape time.
type collector struct {
	src  Source
	smp  *sampler
	cmds *CommandMetrics
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dCommands, dConnections, dConnsTotal, dRejectedConns, dBlocked, dSubscriptions, dBackendErrors,
		dLost, dReturned, dRecovered, dAuthFailures, dDenied, dLeases, dKnownQueues, dSampleAge, dReady, dInFlight, dDelayed,
		dDead, dPushed, dPopped, dAcked, dRetried, dDeadLettered, dRejected, dDropped, dMetricsMaxQueue,
		dResubscribes, dPubSubGap, dPubSubMissed} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	n := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	g(dConnections, float64(st.ConnectedClients))
	n(dConnsTotal, st.TotalConnections)
	n(dRejectedConns, st.RejectedConns)
	g(dBlocked, float64(st.BlockedClients))
	g(dSubscriptions, float64(st.PubSubClients))
	n(dBackendErrors, c.smp.backendErrors()+c.cmds.backendErrs.Load())
	n(dLost, st.LostItems)
	n(dReturned, st.ReturnedItems)
	n(dRecovered, st.RecoveredItems)
	n(dAuthFailures, st.AuthFailures)
	n(dDenied, st.DeniedQueue, "queue")
	n(dDenied, st.DeniedChannel, "channel")
	n(dLeases, st.Leased, "leased")
	n(dLeases, st.Acked, "acked")
	n(dLeases, st.Retried, "retried")
	n(dLeases, st.Dead, "dead")
	n(dLeases, st.Redriven, "redriven")
	g(dMetricsMaxQueue, float64(c.smp.maxQueues))
	if e := c.src.Queues(); e != nil {
		ps := e.PubSubGaps()
		n(dResubscribes, ps.Resubscribes)
		ch <- prometheus.MustNewConstMetric(dPubSubGap, prometheus.CounterValue, ps.Gap.Seconds())
		n(dPubSubMissed, ps.Missed)
	}
	if c.cmds.Totals != nil {
		for _, t := range c.cmds.Totals() {
			n(dCommands, t.OK, t.Command, "ok")
			n(dCommands, t.Error, t.Command, "error")
		}
	}

	snap := c.smp.snapshot()
	g(dKnownQueues, float64(snap.known))
	if !snap.at.IsZero() {
		g(dSampleAge, time.Since(snap.at).Seconds())
	}
	for q, s := range snap.queues {
		g(dReady, float64(s.Ready), q)
		g(dInFlight, float64(s.InFlight), q)
		g(dDelayed, float64(s.Delayed), q)
		g(dDead, float64(s.Dead), q)
	}
	for q, qc := range c.src.Queues().QueueCounts() {
		n(dPushed, qc.Pushed, q)
		n(dPopped, qc.Popped, q)
		n(dAcked, qc.Acked, q)
		n(dRetried, qc.Retried, q)
		n(dDeadLettered, qc.DeadLettered, q)
		n(dRejected, qc.RejectedRule, q, queue.RejectedRule)
		n(dRejected, qc.RejectedTooLarge, q, queue.RejectedTooLarge)
		n(dRejected, qc.RejectedFull, q, queue.RejectedFull)
		n(dDropped, qc.Dropped, q)
	}
}

// sampler reads every known queue's counts from Redis every interval (one pipeline per
// sampleChunk queues); scrapes read its last snapshot.
type sampler struct {
	e         *queue.Engine
	maxQueues int
	interval  time.Duration
	log       *slog.Logger

	mu   sync.Mutex
	last sample
	errs int64
	kick chan struct{}
	fin  chan struct{}
}

type sample struct {
	at     time.Time
	known  int
	queues map[string]queue.QueueStats // at most maxQueues names, plus queue.OtherQueue
}

func newSampler(e *queue.Engine, maxQueues int, interval time.Duration, log *slog.Logger) *sampler {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &sampler{e: e, maxQueues: maxQueues, interval: interval, log: log, kick: make(chan struct{}, 1), fin: make(chan struct{})}
}

func (s *sampler) run(done <-chan struct{}) {
	defer close(s.fin)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-done
		cancel()
	}()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.sampleOnce(ctx)
		select {
		case <-done:
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// Kick makes the sampler take a sample now (after an API change).
func (s *sampler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *sampler) sampleOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(s.interval, 5*time.Second))
	defer cancel()
	known, err := s.e.KnownQueues(ctx)
	var stats map[string]queue.QueueStats
	if err == nil {
		stats, err = s.e.SampleQueues(ctx, queue.SortedQueues(known))
	}
	if err != nil {
		s.mu.Lock()
		s.errs++
		s.mu.Unlock()
		if ctx.Err() == nil || context.Cause(ctx) == context.DeadlineExceeded {
			s.log.Debug("sample queues", "err", err)
		}
		return
	}
	out := foldQueues(stats, s.maxQueues)
	s.mu.Lock()
	s.last = sample{at: time.Now(), known: len(known), queues: out}
	s.mu.Unlock()
}

// foldQueues keeps the first max queues by name and sums the rest into queue.OtherQueue.
func foldQueues(stats map[string]queue.QueueStats, max int) map[string]queue.QueueStats {
	names := make([]string, 0, len(stats))
	for q := range stats {
		names = append(names, q)
	}
	sort.Strings(names)
	out := make(map[string]queue.QueueStats, min(len(names), max+1))
	for i, q := range names {
		st := stats[q]
		if i < max {
			out[q] = st
			continue
		}
		o := out[queue.OtherQueue]
		o.Ready += st.Ready
		o.InFlight += st.InFlight
		o.Delayed += st.Delayed
		o.Dead += st.Dead
		out[queue.OtherQueue] = o
	}
	return out
}

func (s *sampler) snapshot() sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *sampler) backendErrors() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs
}
