package main

import (
	"io"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/admin"
)

// BenchmarkCommandCounting is what qgate counts per command: the command's counters (INFO
// commandstats and qgate_commands_total, always on: commands.CommandStats.Record, by the spec Exec
// returns) and, while the HTTP listener is on, its latency histogram (admin.CommandSeries, resolved
// once per command when the listener starts); run in parallel, as the connections do. Compare with
// qgate's CPU per operation in the metrics-cost scenario (RESULTS-metrics.md).
//
//	cd bench && go test -run '^$' -bench 'CommandCounting|MetricsGather' -cpu 2 .
func BenchmarkCommandCounting(b *testing.B) {
	for _, histogram := range []bool{false, true} {
		name := "counters"
		if histogram {
			name = "counters+histogram"
		}
		b.Run(name, func(b *testing.B) {
			stats := commands.NewCommandStats()
			spec := commands.Lookup([]byte("rpush"))
			s := admin.NewMetrics().Commands.Series("rpush")
			reply := []byte(":1\r\n")
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					start := time.Now()
					d := time.Since(start)
					stats.Record(spec, commands.Ran, d.Microseconds(), reply)
					if histogram {
						s.Observe(d)
					}
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
		m.Commands.Series(c).Observe(time.Millisecond)
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
