package proxy_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// Failover proofs of the reaper on Redis Cluster (proxy/DESIGN.md "The reaper's schedule", README
// "What survives which failure").

// queuePerShardAndOwner returns one queue named prefix<n> for every pair of schedule shard and master
// owning the queue's slot (owners: slot → master address).
func queuePerShardAndOwner(prefix string, owners []string) []string {
	var queues []string
	seen := map[string]bool{}
	for i := 0; i < 20000; i++ {
		name := prefix + strconv.Itoa(i)
		pair := fmt.Sprint(rdb.ScheduleShard(name), owners[rdb.Slot(name)])
		if !seen[pair] {
			seen[pair] = true
			queues = append(queues, name)
		}
	}
	return queues
}

// slotOwners maps every slot to the address of the master serving it (CLUSTER SLOTS of node).
func slotOwners(t *testing.T, ctx context.Context, node string) []string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: node})
	defer c.Close()
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	owners := make([]string, rdb.NumSlots)
	for _, s := range slots {
		for i := s.Start; i <= s.End; i++ {
			owners[i] = s.Nodes[0].Addr
		}
	}
	return owners
}

// TestReaper_ClusterMasterFrozenOthersReaped: with one of three Cluster masters frozen (SIGSTOP: it
// accepts connections and answers nothing), expired leases of queues whose schedule shard lives on
// the other masters come back within their bound, while the frozen master is still frozen; only the
// queues whose shard key is on the frozen master wait for it (the straddling shards: README "What
// survives which failure").
func TestReaper_ClusterMasterFrozenOthersReaped(t *testing.T) {
	if testing.Short() {
		t.Skip("freezes a Cluster master for several seconds")
	}
	const (
		visibility = time.Second
		bound      = visibility + 2*time.Second // the deadline, then a reaper interval and the pass
	)
	// A node timeout far beyond the freeze: the Cluster stays up (no CLUSTERDOWN on the others).
	nodes := proxytest.StartClusterReplicas(t, 3, 0, time.Minute)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
	cfg.Queues = []policy.Rule{{Match: "fz*", Delivery: "at-least-once", VisibilityTimeout: visibility,
		Backoff: policy.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Jitter: ptr(0.0)}}}
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := q.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })

	// A queue in every schedule shard on every master that serves part of the shard's slot range: all
	// masters, and both sides of the shards whose range two masters share.
	owners := slotOwners(t, ctx, addrs[0])
	queues := queuePerShardAndOwner("fz-", owners)
	// Freeze the master holding a straddling shard's keys, if one does: its exception is then seen.
	frozen, most := nodes[0], -1
	for _, n := range nodes {
		w := 0
		for _, name := range queues {
			if owners[rdb.Slot(name)] != n.Addr && owners[rdb.Slot(rdb.ScheduleDueKey(rdb.ScheduleShard(name)))] == n.Addr {
				w++
			}
		}
		if w > most {
			frozen, most = n, w
		}
	}
	var survivors, waiting []string // queues whose shard is on a live master / on the frozen one
	for _, name := range queues {
		qOwner := owners[rdb.Slot(name)]
		shardOwner := owners[rdb.Slot(rdb.ScheduleDueKey(rdb.ScheduleShard(name)))]
		switch {
		case qOwner == frozen.Addr:
			// Its items are on the frozen master: nothing can move them.
		case shardOwner == frozen.Addr:
			waiting = append(waiting, name)
		default:
			survivors = append(survivors, name)
		}
	}
	if len(survivors) == 0 {
		t.Fatal("no queue on a live master with its shard on a live master")
	}
	for _, name := range queues {
		if err := c.RPush(ctx, name, "x").Err(); err != nil {
			t.Fatal(err)
		}
	}
	direct := map[string]*redis.Client{}
	for _, n := range nodes {
		direct[n.Addr] = redis.NewClient(&redis.Options{Addr: n.Addr})
		defer direct[n.Addr].Close()
	}
	leased := time.Now()
	for _, name := range queues {
		if err := c.LPop(ctx, name).Err(); err != nil {
			t.Fatalf("LPOP %s: %v", name, err)
		}
	}
	deadline := leased.Add(visibility)
	frozen.Freeze()
	t.Cleanup(frozen.Thaw)
	// Every survivor's item back in its ready list, while the master is still frozen.
	back := map[string]time.Duration{}
	for len(back) < len(survivors) {
		if time.Since(deadline) > bound+5*time.Second {
			break
		}
		for _, name := range survivors {
			if _, ok := back[name]; ok {
				continue
			}
			if n, err := direct[owners[rdb.Slot(name)]].LLen(ctx, name).Result(); err == nil && n == 1 {
				back[name] = time.Since(deadline)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	worst := time.Duration(0)
	for _, name := range survivors {
		d, ok := back[name]
		if !ok {
			t.Errorf("lease on %s (shard %d) not reaped %s after its deadline while a master was frozen",
				name, rdb.ScheduleShard(name), time.Since(deadline).Round(time.Millisecond))
			continue
		}
		worst = max(worst, d)
	}
	t.Logf("FIGURE cluster_frozen_master_lease_reaped_after_deadline_max=%s (%d queues on live masters; %d queues whose shard is on the frozen master wait for it)",
		worst.Round(time.Millisecond), len(survivors), len(waiting))
	if worst > bound {
		t.Errorf("a lease was reaped %s after its deadline, want within %s", worst.Round(time.Millisecond), bound)
	}
	// Once the master is back, every other lease comes back too.
	frozen.Thaw()
	for _, name := range queues {
		e2eEventually(t, "the lease on "+name+" reaped after the thaw", func() bool {
			n, err := direct[owners[rdb.Slot(name)]].LLen(ctx, name).Result()
			return err == nil && n == 1
		})
	}
}

// TestReaper_ClusterMasterKillLeasesWithinBound: a Cluster master with a replica is killed (kill -9)
// right after leases were taken on queues over every master and every schedule shard. Leases on the
// other masters' queues (shard there too) are retried within their bound while the replica is not yet
// promoted; every other lease (the dead master's queues, the straddling shards' queues) within a few
// seconds of the promotion.
func TestReaper_ClusterMasterKillLeasesWithinBound(t *testing.T) {
	if testing.Short() {
		t.Skip("a Cluster failover")
	}
	const (
		visibility = time.Second
		bound      = visibility + 2*time.Second // the deadline, then a reaper interval and the pass
		afterPromo = 3 * time.Second            // the slot map reload, a reaper interval and the pass
	)
	nodes := proxytest.StartClusterReplicas(t, 3, 1, time.Second)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
	cfg.ClusterRefreshInterval = 10 * time.Minute // only the reload on errors follows the failover
	cfg.Queues = []policy.Rule{{Match: "kq*", Delivery: "at-least-once", VisibilityTimeout: visibility,
		Backoff: policy.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Jitter: ptr(0.0)}}}
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := q.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })

	owners := slotOwners(t, ctx, addrs[0])
	queues := queuePerShardAndOwner("kq-", owners)
	master, replica := failoverPair(t, ctx, nodes, queues[0])
	live := map[string]bool{} // queues whose items and shard are on a master that stays up
	for _, name := range queues {
		live[name] = owners[rdb.Slot(name)] != master.Addr && owners[rdb.Slot(rdb.ScheduleDueKey(rdb.ScheduleShard(name)))] != master.Addr
	}
	for _, name := range queues {
		if err := c.RPush(ctx, name, "x").Err(); err != nil {
			t.Fatal(err)
		}
	}
	direct := map[string]*redis.Client{}
	for _, n := range nodes {
		direct[n.Addr] = redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		defer direct[n.Addr].Close()
	}
	leased := time.Now()
	for _, name := range queues {
		if err := c.LPop(ctx, name).Err(); err != nil {
			t.Fatalf("LPOP %s: %v", name, err)
		}
	}
	deadline := leased.Add(visibility)
	// What is measured is the reaper, not Redis's asynchronous replication: the leases' touches are in
	// their schedule shards and the replica has everything before the kill (a push, lease or touch the
	// replica never got is lost with the master, README "What survives which failure").
	e2eEventually(t, "every lease touched in its schedule shard", func() bool {
		for _, name := range queues {
			k := rdb.ScheduleDueKey(rdb.ScheduleShard(name))
			due, err := direct[owners[rdb.Slot(k)]].ZScore(ctx, k, name).Result()
			if err != nil || due > float64(deadline.Add(time.Second).UnixMilli()) {
				return false
			}
		}
		return true
	})
	if n, err := direct[master.Addr].Do(ctx, "wait", 1, 5000).Int(); err != nil || n < 1 {
		t.Fatalf("WAIT 1 on the master = %d, %v; want the replica in sync before the kill", n, err)
	}
	master.Kill()

	var promoted time.Time
	back := map[string]time.Time{}
	for len(back) < len(queues) && ctx.Err() == nil {
		if promoted.IsZero() {
			if role, err := direct[replica.Addr].Do(ctx, "role").Slice(); err == nil && len(role) > 0 && role[0] == "master" {
				promoted = time.Now()
			}
		}
		for _, name := range queues {
			if _, ok := back[name]; ok {
				continue
			}
			owner := owners[rdb.Slot(name)]
			if owner == master.Addr {
				owner = replica.Addr
			}
			if n, err := direct[owner].LLen(ctx, name).Result(); err == nil && n == 1 {
				back[name] = time.Now()
			}
		}
		if !promoted.IsZero() && time.Since(promoted) > afterPromo+5*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if promoted.IsZero() {
		t.Fatal("the replica was never promoted")
	}
	worstLive, worstOther := time.Duration(0), time.Duration(0)
	for _, name := range queues {
		at, ok := back[name]
		switch {
		case !ok:
			t.Errorf("lease on %s (shard %d, live %v) never reaped", name, rdb.ScheduleShard(name), live[name])
		case live[name]:
			worstLive = max(worstLive, at.Sub(deadline))
		default:
			from := promoted
			if deadline.After(from) {
				from = deadline
			}
			worstOther = max(worstOther, at.Sub(from))
		}
	}
	t.Logf("FIGURE cluster_master_kill_lease_reaped_after_deadline_max=%s (queues on the live masters) after_promotion_max=%s (the others; promoted %s after the deadline)",
		worstLive.Round(time.Millisecond), worstOther.Round(time.Millisecond), promoted.Sub(deadline).Round(time.Millisecond))
	if worstLive > bound {
		t.Errorf("a lease on a live master's queue was reaped %s after its deadline, want within %s", worstLive.Round(time.Millisecond), bound)
	}
	if worstOther > afterPromo {
		t.Errorf("a lease on the failed master's queues was reaped %s after the promotion, want within %s", worstOther.Round(time.Millisecond), afterPromo)
	}
}
