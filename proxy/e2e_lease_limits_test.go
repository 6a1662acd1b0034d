package proxy_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// At-least-once queues at the limits: huge counts (no script may block Redis) and Redis at
// maxmemory (the lease scripts must still run: they only move or free memory).

// scriptCalls returns how many scripts the backend has run (EVALSHA and EVAL).
func scriptCalls(t *testing.T, e *e2eEnv) int64 {
	t.Helper()
	stats, err := e.Direct.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	total := int64(0)
	for _, name := range []string{"cmdstat_evalsha", "cmdstat_eval"} {
		v := e2eInfoField(stats, name) // calls=N,usec=…
		if v == "" {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			t.Fatalf("%s: %q", name, v)
		}
		total += n
	}
	return total
}

// directFill appends n items to key straight in Redis, 10,000 per RPUSH.
func directFill(t *testing.T, e *e2eEnv, key string, n int, item func(i int) string) {
	t.Helper()
	for i := 0; i < n; i += 10000 {
		vals := make([]interface{}, 0, 10000)
		for j := i; j < min(n, i+10000); j++ {
			vals = append(vals, item(j))
		}
		if err := e.Direct.RPush(context.Background(), key, vals...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// backendPinger PINGs the backend redis-server straight (not through qgate) until stop is called,
// which returns the slowest PING and the first error (a -BUSY while a script runs too long).
func backendPinger(t *testing.T, e *e2eEnv) (stop func() (worst time.Duration, err error)) {
	t.Helper()
	c := e.DirectClient(t, 3)
	done, quit := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var worst time.Duration
	var firstErr error
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond) // a steady probe, not a wait for a condition
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			start := time.Now()
			err := c.Ping(context.Background()).Err()
			took := time.Since(start)
			mu.Lock()
			worst = max(worst, took)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}
	}()
	return func() (time.Duration, error) {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return worst, firstErr
	}
}

