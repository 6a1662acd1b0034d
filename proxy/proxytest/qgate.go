package proxytest

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
)

// Qgate is a qgate server running in-process on a free port.
type Qgate struct {
	Addr   string
	Server *proxy.Server
	Logs   *SafeBuffer // everything the server logged, at debug level

	once    sync.Once
	served  chan error
	stopErr error
}

// StartQgate starts qgate in-process on 127.0.0.1:0 with cfg (cfg.Listen is ignored) and stops it when
// the test ends. Use proxy.DefaultConfig() and set Backend to a StartRedis URL.
func StartQgate(tb testing.TB, cfg proxy.Config) *Qgate {
	tb.Helper()
	q, err := LaunchQgate(cfg)
	if err != nil {
		tb.Fatalf("start qgate: %v", err)
	}
	tb.Cleanup(func() {
		if err := q.Stop(); err != nil {
			tb.Errorf("stop qgate: %v", err)
		}
		// qgate's first promise: no popped item is ever lost, whatever the test did.
		if n := q.Server.Stats().LostItems; n != 0 {
			tb.Errorf("qgate lost %d items (lost_items must stay 0)", n)
		}
	})
	return q
}

// LaunchQgate starts qgate in-process without a testing.TB (for bench/); call Stop when done.
func LaunchQgate(cfg proxy.Config) (*Qgate, error) {
	cfg.Listen = "127.0.0.1:0"
	logs := &SafeBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := proxy.New(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		_ = srv.Shutdown(context.Background())
		return nil, err
	}
	q := &Qgate{Addr: srv.Addr().String(), Server: srv, Logs: logs, served: make(chan error, 1)}
	go func() { q.served <- srv.Serve() }()
	return q, nil
}

// Stop shuts the server down (draining, with a 10 s bound) and returns Serve's result.
func (q *Qgate) Stop() error {
	q.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q.stopErr = q.Server.Shutdown(ctx)
		if err := <-q.served; err != nil && q.stopErr == nil {
			q.stopErr = err
		}
	})
	return q.stopErr
}

// Client returns a go-redis client for qgate (RESP3 unless opts says otherwise), closed when the test ends.
func (q *Qgate) Client(tb testing.TB, opts ...func(*redis.Options)) *redis.Client {
	tb.Helper()
	o := &redis.Options{Addr: q.Addr}
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// SafeBuffer is a bytes.Buffer safe for concurrent use (log capture).
type SafeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SafeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SafeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
