package proxy_test

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// When a Cluster master dies, qgate serves its slots from the promoted replica within seconds: a failed
// command (the dead node cannot be dialed, CLUSTERDOWN, MOVED) reloads the slot map at once instead of
// at the next periodic refresh (proxy/DESIGN.md "Cluster failover"). The periodic refresh is set far
// beyond the test's bound, so only the reload on errors can pass it.
func TestClusterFailover_PromotedReplicaServesWithinSeconds(t *testing.T) {
	const bound = 5 * time.Second
	nodes := proxytest.StartClusterReplicas(t, 3, 1, time.Second)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
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
	promoted := awaitPromotion(t, ctx, replica)
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

// awaitPromotion waits until replica's ROLE is master (within ctx) and returns when it saw it.
func awaitPromotion(t *testing.T, ctx context.Context, replica *proxytest.Redis) time.Time {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr, MaxRetries: -1})
	defer rc.Close()
	for {
		if ctx.Err() != nil {
			t.Fatal("the replica was never promoted")
		}
		if role, err := rc.Do(ctx, "role").Slice(); err == nil && len(role) > 0 && role[0] == "master" {
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failoverPair returns the master serving key's slot (by CLUSTER SLOTS) and its replica (the node
// whose ROLE names the master's port).
func failoverPair(t *testing.T, ctx context.Context, nodes []*proxytest.Redis, key string) (master, replica *proxytest.Redis) {
	t.Helper()
	master, slot := failoverMaster(t, ctx, nodes, key)
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

// TestClusterFailover_BlockedPopsWokenAfterPromotion: clients blocked in BLPOP on a queue whose
// Cluster master is killed stay blocked (nothing is popped for them meanwhile) and are served after
// the replica's promotion, by pushes through qgate (which wake its waiters at once) and by pushes
// straight into the promoted master (which qgate learns of by its keyspace notifications or its
// safety poll of waited keys): each client gets exactly one item, and nothing is left behind.
func TestClusterFailover_BlockedPopsWokenAfterPromotion(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a Cluster master and waits for the promotion")
	}
	const (
		queue   = "blocked_q"
		clients = 6
		bound   = 10 * time.Second // a push to the reply, the safety poll (5 s) included
	)
	nodes := proxytest.StartClusterReplicas(t, 3, 1, time.Second)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var readers []*rawReader
	for i := 0; i < clients; i++ {
		c, rd := dialRaw(t, q.Addr)
		send(t, c, "BLPOP "+queue+" 0\r\n")
		readers = append(readers, rd)
	}
	e2eEventually(t, "every client blocked", func() bool { return q.Server.Stats().BlockedClients == clients })
	master, replica := failoverPair(t, ctx, nodes, queue)
	master.Kill()
	awaitPromotion(t, ctx, replica)
	if got := q.Server.Stats().BlockedClients; got != clients {
		t.Fatalf("%d clients blocked after the promotion, want %d (none served, none dropped)", got, clients)
	}
	through := q.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{replica.Addr}})
	defer direct.Close()
	items := map[string]bool{}
	var pushed time.Time
	for i := 0; i < clients; i++ {
		item := "item-" + strconv.Itoa(i)
		c := redis.Cmdable(through)
		if i >= clients/2 {
			c = direct // a producer that pushes into Redis itself
		}
		for {
			err := c.RPush(ctx, queue, item).Err()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("RPUSH %s after the promotion: %v", item, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		items[item] = true
		pushed = time.Now()
	}
	prefix := "*2\r\n" + bulk(queue) + "$6\r\n"
	var slowest time.Duration
	for i, rd := range readers {
		_ = rd.c.SetReadDeadline(pushed.Add(bound))
		got := make([]byte, len(prefix)+8)
		if _, err := io.ReadFull(rd.br, got); err != nil {
			t.Fatalf("client %d: %v after %s (got %q)", i, err, time.Since(pushed).Round(time.Millisecond), got)
		}
		slowest = max(slowest, time.Since(pushed))
		item := strings.TrimSuffix(string(got[len(prefix):]), "\r\n")
		if !strings.HasPrefix(string(got), prefix) || !items[item] {
			t.Fatalf("client %d got %q, want one of the pushed items", i, got)
		}
		delete(items, item) // each item once
	}
	t.Logf("FIGURE cluster_master_kill_blocked_served_after_last_push=%s (%d clients, half the items pushed straight into Redis)",
		slowest.Round(time.Millisecond), clients)
	if n, err := direct.LLen(ctx, queue).Result(); err != nil || n != 0 {
		t.Fatalf("LLEN after serving every client = %d, %v; want 0", n, err)
	}
}

// TestClusterFailover_FrozenMasterReplicaServes: a master that freezes (SIGSTOP: its connections stay
// open, nothing answers) is failed over by the Cluster, and qgate serves its slots from the promoted
// replica within seconds. The map reloads every second here, so many of them meet the frozen node: a
// reload that waited for it (go-redis's own loader, no read timeout) would stop every later one, and
// the promotion would never be learnt (proxy/DESIGN.md "Cluster failover").
func TestClusterFailover_FrozenMasterReplicaServes(t *testing.T) {
	if testing.Short() {
		t.Skip("freezes a Cluster master and waits for the promotion")
	}
	const bound = 8 * time.Second // the next reload (1 s) and a client's 1 s attempt, with slack
	nodes := proxytest.StartClusterReplicas(t, 3, 1, time.Second)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
	cfg.ClusterRefreshInterval = time.Second
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	const queue = "frozen_q"
	if err := q.Client(t).RPush(ctx, queue, "before").Err(); err != nil {
		t.Fatal(err)
	}
	master, replica := failoverPair(t, ctx, nodes, queue)
	mc := redis.NewClient(&redis.Options{Addr: master.Addr})
	if n, err := mc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 on the master: %d, %v (the replica must hold the item before the freeze)", n, err)
	}
	_ = mc.Close()
	master.Freeze()
	defer master.Thaw()
	frozen := time.Now()
	promoted := awaitPromotion(t, ctx, replica)
	// Each attempt on a connection of its own, bounded: one sent before qgate's map changed waits for
	// the frozen node, as a command to a frozen standalone Redis does.
	var lastErr error
	for attempt := 1; ; attempt++ {
		c := q.Client(t, func(o *redis.Options) { o.MaxRetries, o.ReadTimeout, o.PoolSize = -1, time.Second, 1 })
		lastErr = c.RPush(ctx, queue, "after").Err()
		_ = c.Close()
		if lastErr == nil {
			break
		}
		if time.Since(promoted) > bound+10*time.Second || ctx.Err() != nil {
			t.Fatalf("commands on %s still fail %s after the promotion (%d attempts): %v", queue,
				time.Since(promoted).Round(time.Millisecond), attempt, lastErr)
		}
	}
	recovered := time.Since(promoted)
	t.Logf("FIGURE cluster_master_freeze_served_after_promotion=%s (promoted %s after the freeze)",
		recovered.Round(time.Millisecond), promoted.Sub(frozen).Round(time.Millisecond))
	if recovered > bound {
		t.Errorf("commands succeeded %s after the promotion, want within %s", recovered.Round(time.Millisecond), bound)
	}
	c := q.Client(t, func(o *redis.Options) { o.MaxRetries, o.ReadTimeout = -1, 5*time.Second })
	if got, err := c.LRange(ctx, queue, 0, -1).Result(); err != nil || strings.Join(got, ",") != "before,after" {
		t.Errorf("LRANGE after the failover = %v, %v; want [before after]", got, err)
	}
}

// TestCluster_FrozenMasterHoldsOnlyItsOwnQueues: while one master is frozen (no failover), commands on
// the queues of the other masters go on (each within a second), and those on the frozen master's
// queues wait for it, as with a frozen standalone Redis, then complete when it thaws. The backend
// multiplexer once ran every master's commands through the same few pipelines: the first ones to meet
// the frozen node held them all, and every queue stalled (proxy/DESIGN.md "Backend multiplexer").
func TestCluster_FrozenMasterHoldsOnlyItsOwnQueues(t *testing.T) {
	nodes := proxytest.StartClusterReplicas(t, 3, 0, 5*time.Second)
	addrs := proxytest.Addrs(nodes)
	q := proxytest.StartQgate(t, proxytest.ClusterConfig(addrs))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	frozen := nodes[0]
	mine, others := frozenSplit(t, ctx, nodes, frozen, "fq", 24)
	frozen.Freeze()
	defer frozen.Thaw()
	// Commands on the frozen master's queues, sent first: they wait.
	waiting := make(chan error, len(mine))
	for _, name := range mine {
		c := q.Client(t, func(o *redis.Options) { o.MaxRetries, o.ReadTimeout = -1, -1 })
		go func() { waiting <- c.RPush(ctx, name, "w").Err() }()
	}
	for round := range 3 {
		for _, name := range others {
			c := q.Client(t, func(o *redis.Options) { o.MaxRetries, o.ReadTimeout = -1, time.Second })
			if err := c.RPush(ctx, name, "x").Err(); err != nil {
				t.Fatalf("round %d: RPUSH %s (another master's queue) with a master frozen: %v", round, name, err)
			}
			if got, err := c.LPop(ctx, name).Result(); err != nil || got != "x" {
				t.Fatalf("round %d: LPOP %s = %q, %v; want x", round, name, got, err)
			}
			_ = c.Close()
		}
	}
	select {
	case err := <-waiting:
		t.Fatalf("a command on the frozen master's queue completed while it was frozen: %v", err)
	default:
	}
	frozen.Thaw()
	for range mine {
		if err := e2eRecv(t, "a waiting push after the thaw", waiting); err != nil {
			t.Fatalf("push on the frozen master's queue after the thaw: %v", err)
		}
	}
	c := q.Client(t)
	for _, name := range mine {
		if got, err := c.LRange(ctx, name, 0, -1).Result(); err != nil || strings.Join(got, ",") != "w" {
			t.Errorf("%s after the thaw = %v, %v; want [w]", name, got, err)
		}
	}
}

// failoverMaster returns the master serving key's slot (by CLUSTER SLOTS) among nodes.
func failoverMaster(t *testing.T, ctx context.Context, nodes []*proxytest.Redis, key string) (*proxytest.Redis, int64) {
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
					return n, slot
				}
			}
		}
	}
	t.Fatalf("no node serves slot %d", slot)
	return nil, 0
}

