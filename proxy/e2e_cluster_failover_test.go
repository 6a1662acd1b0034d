package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// When a Cluster master dies, qgate serves its slots from the promoted replica within seconds: a failed
// command (the dead node cannot be dialed, CLUSTERDOWN, MOVED) reloads the slot map at once instead of
// at the next periodic refresh (proxy/DESIGN.md "Cluster failover"). The periodic refresh is set far
// beyond the test's bound, so only the reload on errors can pass it.
func TestClusterFailover_PromotedReplicaServesWithinSeconds(t *testing.T) {
	const bound = 5 * time.Second
	nodes := proxytest.StartClusterReplicas(t, 3, 1, time.Second)
	addrs := proxytest.Addrs(nodes)
	cfg := proxy.DefaultConfig()
	cfg.Backend = proxytest.ClusterURL(addrs)
	cfg.ClusterRefreshInterval = 10 * time.Minute
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := q.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })

	const queue = "failover_q"
	if err := c.RPush(ctx, queue, "before").Err(); err != nil {
		t.Fatal(err)
	}
	// The queue's master, and the replica that will take over.
	master, replica := failoverPair(t, ctx, nodes, queue)
	master.Kill()
	killed := time.Now()

	rc := redis.NewClient(&redis.Options{Addr: replica.Addr, MaxRetries: -1})
	defer rc.Close()
	var promoted time.Time
	for promoted.IsZero() {
		if ctx.Err() != nil {
			t.Fatal("the replica was never promoted")
		}
		if role, err := rc.Do(ctx, "role").Slice(); err == nil && len(role) > 0 && role[0] == "master" {
			promoted = time.Now()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Commands on the queue, as a client would send them, until one succeeds.
	var lastErr error
	failed := 0
	for {
		err := c.RPush(ctx, queue, "after").Err()
		if err == nil {
			break
		}
		lastErr, failed = err, failed+1
		if time.Since(promoted) > bound+5*time.Second || ctx.Err() != nil {
			t.Fatalf("commands on %s still fail %s after the promotion: %v", queue, time.Since(promoted).Round(time.Millisecond), lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recovered := time.Since(promoted)
	t.Logf("promoted %s after the kill; commands succeed %s after the promotion (%d failed after it; last error: %v)",
		promoted.Sub(killed).Round(time.Millisecond), recovered.Round(time.Millisecond), failed, lastErr)
	t.Logf("FIGURE cluster_master_kill_served_after_promotion=%s (promoted %s after the kill)", recovered.Round(time.Millisecond),
		promoted.Sub(killed).Round(time.Millisecond))
	if recovered > bound {
		t.Errorf("commands succeeded %s after the promotion, want within %s", recovered.Round(time.Millisecond), bound)
	}
	if got, err := c.LPop(ctx, queue).Result(); err != nil || got != "before" {
		t.Errorf("LPOP after the failover = %q, %v; want the item pushed before it", got, err)
	}
}

// failoverPair returns the master serving key's slot (by CLUSTER SLOTS) and its replica (the node
// whose ROLE names the master's port).
func failoverPair(t *testing.T, ctx context.Context, nodes []*proxytest.Redis, key string) (master, replica *proxytest.Redis) {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: nodes[0].Addr})
	defer cl.Close()
	slot, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	slots, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int(slot) >= s.Start && int(slot) <= s.End {
			for _, n := range nodes {
				if n.Addr == s.Nodes[0].Addr {
					master = n
				}
			}
		}
	}
	if master == nil {
		t.Fatalf("no node serves slot %d", slot)
	}
	for _, n := range nodes {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr})
		role, err := rc.Do(ctx, "role").Slice()
		_ = rc.Close()
		if err == nil && len(role) >= 3 && role[0] == "slave" && role[2] == int64(master.Port) {
			replica = n
		}
	}
	if replica == nil {
		t.Fatalf("no replica of %s (slot %d)", master.Addr, slot)
	}
	return master, replica
}
