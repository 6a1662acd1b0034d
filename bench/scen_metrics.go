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
				for _, t := range rotate(ts, rep) {
					r := b.rowFor("metrics-cost", variant, t.name, "ops/s")
					b.prog.step(fmt.Sprintf("metrics-cost %s → %s, rep %d/%d", variant, t.name, rep+1, b.cfg.Reps))
					b.listSample(t, spec, r)
					if t.name == tQgateHTTP {
						last = r
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

// metricsCostRows is the metrics-cost section: per variant, both throughputs and the ratio on/off.
func (b *bench) metricsCostRows() [][]string {
	var out [][]string
	for _, r := range b.rows {
		if r.Scenario != "metrics-cost" || r.Target != tQgate || !r.measured() {
			continue
		}
		o := b.lookup(r.Scenario, r.Variant, tQgateHTTP)
		if o == nil {
			out = append(out, []string{r.Variant, human(r.Throughput().Med), "—", "—", "—"})
			continue
		}
		v, _ := b.ratio(o, tQgate)
		t := o.Throughput()
		out = append(out, []string{r.Variant,
			fmt.Sprintf("%s ops/s (%s–%s), %s CPU s/Mop", human(r.Throughput().Med), human(r.Throughput().Min), human(r.Throughput().Max), cpuCell(r.CPUPerMop(true))),
			fmt.Sprintf("%s ops/s (%s–%s), %s CPU s/Mop", human(t.Med), human(t.Min), human(t.Max), cpuCell(o.CPUPerMop(true))),
			fmt.Sprintf("%.3f×", v),
			fmt.Sprintf("≥ %.2f: %s", metricsCostTarget, mark(v >= metricsCostTarget))})
	}
	return out
}
