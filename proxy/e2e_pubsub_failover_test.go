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
	"github.com/qgate/qgate/proxy/proxytest"
)

// Pub/sub across a lost backend connection (README "Pub/sub across failures"): the hub subscribes
// again at once, every channel and pattern, without its clients noticing, and counts the gap.

// e2eSubscriber reads one go-redis subscription to qgate and records what it receives.
type e2eSubscriber struct {
	mu       sync.Mutex
	got      map[int]time.Time // sequence number → when it arrived
	confirms int               // subscribe/psubscribe confirmations: 1 unless the client had to resubscribe
}

func e2eSubscribe(t *testing.T, ctx context.Context, c *redis.Client, pattern bool, name string) *e2eSubscriber {
	t.Helper()
	var ps *redis.PubSub
	if pattern {
		ps = c.PSubscribe(ctx, name)
	} else {
		ps = c.Subscribe(ctx, name)
	}
	t.Cleanup(func() { _ = ps.Close() })
	s := &e2eSubscriber{got: map[int]time.Time{}}
	confirmed := make(chan struct{})
	go func() {
		for {
			msg, err := ps.Receive(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			s.mu.Lock()
			switch m := msg.(type) {
			case *redis.Subscription:
				if s.confirms++; s.confirms == 1 {
					close(confirmed)
				}
			case *redis.Message:
				if n, err := strconv.Atoi(strings.TrimPrefix(m.Payload, "m")); err == nil {
					s.got[n] = time.Now()
				}
			}
			s.mu.Unlock()
		}
	}()
	select {
	case <-confirmed:
	case <-ctx.Done():
		t.Fatalf("subscribing to %s through qgate: %v", name, ctx.Err())
	}
	return s
}

func (s *e2eSubscriber) has(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.got[n]
	return ok
}

// e2eWaitFor polls cond every 10 ms until it holds or bound passes.
func e2eWaitFor(bound time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(bound); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// A master of a 3-master + 3-replica Cluster holding the hub's subscription is killed (-9) while
// messages are published continuously, through qgate and straight into another node. The hub moves
// its subscription to a live node at once (a classic PUBLISH reaches every node), so the subscribers,
// which never see the outage, get messages again long before the replica's promotion; the gap is
// counted in /metrics and what was missed is logged.
func TestPubSubFailover_ClusterMasterKillResubscribesAtOnce(t *testing.T) {
	const bound = 5 * time.Second // after the promotion, as the issue asks; the hub does not wait for it
	nodes := proxytest.StartClusterReplicas(t, 3, 1, time.Second)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
	httpOn(&cfg)
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := q.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })

	const channel = "feed"
	subs := []*e2eSubscriber{
		e2eSubscribe(t, ctx, c, false, channel),
		e2eSubscribe(t, ctx, c, false, channel),
		e2eSubscribe(t, ctx, c, true, "fe*"),
	}
	hubNode := e2eHubNode(t, ctx, nodes, channel)
	if role := nodeRole(ctx, hubNode.Addr); role != "master" {
		t.Fatalf("the hub subscribed through a %s, want a master", role)
	}
	var replica *proxytest.Redis // the hub node's replica, which the kill promotes
	for _, n := range nodes {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr})
		role, err := rc.Do(ctx, "role").Slice()
		_ = rc.Close()
		if err == nil && len(role) >= 3 && role[0] == "slave" && role[2] == int64(hubNode.Port) {
			replica = n
		}
	}
	if replica == nil {
		t.Fatalf("no replica of %s", hubNode.Addr)
	}
	// Straight into Redis: a master the kill leaves alone.
	var direct *redis.Client
	for _, n := range nodes {
		if n != hubNode && n != replica && nodeRole(ctx, n.Addr) == "master" {
			direct = redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
			break
		}
	}
	defer direct.Close()

	// The publisher: one message every 5 ms, alternately through qgate and straight into Redis.
	var (
		mu        sync.Mutex
		published = map[int]time.Time{} // acknowledged messages → when they were sent
		failed    int
	)
	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			via := redis.Cmdable(direct)
			if i%2 == 0 {
				via = c
			}
			sent := time.Now()
			err := via.Publish(ctx, channel, "m"+strconv.Itoa(i)).Err()
			mu.Lock()
			if err == nil {
				published[i] = sent
			} else {
				failed++
			}
			mu.Unlock()
		}
	}()
	time.Sleep(300 * time.Millisecond) // some traffic before the kill (not a synchronisation)

	hubNode.Kill()
	killed := time.Now()
	var promoted time.Time
	if !e2eWaitFor(30*time.Second, func() bool { return nodeRole(ctx, replica.Addr) == "master" }) {
		t.Fatal("the replica was never promoted")
	}
	promoted = time.Now()
	time.Sleep(500 * time.Millisecond) // traffic after the promotion
	close(stop)
	<-pubDone

	mu.Lock()
	last := -1
	for n := range published {
		last = max(last, n)
	}
	mu.Unlock()
	// Every subscriber gets the last message (they are delivered in order on one connection).
	for i, s := range subs {
		if !e2eWaitFor(bound, func() bool { return s.has(last) }) {
			t.Fatalf("subscriber %d never got the last message m%d", i, last)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	for i, s := range subs {
		s.mu.Lock()
		missed, missedFirst, missedLast := 0, -1, -1
		resumed := time.Duration(-1) // from the kill to the first message published after it
		for n, sent := range published {
			at, ok := s.got[n]
			if !ok {
				missed++
				if missedFirst < 0 || n < missedFirst {
					missedFirst = n
				}
				missedLast = max(missedLast, n)
				continue
			}
			if sent.After(killed) && (resumed < 0 || at.Sub(killed) < resumed) {
				resumed = at.Sub(killed)
			}
		}
		confirms := s.confirms
		s.mu.Unlock()
		t.Logf("subscriber %d: missed %d of %d acknowledged messages (m%d..m%d); first message after the kill arrived %s after it; promotion %s after the kill",
			i, missed, len(published), missedFirst, missedLast, resumed.Round(time.Millisecond), promoted.Sub(killed).Round(time.Millisecond))
		if got, want := confirms, 1; got != want {
			t.Errorf("subscriber %d got %d subscription confirmations, want %d (its subscription must not be touched)", i, got, want)
		}
		if resumed < 0 || resumed > promoted.Sub(killed)+bound {
			t.Errorf("subscriber %d: first message after the kill arrived %s after it, want within %s of the promotion",
				i, resumed.Round(time.Millisecond), bound)
		}
	}
	t.Logf("%d PUBLISH failed during the failover", failed)

	mf := scrape(t, httpBase(t, q))
	resubs, gap, missedMetric := metricValue(mf, "qgate_pubsub_resubscribes_total"), metricValue(mf, "qgate_pubsub_gap_seconds_total"),
		metricValue(mf, "qgate_pubsub_missed_messages_total")
	t.Logf("FIGURE pubsub_cluster_kill resubscribes=%v gap_seconds=%.3f missed_through_qgate=%v", resubs, gap, missedMetric)
	if resubs < 1 {
		t.Errorf("qgate_pubsub_resubscribes_total = %v, want ≥ 1", resubs)
	}
	if gap <= 0 || gap > promoted.Sub(killed).Seconds()+bound.Seconds() {
		t.Errorf("qgate_pubsub_gap_seconds_total = %v, want > 0 and within %s of the promotion", gap, bound)
	}
	if !strings.Contains(q.Logs.String(), "pub/sub backend subscription restored") {
		t.Error("no log line for the gap")
	}
}

// e2eHubNode returns the Cluster node holding qgate's subscription to channel: the one where PUBSUB
// NUMSUB (local to a node) counts a subscriber.
func e2eHubNode(t *testing.T, ctx context.Context, nodes []*proxytest.Redis, channel string) *proxytest.Redis {
	t.Helper()
	for _, n := range nodes {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr})
		m, err := rc.PubSubNumSub(ctx, channel).Result()
		_ = rc.Close()
		if err == nil && m[channel] > 0 {
			return n
		}
	}
	t.Fatal("no node holds qgate's subscription")
	return nil
}

