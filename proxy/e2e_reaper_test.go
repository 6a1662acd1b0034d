package proxy_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// End-to-end tests of the reaper's schedule (proxy/DESIGN.md "Instances and recovery").

// reaperCostRules: at-least-once "jobs*" (30 s visibility) and a rule with a 1 s visibility timeout,
// which made every reaper poll four times as often before the schedule.
func reaperCostRules() []policy.Rule {
	return []policy.Rule{
		{Match: "fast*", Delivery: "at-least-once", VisibilityTimeout: time.Second},
		{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: 30 * time.Second},
	}
}

// commandsProcessed reads INFO stats total_commands_processed.
func commandsProcessed(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(e2eInfoField(info, "total_commands_processed"), 10, 64)
	if err != nil {
		t.Fatalf("total_commands_processed: %v", err)
	}
	return n
}

// dueWithin counts the schedule entries due before now + d, over every shard.
func dueWithin(t *testing.T, c *redis.Client, d time.Duration) int64 {
	t.Helper()
	total := int64(0)
	for k := 0; k < rdb.ScheduleShards; k++ {
		n, err := c.ZCount(context.Background(), rdb.ScheduleDueKey(k), "-inf", strconv.FormatInt(time.Now().Add(d).UnixMilli(), 10)).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// TestReaper_IdleQueuesCostNothing: 1,000 at-least-once queues, each leased once and acked (so
// registered with the reapers), and three qgate instances: once the reapers looked at each queue,
// Redis processes at most 100 commands/s in all (before the schedule: about 16,000).
func TestReaper_IdleQueuesCostNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for 10 s")
	}
	const queues, instances, window = 1000, 3, 10 * time.Second
	r := proxytest.StartRedis(t)
	direct := r.Client(t)
	ctx := context.Background()
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.Queues = reaperCostRules()
	var qs [instances]*proxytest.Qgate
	for i := range qs {
		qs[i] = proxytest.StartQgate(t, cfg)
	}
	pipe := qs[0].Client(t).Pipeline() // through qgate: the items are envelopes
	for i := 0; i < queues; i++ {
		pipe.RPush(ctx, fmt.Sprintf("jobs-%d", i), "x")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// Each instance leases and acks a third of the queues.
	for n, q := range qs {
		c := q.Client(t, func(o *redis.Options) {
			o.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "qdelivery", "envelope").Err() }
		})
		for i := n; i < queues; i += instances {
			name := fmt.Sprintf("jobs-%d", i)
			v, err := c.LPop(ctx, name).Result()
			if err != nil {
				t.Fatalf("LPOP %s: %v", name, err)
			}
			if got, err := c.Do(ctx, "qack", name, mustReceipt(t, v)).Int(); err != nil || got != 1 {
				t.Fatalf("QACK %s = %d, %v", name, got, err)
			}
		}
	}
	registered := int64(0)
	for k := 0; k < rdb.ScheduleShards; k++ {
		registered += direct.ZCard(ctx, rdb.ScheduleRegistryKey(k)).Val()
	}
	if got, want := registered, int64(queues); got != want {
		t.Fatalf("registered queues = %d, want %d", got, want)
	}
	// The registrations made every queue due now; wait until the reapers looked at each one.
	e2eEventually(t, "every queue looked at", func() bool { return dueWithin(t, direct, 2*time.Second) == 0 })
	// Once the live instances are first known, each instance walks every registered queue once for
	// dead instances' records (O(queues) per start or death, not per tick): not part of the idle cost.
	e2eEventually(t, "each instance's first dead-instance walk", func() bool {
		for _, q := range qs {
			if q.Server.DeadInstanceWalks() == 0 {
				return false
			}
		}
		return true
	})
	before := commandsProcessed(t, direct)
	start := time.Now()
	time.Sleep(window) // the measurement window, not a wait for a condition
	elapsed := time.Since(start)
	after := commandsProcessed(t, direct)
	rate := float64(after-before-1) / elapsed.Seconds() // less this test's second INFO
	t.Logf("FIGURE reaper_idle_cost_commands_per_s=%.1f (%d idle at-least-once queues x %d instances, over %s)", rate, queues, instances, elapsed.Round(time.Millisecond))
	if got, want := rate, 100.0; got > want {
		t.Fatalf("Redis commands/s with idle queues = %.1f, want <= %.0f", got, want)
	}
}

