package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

const (
	tStreams = "redis-streams (direct)"
	tAsynq   = "asynq (direct)"
)

// The target: qgate's end-to-end at-least-once throughput ≥ 0.8× Redis Streams'.
const targetALSvsStreams = 0.8

// alsMode is one way a qgate user consumes an at-least-once queue.
type alsMode struct {
	target   string
	prefix   string // queue name prefix: qgateConfig (main.go) makes bench:als:explicit:* ack: explicit, bench:als:nextpop:* ack: next-pop
	explicit bool   // QDELIVERY envelope, then QACK queue receipt… after each batch
	batch    int    // LPOP queue <batch> first (BLPOP queue 0.1 only when that finds nothing); 0 = BLPOP only
	note     string
}

var alsModes = []alsMode{
	{target: tQgate + " (ack: explicit)", prefix: "bench:als:explicit", explicit: true, batch: 16,
		note: "consumers: QDELIVERY envelope, then LPOP q 16 (BLPOP q 0.1 when that finds nothing), then QACK q <their receipts> — XREADGROUP COUNT 16 BLOCK 100 → XACK's shape; latency = RPUSH sent → QACK reply"},
	{target: tQgate + " (ack: next-pop, BLPOP)", prefix: "bench:als:nextpop", batch: 0,
		note: "consumers: an unmodified worker loop BLPOP q 0.1 → BLPOP …, one item per pop, each pop acks the previous one in the same script; latency = RPUSH sent → BLPOP reply"},
	{target: tQgate + " (ack: next-pop, LPOP 16)", prefix: "bench:als:nextpop", batch: 16,
		note: "consumers: LPOP q 16 → LPOP q 16 … (BLPOP q 0.1 when that finds nothing), each pop acks the previous pop's items — Streams' batch shape without an ack round trip; latency = RPUSH sent → LPOP reply"},
}

func alsRuns(b *bench) int { return b.cfg.Reps * (2 + len(alsModes)) }

// runAtLeastOnce measures push → pop → ack end to end through qgate (at-least-once queues, each
// way of acking as its own row) and, straight against the same redis-server, the systems it is
// compared with: Redis Streams consumer groups (XADD → XREADGROUP → XACK) and asynq (enqueue →
// handler). Same producers, consumers, payload and in-flight bound everywhere; the order of the
// targets rotates per repetition.
func (b *bench) runAtLeastOnce() {
	n := b.cfg.Clients
	variant := fmt.Sprintf("%d producers + %d consumers, 64B", n/2, n-n/2)
	qrows := make([]*row, len(alsModes))
	for i, m := range alsModes {
		qrows[i] = b.newRow("at-least-once", variant, m.target, "msgs/s")
		qrows[i].note("%s", m.note)
	}
	streams := b.newRow("at-least-once", variant, tStreams, "msgs/s")
	streams.Baseline = true
	aq := b.newRow("at-least-once", variant, tAsynq, "msgs/s")
	aq.Baseline = true
	aq.note("latency is enqueue → handler start")

	base := time.Now()
	ar, err := b.startAsynq(base, n-n/2)
	if err != nil {
		aq.fail(err)
	}
	defer func() {
		if ar != nil {
			ar.stop()
		}
	}()
	names := []string{tStreams, tAsynq}
	for _, m := range alsModes {
		names = append(names, m.target)
	}
	for rep := 0; rep < b.cfg.Reps; rep++ {
		for i := range names {
			name := names[(i+rep)%len(names)]
			b.prog.step(fmt.Sprintf("at-least-once %s → %s, rep %d/%d", variant, name, rep+1, b.cfg.Reps))
			switch {
			case name == tStreams:
				s, err := b.streamsRun(streams, n/2, n-n/2)
				if err != nil {
					streams.fail(err)
					continue
				}
				streams.add(s)
			case name == tAsynq:
				if ar == nil {
					continue
				}
				s, err := ar.run(b, n/2)
				if err != nil {
					aq.fail(err)
					continue
				}
				aq.add(s)
			default:
				for j, m := range alsModes {
					if m.target != name {
						continue
					}
					s, err := b.qgateALSRun(qrows[j], m, n/2, n-n/2)
					if err != nil {
						qrows[j].fail(err)
						continue
					}
					qrows[j].add(s)
				}
			}
		}
	}
	// The report's ×direct column has no direct row to divide by here: the ratio to Streams is a note.
	st := streams.Throughput()
	for _, r := range qrows {
		if th := r.Throughput(); th.OK && st.OK && st.Med > 0 {
			v := th.Med / st.Med
			r.note("×Streams %.2f (min–max %.2f–%.2f against Streams' median; target ≥ %.1f×: %s)",
				v, th.Min/st.Med, th.Max/st.Med, targetALSvsStreams, mark(v >= targetALSvsStreams))
		}
		if v := r.value("items_per_read"); v.OK {
			r.note("%.1f messages per consumer read that returned any (median over repetitions)", v.Med)
		}
		if v := r.value("backend_conns_per_kmsg"); v.OK {
			r.note("qgate opened %.1f backend connections per 1,000 messages (Redis's total_connections_received over the window)", v.Med)
		}
	}
	if v := streams.value("items_per_read"); v.OK {
		streams.note("%.1f messages per XREADGROUP that returned any (median over repetitions)", v.Med)
	}
}

