package main

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func listRuns(b *bench) int {
	return len(b.cfg.Depths) * len(b.cfg.Payloads) * b.cfg.Reps * len(b.targets(true))
}

// batchRec is one completed pipeline round trip.
type batchRec struct {
	done int64 // completion, ns since the run started
	rtt  int64 // ns from writing the first command to reading the last reply
	n    int64 // operations that succeeded in the batch
}

// runList measures RPUSH or LPOP (kind "rpush"/"lpop") for every depth × payload on every target.
// qgate's queues here match its plain rule (envelope off: the plain path the README's benchmark targets are about).
func (b *bench) runList(kind string) {
	for _, depth := range b.cfg.Depths {
		for _, size := range b.cfg.Payloads {
			variant := fmt.Sprintf("N=%d depth=%d %s", b.cfg.Clients, depth, sizeLabel(size))
			spec := listSpec{kind: kind, depth: depth, prefix: "bench:" + kind, payload: strings.Repeat("x", size),
				est: fmt.Sprintf("%d/%d", depth, size)}
			for rep := 0; rep < b.cfg.Reps; rep++ {
				for _, t := range rotate(b.targets(true), rep) {
					r := b.rowFor(kind, variant, t.name, "ops/s")
					b.prog.step(fmt.Sprintf("%s %s → %s, rep %d/%d", kind, variant, t.name, rep+1, b.cfg.Reps))
					b.listSample(t, spec, r)
				}
			}
		}
	}
}

// listSpec is what one list run sends.
type listSpec struct {
	kind    string // rpush | lpop
	depth   int
	prefix  string // key prefix; qgate's rules are chosen by it
	payload string
	est     string // rate-estimate key for sizing LPOP's pre-fill
	viaProx bool   // pre-fill through the target (so qgate wraps items in envelopes)
}

// listSample runs once and records the sample (or the failure) in r.
func (b *bench) listSample(t target, spec listSpec, r *row) {
	s, err := b.listRun(t, spec, r)
	if err != nil {
		r.fail(err)
		return
	}
	r.add(s)
	b.rateEst[spec.est] = max(b.rateEst[spec.est], s.rate())
}

