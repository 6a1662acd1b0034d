package queue_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/queue"
)

// LiveNode (the pub/sub hub's pick of a node to subscribe through after its node stalled) answers
// within its probe bound while a master is frozen, every time: a slot-map reload that asks the frozen
// node first would hang until the thaw (no read timeout by default).
func TestLiveNode_FrozenMasterNeverPicked(t *testing.T) {
	dir, err := os.MkdirTemp("", "qgate-livenode-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	nodes, err := proxytest.LaunchCluster(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		t.Cleanup(n.Stop)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: proxytest.Addrs(nodes), ReadTimeout: -1, WriteTimeout: -1, MaxRetries: -1})
	t.Cleanup(func() { _ = cc.Close() })
	ctx := context.Background()
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	frozen := nodes[0]
	frozen.Freeze()
	defer frozen.Thaw()
	for i := range 20 {
		start := time.Now()
		done := make(chan struct{})
		var c *redis.Client
		go func() {
			defer close(done)
			c, err = queue.LiveNode(ctx, cc)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("call %d: no answer within 10s (hung on the frozen node)", i)
		}
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := c.Options().Addr; got == frozen.Addr {
			t.Fatalf("call %d picked the frozen node %s", i, got)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("call %d took %s", i, d)
		}
	}
}