// doneLog collects completion records from many goroutines against one base time.
type doneLog struct {
	mu   sync.Mutex
	recs []batchRec
}

func (d *doneLog) add(r batchRec) {
	d.mu.Lock()
	d.recs = append(d.recs, r)
	d.mu.Unlock()
}

// window turns the records completed in [from, to) into a sample.
func (d *doneLog) window(from, to time.Duration) sample {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := sample{window: to - from, hist: newHist(), proxyCPU: -1, redisCPU: -1}
	for _, r := range d.recs {
		if r.done >= int64(from) && r.done < int64(to) {
			s.ops += float64(r.n)
			_ = s.hist.RecordValue(r.rtt)
		}
	}
	return s
}

// streamsRun: producers XADD (send time in a field), consumers in one group XREADGROUP up to 16
// entries, XACK them, and record XADD → XACK reply. At most 4 in flight per client in total so
// latency measures the path, not an ever-growing backlog.
func (b *bench) streamsRun(r *row, producers, consumers int) (sample, error) {
	stream := b.key("stream")
	defer b.unlink(stream)
	if _, err := b.admin.do("XGROUP", "CREATE", stream, "g", "$", "MKSTREAM"); err != nil {
		return sample{}, fmt.Errorf("XGROUP CREATE: %w", err)
	}
	pconns, err := dialN(b.redis.Addr, producers, 4096)
	if err != nil {
		return sample{}, err
	}
	defer closeAll(pconns)
	cconns, err := dialN(b.redis.Addr, consumers, 64<<10)
	if err != nil {
		return sample{}, err
	}
	defer closeAll(cconns)

	base := time.Now()
	warmEnd, end := b.cfg.Warmup, b.cfg.Warmup+b.cfg.Measure
	sem := make(chan struct{}, 4*(producers+consumers))
	var (
		log     doneLog
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		stop    atomic.Bool
	)
	fail := func(err error) { errOnce.Do(func() { first = err; stop.Store(true) }) }
	reads := readStats{from: warmEnd, to: end}
	pad := strings.Repeat("x", 64)
	snap0 := make(chan cpuSnap, 1)
	go func() { time.Sleep(warmEnd); snap0 <- b.snap(target{}) }()
	for _, c := range pconns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && time.Since(base) < end {
				select {
				case sem <- struct{}{}:
				case <-time.After(100 * time.Millisecond):
					continue
				}
				ts := strconv.FormatInt(int64(time.Since(base)), 10)
				if _, err := c.do("XADD", stream, "MAXLEN", "~", "1000000", "*", "ts", ts, "p", pad); err != nil {
					fail(fmt.Errorf("XADD: %w", err))
					return
				}
			}
		}()
	}
	for i, c := range cconns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "c" + strconv.Itoa(i)
			for !stop.Load() && time.Since(base) < end {
				v, err := c.do("XREADGROUP", "GROUP", "g", name, "COUNT", "16", "BLOCK", "100", "STREAMS", stream, ">")
				if err != nil {
					fail(fmt.Errorf("XREADGROUP: %w", err))
					return
				}
				ids, sent, err := parseXRead(v)
				if err != nil {
					fail(err)
					return
				}
				if len(ids) == 0 {
					continue
				}
				reads.add(time.Since(base), len(ids))
				if _, err := c.do(append([]string{"XACK", stream, "g"}, ids...)...); err != nil {
					fail(fmt.Errorf("XACK: %w", err))
					return
				}
				now := int64(time.Since(base))
				for _, ts := range sent {
					log.add(batchRec{done: now, rtt: now - ts, n: 1})
					<-sem
				}
			}
		}()
	}
	wg.Wait()
	s1 := b.snap(target{})
	if first != nil {
		return sample{}, first
	}
	s := log.window(warmEnd, end)
	_, s.redisCPU = s1.since(<-snap0)
	if s.ops == 0 {
		return sample{}, fmt.Errorf("no message acknowledged in the measurement window")
	}
	r.addValue("items_per_read", reads.perRead())
	return s, nil
}