// listRun is one run: N clients on their own connections, each sending `depth` commands at a
// time and waiting for all the replies before sending the next batch (closed loop).
func (b *bench) listRun(t target, spec listSpec, r *row) (sample, error) {
	n, depth := b.cfg.Clients, spec.depth
	key := fmt.Sprintf("%s:%d", spec.prefix, b.seq.Add(1))
	defer b.unlink(key)
	var one []byte
	if spec.kind == "rpush" {
		one = appendCmd(nil, "RPUSH", key, spec.payload)
	} else {
		one = appendCmd(nil, "LPOP", key)
		via := b.admin
		if spec.viaProx {
			c, err := dialSize(t.addr, 1<<20)
			if err != nil {
				return sample{}, err
			}
			defer c.Close()
			via = c
		}
		if err := prefill(via, key, b.prefillCount(spec.est, depth, len(spec.payload)), spec.payload); err != nil {
			return sample{}, fmt.Errorf("prefill: %w", err)
		}
	}
	batch := make([]byte, 0, len(one)*depth)
	for range depth {
		batch = append(batch, one...)
	}
	conns, err := dialN(t.addr, n, max(16<<10, 2*len(batch)))
	if err != nil {
		return sample{}, err
	}
	defer closeAll(conns)

	warm, meas := b.cfg.Warmup, b.cfg.Measure
	start := time.Now()
	warmEnd, end := int64(warm), int64(warm+meas)
	var (
		stop   atomic.Bool
		dryAt  atomic.Int64 // first time (ns since start) an LPOP found the list empty
		errMu  sync.Mutex
		errs   []error
		recs   = make([][]batchRec, n)
		wg     sync.WaitGroup
		stopCh = make(chan struct{})
		once   sync.Once
	)
	halt := func() { once.Do(func() { stop.Store(true); close(stopCh) }) }
	cpu := make(chan [2]cpuSnap, 1)
	go func() {
		time.Sleep(time.Until(start.Add(warm)))
		s0 := b.snap(t)
		select {
		case <-time.After(time.Until(start.Add(warm + meas))):
		case <-stopCh:
		}
		cpu <- [2]cpuSnap{s0, b.snap(t)}
	}()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]batchRec, 0, 4096)
			defer func() { recs[i] = out }()
			for !stop.Load() {
				t0 := time.Since(start)
				if int64(t0) >= end {
					return
				}
				if err := c.send(batch); err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					return
				}
				ok, dry := int64(0), false
				for range depth {
					_, null, err := c.skip()
					if err != nil {
						errMu.Lock()
						errs = append(errs, err)
						errMu.Unlock()
						return
					}
					if null {
						dry = true
					} else {
						ok++
					}
				}
				t1 := time.Since(start)
				if dry {
					if dryAt.CompareAndSwap(0, int64(t1)) {
						halt()
					}
					return
				}
				out = append(out, batchRec{done: int64(t1), rtt: int64(t1 - t0), n: ok})
			}
		}()
	}
	wg.Wait()
	halt()
	snaps := <-cpu
	if len(errs) > 0 {
		return sample{}, fmt.Errorf("%d of %d clients failed, first: %w", len(errs), n, errs[0])
	}
	winEnd := end
	if d := dryAt.Load(); d > 0 && d < end {
		winEnd = d
		if winEnd-warmEnd < int64(meas)/4 {
			return sample{}, fmt.Errorf("list of pre-filled items ran dry %.0f ms into a %.0f ms window", float64(winEnd-warmEnd)/1e6, float64(meas)/1e6)
		}
		r.note("pre-filled list ran dry early in some runs (window shortened to ≥25%%)")
	}
	s := sample{window: time.Duration(winEnd - warmEnd), hist: newHist()}
	s.proxyCPU, s.redisCPU = snaps[1].since(snaps[0])
	for _, rs := range recs {
		for _, rec := range rs {
			if rec.done >= warmEnd && rec.done < winEnd {
				s.ops += float64(rec.n)
				// Every command of a batch waits for the whole round trip: the batch's latency
				// is recorded once per command in it.
				_ = s.hist.RecordValues(rec.rtt, rec.n)
			}
		}
	}
	if s.ops == 0 {
		total, last := 0, int64(0)
		for _, rs := range recs {
			total += len(rs)
			if len(rs) > 0 {
				last = max(last, rs[len(rs)-1].done)
			}
		}
		return sample{}, fmt.Errorf("no operation completed in the measurement window %.0f–%.0f ms (%d batches in all, last done at %.0f ms, list empty at %.0f ms)",
			float64(warmEnd)/1e6, float64(winEnd)/1e6, total, float64(last)/1e6, float64(dryAt.Load())/1e6)
	}
	return s, nil
}

// prefillCount estimates how many items an LPOP run needs: the fastest rate seen so far for this
// depth and payload (RPUSH runs first) over warm-up plus window, with a margin; capped at 2 GiB.
func (b *bench) prefillCount(est string, depth, size int) int {
	rate := b.rateEst[est]
	if rate == 0 {
		rate = 150e3
		if depth > 1 {
			rate = 600e3
		}
	}
	n := int(rate*(b.cfg.Warmup+b.cfg.Measure).Seconds()*1.5) + b.cfg.Clients*depth*4
	return min(n, (2<<30)/max(size, 1), 8_000_000)
}

// prefill pushes count copies of payload onto key over c, in big variadic RPUSHes.
func prefill(c *rconn, key string, count int, payload string) error {
	per := max(1, min(1000, (1<<20)/max(len(payload), 1)))
	args := []string{"RPUSH", key}
	for range per {
		args = append(args, payload)
	}
	cmd := appendCmd(nil, args...)
	pending := 0
	flush := func() error {
		if err := c.w.Flush(); err != nil {
			return err
		}
		for ; pending > 0; pending-- {
			if _, _, err := c.skip(); err != nil {
				return err
			}
		}
		return nil
	}
	for sent := 0; sent < count; sent += per {
		if count-sent < per {
			args = args[:2+count-sent]
			cmd = appendCmd(nil, args...)
		}
		if _, err := c.w.Write(cmd); err != nil {
			return err
		}
		if pending++; pending == 16 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// dialN opens n connections to addr.
func dialN(addr string, n, bufSize int) ([]*rconn, error) {
	conns := make([]*rconn, 0, n)
	for range n {
		c, err := dialSize(addr, bufSize)
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("connect to %s: %w", addr, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*rconn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}