// TestCluster_FrozenMasterBlockedPopsOnOthersServed: with one master frozen (its keys' safety polls
// meeting it every half second), clients blocked on the other masters' queues are served at once by
// pushes through qgate.
func TestCluster_FrozenMasterBlockedPopsOnOthersServed(t *testing.T) {
	nodes := proxytest.StartClusterReplicas(t, 3, 0, 5*time.Second)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
	cfg.BlockingSafetyInterval = 500 * time.Millisecond
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	frozen := nodes[0]
	mine, others := frozenSplit(t, ctx, nodes, frozen, "bq", 40)
	got := blockOnEach(t, ctx, q, append(mine, others...))
	frozen.Freeze()
	defer frozen.Thaw()
	time.Sleep(2 * time.Second) // pacing the fault: several safety polls meet the frozen node
	start := time.Now()
	pc := q.Client(t, func(o *redis.Options) { o.MaxRetries, o.ReadTimeout = -1, time.Second })
	for _, name := range others {
		if err := pc.RPush(ctx, name, "x").Err(); err != nil {
			t.Fatalf("push %s: %v", name, err)
		}
	}
	for range others {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("a waiter on another master's queue not served within 5s (%s since the pushes)", time.Since(start))
		}
	}
	t.Logf("FIGURE cluster_frozen_master_other_waiters_served=%s (%d waiters)", time.Since(start).Round(time.Millisecond), len(others))
}