// readStats counts consumer reads that returned messages, and the messages, in [from, to).
type readStats struct {
	from, to     time.Duration
	reads, items atomic.Int64
}

func (r *readStats) add(at time.Duration, items int) {
	if at >= r.from && at < r.to {
		r.reads.Add(1)
		r.items.Add(int64(items))
	}
}

func (r *readStats) perRead() float64 {
	if n := r.reads.Load(); n > 0 {
		return float64(r.items.Load()) / float64(n)
	}
	return 0
}

// qgateALSRun is streamsRun through qgate: producers RPUSH (send time in the payload) into an
// at-least-once queue, consumers pop and ack as mode m says, with the same in-flight bound. A message
// counts when it is acked (ack: explicit: the QACK reply; ack: next-pop: the pop that leased it, the
// ack riding on the consumer's next pop).
func (b *bench) qgateALSRun(r *row, m alsMode, producers, consumers int) (sample, error) {
	t := target{name: m.target, addr: b.qgate.Addr, p: b.qgate}
	queue := fmt.Sprintf("%s:%d", m.prefix, b.seq.Add(1))
	pconns, err := dialN(t.addr, producers, 4096)
	if err != nil {
		return sample{}, err
	}
	defer closeAll(pconns)
	cconns, err := dialN(t.addr, consumers, 64<<10)
	if err != nil {
		return sample{}, err
	}
	closed := false
	defer func() {
		if !closed {
			closeAll(cconns)
		}
	}()
	if m.explicit {
		for _, c := range cconns {
			if _, err := c.do("QDELIVERY", "envelope"); err != nil {
				return sample{}, fmt.Errorf("QDELIVERY envelope: %w", err)
			}
		}
	}

	base := time.Now()
	warmEnd, end := b.cfg.Warmup, b.cfg.Warmup+b.cfg.Measure
	sem := make(chan struct{}, 4*(producers+consumers))
	var (
		log     doneLog
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		stop    atomic.Bool
	)
	fail := func(err error) { errOnce.Do(func() { first = err; stop.Store(true) }) }
	reads := readStats{from: warmEnd, to: end}
	pad := strings.Repeat("x", 64)
	snap0 := make(chan cpuSnap, 1)
	conns0 := make(chan int64, 1)
	go func() {
		time.Sleep(warmEnd)
		snap0 <- b.snap(t)
		n, _ := infoInt(b.admin, "stats", "total_connections_received")
		conns0 <- n
	}()
	for _, c := range pconns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && time.Since(base) < end {
				select {
				case sem <- struct{}{}:
				case <-time.After(100 * time.Millisecond):
					continue
				}
				payload := strconv.FormatInt(int64(time.Since(base)), 10) + ":" + pad
				if _, err := c.do("RPUSH", queue, payload); err != nil {
					fail(fmt.Errorf("RPUSH: %w", err))
					return
				}
			}
		}()
	}
	count := strconv.Itoa(m.batch)
	for _, c := range cconns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var items []string
			for !stop.Load() && time.Since(base) < end {
				items = items[:0]
				if m.batch > 0 {
					v, err := c.do("LPOP", queue, count)
					if err != nil {
						fail(fmt.Errorf("LPOP %s %s: %w", queue, count, err))
						return
					}
					arr, _ := v.([]any)
					for _, x := range arr {
						s, _ := x.(string)
						items = append(items, s)
					}
				}
				if len(items) == 0 {
					v, err := c.do("BLPOP", queue, "0.1")
					if err != nil {
						fail(fmt.Errorf("BLPOP: %w", err))
						return
					}
					if kv, ok := v.([]any); ok && len(kv) == 2 {
						s, _ := kv[1].(string)
						items = append(items, s)
					}
				}
				if len(items) == 0 {
					continue
				}
				reads.add(time.Since(base), len(items))
				sent := make([]int64, len(items))
				if m.explicit {
					args := make([]string, 2, 2+len(items))
					args[0], args[1] = "QACK", queue
					for i, it := range items {
						receipt, ts, ok := parseALSEnvelope(it)
						if !ok {
							fail(fmt.Errorf("not a delivered qgate envelope with a bench payload: %.200q", it))
							return
						}
						args, sent[i] = append(args, receipt), ts
					}
					v, err := c.do(args...)
					if err != nil {
						fail(fmt.Errorf("QACK: %w", err))
						return
					}
					if n, _ := v.(int64); n != int64(len(items)) {
						fail(fmt.Errorf("QACK of %d leased items returned %v", len(items), v))
						return
					}
				} else {
					for i, it := range items {
						ts, ok := parseALSPayload(it)
						if !ok {
							fail(fmt.Errorf("not a bench payload: %.200q", it))
							return
						}
						sent[i] = ts
					}
				}
				now := int64(time.Since(base))
				for _, ts := range sent {
					log.add(batchRec{done: now, rtt: now - ts, n: 1})
					select { // a redelivered item was not counted in by a producer
					case <-sem:
					default:
					}
				}
			}
		}()
	}
	wg.Wait()
	s1 := b.snap(t)
	sn0, c0 := <-snap0, <-conns0 // also: b.admin is ours again
	// Backend connections Redis accepted in the window: only qgate connects to it meanwhile.
	conns1, cerr := infoInt(b.admin, "stats", "total_connections_received")
	closeAll(cconns)
	closed = true
	b.dropALSQueue(queue)
	if first != nil {
		return sample{}, first
	}
	s := log.window(warmEnd, end)
	s.proxyCPU, s.redisCPU = s1.since(sn0)
	if s.ops == 0 {
		return sample{}, fmt.Errorf("no message acknowledged in the measurement window")
	}
	r.addValue("items_per_read", reads.perRead())
	if cerr == nil && c0 > 0 {
		r.addValue("backend_conns_per_kmsg", float64(conns1-c0)/s.ops*1000)
	}
	return s, nil
}

