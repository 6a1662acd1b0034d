package proxytest_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/qgate/qgate/proxy/proxytest"
)

func TestStartRedis_Ready(t *testing.T) {
	t.Parallel()
	r := proxytest.StartRedis(t)
	if got, err := r.Client(t).Ping(context.Background()).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v; want PONG", got, err)
	}
	if got, want := r.URL(), "redis://127.0.0.1:"+strconv.Itoa(r.Port); got != want {
		t.Fatalf("URL() = %q, want %q", got, want)
	}
	// Persistence is off by default.
	cfg, err := r.Client(t).ConfigGet(context.Background(), "appendonly").Result()
	if err != nil || cfg["appendonly"] != "no" {
		t.Fatalf("CONFIG GET appendonly = %v, %v; want no", cfg, err)
	}
}

func TestRedis_RestartKeepsAOFData(t *testing.T) {
	t.Parallel()
	r := proxytest.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	c := r.Client(t)
	if err := c.RPush(ctx, "q", "a", "b").Err(); err != nil {
		t.Fatalf("RPUSH: %v", err)
	}
	r.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Kill succeeded")
	}
	r.Restart(t)
	if n, err := c.LLen(ctx, "q").Result(); err != nil || n != 2 {
		t.Fatalf("LLEN after restart = %d, %v; want 2", n, err)
	}
}

func TestRedis_StopTwice(t *testing.T) {
	t.Parallel()
	r := proxytest.StartRedis(t)
	r.Stop()
	r.Stop()
	if err := r.Close(); err != nil {
		t.Fatalf("Close() after Stop = %v", err)
	}
}

func TestLaunchRedis_FixedPortTaken(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	r, err := proxytest.LaunchRedis(t.TempDir(), "--port", port)
	if err == nil {
		r.Close()
		t.Fatal("LaunchRedis() on a taken port = nil error")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("LaunchRedis() = %v, want address already in use", err)
	}
}

func TestStartSentinel_KnowsMaster(t *testing.T) {
	t.Parallel()
	master := proxytest.StartRedis(t)
	addr := proxytest.StartSentinel(t, master)
	if addr == "" || addr == master.Addr {
		t.Fatalf("StartSentinel() = %q", addr)
	}
}
