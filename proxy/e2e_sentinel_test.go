package proxy_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// Replicated pushes and Sentinel failover (README "Replicated pushes", "What survives which failure").

// replicasEnv is a master with one replica and a qgate on the master whose queue "safe" has replicas: 1
// and "two" replicas: 2 (more than there are).
func replicasEnv(t *testing.T) (master, replica *proxytest.Redis, c *redis.Client) {
	t.Helper()
	master = proxytest.StartRedis(t, "--repl-diskless-sync-delay", "0") // the replica syncs at once
	replica = proxytest.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	e2eInSync(t, replica)
	cfg := proxy.DefaultConfig()
	cfg.Backend = master.URL()
	cfg.Queues = []policy.Rule{
		// Generous timeouts: a loaded CI machine may take a few hundred ms for a replica's GETACK reply.
		{Match: "safe", Replicas: 1, ReplicasTimeout: 2 * time.Second},
		{Match: "two", Replicas: 2, ReplicasTimeout: 2 * time.Second},
	}
	q := proxytest.StartQgate(t, cfg)
	return master, replica, q.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
}

// e2eInSync waits until replica has finished its sync with its master.
func e2eInSync(t *testing.T, replica *proxytest.Redis) {
	t.Helper()
	rc := replica.Client(t)
	ctx := e2eCtx(t)
	e2eEventually(t, "the replica in sync", func() bool {
		info, _ := rc.Info(ctx, "replication").Result()
		return e2eInfoField(info, "master_link_status") == "up" && e2eInfoField(info, "master_sync_in_progress") == "0"
	})
}

// waitCalls is the number of WAIT commands the server ran.
func waitCalls(t *testing.T, ctx context.Context, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	v := e2eInfoField(info, "cmdstat_wait")
	if v == "" {
		return 0
	}
	calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
	n, err := strconv.Atoi(calls)
	if err != nil {
		t.Fatalf("cmdstat_wait %q: %v", v, err)
	}
	return n
}

func TestReplicas_PushAcknowledgedByReplica(t *testing.T) {
	master, replica, c := replicasEnv(t)
	ctx := e2eCtx(t)
	mc := master.Client(t)
	if got, err := c.RPush(ctx, "safe", "a").Result(); err != nil || got != 1 {
		t.Fatalf("RPUSH safe = %d, %v; want 1", got, err)
	}
	// The reply came after the replica had it.
	if got, err := replica.Client(t).LRange(ctx, "safe", 0, -1).Result(); err != nil || len(got) != 1 {
		t.Errorf("replica's safe = %q, %v; want one item", got, err)
	}
	if got, want := waitCalls(t, ctx, mc), 1; got != want {
		t.Errorf("WAIT calls after one push = %d, want %d", got, want)
	}
	// A queue without replicas: sends no WAIT.
	if err := c.RPush(ctx, "plain", "a").Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := waitCalls(t, ctx, mc), 1; got != want {
		t.Errorf("WAIT calls after a push without replicas: = %d, want %d", got, want)
	}
}

func TestReplicas_PipelinedBatchOneWait(t *testing.T) {
	master, _, c := replicasEnv(t)
	ctx := e2eCtx(t)
	mc := master.Client(t)
	const n = 20
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			p.RPush(ctx, "safe", i)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		if got, want := cmd.(*redis.IntCmd).Val(), int64(i+1); got != want {
			t.Errorf("push %d reply = %d, want %d", i, got, want)
		}
	}
	// One WAIT per batch qgate reads, not one per push (a batch may arrive in a few reads).
	if got := waitCalls(t, ctx, mc); got < 1 || got >= n {
		t.Errorf("WAIT calls for %d pipelined pushes = %d, want 1 per batch (fewer than %d)", n, got, n)
	}
}

func TestReplicas_TooFewReplicasIsUnknownOutcome(t *testing.T) {
	master, replica, c := replicasEnv(t)
	ctx := e2eCtx(t)
	mc := master.Client(t)

	// More replicas asked for than there are.
	err := c.RPush(ctx, "two", "x").Err()
	if got, want := e2eErrText(err), "ERR backend unavailable, the push may have been applied (its outcome is unknown): wait for replicas: 1 of 2 replicas acknowledged the push to two within 2s"; got != want {
		t.Errorf("RPUSH two error = %q, want %q", got, want)
	}
	// The push is in the master: its outcome was unknown, not a failure.
	if got, err := mc.LLen(ctx, "two").Result(); err != nil || got != 1 {
		t.Errorf("master's LLEN two = %d, %v; want 1", got, err)
	}

	// A stalled replica acknowledges nothing within the timeout.
	replica.Freeze()
	defer replica.Thaw()
	start := time.Now()
	err = c.RPush(ctx, "safe", "y").Err()
	if got, want := e2eErrText(err), "ERR backend unavailable, the push may have been applied (its outcome is unknown): wait for replicas: 0 of 1 replicas acknowledged the push to safe within 2s"; got != want {
		t.Errorf("RPUSH safe error with the replica stalled = %q, want %q", got, want)
	}
	if got := time.Since(start); got < 2*time.Second || got > 15*time.Second {
		t.Errorf("RPUSH safe with the replica stalled took %s, want the 2s timeout", got)
	}
}

