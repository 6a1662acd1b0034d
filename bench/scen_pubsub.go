package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func pubsubRuns(b *bench) int { return b.cfg.Reps * 2 }

// pubsubInFlight is how many messages the throughput phase keeps not yet delivered to everyone.
const pubsubInFlight = 16

// pubsubMinSamples is how many publish → last delivery latencies a run collects at least (time permitting).
const pubsubMinSamples = 40

// runPubSub measures fan-out of one channel to S subscribers: publish → last delivery latency
// with one message in flight, then deliveries/s with up to pubsubInFlight messages in flight.
func (b *bench) runPubSub() {
	n := b.cfg.Subscribers
	variant := fmt.Sprintf("S=%d subscribers, 1 channel, 64B", n)
	for rep := 0; rep < b.cfg.Reps; rep++ {
		for _, t := range rotate(b.targets(false), rep) {
			r := b.rowFor("pubsub-fanout", variant, t.name, "deliveries/s")
			b.prog.step(fmt.Sprintf("pubsub-fanout %s → %s, rep %d/%d", variant, t.name, rep+1, b.cfg.Reps))
			s, err := b.pubsubRun(t, n, r)
			if err != nil {
				r.fail(err)
				continue
			}
			r.add(s)
		}
	}
	b.twemproxyRow("pubsub-fanout", variant, "no pub/sub")
}

// fanout tracks how many subscribers got each message.
type fanout struct {
	subs      int32
	counts    []atomic.Int32
	delivered atomic.Int64
	done      chan fanDone
}

type fanDone struct {
	seq int64
	at  time.Duration
}

const fanRing = 1 << 16

