package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// tQgateHTTP is the qgate with the HTTP listener on and /metrics scraped every second.
const tQgateHTTP = "qgate (http+metrics)"

// metricsCostTarget is the budget: qgate with the HTTP listener and metrics may lose at most 5 %
// of the plain qgate's throughput on the RESP hot path.
const metricsCostTarget = 0.95

func metricsRuns(b *bench) int { return 2 * len(b.cfg.Depths) * b.cfg.Reps * 2 }

// runMetricsCost measures what the HTTP listener and Prometheus metrics cost the RESP hot path:
// RPUSH and LPOP, 64 B, N clients, every depth, against two qgate processes on the same redis-server,
// the usual one (no --http) and one with --http, whose /metrics a scraper reads every second for the
// whole scenario. The two run one after the other in every repetition, each repetition starting with
// the other one, so machine drift hits both alike; the report gives the ratio on/off per variant.
func (b *bench) runMetricsCost() {
	on, err := b.startHTTPQgate()
	if err != nil {
		r := b.rowFor("metrics-cost", "start", tQgateHTTP, "ops/s")
		r.fail(err)
		return
	}
	defer on.p.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	scrapes := make(chan scrapeStats, 1)
	go func() { scrapes <- scrapeEvery(ctx, "http://"+on.http+"/metrics", time.Second) }()

	off := b.targets(false)[1]
	ts := []target{off, {tQgateHTTP, on.p.Addr, on.p}}
	var last *row
	for _, kind := range []string{"rpush", "lpop"} {
		for _, depth := range b.cfg.Depths {
			variant := fmt.Sprintf("%s N=%d depth=%d 64B", kind, b.cfg.Clients, depth)
			spec := listSpec{kind: kind, depth: depth, prefix: "bench:" + kind, payload: strings.Repeat("x", 64),
				est: fmt.Sprintf("%d/%d", depth, 64)}
			for rep := 0; rep < b.cfg.Reps; rep++ {
				got := map[string]*sample{}
				for _, t := range rotate(ts, rep) {
					r := b.rowFor("metrics-cost", variant, t.name, "ops/s")
					b.prog.step(fmt.Sprintf("metrics-cost %s → %s, rep %d/%d", variant, t.name, rep+1, b.cfg.Reps))
					n := len(r.samples)
					b.listSample(t, spec, r)
					if len(r.samples) > n {
						got[t.name] = &r.samples[n]
					}
					if t.name == tQgateHTTP {
						last = r
					}
				}
				// The two runs of a repetition are neighbours in time: their ratio is the least
				// disturbed by the load of a shared machine.
				if a, o := got[tQgateHTTP], got[tQgate]; a != nil && o != nil && o.rate() > 0 && o.ops > 0 && a.ops > 0 {
					r := b.rowFor("metrics-cost", variant, tQgateHTTP, "ops/s")
					r.addValue("paired_ratio", a.rate()/o.rate())
					if a.proxyCPU >= 0 && o.proxyCPU > 0 {
						r.addValue("paired_cpu_ratio", (a.proxyCPU.Seconds()/a.ops)/(o.proxyCPU.Seconds()/o.ops))
					}
				}
			}
		}
	}
	cancel()
	st := <-scrapes
	if last != nil {
		last.note("scraper: %d scrapes of /metrics (one a second), %d failed, last %d bytes", st.ok+st.failed, st.failed, st.lastBytes)
		if st.ok == 0 {
			last.fail(fmt.Errorf("no successful /metrics scrape: %s", st.lastErr))
		}
	}
	if on.p.Exited() {
		b.warn("qgate with --http exited during metrics-cost: %s", tail(on.p.log.String(), 2000))
	}
}

// httpQgate is a qgate process with its HTTP listener at http.
type httpQgate struct {
	p    *proc
	http string
}

// startHTTPQgate starts a second qgate like the usual one, with --http on a free port.
func (b *bench) startHTTPQgate() (httpQgate, error) {
	var lastErr error
	for range 3 {
		addr, err := freeAddr()
		if err != nil {
			return httpQgate{}, err
		}
		p, err := startQgate(b.qgateBin, b.redis.URL(), append(b.qgateArgs(), "--http", addr)...)
		if err != nil {
			lastErr = err
			continue
		}
		// The HTTP listener is up once /healthz answers.
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + "/healthz")
			if err == nil {
				resp.Body.Close()
				return httpQgate{p, addr}, nil
			}
			if time.Now().After(deadline) || p.Exited() {
				lastErr = fmt.Errorf("qgate --http %s: no answer on /healthz: %w", addr, err)
				p.Stop()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return httpQgate{}, lastErr
}

type scrapeStats struct {
	ok, failed int
	lastBytes  int64
	lastErr    string
}

// scrapeEvery GETs url every interval until ctx ends, as a Prometheus server would.
func scrapeEvery(ctx context.Context, url string, interval time.Duration) scrapeStats {
	var st scrapeStats
	var mu sync.Mutex
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		resp, err := client.Get(url)
		mu.Lock()
		if err == nil {
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				st.ok++
				st.lastBytes = n
			} else {
				st.failed++
				st.lastErr = resp.Status
			}
		} else {
			st.failed++
			st.lastErr = err.Error()
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
			return st
		case <-tick.C:
		}
	}
}

// metricsCostRows is the metrics-cost section: per variant, both throughputs, the ratio on/off of the
// medians, the median of the per-repetition ratios (the budget is judged on it) and qgate's CPU per
// operation on/off.
func (b *bench) metricsCostRows() [][]string {
	var out [][]string
	for _, r := range b.rows {
		if r.Scenario != "metrics-cost" || r.Target != tQgate || !r.measured() {
			continue
		}
		o := b.lookup(r.Scenario, r.Variant, tQgateHTTP)
		if o == nil {
			out = append(out, []string{r.Variant, human(r.Throughput().Med), "—", "—", "—", "—", "—"})
			continue
		}
		v, _ := b.ratio(o, tQgate)
		t, f := o.Throughput(), r.Throughput()
		pr, cr := o.value("paired_ratio"), o.value("paired_cpu_ratio")
		verdict := "—"
		if pr.OK {
			verdict = fmt.Sprintf("≥ %.2f: %s", metricsCostTarget, mark(pr.Med >= metricsCostTarget))
		}
		out = append(out, []string{r.Variant,
			fmt.Sprintf("%s ops/s (%s–%s)", human(f.Med), human(f.Min), human(f.Max)),
			fmt.Sprintf("%s ops/s (%s–%s)", human(t.Med), human(t.Min), human(t.Max)),
			fmt.Sprintf("%.3f×", v),
			fmt.Sprintf("%.3f× (%.2f–%.2f, %d pairs)", pr.Med, pr.Min, pr.Max, pr.N),
			fmt.Sprintf("%s → %s (%.3f×)", cpuCell(r.CPUPerMop(true)), cpuCell(o.CPUPerMop(true)), cr.Med),
			verdict})
	}
	return out
}
