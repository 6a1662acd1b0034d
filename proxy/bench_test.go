package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// BenchmarkPush measures RPUSH of a 64-byte JSON task with 50 raw-socket clients at pipeline depth 1
// and 16, straight to Redis and through qgate with envelope off (plain), envelope on (the default)
// and envelope plus a JSON Schema, all in one run. Profile qgate with:
//
//	go test -run '^$' -bench 'Push/envelope' -cpuprofile cpu.out ./proxy/
func BenchmarkPush(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "task.json"), []byte(`{"type":"object","required":["to"],"properties":{"to":{"type":"string"},"body":{"type":"string"}}}`), 0o600); err != nil {
		b.Fatal(err)
	}
	r := proxytest.StartRedis(b)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.Dir = dir
	cfg.HTTP = os.Getenv("QGATE_BENCH_HTTP") // e.g. 127.0.0.1:0: measure with the command metrics on
	no := false
	cfg.Queues = []policy.Rule{
		{Match: "plain", Envelope: &no},
		{Match: "schema", Schema: "task.json"},
	}
	q := proxytest.StartQgate(b, cfg)
	task := `{"to":"user@example.com","body":"` + strings.Repeat("x", 34) + `"}` // 64 bytes
	push := func(queue string) string {
		return fmt.Sprintf("*3\r\n$5\r\nRPUSH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(queue), queue, len(task), task)
	}
	for _, depth := range []int{1, 16} {
		for _, target := range []struct{ name, addr, queue string }{
			{"redis", r.Addr, "plain"},
			{"plain", q.Addr, "plain"},
			{"envelope", q.Addr, "envelope"},
			{"envelope+schema", q.Addr, "schema"},
		} {
			b.Run(fmt.Sprintf("%s/depth=%d", target.name, depth), func(b *testing.B) {
				runClients(b, target.addr, 50, depth, push(target.queue))
			})
		}
	}
}

// runClients sends b.N copies of req spread over n connections, depth at a time, and reads the replies.
func runClients(b *testing.B, addr string, n, depth int, req string) {
	batch := []byte(strings.Repeat(req, depth))
	per := b.N/(n*depth) + 1
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer nc.Close()
			rd := bufio.NewReader(nc)
			for j := 0; j < per; j++ {
				if _, err := nc.Write(batch); err != nil {
					b.Error(err)
					return
				}
				for k := 0; k < depth; k++ {
					line, err := rd.ReadSlice('\n')
					if err != nil || line[0] != ':' {
						b.Errorf("reply %q: %v", line, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