func (b *bench) pubsubRun(t target, n int, r *row) (sample, error) {
	ch := b.key("chan")
	subStart := time.Now()
	subs, err := subscribeN(t.addr, ch, n)
	var closing atomic.Bool
	defer func() { closing.Store(true); closeAll(subs) }()
	if err != nil {
		return sample{}, err
	}
	subTime := time.Since(subStart)
	r.addValue("subscribe_s", subTime.Seconds())
	numsub, err := b.numsub(ch)
	if err != nil {
		return sample{}, err
	}
	r.addValue("backend_subscriptions", float64(numsub))

	f := &fanout{subs: int32(n), counts: make([]atomic.Int32, fanRing), done: make(chan fanDone, fanRing)}
	base := time.Now()
	errCh := make(chan error, 1)
	var wg sync.WaitGroup
	for _, c := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := c.message(func(p []byte) {
					i := bytes.IndexByte(p, ':')
					seq, _ := parseInt(p[:max(i, 0)])
					f.delivered.Add(1)
					if f.counts[seq&(fanRing-1)].Add(1) == f.subs {
						f.done <- fanDone{seq, time.Since(base)}
					}
				})
				if err != nil {
					if !closing.Load() {
						select {
						case errCh <- err:
						default:
						}
					}
					return
				}
			}
		}()
	}
	defer func() { closing.Store(true); closeAll(subs); wg.Wait() }()

	pub, err := dial(t.addr)
	if err != nil {
		return sample{}, err
	}
	defer pub.Close()
	pad := strings.Repeat("x", 40)
	var seq int64
	replies := map[int64]int{}
	publish := func() error {
		seq++
		f.counts[seq&(fanRing-1)].Store(0)
		val := strconv.FormatInt(seq, 10) + ":" + strconv.FormatInt(int64(time.Since(base)), 10) + ":" + pad
		v, err := pub.do("PUBLISH", ch, val[:min(len(val), 64)])
		if err != nil {
			return fmt.Errorf("PUBLISH: %w", err)
		}
		if k, ok := v.(int64); ok {
			replies[k]++
		}
		return nil
	}
	waitDone := func() (fanDone, error) {
		select {
		case d := <-f.done:
			return d, nil
		case err := <-errCh:
			return fanDone{}, fmt.Errorf("subscriber: %w", err)
		case <-time.After(10 * time.Second):
			got := f.counts[seq&(fanRing-1)].Load()
			return fanDone{}, fmt.Errorf("message %d reached only %d of %d subscribers within 10 s", seq, got, n)
		}
	}

	// Phase 1: latency, one message at a time.
	warm, meas := b.cfg.Warmup, b.cfg.Measure
	s := sample{hist: newHist()}
	start := time.Since(base)
	warmEnd, end := start+warm, start+warm+meas
	// With thousands of subscribers one message can take longer than a tenth of the window, so the
	// phase goes on (up to 4 windows) until it has pubsubMinSamples latencies.
	hardEnd := start + warm + 4*meas
	for now := time.Since(base); now < end || (s.hist.TotalCount() < pubsubMinSamples && now < hardEnd); now = time.Since(base) {
		sent := time.Since(base)
		if err := publish(); err != nil {
			return sample{}, err
		}
		d, err := waitDone()
		if err != nil {
			return sample{}, err
		}
		if d.seq != seq {
			return sample{}, fmt.Errorf("message %d completed while %d was the only one in flight", d.seq, seq)
		}
		if d.at >= warmEnd {
			_ = s.hist.RecordValue(int64(d.at - sent))
		}
	}

	r.addValue("latency_samples", float64(s.hist.TotalCount()))

	// Phase 2: throughput, up to pubsubInFlight messages not yet delivered to everyone.
	start = time.Since(base)
	type mark struct {
		delivered int64
		cpu       cpuSnap
	}
	marks := make(chan mark, 2)
	go func() {
		time.Sleep(warm)
		marks <- mark{f.delivered.Load(), b.snap(t)}
		time.Sleep(meas)
		marks <- mark{f.delivered.Load(), b.snap(t)}
	}()
	end = start + warm + meas
	inflight := 0
	for time.Since(base) < end {
		for inflight >= pubsubInFlight {
			if _, err := waitDone(); err != nil {
				return sample{}, err
			}
			inflight--
		}
		if err := publish(); err != nil {
			return sample{}, err
		}
		inflight++
	}
	for ; inflight > 0; inflight-- {
		if _, err := waitDone(); err != nil {
			return sample{}, err
		}
	}
	m0, m1 := <-marks, <-marks
	s.ops = float64(m1.delivered - m0.delivered)
	s.window = meas
	s.proxyCPU, s.redisCPU = m1.cpu.since(m0.cpu)
	for k, cnt := range replies {
		if int(k) != n {
			r.note("PUBLISH replied %d (not the %d subscribers) to %d of %d publishes", k, n, cnt, seq)
		}
	}
	// The backend subscription must go away with the last local subscriber.
	closing.Store(true)
	closeAll(subs)
	wg.Wait()
	deadline := time.Now().Add(3 * time.Second)
	for {
		k, err := b.numsub(ch)
		if err != nil {
			return sample{}, err
		}
		if k == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.fail(fmt.Errorf("backend still has %d subscription(s) to the channel 3 s after all %d subscribers disconnected", k, n))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s, nil
}

// subscribeN opens n connections to addr, each subscribed to ch, 64 at a time.
func subscribeN(addr, ch string, n int) ([]*rconn, error) {
	subs := make([]*rconn, n)
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	cmd := appendCmd(nil, "SUBSCRIBE", ch)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := dialSize(addr, 512)
				if err == nil {
					subs[i] = c
					if err = c.send(cmd); err == nil {
						var v any
						v, err = c.read()
						if arr, ok := v.([]any); err == nil && (!ok || len(arr) != 3 || arr[0] != "subscribe") {
							err = fmt.Errorf("SUBSCRIBE reply %#v", v)
						}
					}
				}
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("subscriber %d of %d: %w", i+1, n, err)
					}
					errMu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return subs, first
}

// numsub asks the backend how many subscriptions a channel has.
func (b *bench) numsub(ch string) (int64, error) {
	v, err := b.admin.do("PUBSUB", "NUMSUB", ch)
	if err != nil {
		return 0, fmt.Errorf("PUBSUB NUMSUB on the backend: %w", err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return 0, fmt.Errorf("PUBSUB NUMSUB reply %#v", v)
	}
	k, _ := arr[1].(int64)
	return k, nil
}
