package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// newHist records latencies in nanoseconds from 1 ns to 100 s with 3 significant digits.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 100e9, 3) }

// sample is one measured run (one repetition of one target).
type sample struct {
	ops      float64       // operations completed inside the measurement window
	window   time.Duration // length of the measurement window
	hist     *hdrhistogram.Histogram
	proxyCPU time.Duration // CPU used by the proxy process in the window (qgate/twemproxy), -1 if none
	redisCPU time.Duration // CPU used by redis-server in the window, -1 if unknown
}

func (s sample) rate() float64 {
	if s.window <= 0 {
		return 0
	}
	return s.ops / s.window.Seconds()
}

// row is one line of the result table: a scenario variant on one target, over all repetitions.
type row struct {
	Scenario string
	Variant  string
	Target   string
	Unit     string // throughput unit, e.g. "ops/s"
	Status   string // "" when measured; otherwise why there is no number (unsupported, not implemented)
	Baseline bool   // a comparison system measured on its own (Redis Streams, asynq)

	samples []sample
	values  map[string][]float64 // per-repetition extra figures (RSS, subscriptions, ...)
	Errors  []string             // failures observed while measuring (qgate misbehaviour shows up here)
	Notes   []string
}

func (r *row) add(s sample)   { r.samples = append(r.samples, s) }
func (r *row) fail(err error) { r.Errors = appendUniq(r.Errors, err.Error()) }
func (r *row) note(format string, a ...any) {
	r.Notes = appendUniq(r.Notes, fmt.Sprintf(format, a...))
}

func appendUniq(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func (r *row) addValue(name string, v float64) {
	if r.values == nil {
		r.values = map[string][]float64{}
	}
	r.values[name] = append(r.values[name], v)
}

// value is the median (and spread) of an extra figure over repetitions.
func (r *row) value(name string) stat { return summarize(r.values[name]) }

func (r *row) measured() bool { return r.Status == "" && len(r.samples) > 0 }

// stat is a median with its spread over repetitions.
type stat struct {
	Med, Min, Max float64
	N             int
	OK            bool
}

func summarize(vals []float64) stat {
	if len(vals) == 0 {
		return stat{}
	}
	v := append([]float64(nil), vals...)
	sort.Float64s(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{Med: med, Min: v[0], Max: v[len(v)-1], N: len(v), OK: true}
}

// Throughput is the median (and spread) of the per-repetition rates.
func (r *row) Throughput() stat {
	var v []float64
	for _, s := range r.samples {
		if s.window > 0 {
			v = append(v, s.rate())
		}
	}
	return summarize(v)
}

// Latency is the median over repetitions of the per-repetition quantile q (0..100), in ms.
func (r *row) Latency(q float64) stat {
	var v []float64
	for _, s := range r.samples {
		if s.hist != nil && s.hist.TotalCount() > 0 {
			v = append(v, float64(s.hist.ValueAtQuantile(q))/1e6)
		}
	}
	return summarize(v)
}

// CPUPerMop is the median CPU seconds per million operations of the proxy (proxy=true) or redis.
func (r *row) CPUPerMop(proxy bool) stat {
	var v []float64
	for _, s := range r.samples {
		cpu := s.redisCPU
		if proxy {
			cpu = s.proxyCPU
		}
		if cpu >= 0 && s.ops > 0 {
			v = append(v, cpu.Seconds()/s.ops*1e6)
		}
	}
	return summarize(v)
}

// progress prints a one-line progress bar on stderr ("\r" updates on a terminal, plain lines otherwise).
type progress struct {
	mu    sync.Mutex
	total int
	done  int
	start time.Time
	tty   bool
	quiet bool
	width int
}

func newProgress(total int, quiet bool) *progress {
	tty := false
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		tty = true
	}
	return &progress{total: total, start: time.Now(), tty: tty, quiet: quiet}
}

// step announces the run about to start.
func (p *progress) step(label string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if p.done > p.total {
		p.total = p.done
	}
	if p.quiet {
		return
	}
	const barLen = 24
	filled := barLen * (p.done - 1) / max(p.total, 1)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", barLen-filled)
	line := fmt.Sprintf("[%s] %3d/%d %5.0fs  %s", bar, p.done, p.total, time.Since(p.start).Seconds(), label)
	if p.tty {
		pad := ""
		if n := p.width - len(line); n > 0 {
			pad = strings.Repeat(" ", n)
		}
		p.width = len(line)
		fmt.Fprintf(os.Stderr, "\r%s%s", line, pad)
	} else {
		fmt.Fprintln(os.Stderr, line)
	}
}

// log prints a message line without disturbing the progress bar.
func (p *progress) log(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quiet {
		return
	}
	if p.tty && p.width > 0 {
		fmt.Fprintf(os.Stderr, "\r%s\r", strings.Repeat(" ", p.width))
		p.width = 0
	}
	fmt.Fprintf(os.Stderr, format+"\n", a...)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.quiet && p.tty && p.width > 0 {
		fmt.Fprintf(os.Stderr, "\r%s\r", strings.Repeat(" ", p.width))
	}
	p.width = 0
}