// nodeRole is ROLE's first element on addr ("" when it does not answer).
func nodeRole(ctx context.Context, addr string) string {
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rc.Close()
	role, err := rc.Do(ctx, "role").Slice()
	if err != nil || len(role) == 0 {
		return ""
	}
	s, _ := role[0].(string)
	return s
}

// CLIENT KILL TYPE pubsub on a standalone backend breaks the hub's connection: it subscribes again
// at once, its clients notice nothing, and INFO counts the gap.
func TestPubSubFailover_ClientKillResubscribes(t *testing.T) {
	e := e2eStart(t)
	ctx := e2eCtx(t)
	c := e.Client(t, 2)
	sub := e2eSubscribe(t, ctx, c, false, "news")
	psub := e2eSubscribe(t, ctx, c, true, "ne*")

	if err := e.Direct.Do(ctx, "client", "kill", "type", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// Published straight into Redis until both get one: the subscriptions are back.
	n := 0
	back := e2eWaitFor(2*time.Second, func() bool {
		n++
		_ = e.Direct.Publish(ctx, "news", "m"+strconv.Itoa(n)).Err()
		return e2eWaitFor(20*time.Millisecond, func() bool { return sub.has(n) && psub.has(n) })
	})
	if !back {
		t.Fatal("no message reached the subscribers within 2 s of the CLIENT KILL")
	}
	info := ""
	if !e2eWaitFor(e2eWaitBound, func() bool {
		info = c.Info(ctx, "qgate").Val()
		return strings.Contains(info, "pubsub_resubscribes:1\r\n") && strings.Contains(info, "pubsub_backend_down:0\r\n")
	}) {
		t.Fatalf("INFO after the kill:\n%s", info)
	}
	for i, s := range []*e2eSubscriber{sub, psub} {
		s.mu.Lock()
		if got, want := s.confirms, 1; got != want {
			t.Errorf("subscriber %d got %d subscription confirmations, want %d", i, got, want)
		}
		s.mu.Unlock()
	}
	if !strings.Contains(e.Qgate.Logs.String(), "pub/sub backend subscription restored") {
		t.Error("no log line for the gap")
	}
	var gapLines []string
	for _, l := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(l, "pubsub_") {
			gapLines = append(gapLines, l)
		}
	}
	t.Logf("FIGURE pubsub_client_kill first_message_after=m%d %s", n, strings.Join(gapLines, " "))
}