// TestCluster_FrozenMasterHoldsOnlyItsOwnTransitDeletes: the transit delete loop stuck on a frozen
// master's queue goes on deleting the delivered items' records of the other masters' queues (a record
// left behind is given back as a duplicate if the instance dies); the frozen master's is deleted after
// the thaw (proxy/DESIGN.md "Lanes").
func TestCluster_FrozenMasterHoldsOnlyItsOwnTransitDeletes(t *testing.T) {
	nodes := proxytest.StartClusterReplicas(t, 3, 0, 5*time.Second)
	addrs := proxytest.Addrs(nodes)
	q := proxytest.StartQgate(t, proxytest.ClusterConfig(addrs))
	// The delete loop, not the queue's next pop, deletes each record: one pop per queue, and it waits
	// long enough for the freeze to come first on the frozen master's queue.
	q.Server.SetDeleteIdle(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	frozen := nodes[0]
	mines, others := frozenSplit(t, ctx, nodes, frozen, "tq", 24)
	mine := mines[0]
	c := q.Client(t, func(o *redis.Options) { o.MaxRetries, o.ReadTimeout = -1, 5*time.Second })
	instance := e2eInfoField(c.Info(ctx, "qgate").Val(), "instance_id")
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, MaxRetries: -1, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = cluster.Close() })
	record := func(name string) int64 {
		n, err := cluster.HLen(ctx, rdb.TransitKey(name, instance)).Result()
		if err != nil {
			t.Fatalf("HLEN of %s's transit record: %v", name, err)
		}
		return n
	}
	for _, name := range append([]string{mine}, others...) {
		if err := c.RPush(ctx, name, "x").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.LPop(ctx, mine).Result(); err != nil || got != "x" {
		t.Fatalf("LPOP %s = %q, %v", mine, got, err)
	}
	_ = record(others[0]) // the test's client loads its slot map before the freeze
	frozen.Freeze()
	defer frozen.Thaw()
	time.Sleep(500 * time.Millisecond) // pacing the fault: the loop's delete for mine meets the frozen node
	for _, name := range others {
		if got, err := c.LPop(ctx, name).Result(); err != nil || got != "x" {
			t.Fatalf("LPOP %s = %q, %v", name, got, err)
		}
	}
	// Within 3 s: a delete loop held by the frozen node was released only by a failed dial of a new
	// connection to it (about 9 s here; never with an idle pooled connection to it).
	deadline := time.Now().Add(3 * time.Second)
	for _, name := range others {
		for record(name) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s's transit record still holds its delivered item 3s after the pop, with another master frozen", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	frozen.Thaw()
	e2eEventually(t, "the frozen master's queue's record deleted after the thaw", func() bool { return record(mine) == 0 })
}

// TestCluster_FrozenMasterPollsOthers: without keyspace notifications (keyspace_events: off, polls
// every 100 ms), clients blocked on the other masters' queues are served by items pushed straight into
// Redis while one master is frozen: the poll of the frozen master's keys gives up after its bound
// instead of holding the poller (proxy/DESIGN.md "Learning that a key has items").
func TestCluster_FrozenMasterPollsOthers(t *testing.T) {
	nodes := proxytest.StartClusterReplicas(t, 3, 0, 5*time.Second)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
	cfg.KeyspaceEvents = "off"
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	frozen := nodes[0]
	mine, others := frozenSplit(t, ctx, nodes, frozen, "pq", 24)
	got := blockOnEach(t, ctx, q, append(mine, others...))
	// The test's own client loads its slot map now: loaded after the freeze, it could ask the frozen
	// node first and wait its read timeout.
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, MaxRetries: -1, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = direct.Close() })
	if err := direct.Exists(ctx, others[0]).Err(); err != nil {
		t.Fatal(err)
	}
	frozen.Freeze()
	defer frozen.Thaw()
	time.Sleep(500 * time.Millisecond) // pacing the fault: polls meet the frozen node
	start := time.Now()
	for _, name := range others {
		if err := direct.RPush(ctx, name, "x").Err(); err != nil {
			t.Fatalf("push %s straight into Redis: %v", name, err)
		}
	}
	for range others {
		select {
		case <-got:
		case <-time.After(3 * time.Second):
			t.Fatalf("a waiter on another master's queue not served within 3s of the pushes (%s; the frozen node's poll is bounded by 5s)", time.Since(start))
		}
	}
	t.Logf("FIGURE cluster_frozen_master_polled_waiters_served=%s (%d waiters, poll mode)", time.Since(start).Round(time.Millisecond), len(others))
}