// TestLease_LargeCountsChunked: a pop of 100,000 items from an at-least-once queue returns all of
// them in order, and a QACK of their 100,000 receipts acks them all; so do a QREDRIVE of 20,000 dead
// items, the requeue of a closing connection's 20,000 leases and, with ack: next-pop, the next pop
// after a pop of 20,000. Each runs as many scripts of at most rdb.Chunk items, so Redis (which
// answers everyone -BUSY while one script runs past busy-reply-threshold) stays responsive.
func TestLease_LargeCountsChunked(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) {
		c.Queues = []policy.Rule{
			{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: time.Hour},
			{Match: "np*", Delivery: "at-least-once", Ack: "next-pop", VisibilityTimeout: time.Hour},
		}
	})
	ctx := e2eCtx(t)
	if err := e.Direct.ConfigSet(ctx, "busy-reply-threshold", "200").Err(); err != nil {
		t.Fatal(err)
	}
	const n = 100000
	directFill(t, e, "jobs", n, func(i int) string {
		return string(envelope.Append(nil, "jobs", "default", []byte(strconv.Itoa(i))))
	})
	stop := backendPinger(t, e)
	// Replies of 100,000 items take qgate (with the race detector) longer than go-redis's default
	// read timeout.
	envOpts := func(o *redis.Options) {
		o.PoolSize, o.ReadTimeout = 1, 30*time.Second
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "qdelivery", "envelope").Err() }
	}
	c := e.Client(t, 3, envOpts)
	atLeast := func(what string, before, want int64) {
		t.Helper()
		if got := scriptCalls(t, e) - before; got < want {
			t.Fatalf("%s ran %d scripts, want at least %d (at most %d items each)", what, got, want, rdb.Chunk)
		}
	}

	before := scriptCalls(t, e)
	items, err := c.LPopCount(ctx, "jobs", n).Result()
	if err != nil || len(items) != n {
		r, in, l, _, _ := leaseCounts(t, e, ctx, "jobs")
		t.Fatalf("LPOP jobs %d: %d items, %v (now ready %d, in flight %d, leases %d)", n, len(items), err, r, in, l)
	}
	atLeast("LPOP jobs 100000", before, n/rdb.Chunk)
	args := make([]interface{}, 0, n+2)
	args = append(args, "qack", "jobs")
	for i, it := range items {
		env := mustDecode(t, it)
		if got, want := string(env.Payload), strconv.Itoa(i); got != want {
			t.Fatalf("item %d is %q, want %q (pop order)", i, got, want)
		}
		args = append(args, env.Receipt)
	}
	before = scriptCalls(t, e)
	if got, err := c.Do(ctx, args...).Int(); err != nil || got != n {
		t.Fatalf("QACK of %d receipts = %d, %v", n, got, err)
	}
	atLeast("QACK of 100000 receipts", before, n/rdb.Chunk)
	if r, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); r+in+l != 0 {
		t.Fatalf("after the QACK: ready %d inflight %d leases %d", r, in, l)
	}

	const m = 20000
	directFill(t, e, rdb.DeadKey("jobs"), m, func(i int) string {
		rec, _ := json.Marshal(map[string]any{"reason": "nack", "failed_at": 1, "attempts": 5, "item": strconv.Itoa(i)})
		return string(rec)
	})
	before = scriptCalls(t, e)
	if got, err := c.Do(ctx, "qredrive", "jobs").Int(); err != nil || got != m {
		t.Fatalf("QREDRIVE = %d, %v; want %d", got, err, m)
	}
	atLeast("QREDRIVE of 20000", before, m/rdb.Chunk)
	if got, err := e.Direct.LIndex(ctx, "jobs", m-1).Result(); err != nil || got != strconv.Itoa(m-1) {
		t.Fatalf("last redriven item %q, %v", got, err)
	}

	if m > commands.MaxHeldLeases { // the connection must remember every lease
		t.Fatal("m > commands.MaxHeldLeases")
	}
	w := e.Client(t, 3, envOpts)
	if got, err := w.LPopCount(ctx, "jobs", m).Result(); err != nil || len(got) != m {
		t.Fatalf("LPOP %d: %d items, %v", m, len(got), err)
	}
	before = scriptCalls(t, e)
	_ = w.Close()
	e2eEventually(t, "leases requeued on close", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == m })
	atLeast("the requeue of 20000 leases", before, m/rdb.Chunk)

	directFill(t, e, "np", m, strconv.Itoa)
	np := e.Client(t, 3, func(o *redis.Options) { o.PoolSize, o.ReadTimeout = 1, 30*time.Second })
	if got, err := np.LPopCount(ctx, "np", m).Result(); err != nil || len(got) != m || got[m-1] != strconv.Itoa(m-1) {
		t.Fatalf("LPOP np %d: %d items, %v", m, len(got), err)
	}
	before = scriptCalls(t, e)
	if err := np.LPop(ctx, "np").Err(); err != redis.Nil {
		t.Fatalf("the next LPOP = %v, want nil", err)
	}
	atLeast("the next pop acking 20000 leases", before, m/rdb.Chunk)
	if r, in, l, _, _ := leaseCounts(t, e, ctx, "np"); r+in+l != 0 {
		t.Fatalf("after the next pop: ready %d inflight %d leases %d; want nothing", r, in, l)
	}

	worst, err := stop()
	if err != nil {
		t.Fatalf("a PING to the backend failed while qgate worked: %v", err)
	}
	if worst > time.Second {
		t.Fatalf("a PING to the backend took %s while qgate worked; want well under a second", worst)
	}
}

// usedMemory returns the backend's used_memory.
func usedMemory(t *testing.T, e *e2eEnv) int64 {
	t.Helper()
	info, err := e.Direct.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(e2eInfoField(info, "used_memory"), 10, 64)
	if err != nil {
		t.Fatalf("used_memory: %v", err)
	}
	return n
}

