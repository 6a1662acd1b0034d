package main

import (
	"io"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qgate/qgate/proxy/admin"
)

// BenchmarkCommandCounting is what qgate's per-command metrics add to one command while the HTTP
// listener is on (proxy/server_admin.go beginCmd/endCmd): two clock reads, a counter and a histogram
// update (a connection keeps its last command's series, so pipelines skip the lookup; "lookup" adds
// it back: a command that differs from the one before); run in parallel, as the connections do.
// Compare with qgate's CPU per operation in the metrics-cost scenario (RESULTS-metrics.md).
//
//	cd bench && go test -run '^$' -bench 'CommandCounting|MetricsGather' -cpu 2 .
func BenchmarkCommandCounting(b *testing.B) {
	for _, lookup := range []bool{false, true} {
		name := "same-command"
		if lookup {
			name = "lookup"
		}
		b.Run(name, func(b *testing.B) {
			m := admin.NewMetrics().Commands
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				s := m.Series("rpush")
				for pb.Next() {
					if lookup {
						s = m.Series("rpush")
					}
					start := time.Now()
					s.Observe(time.Since(start), false)
				}
			})
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the CPU time (user + system) this process used: unlike ns/op it does not grow when a
// loaded machine leaves the benchmark waiting for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMetricsGather is one rendering of the Go, process and command series in the text format
// (a scrape, less the queue collector that needs a running server).
func BenchmarkMetricsGather(b *testing.B) {
	m := admin.NewMetrics()
	for _, c := range []string{"rpush", "lpush", "lpop", "rpop", "blpop", "brpop", "llen", "lrange", "qack", "ping"} {
		m.Commands.Series(c).Observe(time.Millisecond, false)
	}
	h := promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{})
	req := httptest.NewRequest("GET", "/metrics", nil)
	cpu := cpuTime()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		_, _ = io.Copy(io.Discard, w.Body)
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}