// dropALSQueue deletes an at-least-once queue and qgate's keys of it once qgate has handed back the
// leases its closed consumers held (ack: next-pop consumers hold their last pop's).
func (b *bench) dropALSQueue(queue string) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, err := b.admin.do("HLEN", "{"+queue+"}:qgate:leases"); err != nil || n == int64(0) {
			break
		}
	}
	keys := []string{queue}
	for _, k := range []string{"inflight", "leases", "delayed", "handoff", "dead"} {
		keys = append(keys, "{"+queue+"}:qgate:"+k)
	}
	b.unlink(keys...)
}

// parseALSPayload reads the send time from a qgateALSRun payload ("<ns since start>:xxx…").
func parseALSPayload(p string) (int64, bool) {
	i := strings.IndexByte(p, ':')
	if i <= 0 {
		return 0, false
	}
	ts, err := strconv.ParseInt(p[:i], 10, 64)
	return ts, err == nil
}

// parseALSEnvelope reads the lease receipt and the send time from a delivered qgate envelope
// ({"qgate":1,"id":"…",…,"text":"<ns>:xxx…","receipt":"…"}) without decoding all of it.
func parseALSEnvelope(env string) (receipt string, ts int64, ok bool) {
	const head, text, tail = `{"qgate":1,"id":"`, `,"text":"`, `,"receipt":"`
	if !strings.HasPrefix(env, head) || !strings.HasSuffix(env, `"}`) {
		return "", 0, false
	}
	k := strings.LastIndex(env, tail)
	if k < 0 {
		return "", 0, false
	}
	receipt = env[k+len(tail) : len(env)-2]
	j := strings.LastIndex(env[:k], text)
	if j < 0 || receipt == "" {
		return "", 0, false
	}
	ts, ok = parseALSPayload(env[j+len(text) : k])
	return receipt, ts, ok
}