func TestReplicas_DedupRetryIsSafe(t *testing.T) {
	master := proxytest.StartRedis(t, "--repl-diskless-sync-delay", "0")
	replica := proxytest.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	ctx := e2eCtx(t)
	mc := master.Client(t)
	e2eInSync(t, replica)
	cfg := proxy.DefaultConfig()
	cfg.Backend = master.URL()
	cfg.Queues = []policy.Rule{{Match: "orders", Replicas: 1, ReplicasTimeout: 2 * time.Second, Dedup: policy.Dedup{Key: "body"}}}
	c := proxytest.StartQgate(t, cfg).Client(t, func(o *redis.Options) { o.MaxRetries = -1 })

	replica.Freeze()
	if err := c.RPush(ctx, "orders", "o1").Err(); !strings.Contains(e2eErrText(err), "outcome is unknown") {
		t.Fatalf("RPUSH with the replica stalled = %v, want an unknown outcome", err)
	}
	replica.Thaw()
	e2eInSync(t, replica)
	// The client retries: the dedup key makes it one item.
	if err := c.RPush(ctx, "orders", "o1").Err(); err != nil {
		t.Fatalf("retried RPUSH = %v", err)
	}
	if got, err := mc.LLen(ctx, "orders").Result(); err != nil || got != 1 {
		t.Errorf("LLEN orders after the retry = %d, %v; want 1", got, err)
	}
}

// failoverRun is what a Sentinel failover did to pushes: how many were acknowledged, how many of those
// were lost (neither delivered nor in the new master) and when each lost one was acknowledged; the
// failover was asked at failoverAt and every Sentinel reported the new master at announce.
type failoverRun struct {
	acked, lost          int
	lostAt               []time.Time
	failoverAt, announce time.Time
}

// sentinelFailoverRun pushes unique values to queue (under rule) from producers through a SENTINEL
// FAILOVER, with a consumer popping more slowly, and checks the new master.
func sentinelFailoverRun(t *testing.T, queue string, rule policy.Rule) failoverRun {
	t.Helper()
	set := proxytest.StartSentinelSet(t, 1)
	cfg := proxy.DefaultConfig()
	cfg.Backend = set.URL()
	rule.Match = queue
	plain := false
	rule.Envelope = &plain // stored as pushed, so the test reads the lists directly
	cfg.Queues = []policy.Rule{rule}
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		mu        sync.Mutex
		ackedAt   = map[string]time.Time{}
		delivered = map[string]bool{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const producers = 4
	for p := range producers {
		c := q.Client(t, func(o *redis.Options) { o.MaxRetries = -1; o.ReadTimeout = 5 * time.Second })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				v := fmt.Sprintf("p%d-%d", p, i)
				if err := c.RPush(ctx, queue, v).Err(); err == nil {
					mu.Lock()
					ackedAt[v] = time.Now()
					mu.Unlock()
				} else {
					time.Sleep(time.Millisecond) // a failed push during the switch; the next one retries
				}
			}
		}()
	}
	consumer := q.Client(t, func(o *redis.Options) { o.MaxRetries = -1; o.ReadTimeout = 5 * time.Second })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if v, err := consumer.LPop(ctx, queue).Result(); err == nil {
				mu.Lock()
				delivered[v] = true
				mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond) // slower than the producers
		}
	}()

	// Pushes flow for a while, then the failover, then pushes flow to the new master.
	e2eEventually(t, "pushes flowing", func() bool { mu.Lock(); defer mu.Unlock(); return len(ackedAt) > 500 })
	run := failoverRun{failoverAt: time.Now()}
	newMaster, err := set.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	run.announce = time.Now()
	nc := redis.NewClient(&redis.Options{Addr: newMaster})
	defer nc.Close()
	mu.Lock()
	before := len(ackedAt)
	mu.Unlock()
	// With replicas: 1 the new master takes pushes once the demoted master rejoins as its replica
	// (Sentinel converts it about 10 s after the switch).
	for deadline := time.Now().Add(40 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(ackedAt)
		mu.Unlock()
		if n > before+200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pushes acknowledged by the new master within 40s of the switch")
		}
	}
	close(stop)
	wg.Wait()

	left, err := nc.LRange(ctx, queue, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	in := make(map[string]bool, len(left))
	for _, v := range left {
		in[v] = true
	}
	run.acked = len(ackedAt)
	for v, at := range ackedAt {
		if !in[v] && !delivered[v] {
			run.lost++
			run.lostAt = append(run.lostAt, at)
		}
	}
	t.Logf("FIGURE sentinel_switchover_%s_lost=%d (of %d acknowledged pushes; failover asked at +0, announced by every Sentinel at +%s)",
		queue, run.lost, run.acked, run.announce.Sub(run.failoverAt).Round(time.Millisecond))
	return run
}

// With replicas: 1 no acknowledged push is lost by a Sentinel failover: a push to the old master after
// the replica's promotion is acknowledged by no replica, so its client is told the outcome is unknown.
func TestSentinel_FailoverReplicasLosesNoAcknowledgedPush(t *testing.T) {
	run := sentinelFailoverRun(t, "safe", policy.Rule{Replicas: 1, ReplicasTimeout: 100 * time.Millisecond})
	if got, want := run.lost, 0; got != want {
		t.Errorf("acknowledged pushes lost with replicas: 1 = %d of %d, want %d", got, run.acked, want)
	}
}

// Without replicas: the pushes a failover loses are those acknowledged from just before the failover
// was asked (replication lag) until the Sentinels announced the new master (README "What survives
// which failure": the bound is asserted here, the count reported).
func TestSentinel_FailoverWithoutReplicasLossBounded(t *testing.T) {
	run := sentinelFailoverRun(t, "unsafe", policy.Rule{})
	from, to := run.failoverAt.Add(-time.Second), run.announce.Add(time.Second)
	for _, at := range run.lostAt {
		if at.Before(from) || at.After(to) {
			t.Errorf("a push acknowledged at %s after the failover was asked was lost, outside the bound [-1s, announced+1s = %s]",
				at.Sub(run.failoverAt), to.Sub(run.failoverAt))
		}
	}
}
