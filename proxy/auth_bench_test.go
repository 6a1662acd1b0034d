package proxy_test

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/proxytest"
)

// BenchmarkConnectAuthPing measures a reconnect storm: each operation dials, sends AUTH and PING in
// one write, reads +OK and +PONG, and closes (with an RST, so no TIME_WAIT piles up). It runs straight
// against a redis-server started with --requirepass and through qgate whose user has a bcrypt hash
// of the default cost (10), in one run; qgate answers from its cache of verified credentials, so
// the storm costs one bcrypt. Run it with:
//
//	go test -run '^$' -bench ConnectAuthPing -benchtime 3s ./proxy/
func BenchmarkConnectAuthPing(b *testing.B) {
	const password = "bench-Secret-pw"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	direct := proxytest.StartRedis(b, "--requirepass", password)
	backend := proxytest.StartRedis(b)
	cfg := proxy.DefaultConfig()
	cfg.Backend = backend.URL()
	cfg.Users = []auth.UserConfig{{Name: "default", PasswordHash: string(hash), Push: []string{"*"}}}
	q := proxytest.StartQgate(b, cfg)
	msg := []byte("*2\r\n$4\r\nAUTH\r\n$" + strconv.Itoa(len(password)) + "\r\n" + password + "\r\n*1\r\n$4\r\nPING\r\n")
	const want = "+OK\r\n+PONG\r\n"
	for _, target := range []struct{ name, addr string }{{"redis-requirepass", direct.Addr}, {"qgate-cached", q.Addr}} {
		for _, par := range []int{1, 8} {
			b.Run(target.name+"/clients="+strconv.Itoa(par), func(b *testing.B) {
				var wg sync.WaitGroup
				var mu sync.Mutex
				var first error
				n := b.N
				next := make(chan struct{}, n)
				for i := 0; i < n; i++ {
					next <- struct{}{}
				}
				close(next)
				b.ResetTimer()
				for g := 0; g < par; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						buf := make([]byte, len(want))
						for range next {
							if err := connectAuthPing(target.addr, msg, buf, want); err != nil {
								mu.Lock()
								if first == nil {
									first = err
								}
								mu.Unlock()
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				if first != nil {
					b.Fatal(first)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
			})
		}
	}
	if n := q.Server.BcryptVerifications(); n != 1 {
		b.Fatalf("qgate ran %d bcrypt comparisons, want 1", n)
	}
}

func connectAuthPing(addr string, msg, buf []byte, want string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer func() {
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	}()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := 0
	for got < len(buf) {
		m, err := c.Read(buf[got:])
		got += m
		if err != nil {
			return err
		}
	}
	if string(buf) != want {
		return fmt.Errorf("AUTH+PING reply %q, want %q", buf, want)
	}
	return nil
}