// CLIENT LIST's ssub= counts a connection's shard channels, and a shard-only subscriber is of type
// pubsub (flag P), as in Redis 7.0.
func TestPubSubClientList_ShardSubscriberAsRedis(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		sub, srd := dialRaw(t, tg.addr)
		subID := clientID(t, sub, srd)
		send(t, sub, "SSUBSCRIBE a b\r\n")
		expect(t, srd, ssub("*", "a", 1)+ssub("*", "b", 2))
		send(t, c, "CLIENT LIST TYPE pubsub\r\n")
		got := readBulk(t, rd)
		if !strings.HasPrefix(got, "id="+subID+" ") || strings.Count(got, "\n") != 1 {
			t.Fatalf("CLIENT LIST TYPE pubsub = %q", got)
		}
		if want := " flags=P db=0 sub=0 psub=0 ssub=2 multi=-1 "; !strings.Contains(got, want) {
			t.Errorf("shard subscriber's line %q lacks %q", got, want)
		}
		if tg.redis {
			return // Redis 7.0 has no INFO pubsub_clients (7.2 counts every client in pub/sub state)
		}
		send(t, c, "INFO clients\r\n")
		if info := readBulk(t, rd); !strings.Contains(info, "pubsub_clients:1\r\n") {
			t.Errorf("INFO clients with a shard-only subscriber:\n%s", info)
		}
	})
}