// parseXRead extracts entry ids and their "ts" fields from an XREADGROUP reply.
func parseXRead(v any) (ids []string, sent []int64, err error) {
	if v == nil {
		return nil, nil, nil
	}
	streams, ok := v.([]any)
	if !ok {
		return nil, nil, fmt.Errorf("XREADGROUP reply %#v", v)
	}
	for _, st := range streams {
		pair, ok := st.([]any)
		if !ok || len(pair) != 2 {
			return nil, nil, fmt.Errorf("XREADGROUP stream %#v", st)
		}
		entries, _ := pair[1].([]any)
		for _, e := range entries {
			ent, ok := e.([]any)
			if !ok || len(ent) != 2 {
				return nil, nil, fmt.Errorf("XREADGROUP entry %#v", e)
			}
			id, _ := ent[0].(string)
			fields, _ := ent[1].([]any)
			var ts int64
			for i := 0; i+1 < len(fields); i += 2 {
				if fields[i] == "ts" {
					s, _ := fields[i+1].(string)
					ts, _ = strconv.ParseInt(s, 10, 64)
				}
			}
			ids = append(ids, id)
			sent = append(sent, ts)
		}
	}
	return ids, sent, nil
}

// asynqRig is an asynq server (its workers are the consumers) plus a client, kept across repetitions.
type asynqRig struct {
	base   time.Time
	srv    *asynq.Server
	client *asynq.Client
	log    doneLog
	sem    chan struct{}
	queue  string
}

type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

func (b *bench) startAsynq(base time.Time, workers int) (*asynqRig, error) {
	opt := asynq.RedisClientOpt{Addr: b.redis.Addr}
	ar := &asynqRig{base: base, queue: fmt.Sprintf("bench%d", b.seq.Add(1)), sem: make(chan struct{}, 4*b.cfg.Clients)}
	ar.srv = asynq.NewServer(opt, asynq.Config{
		Concurrency:     workers,
		Queues:          map[string]int{ar.queue: 1},
		Logger:          quietLogger{},
		LogLevel:        asynq.FatalLevel,
		ShutdownTimeout: 3 * time.Second,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench", func(_ context.Context, t *asynq.Task) error {
		now := int64(time.Since(ar.base))
		p := t.Payload()
		i := strings.IndexByte(string(p), ':')
		ts, _ := strconv.ParseInt(string(p[:max(i, 0)]), 10, 64)
		ar.log.add(batchRec{done: now, rtt: now - ts, n: 1})
		select {
		case <-ar.sem:
		default:
		}
		return nil
	})
	if err := ar.srv.Start(mux); err != nil {
		return nil, fmt.Errorf("asynq server: %w", err)
	}
	ar.client = asynq.NewClient(opt)
	return ar, nil
}

func (ar *asynqRig) stop() {
	_ = ar.client.Close()
	ar.srv.Shutdown()
}

// run enqueues from `producers` goroutines and counts handled tasks. asynq's dequeue loop sleeps
// 0.5–1.5 s (TaskCheckInterval, default 1 s) whenever it finds the queue empty, so the warm-up
// starts only once the first task of this repetition was handled.
func (ar *asynqRig) run(b *bench, producers int) (sample, error) {
	ar.log.mu.Lock()
	before := len(ar.log.recs)
	ar.log.mu.Unlock()
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		end     atomic.Int64
	)
	end.Store(math.MaxInt64)
	pad := strings.Repeat("x", 48)
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for int64(time.Since(ar.base)) < end.Load() {
				select {
				case ar.sem <- struct{}{}:
				case <-time.After(100 * time.Millisecond):
					continue
				}
				payload := strconv.FormatInt(int64(time.Since(ar.base)), 10) + ":" + pad
				_, err := ar.client.Enqueue(asynq.NewTask("bench", []byte(payload)), asynq.Queue(ar.queue), asynq.MaxRetry(0))
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("asynq enqueue: %w", err) })
					<-ar.sem
					end.Store(0)
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ar.log.mu.Lock()
		n := len(ar.log.recs)
		ar.log.mu.Unlock()
		if n > before {
			break
		}
		if time.Now().After(deadline) {
			end.Store(0)
			wg.Wait()
			return sample{}, fmt.Errorf("asynq handled no task within 5 s of the first enqueue")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Since(ar.base)
	warmEnd := start + b.cfg.Warmup
	end.Store(int64(warmEnd + b.cfg.Measure))
	time.Sleep(b.cfg.Warmup)
	snap0 := b.snap(target{})
	wg.Wait()
	s1 := b.snap(target{})
	if first != nil {
		return sample{}, first
	}
	// Let in-flight tasks finish so the next repetition starts from an empty queue.
	for deadline := time.Now().Add(5 * time.Second); len(ar.sem) > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	s := ar.log.window(warmEnd, time.Duration(end.Load()))
	_, s.redisCPU = s1.since(snap0)
	if s.ops == 0 {
		return sample{}, fmt.Errorf("no asynq task handled in the measurement window")
	}
	return s, nil
}