// TestReaper_LostTouchReapedByRecheck: an instance leased and died before its touch reached the
// schedule (simulated: the queue's due entry is put back at its recheck time after the lease). The
// lease is still reaped, by the recheck, without any Reap call.
func TestReaper_LostTouchReapedByRecheck(t *testing.T) {
	const recheck = 2 * time.Second
	e := leaseEnv(t, func(r *policy.Rule) { r.VisibilityTimeout = 100 * time.Millisecond; r.MaxAttempts = ptr(10) })
	e.Qgate.Server.SetScheduleRecheck(recheck)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	due := rdb.ScheduleDueKey(rdb.ScheduleShard("jobs"))
	if err := c.RPush(ctx, "jobs", "x").Err(); err != nil {
		t.Fatal(err)
	}
	v, err := c.LPop(ctx, "jobs").Result()
	if err != nil {
		t.Fatal(err)
	}
	first := mustDecode(t, v).Receipt
	// The lease's touch landed (due within the visibility timeout); now lose it: the entry goes back
	// to where the reaper left an idle queue.
	e2eEventually(t, "the lease's touch", func() bool {
		s, err := e.Direct.ZScore(ctx, due, "jobs").Result()
		return err == nil && int64(s) <= time.Now().Add(time.Second).UnixMilli()
	})
	lost := time.Now()
	if err := e.Direct.ZAdd(ctx, due, redis.Z{Score: float64(lost.Add(recheck).UnixMilli()), Member: "jobs"}).Err(); err != nil {
		t.Fatal(err)
	}
	e2eEventually(t, "the expired lease back in the ready list", func() bool {
		n, _ := e.Direct.LLen(ctx, "jobs").Result()
		return n == 1
	})
	if got, bound := time.Since(lost), recheck+3*time.Second; got > bound {
		t.Fatalf("lease reaped %s after its touch was lost, want within %s (recheck + reaper interval)", got, bound)
	}
	v, err = c.LPop(ctx, "jobs").Result()
	if err != nil {
		t.Fatal(err)
	}
	if env := mustDecode(t, v); env.Attempts != 1 || env.Receipt == first {
		t.Fatalf("redelivery: attempts %d receipt %q, want attempts 1 and a new receipt", env.Attempts, env.Receipt)
	}
}

// TestReaper_ExpiryWithoutReapCalls: the background reaper alone retries an expired lease about when
// it expires (the lease's touch makes the queue due; no Reap call, no recheck).
func TestReaper_ExpiryWithoutReapCalls(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.VisibilityTimeout = 300 * time.Millisecond })
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	if err := c.RPush(ctx, "jobs", "x").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.LPop(ctx, "jobs").Err(); err != nil {
		t.Fatal(err)
	}
	e2eEventually(t, "the expired lease back", func() bool {
		n, _ := e.Direct.LLen(ctx, "jobs").Result()
		return n == 1
	})
	if got, bound := time.Since(start), 2*time.Second; got > bound {
		t.Fatalf("lease of 300ms retried after %s, want within %s", got, bound)
	}
}

// TestReaper_DeadInstanceFoundWithoutTicking: a transit record of an instance that goes away, on a
// queue no reaper is due to look at for long, is given back once the heartbeat sees the instance go
// (the reaper then checks every registered queue once), without any Reap call.
func TestReaper_DeadInstanceFoundWithoutTicking(t *testing.T) {
	r := proxytest.StartRedis(t)
	direct := r.Client(t)
	ctx := context.Background()
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.InstanceTTL = time.Second
	a, err := proxytest.LaunchQgate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = proxytest.StartQgate(t, cfg)
	if err := direct.RPush(ctx, "q", "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	inst := a.Server.Stats().Instance
	if err := rdb.TransitPop.Run(ctx, direct, rdb.TransitKeys("q", inst), "LPOP", "2", "L1.", inst).Err(); err != nil {
		t.Fatal(err)
	}
	// Registered, and not due for an hour.
	k := rdb.ScheduleShard("q")
	far := time.Now().Add(time.Hour).UnixMilli()
	if err := rdb.SchedRegister.Run(ctx, direct, rdb.ScheduleKeys(k), time.Now().UnixMilli(), "q", far).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	e2eEventually(t, "the stopped instance's items back", func() bool {
		n, _ := direct.LLen(ctx, "q").Result()
		return n == 2
	})
	if s, err := direct.ZScore(ctx, rdb.ScheduleDueKey(k), "q").Result(); err != nil || int64(s) != far {
		t.Fatalf("due entry %v, %v; want it untouched at %d (found by the walk, not a pass)", int64(s), err, far)
	}
}
