package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	tQgatePushDirect = "qgate (push→redis)"
	tQgateFIFO       = "qgate (global_fifo)" // a queue whose rule sets global_fifo (bench:fifo:*)
)

func wakeupRuns(b *bench) int { return b.cfg.Reps * 4 }

// wakeTarget is where the consumers block and where the producer pushes.
type wakeTarget struct {
	target
	prodAddr string
	kind     string // the key's kind (b.key): "wake", or "fifo:wake" for a global_fifo queue
}

// runWakeup measures how long a blocked BLPOP takes to return after an RPUSH: K consumers block
// on one key, one producer pushes one item at a time (its send time in the payload) and waits for
// the delivery before pushing the next, so no queueing adds to the figure.
func (b *bench) runWakeup() {
	k := b.cfg.Clients
	variant := fmt.Sprintf("K=%d consumers, 1 key", k)
	var ts []wakeTarget
	for _, t := range b.targets(false) {
		ts = append(ts, wakeTarget{t, t.addr, "wake"})
	}
	// A legacy producer writing straight into Redis must wake qgate's waiters just as fast.
	ts = append(ts, wakeTarget{target{tQgatePushDirect, b.qgate.Addr, b.qgate}, b.redis.Addr, "wake"},
		// global_fifo's cost: a turn (one script) before each take.
		wakeTarget{target{tQgateFIFO, b.qgate.Addr, b.qgate}, b.qgate.Addr, "fifo:wake"})
	for rep := 0; rep < b.cfg.Reps; rep++ {
		for i := range ts {
			t := ts[(i+rep)%len(ts)]
			r := b.rowFor("blpop-wakeup", variant, t.name, "wakeups/s")
			b.prog.step(fmt.Sprintf("blpop-wakeup %s → %s, rep %d/%d", variant, t.name, rep+1, b.cfg.Reps))
			s, err := b.wakeRun(t, k)
			if err != nil {
				r.fail(err)
				continue
			}
			r.add(s)
		}
	}
	b.twemproxyRow("blpop-wakeup", variant, "no BLPOP")
}

type delivery struct {
	val  string
	recv time.Duration // since the run's base time
}

func (b *bench) wakeRun(t wakeTarget, k int) (sample, error) {
	key := b.key(t.kind)
	defer b.unlink(key)
	conns, err := dialN(t.addr, k, 4096)
	if err != nil {
		return sample{}, err
	}
	var (
		closing atomic.Bool
		wg      sync.WaitGroup
	)
	defer func() { closing.Store(true); closeAll(conns); wg.Wait() }()

	base := time.Now()
	deliveries := make(chan delivery, k)
	consErr := make(chan error, k)
	blpop := appendCmd(nil, "BLPOP", key, "0")
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if err := c.send(blpop); err != nil {
					if !closing.Load() {
						consErr <- err
					}
					return
				}
				v, err := c.read()
				recv := time.Since(base)
				if err != nil {
					if !closing.Load() {
						consErr <- err
					}
					return
				}
				arr, ok := v.([]any)
				if !ok || len(arr) != 2 {
					consErr <- fmt.Errorf("BLPOP reply %#v, want [key, value]", v)
					return
				}
				val, _ := arr[1].(string)
				deliveries <- delivery{val, recv}
			}
		}()
	}
	if err := waitBlocked(t.addr, k, 15*time.Second); err != nil {
		return sample{}, err
	}

	prod, err := dial(t.prodAddr)
	if err != nil {
		return sample{}, err
	}
	defer prod.Close()
	warm, meas := b.cfg.Warmup, b.cfg.Measure
	start := time.Since(base)
	warmEnd, end := start+warm, start+warm+meas
	s := sample{window: meas, hist: newHist()}
	var snap0 cpuSnap
	snapped := false
	pad := strings.Repeat("x", 40)
	for seq := 1; ; seq++ {
		now := time.Since(base)
		if now >= warmEnd && !snapped {
			snap0, snapped = b.snap(t.target), true
		}
		if now >= end {
			break
		}
		sent := time.Since(base)
		val := strconv.Itoa(seq) + ":" + strconv.FormatInt(int64(sent), 10) + ":" + pad
		if _, err := prod.do("RPUSH", key, val); err != nil {
			return sample{}, fmt.Errorf("RPUSH: %w", err)
		}
		select {
		case d := <-deliveries:
			parts := strings.SplitN(d.val, ":", 3)
			if len(parts) != 3 || parts[0] != strconv.Itoa(seq) {
				return sample{}, fmt.Errorf("consumer got item %.30q while item %d was the only one pushed", d.val, seq)
			}
			ts, _ := strconv.ParseInt(parts[1], 10, 64)
			if d.recv >= warmEnd && d.recv < end {
				s.ops++
				_ = s.hist.RecordValue(int64(d.recv) - ts)
			}
		case err := <-consErr:
			return sample{}, fmt.Errorf("consumer: %w", err)
		case <-time.After(5 * time.Second):
			return sample{}, fmt.Errorf("item %d pushed to %s was not delivered to any of %d blocked consumers within 5 s", seq, t.prodAddr, k)
		}
	}
	if snapped {
		s.proxyCPU, s.redisCPU = b.snap(t.target).since(snap0)
	}
	if s.ops == 0 {
		return sample{}, errors.New("no wake-up in the measurement window")
	}
	return s, nil
}

// waitBlocked polls INFO clients at addr until blocked_clients reaches n.
func waitBlocked(addr string, n int, timeout time.Duration) error {
	mon, err := dial(addr)
	if err != nil {
		return err
	}
	defer mon.Close()
	deadline := time.Now().Add(timeout)
	for {
		got, err := infoInt(mon, "clients", "blocked_clients")
		if err != nil {
			return fmt.Errorf("INFO clients at %s: %w", addr, err)
		}
		if got >= int64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d clients blocked after %s (INFO blocked_clients at %s)", got, n, timeout, addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
