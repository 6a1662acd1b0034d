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

func alsRuns(b *bench) int { return b.cfg.Reps * 2 }

// runAtLeastOnce measures the systems qgate's at-least-once mode will be compared with, straight
// against the same redis-server: Redis Streams consumer groups (XADD → XREADGROUP → XACK) and
// asynq (enqueue → handler). qgate's own row waits for issue 6.
func (b *bench) runAtLeastOnce() {
	n := b.cfg.Clients
	variant := fmt.Sprintf("%d producers + %d consumers, 64B", n/2, n-n/2)
	b.newRow("at-least-once", variant, tQgate, "").Status = "not implemented yet (issue 6)"
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
	for rep := 0; rep < b.cfg.Reps; rep++ {
		order := []string{tStreams, tAsynq}
		if rep%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, name := range order {
			b.prog.step(fmt.Sprintf("at-least-once %s → %s, rep %d/%d", variant, name, rep+1, b.cfg.Reps))
			switch {
			case name == tStreams:
				s, err := b.streamsRun(n/2, n-n/2)
				if err != nil {
					streams.fail(err)
					continue
				}
				streams.add(s)
			case ar != nil:
				s, err := ar.run(b, n/2)
				if err != nil {
					aq.fail(err)
					continue
				}
				aq.add(s)
			}
		}
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
func (b *bench) streamsRun(producers, consumers int) (sample, error) {
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
	return s, nil
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
