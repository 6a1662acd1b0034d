package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// Queue and channel names that carry their own Redis Cluster {hash tag} (README "Queue names",
// proxy/DESIGN.md "Key layout").

// TestNames_TaggedListSemantics: on tagged names qgate's list replies are Redis's, byte for byte, in
// RESP2 and RESP3, blocked pops included (one woken by a push made straight into Redis, which only a
// keyspace notification for the braced key can announce).
func TestNames_TaggedListSemantics(t *testing.T) {
	newRawEnv(t, onlyNotifications).both(t, func(t *testing.T, tg target) {
		ctx := e2eCtx(t)
		for _, proto := range []int{2, 3} {
			for _, key := range []string{"blist{t}", "{app}:email", "bull:{q}:wait"} {
				key := fmt.Sprintf("%s%d", key, proto)
				c, rd := dialRaw(t, tg.addr)
				nilReply := "*-1\r\n"
				if proto == 3 {
					send(t, c, "HELLO 3\r\n")
					expectHello(t, rd, 3, tg.version)
					nilReply = "_\r\n"
				}
				cmd := func(args ...string) string {
					var b strings.Builder
					fmt.Fprintf(&b, "*%d\r\n", len(args))
					for _, a := range args {
						b.WriteString(bulk(a))
					}
					return b.String()
				}
				send(t, c, cmd("RPUSH", key, "a", "b", "c"))
				expect(t, rd, ":3\r\n")
				send(t, c, cmd("LLEN", key))
				expect(t, rd, ":3\r\n")
				send(t, c, cmd("LRANGE", key, "0", "-1"))
				expect(t, rd, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n")
				send(t, c, cmd("LPOP", key))
				expect(t, rd, "$1\r\na\r\n")
				send(t, c, cmd("LPOP", key, "5"))
				expect(t, rd, "*2\r\n$1\r\nb\r\n$1\r\nc\r\n")
				send(t, c, cmd("BLPOP", key, "0.05"))
				expect(t, rd, nilReply)
				send(t, c, cmd("RPUSH", key, "d"))
				expect(t, rd, ":1\r\n")
				send(t, c, cmd("BLPOP", "missing{t}", key, "0"))
				expect(t, rd, "*2\r\n"+bulk(key)+"$1\r\nd\r\n")

				// Blocked first, then a push by a program writing straight into Redis.
				send(t, c, cmd("BLPOP", key, "0"))
				watcher := redis.NewClient(&redis.Options{Addr: tg.addr})
				e2eWaitBlocked(t, watcher, 1)
				_ = watcher.Close()
				if err := tg.data.RPush(ctx, key, "direct").Err(); err != nil {
					t.Fatal(err)
				}
				expect(t, rd, "*2\r\n"+bulk(key)+"$6\r\ndirect\r\n")
				send(t, c, cmd("LLEN", key))
				expect(t, rd, ":0\r\n")
			}
		}
	})
}

// onlyNotifications makes a keyspace notification the only way a push made straight into Redis can
// wake a waiter within the tests' wait bound: the poll and the safety re-check wait an hour.
func onlyNotifications(cfg *proxy.Config) {
	cfg.BlockingPollInterval = time.Hour
	cfg.BlockingSafetyInterval = time.Hour
}

// TestNames_TaggedChannels: PUBLISH and SUBSCRIBE accept tagged channel names, and PSUBSCRIBE
// patterns match braces literally.
func TestNames_TaggedChannels(t *testing.T) {
	e := e2eStart(t)
	ctx := e2eCtx(t)
	sub := e.Client(t, 3).Subscribe(ctx, "news{t}")
	t.Cleanup(func() { _ = sub.Close() })
	psub := e.Client(t, 3).PSubscribe(ctx, "news{*}")
	t.Cleanup(func() { _ = psub.Close() })
	for _, s := range []*redis.PubSub{sub, psub} {
		if _, err := s.Receive(ctx); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	pub := e.Client(t, 3)
	e2eEventually(t, "both subscriptions live", func() bool {
		n, err := pub.Publish(ctx, "news{t}", "probe").Result()
		return err == nil && n == 2
	})
	for _, s := range []*redis.PubSub{sub, psub} {
		for {
			m, err := s.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := m.Channel, "news{t}"; got != want {
				t.Fatalf("channel = %q, want %q", got, want)
			}
			if m.Payload != "probe" {
				t.Fatalf("payload = %q", m.Payload)
			}
			break
		}
	}
	if err := pub.Publish(ctx, "news{}x", "m").Err(); err == nil || !strings.Contains(err.Error(), "non-empty {hash tag}") {
		t.Fatalf("PUBLISH news{}x: %v, want the empty-tag error", err)
	}
}

// TestNames_ClusterKeysInNameSlot runs pushes, pops, leases, acks, nacks to the delayed set and to the
// dead list, expiry-free blocked pops and at-most-once pops on tagged queues on a real 3-master Redis
// Cluster, then SCANs every master: every key qgate created for a queue is in the queue's slot
// (CLUSTER KEYSLOT), two queues sharing a tag have keys of their own, and rules matched the tagged
// names by glob.
func TestNames_ClusterKeysInNameSlot(t *testing.T) {
	addrs := proxytest.StartCluster(t, 3)
	cfg := proxytest.ClusterConfig(addrs)
	lease := func(match string) policy.Rule {
		return policy.Rule{Match: match, Delivery: "at-least-once", MaxAttempts: ptr(2),
			Backoff: policy.Backoff{Initial: time.Hour, Max: time.Hour, Jitter: ptr(0.0)}}
	}
	cfg.Queues = []policy.Rule{lease("*{t}"), lease("{app}:*")}
	onlyNotifications(&cfg)
	q := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	c := q.Client(t, func(o *redis.Options) {
		o.PoolSize = 1
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "qdelivery", "envelope").Err() }
	})
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = direct.Close() })

	leased := []string{"jobs{t}", "other{t}", "{app}:email"}
	for _, queue := range leased {
		receipt := func(want string) string {
			t.Helper()
			env := mustDecode(t, c.LPop(ctx, queue).Val())
			if string(env.Payload) != want {
				t.Fatalf("%s LPOP = %q, want %q", queue, env.Payload, want)
			}
			return env.Receipt
		}
		must1 := func(args ...any) {
			t.Helper()
			if n, err := c.Do(ctx, args...).Int(); err != nil || n != 1 {
				t.Fatalf("%v = %d, %v", args, n, err)
			}
		}
		for _, item := range []string{"acked", "dead", "delayed", "leased"} {
			must1("rpush", queue, item)
			switch item {
			case "acked":
				must1("qack", queue, receipt(item))
			case "dead": // attempts 1, back to the ready list at once; attempts 2 = max_attempts: dead
				must1("qnack", queue, receipt(item), 0)
				must1("qnack", queue, receipt(item), 0)
			case "delayed": // backoff 1h: the delayed set
				must1("qnack", queue, receipt(item))
			case "leased":
				receipt(item)
			}
		}
		// A blocked pop woken by a push straight into the cluster (keyspace notification of the
		// braced key on the master that owns its slot).
		got := e2eBlpop(ctx, q.Client(t), 1, true, 0, queue)
		e2eEventually(t, queue+" waiter blocked", func() bool { return q.Server.Stats().BlockedClients == 1 })
		if err := direct.RPush(ctx, queue, "pushed-direct").Err(); err != nil {
			t.Fatal(err)
		}
		if res := e2eRecv(t, queue+" BLPOP", got); res.err != nil || len(res.val) != 2 || res.val[0] != queue {
			t.Fatalf("%s BLPOP = %q, %v", queue, res.val, res.err)
		}
		stats, err := c.Do(ctx, "qstats", queue).Result()
		if err != nil {
			t.Fatal(err)
		}
		m := stats.(map[interface{}]interface{})
		for field, want := range map[string]int64{"ready": 0, "in_flight": 2, "delayed": 1, "dead": 1} {
			if got := m[field]; got != want {
				t.Errorf("%s QSTATS %s = %v, want %d (%v)", queue, field, got, want, m)
			}
		}
	}
	// An at-most-once tagged queue: its transit keys too.
	amo := "plain{t}x" // "*{t}" does not match it: at-most-once
	if err := c.RPush(ctx, amo, "x", "y").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.LPop(ctx, amo).Result(); err != nil || !strings.Contains(v, "x") {
		t.Fatalf("%s LPOP = %q, %v", amo, v, err)
	}
	if v, err := c.BLPop(ctx, time.Second, amo).Result(); err != nil || len(v) != 2 {
		t.Fatalf("%s BLPOP = %q, %v", amo, v, err)
	}

	// Every key on every master.
	var (
		mu   sync.Mutex
		keys []string
	)
	err := direct.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		var cursor uint64
		for {
			ks, next, err := m.Scan(ctx, cursor, "*", 1000).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			keys = append(keys, ks...)
			mu.Unlock()
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	slot := func(k string) int64 {
		t.Helper()
		s, err := direct.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	names := append(leased, amo)
	owned := map[string][]string{}
	for _, k := range keys {
		if strings.HasPrefix(k, "qgate:") || strings.HasPrefix(k, "{qgate-sched-") { // the registries and the reapers' schedule shards, outside any queue's slot by design
			continue
		}
		owner := ""
		for _, n := range names {
			if k == n || strings.HasSuffix(k, ":"+n) || strings.Contains(k, ":"+n+":") {
				if owner != "" {
					t.Errorf("key %q belongs to %q and %q", k, owner, n)
				}
				owner = n
			}
		}
		if owner == "" {
			t.Errorf("key %q belongs to no queue of the test", k)
			continue
		}
		owned[owner] = append(owned[owner], k)
		if got, want := slot(k), slot(owner); got != want {
			t.Errorf("key %q is in slot %d, its queue %q in %d", k, got, owner, want)
		}
	}
	for _, n := range leased {
		tag := strings.TrimSuffix(strings.TrimPrefix(n[strings.Index(n, "{"):strings.Index(n, "}")+1], "{"), "}")
		for _, kind := range []string{"inflight", "leases", "delayed", "dead"} {
			want := "{" + tag + "}:qgate:" + kind + ":" + n
			if !slices.Contains(owned[n], want) {
				t.Errorf("queue %q: no key %q among %q", n, want, owned[n])
			}
		}
	}
	if want := "{t}:qgate:transit-owners:" + amo; !slices.Contains(owned[amo], want) {
		t.Errorf("queue %q: no key %q among %q", amo, want, owned[amo])
	}
	if t.Failed() {
		t.Logf("keys: %q", keys)
	}
}

// TestNames_HTTPQueueAPI: the JSON API serves tagged queues (the name escaped in the URL path) and
// refuses the names the commands refuse.
func TestNames_HTTPQueueAPI(t *testing.T) {
	e := e2eStart(t, httpOn)
	ctx := e2eCtx(t)
	if err := e.Client(t, 3).RPush(ctx, "{app}:email", "x").Err(); err != nil {
		t.Fatal(err)
	}
	base := httpBase(t, e.Qgate)
	code, body := httpDo(t, "GET", base+"/api/v1/queues/"+url.PathEscape("{app}:email"), "", "", "")
	if code != http.StatusOK || !strings.Contains(body, `"{app}:email"`) {
		t.Fatalf("GET {app}:email: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", base+"/api/v1/queues/"+url.PathEscape("a{}b"), "", "", ""); code != http.StatusBadRequest {
		t.Fatalf("GET a{}b: %d %s, want 400", code, body)
	}
}
