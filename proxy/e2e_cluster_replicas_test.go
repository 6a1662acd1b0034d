package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// Replicated pushes on Redis Cluster (proxy/DESIGN.md "Replicated pushes and the Sentinel
// switch-over", README "Replicated pushes").

// TestReplicas_ClusterPushesWaitOnTheirNodes: with replicas: 1 on a Cluster, pushes to queues on every
// master (one by one, and in one pipelined batch spanning the masters) succeed once each queue's
// master's replica has them, each master running WAIT after its own pushes; with one replica frozen,
// pushes to its master's queues are unknown outcomes while the others still succeed.
func TestReplicas_ClusterPushesWaitOnTheirNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("a 6-node Cluster and a frozen replica")
	}
	const timeout = 2 * time.Second // generous: a loaded CI machine may take a few hundred ms for GETACK
	nodes := proxytest.StartClusterReplicas(t, 3, 1, time.Minute)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
	plain := false
	cfg.Queues = []policy.Rule{{Match: "rq*", Replicas: 1, ReplicasTimeout: timeout, Envelope: &plain}}
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := q.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })

	// One queue per master, and each master's replica.
	owners := slotOwners(t, ctx, addrs[0])
	byMaster := map[string]string{}
	for i := 0; len(byMaster) < 3; i++ {
		name := fmt.Sprintf("rq-%d", i)
		if _, ok := byMaster[owners[rdb.Slot(name)]]; !ok {
			byMaster[owners[rdb.Slot(name)]] = name
		}
	}
	type pair struct {
		queue           string
		master, replica *proxytest.Redis
	}
	var pairs []pair
	for _, name := range byMaster {
		m, r := failoverPair(t, ctx, nodes, name)
		pairs = append(pairs, pair{name, m, r})
	}
	direct := func(n *proxytest.Redis) *redis.Client {
		// READONLY: a Cluster replica answers reads of its master's slots instead of MOVED.
		rc := redis.NewClient(&redis.Options{Addr: n.Addr, OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.ReadOnly(ctx).Err()
		}})
		t.Cleanup(func() { _ = rc.Close() })
		return rc
	}

	for _, p := range pairs {
		if got, err := c.RPush(ctx, p.queue, "one").Result(); err != nil || got != 1 {
			t.Fatalf("RPUSH %s = %d, %v; want 1", p.queue, got, err)
		}
	}
	cmds, err := c.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for range 3 {
			for _, p := range pairs {
				pl.RPush(ctx, p.queue, "batch")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pipelined pushes over every master: %v", err)
	}
	for i, cmd := range cmds {
		if got, want := cmd.(*redis.IntCmd).Val(), int64(2+i/len(pairs)); got != want {
			t.Errorf("pipelined push %d reply = %d, want %d", i, got, want)
		}
	}
	// Each reply came after the queue's replica had the push; each master ran WAIT itself.
	for _, p := range pairs {
		if got, err := direct(p.replica).LLen(ctx, p.queue).Result(); err != nil || got != 4 {
			t.Errorf("replica %s's LLEN %s = %d, %v; want 4", p.replica.Addr, p.queue, got, err)
		}
		if got := waitCalls(t, ctx, direct(p.master)); got < 1 {
			t.Errorf("WAIT calls on %s (master of %s) = %d, want at least 1", p.master.Addr, p.queue, got)
		}
	}

	// One replica frozen: its master's pushes are unknown outcomes, the others' succeed.
	frozen := pairs[0]
	frozen.replica.Freeze()
	t.Cleanup(frozen.replica.Thaw)
	start := time.Now()
	err = c.RPush(ctx, frozen.queue, "y").Err()
	want := fmt.Sprintf("ERR backend unavailable, the push may have been applied (its outcome is unknown): wait for replicas: 0 of 1 replicas acknowledged the push to %s within 2s", frozen.queue)
	if got := e2eErrText(err); got != want {
		t.Errorf("RPUSH %s with its replica frozen: error %q, want %q", frozen.queue, got, want)
	}
	if got := time.Since(start); got < timeout {
		t.Errorf("RPUSH %s with its replica frozen took %s, want the %s timeout", frozen.queue, got, timeout)
	}
	if got, err := direct(frozen.master).LLen(ctx, frozen.queue).Result(); err != nil || got != 5 {
		t.Errorf("master's LLEN %s = %d, %v; want 5 (the push is there, its outcome unknown)", frozen.queue, got, err)
	}
	for _, p := range pairs[1:] {
		if got, err := c.RPush(ctx, p.queue, "y").Result(); err != nil || got != 5 {
			t.Errorf("RPUSH %s (its replica live) = %d, %v; want 5", p.queue, got, err)
		}
	}
	// A batch over every master: only the frozen replica's queue is unknown.
	cmds, _ = c.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, p := range pairs {
			pl.RPush(ctx, p.queue, "z")
		}
		return nil
	})
	for i, cmd := range cmds {
		err := cmd.Err()
		if i == 0 {
			if err == nil {
				t.Errorf("pipelined RPUSH %s with its replica frozen succeeded, want an unknown outcome", pairs[i].queue)
			}
		} else if err != nil {
			t.Errorf("pipelined RPUSH %s (its replica live): %v", pairs[i].queue, err)
		}
	}
}
