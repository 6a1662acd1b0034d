package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// The Cluster client's slot-map reload answers within its per-node bound while a master is frozen,
// every time, from a node that answers: go-redis's own loader asks the nodes one after another
// without a read timeout (qgate's default), so one reload that asks the frozen node first waits for
// the thaw, and no other reload runs meanwhile (proxy/DESIGN.md "Cluster failover").
func TestClusterSlots_FrozenNodeDoesNotStallReload(t *testing.T) {
	nodes := proxytest.StartClusterReplicas(t, 3, 0, 5*time.Second)
	addrs := proxytest.Addrs(nodes)
	load, c := proxy.ClusterSlotsOf(&redis.UniversalOptions{Addrs: addrs, IsClusterMode: true, ReadTimeout: -1, WriteTimeout: -1, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	// Every node known to the client (the loader asks them before the seeds).
	if err := c.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	nodes[1].Freeze()
	defer nodes[1].Thaw()
	for i := range 12 {
		start := time.Now()
		type res struct {
			slots []redis.ClusterSlot
			err   error
		}
		ch := make(chan res, 1)
		go func() { s, err := load(ctx); ch <- res{s, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("load %d: %v", i, r.err)
			}
			if got, want := len(r.slots), 3; got != want {
				t.Fatalf("load %d: %d slot ranges, want %d", i, got, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("load %d: no map within 15s (stuck on the frozen node)", i)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("load %d took %s, want at most one node's bound (2s) and the rest", i, d)
		}
	}
}