// TestLease_OutOfMemory: with Redis at maxmemory and noeviction (every write that may grow memory is
// refused), a qgate that just started still leases from an at-least-once queue (registering the
// queue for the reapers is allowed too), and popping and acking frees memory; QNACK, the requeue on
// close and the reaper work as well.
func TestLease_OutOfMemory(t *testing.T) {
	rule := policy.Rule{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: time.Hour,
		Backoff: policy.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Jitter: ptr(0.0)}}
	e := e2eStart(t, func(c *proxy.Config) { c.Queues = []policy.Rule{rule} })
	ctx := e2eCtx(t)
	const n = 3000
	payload := strings.Repeat("x", 1024)
	directFill(t, e, "jobs", n, func(int) string { return string(envelope.Append(nil, "jobs", "default", []byte(payload))) })
	// An item a blocked-pop listener left in a handoff list, for the reaper to give back.
	if err := e.Direct.RPush(ctx, rdb.HandoffKey("jobs_h"), "left-over").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.Direct.ZAdd(ctx, rdb.LeasedQueuesKey, redis.Z{Score: float64(time.Now().UnixMilli()), Member: "jobs_h"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.Qgate.Stop(); err != nil { // the qgate that ran before the restart
		t.Fatal(err)
	}
	used := usedMemory(t, e)
	for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", strconv.FormatInt(used/2, 10)}} {
		if err := e.Direct.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Direct.RPush(ctx, "jobs", "more").Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("RPUSH straight to Redis = %v, want OOM (the test needs Redis at maxmemory)", err)
	}

	cfg := proxy.DefaultConfig()
	cfg.Backend, cfg.Queues = e.Redis.URL(), []policy.Rule{rule}
	q := proxytest.StartQgate(t, cfg)
	envOpts := func(o *redis.Options) {
		o.PoolSize = 1
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "qdelivery", "envelope").Err() }
	}
	c := q.Client(t, envOpts)
	if err := c.RPush(ctx, "jobs", "more").Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("RPUSH through qgate = %v, want OOM", err)
	}
	item, err := c.LPop(ctx, "jobs").Result()
	if err != nil {
		t.Fatalf("at-least-once LPOP at maxmemory: %v", err)
	}
	if n, err := c.Do(ctx, "qack", "jobs", mustReceipt(t, item)).Int(); err != nil || n != 1 {
		t.Fatalf("QACK = %d, %v", n, err)
	}

	// Popping and acking frees memory.
	before := usedMemory(t, e)
	items, err := c.LPopCount(ctx, "jobs", 2000).Result()
	if err != nil || len(items) != 2000 {
		t.Fatalf("LPOP 2000: %d items, %v", len(items), err)
	}
	args := []interface{}{"qack", "jobs"}
	for _, it := range items {
		args = append(args, mustReceipt(t, it))
	}
	if got, err := c.Do(ctx, args...).Int(); err != nil || got != 2000 {
		t.Fatalf("QACK of 2000 = %d, %v", got, err)
	}
	if after := usedMemory(t, e); after > before-1000*1024 {
		t.Fatalf("used_memory %d before popping and acking 2000 items of 1 KB, %d after; want at least 1 MB less", before, after)
	}

	// QEXTEND, and QNACK to the ready list and to the delayed set.
	r1, r2 := mustReceipt(t, c.LPop(ctx, "jobs").Val()), mustReceipt(t, c.LPop(ctx, "jobs").Val())
	for _, cmd := range [][]interface{}{{"qextend", "jobs", r1, 60000}, {"qnack", "jobs", r1, 0}, {"qnack", "jobs", r2, 20}} {
		if got, err := c.Do(ctx, cmd...).Int(); err != nil || got != 1 {
			t.Fatalf("%v at maxmemory = %d, %v; want 1", cmd, got, err)
		}
	}

	// The requeue of a closing connection's leases.
	w := q.Client(t, envOpts)
	if got, err := w.LPopCount(ctx, "jobs", 5).Result(); err != nil || len(got) != 5 {
		t.Fatalf("LPOP 5: %q, %v", got, err)
	}
	_ = w.Close()
	e2eEventually(t, "leases requeued on close at maxmemory", func() bool {
		_, in, l, _, _ := leaseCounts(t, e, ctx, "jobs")
		return in == 0 && l == 0
	})

	// The reaper: the nacked item's delay ends, and the item left in jobs_h's handoff list goes back.
	e2eEventually(t, "reaper passes at maxmemory", func() bool {
		if _, err := q.Server.Reap(ctx); err != nil {
			t.Fatalf("reaper at maxmemory: %v", err)
		}
		_, _, _, d, _ := leaseCounts(t, e, ctx, "jobs")
		return d == 0 && e.Direct.LLen(ctx, rdb.HandoffKey("jobs_h")).Val() == 0
	})
	if r, in, l, _, dead := leaseCounts(t, e, ctx, "jobs"); r != n-1-2000 || in+l+dead != 0 {
		t.Fatalf("ready %d inflight %d leases %d dead %d; want %d 0 0 0", r, in, l, dead, n-1-2000)
	}
	if got := e.Direct.LRange(ctx, "jobs_h", 0, -1).Val(); len(got) != 1 || got[0] != "left-over" {
		t.Fatalf("jobs_h = %q, want [left-over]", got)
	}
}