// A kill -9 of a Sentinel-managed master: the hub subscribes again on the promoted replica, its
// clients notice nothing, and the gap (the failover's length) is counted.
func TestPubSubFailover_SentinelMasterKillResubscribes(t *testing.T) {
	const bound = 5 * time.Second
	set := proxytest.StartSentinelSet(t, 1)
	cfg := proxy.DefaultConfig()
	cfg.Backend = set.URL()
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := q.Client(t)
	sub := e2eSubscribe(t, ctx, c, false, "news")
	psub := e2eSubscribe(t, ctx, c, true, "ne*")

	set.Master.Kill()
	killed := time.Now()
	addr, err := set.WaitMaster(ctx, set.Master.Addr)
	if err != nil {
		t.Fatal(err)
	}
	switched := time.Now()
	direct := redis.NewClient(&redis.Options{Addr: addr})
	defer direct.Close()
	n := 0
	if !e2eWaitFor(bound, func() bool {
		n++
		_ = direct.Publish(ctx, "news", "m"+strconv.Itoa(n)).Err()
		return e2eWaitFor(20*time.Millisecond, func() bool { return sub.has(n) && psub.has(n) })
	}) {
		t.Fatalf("no message published on the new master reached the subscribers within %s", bound)
	}
	back := time.Since(switched)
	info := ""
	if !e2eWaitFor(e2eWaitBound, func() bool {
		info = c.Info(ctx, "qgate").Val()
		return !strings.Contains(info, "pubsub_resubscribes:0\r\n") && strings.Contains(info, "pubsub_backend_down:0\r\n")
	}) {
		t.Fatalf("INFO after the failover:\n%s", info)
	}
	for i, s := range []*e2eSubscriber{sub, psub} {
		s.mu.Lock()
		if got, want := s.confirms, 1; got != want {
			t.Errorf("subscriber %d got %d subscription confirmations, want %d", i, got, want)
		}
		s.mu.Unlock()
	}
	var gapLines []string
	for _, l := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(l, "pubsub_") {
			gapLines = append(gapLines, l)
		}
	}
	t.Logf("FIGURE pubsub_sentinel_kill switch_after_kill=%s delivered_after_switch=%s %s",
		switched.Sub(killed).Round(time.Millisecond), back.Round(time.Millisecond), strings.Join(gapLines, " "))
}

// A frozen master (SIGSTOP: no TCP reset) holding the hub's subscription: the hub's health PINGs go
// unanswered, so it subscribes through another node within a few seconds, not when the node thaws.
func TestPubSubFailover_ClusterFrozenNodeResubscribes(t *testing.T) {
	const bound = 8 * time.Second // health PING after 1 s idle + 3 s without its answer, plus slack
	nodes := proxytest.StartClusterReplicas(t, 3, 1, time.Second)
	addrs := proxytest.Addrs(nodes)
	cfg := proxytest.ClusterConfig(addrs)
	q := proxytest.StartQgate(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := q.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
	sub := e2eSubscribe(t, ctx, c, false, "feed")
	hubNode := e2eHubNode(t, ctx, nodes, "feed")
	var direct *redis.Client
	for _, n := range nodes {
		if n != hubNode {
			direct = redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
			break
		}
	}
	defer direct.Close()

	hubNode.Freeze()
	defer hubNode.Thaw()
	frozen := time.Now()
	n := 0
	if !e2eWaitFor(bound, func() bool {
		n++
		_ = direct.Publish(ctx, "feed", "m"+strconv.Itoa(n)).Err()
		return e2eWaitFor(20*time.Millisecond, func() bool { return sub.has(n) })
	}) {
		// Where the subscription is now, and what the hub counted: a failure here has been seen only
		// under heavy load, never alone.
		var where []string
		for _, nd := range nodes {
			if nd == hubNode {
				continue
			}
			rc := redis.NewClient(&redis.Options{Addr: nd.Addr, MaxRetries: -1})
			m, err := rc.PubSubNumSub(ctx, "feed").Result()
			_ = rc.Close()
			where = append(where, fmt.Sprintf("%s %s numsub=%d err=%v", nd.Addr, nodeRole(ctx, nd.Addr), m["feed"], err))
		}
		var gaps []string
		for _, line := range strings.Split(c.Info(ctx, "qgate").Val(), "\r\n") {
			if strings.HasPrefix(line, "pubsub_") {
				gaps = append(gaps, line)
			}
		}
		t.Fatalf("no message reached the subscriber within %s of freezing the hub's node %s; live nodes: %v; %v",
			bound, hubNode.Addr, where, gaps)
	}
	back := time.Since(frozen)
	sub.mu.Lock()
	confirms := sub.confirms
	sub.mu.Unlock()
	if got, want := confirms, 1; got != want {
		t.Errorf("the subscriber got %d subscription confirmations, want %d", got, want)
	}
	info := c.Info(ctx, "qgate").Val()
	if strings.Contains(info, "pubsub_resubscribes:0\r\n") {
		t.Errorf("no resubscription counted:\n%s", info)
	}
	t.Logf("FIGURE pubsub_cluster_freeze delivered_after_freeze=%s", back.Round(time.Millisecond))
}
