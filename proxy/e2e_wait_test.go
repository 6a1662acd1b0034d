package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// Blocked pops served by the wait hub (proxy/DESIGN.md "Blocked pops"): how qgate learns that a waited
// key has items, and what INFO shows of it.

// TestBlocking_KeyspaceEventsEnabledAsUnion: qgate adds the flags it needs (Kgl) to the backend's
// notify-keyspace-events without dropping those set by others, and INFO reports keyspace mode.
func TestBlocking_KeyspaceEventsEnabledAsUnion(t *testing.T) {
	t.Parallel()
	r := proxytest.StartRedis(t, "--notify-keyspace-events", "Ex")
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	q := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	flags := r.Client(t).ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]
	for _, f := range "ExKgl" {
		if !strings.ContainsRune(flags, f) {
			t.Errorf("notify-keyspace-events = %q, want it to contain %c", flags, f)
		}
	}
	via := q.Client(t)
	got := blockRaw(t, q.Addr, "ks")
	e2eWaitBlocked(t, via, 1)
	// The pub/sub connection counts once its first SUBSCRIBE is confirmed, which follows the wait.
	e2eEventually(t, "the pub/sub connection to count", func() bool {
		return strings.Contains(via.Info(ctx, "qgate").Val(), "backend_wait_conns:1\r\n")
	})
	info := via.Info(ctx, "qgate").Val()
	for _, want := range []string{"blocked_wait_mode:keyspace", "blocked_waiters:1", "blocked_watched_keys:1",
		"blocked_keyspace_nodes:1", "blocked_poll_nodes:0"} {
		if !strings.Contains(info, want+"\r\n") {
			t.Errorf("INFO qgate lacks %q:\n%s", want, info)
		}
	}
	if err := r.Client(t).RPush(ctx, "ks", "direct").Err(); err != nil {
		t.Fatal(err)
	}
	if v := e2eRecv(t, "BLPOP ks", got); v != "direct" {
		t.Fatalf("got %q, want direct", v)
	}
	if n := q.Server.Stats().Wait.Notifications; n < 1 {
		t.Errorf("%d keyspace notifications counted, want at least 1", n)
	}
}

// TestBlocking_PollFallbackWithoutConfig: on a backend where CONFIG is disabled (managed Redis) and the
// flags are not set, qgate still starts and serves blocked pops by polling the waited keys: items
// pushed straight into Redis within about blocking_poll_interval, items pushed through qgate at once.
func TestBlocking_PollFallbackWithoutConfig(t *testing.T) {
	t.Parallel()
	r := proxytest.StartRedis(t, "--rename-command", "CONFIG", "")
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.Queues = []policy.Rule{{Match: "alo_*", Delivery: "at-least-once"}}
	q := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	via := q.Client(t)
	amo, alo := blockRaw(t, q.Addr, "poll_amo"), blockRaw(t, q.Addr, "alo_poll")
	e2eWaitBlocked(t, via, 2)
	if info := via.Info(ctx, "qgate").Val(); !strings.Contains(info, "blocked_wait_mode:poll\r\n") {
		t.Fatalf("INFO qgate does not report poll mode:\n%s", info)
	}
	direct := r.Client(t)
	for _, c := range []struct {
		key, val string
		ch       <-chan string
	}{{"poll_amo", "x", amo}, {"alo_poll", "y", alo}} {
		start := time.Now()
		if err := direct.RPush(ctx, c.key, c.val).Err(); err != nil {
			t.Fatal(err)
		}
		if v := e2eRecv(t, "BLPOP "+c.key, c.ch); v != c.val {
			t.Fatalf("%s: got %q, want %q", c.key, v, c.val)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: served %v after a direct push; the poll runs every %v", c.key, d, cfg.BlockingPollInterval)
		}
	}
	// Through qgate: its own push wakes the waiter without waiting for a poll.
	third := blockRaw(t, q.Addr, "poll_amo")
	e2eWaitBlocked(t, via, 1)
	if err := via.RPush(ctx, "poll_amo", "z").Err(); err != nil {
		t.Fatal(err)
	}
	if v := e2eRecv(t, "BLPOP poll_amo", third); v != "z" {
		t.Fatalf("got %q, want z", v)
	}
	if st := q.Server.Stats().Wait; st.Polled == 0 || st.PollNodes != 1 {
		t.Errorf("wait stats %+v: want polled keys on one poll node", st)
	}
}