// frozenSplit names n queues prefix0… and splits them into those on frozen's slots and the others;
// it fails the test unless both have some.
func frozenSplit(t *testing.T, ctx context.Context, nodes []*proxytest.Redis, frozen *proxytest.Redis, prefix string, n int) (mine, others []string) {
	t.Helper()
	for i := range n {
		name := prefix + strconv.Itoa(i)
		if m, _ := failoverMaster(t, ctx, nodes, name); m == frozen {
			mine = append(mine, name)
		} else {
			others = append(others, name)
		}
	}
	if len(mine) == 0 || len(others) == 0 {
		t.Fatalf("queues on the frozen master %v, on the others %v: want some of each", mine, others)
	}
	return mine, others
}

// blockOnEach starts a client in BLPOP name 0 through q for each name, sends the key of each item a
// client gets to the returned channel, and waits until all are blocked.
func blockOnEach(t *testing.T, ctx context.Context, q *proxytest.Qgate, names []string) <-chan string {
	t.Helper()
	got := make(chan string, len(names))
	for _, name := range names {
		c := q.Client(t, func(o *redis.Options) { o.MaxRetries, o.ReadTimeout = -1, -1 })
		go func() {
			if v, err := c.BLPop(ctx, 0, name).Result(); err == nil {
				got <- v[0]
			}
		}()
	}
	e2eWaitBlocked(t, q.Client(t), len(names))
	return got
}
