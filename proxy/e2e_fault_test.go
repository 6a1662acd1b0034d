package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// These tests break the backend under load — freeze it, reset its connections, fill it, shut qgate down
// while it is frozen — and account for every item: each one is delivered exactly once or still in its
// list once the dust has settled (delivered ∪ in Redis = everything pushed).

// faultLedger records deliveries.
type faultLedger struct {
	mu  sync.Mutex
	got map[string]int
	n   atomic.Int64
}

func newFaultLedger() *faultLedger { return &faultLedger{got: map[string]int{}} }

func (l *faultLedger) add(v string) {
	l.mu.Lock()
	l.got[v]++
	l.mu.Unlock()
	l.n.Add(1)
}

// faultItems returns n distinct items.
func faultItems(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

// faultPush pushes items straight into Redis (RPUSH, in batches).
func faultPush(t *testing.T, direct *redis.Client, key string, items []string) {
	t.Helper()
	for i := 0; i < len(items); i += 500 {
		vals := make([]interface{}, 0, 500)
		for _, v := range items[i:min(i+500, len(items))] {
			vals = append(vals, v)
		}
		if err := direct.RPush(context.Background(), key, vals...).Err(); err != nil {
			t.Fatalf("RPUSH: %v", err)
		}
	}
}

// faultAccount waits until every item is delivered or back in key (and no transit record of key is
// left), then checks that each item is in exactly one place, once. Consumers must have stopped.
func faultAccount(t *testing.T, direct *redis.Client, key string, items []string, l *faultLedger) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := direct.LLen(ctx, key).Result()
		transit := faultInTransit(t, direct, key)
		if err == nil && n+l.n.Load() >= int64(len(items)) && transit == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("items not accounted for after 60s: delivered %d, in list %d (err %v), in transit records %d, of %d",
				l.n.Load(), n, err, transit, len(items))
		}
		time.Sleep(10 * time.Millisecond)
	}
	rest, err := direct.LRange(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	where := map[string]int{}
	for v, n := range l.got {
		where[v] += n
		if n > 1 {
			t.Errorf("item %s delivered %d times", v, n)
		}
	}
	for _, v := range rest {
		where[v]++
	}
	missing, extra := 0, 0
	for _, v := range items {
		switch where[v] {
		case 0:
			missing++
			if missing <= 5 {
				t.Errorf("item %s LOST: neither delivered nor in the list", v)
			}
		case 1:
		default:
			extra++
			if extra <= 5 {
				t.Errorf("item %s is both delivered and in the list (%d copies)", v, where[v])
			}
		}
	}
	if missing > 0 || extra > 0 {
		t.Fatalf("%d items lost, %d duplicated (delivered %d, in list %d, of %d)", missing, extra, len(l.got), len(rest), len(items))
	}
	t.Logf("accounted for %d items: %d delivered, %d still in the list", len(items), len(l.got), len(rest))
}

// faultInTransit counts the items in every instance's transit record of key.
func faultInTransit(t *testing.T, direct *redis.Client, key string) int64 {
	ctx := context.Background()
	owners, err := direct.SMembers(ctx, rdb.TransitOwnersKey(key)).Result()
	if err != nil {
		t.Errorf("SMEMBERS: %v", err)
		return -1
	}
	var n int64
	for _, o := range owners {
		m, err := direct.HLen(ctx, rdb.TransitKey(key, o)).Result()
		if err != nil {
			t.Errorf("HLEN: %v", err)
			return -1
		}
		n += m
	}
	return n
}

// faultConsumerClient is a client that waits as long as qgate takes (as a plain Redis client does).
func faultConsumerClient(t *testing.T, q *proxytest.Qgate) *redis.Client {
	return q.Client(t, func(o *redis.Options) {
		o.ReadTimeout = -1
		o.MaxRetries = -1
		o.PoolSize = 1
	})
}

// faultConsumers starts n consumers popping count items at a time (LPOP key [count]) through q into l,
// each on its own connection; stop ends them and waits. errs counts the pops that failed.
func faultConsumers(t *testing.T, q *proxytest.Qgate, n int, key string, count int, l *faultLedger) (stop func(), errs *atomic.Int64) {
	errs = new(atomic.Int64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c := faultConsumerClient(t, q)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				v, err := c.LPopCount(context.Background(), key, count).Result()
				switch {
				case err == nil:
					for _, x := range v {
						l.add(x)
					}
				case err == redis.Nil:
					time.Sleep(2 * time.Millisecond) // an idle worker's poll interval
				default:
					errs.Add(1)
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }, errs
}

// TestFreeze_PopsUnderLoadLoseNothing freezes Redis (SIGSTOP) while 8 consumers pop through qgate:
// with no backend read timeout (the default) the consumers wait the stall out; with one, their pops
// fail as of unknown outcome and the items those pops took are given back when Redis resumes.
func TestFreeze_PopsUnderLoadLoseNothing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		blocking bool
		freeze   time.Duration
		readTmo  time.Duration
	}{
		{"LPOP/6s/wait", false, 6 * time.Second, 0},
		{"LPOP/6s/read-timeout-1s", false, 6 * time.Second, time.Second},
		{"BLPOP/6s/wait", true, 6 * time.Second, 0},
		{"LPOP/30s/read-timeout-1s", false, 30 * time.Second, time.Second},
		{"BLPOP/30s/read-timeout-1s", true, 30 * time.Second, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := e2eStart(t, func(c *proxy.Config) { c.BackendReadTimeout = tc.readTmo })
			const n, consumers = 3000, 8
			items := faultItems("job", n)
			key := "jobs"
			l := newFaultLedger()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := 0; i < consumers; i++ {
				c := faultConsumerClient(t, e.Qgate)
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if tc.blocking {
							v, err := c.BLPop(ctx, 200*time.Millisecond, key).Result()
							if err == nil {
								l.add(v[1])
							}
							continue
						}
						v, err := c.LPop(ctx, key).Result()
						switch {
						case err == nil:
							l.add(v)
						case err == redis.Nil:
							time.Sleep(2 * time.Millisecond) // an idle worker's poll interval
						}
					}
				}()
			}
			if tc.blocking {
				e2eEventually(t, "consumers blocked", func() bool { return e.Qgate.Server.Stats().BlockedClients == consumers })
			}
			// Items arrive while the consumers work; Redis freezes a third of the way through.
			pushed := make(chan struct{})
			go func() {
				defer close(pushed)
				for i := 0; i < len(items); i += 100 {
					vals := make([]interface{}, 0, 100)
					for _, v := range items[i:min(i+100, len(items))] {
						vals = append(vals, v)
					}
					if err := e.Direct.RPush(context.Background(), key, vals...).Err(); err != nil {
						t.Errorf("RPUSH: %v", err)
						return
					}
				}
			}()
			e2eEventually(t, "a third delivered", func() bool { return l.n.Load() >= n/3 })
			e.Redis.Freeze()
			time.Sleep(tc.freeze) // the stall being tested
			e.Redis.Thaw()
			<-pushed
			// Consumers stop before the count: a pop in flight would be in neither place.
			close(stop)
			wg.Wait()
			faultAccount(t, e.Direct, key, items, l)
		})
	}
}

// TestReset_BackendConnectionsKilledDuringPops kills qgate's backend connections (CLIENT KILL) again and
// again while 16 consumers pop: replies on a killed connection are lost, the items those pops took are
// given back.
func TestReset_BackendConnectionsKilledDuringPops(t *testing.T) {
	e := e2eStart(t)
	const n, consumers = 5000, 16
	items := faultItems("job", n)
	faultPush(t, e.Direct, "jobs", items)
	l := newFaultLedger()
	stop, errs := faultConsumers(t, e.Qgate, consumers, "jobs", 3, l)
	ctx := context.Background()
	for i := 0; i < 30 && l.n.Load() < n; i++ {
		e2eEventually(t, "progress", func() bool { return l.n.Load() >= int64(i*n/40) })
		_ = e.Direct.Do(ctx, "client", "kill", "type", "normal", "skipme", "yes").Err()
	}
	stop()
	faultAccount(t, e.Direct, "jobs", items, l)
	t.Logf("%d pops failed on killed connections", errs.Load())
}

// TestOversizedPush_RefusedBeforeItCanResetOthersPops: a value whose stored form (its envelope) is over
// the backend's proto-max-bulk-len is refused by qgate, so Redis never drops the shared connection
// that 16 other clients' pops are pipelined on.
func TestOversizedPush_RefusedBeforeItCanResetOthersPops(t *testing.T) {
	r := proxytest.StartRedis(t, "--proto-max-bulk-len", "1mb")
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.Queues = []policy.Rule{{Match: "big", Envelope: new(true)}}
	q := proxytest.StartQgate(t, cfg)
	direct := r.Client(t)
	const n, consumers = 4000, 16
	items := faultItems("job", n)
	faultPush(t, direct, "jobs", items)
	l := newFaultLedger()
	stop, _ := faultConsumers(t, q, consumers, "jobs", 1, l)
	producer := q.Client(t)
	big := strings.Repeat("\xff", 900<<10) // 900 KiB: under the limit raw, 1.2 MB as base64 in its envelope
	for i := 0; i < 20; i++ {
		err := producer.RPush(context.Background(), "big", big).Err()
		if err == nil || !strings.Contains(err.Error(), "too large for the backend") || !strings.Contains(err.Error(), "proto-max-bulk-len of 1048576") {
			t.Fatalf("RPUSH of a 900 KiB value whose envelope is 1.2 MB = %v; want qgate's too-large error", err)
		}
	}
	if got, err := producer.RPush(context.Background(), "jobs-small", strings.Repeat("x", 900<<10)).Result(); err != nil || got != 1 {
		t.Fatalf("RPUSH of a 900 KiB value without envelope = %d, %v; want 1", got, err)
	}
	stop()
	faultAccount(t, direct, "jobs", items, l)
}

// TestOOM_UndeliveredItemsGoBack fills Redis to maxmemory (noeviction) and pops with clients that
// half-close at once: qgate cannot write their replies and must put the items back, which an
// out-of-memory Redis refuses for ordinary pushes.
func TestOOM_UndeliveredItemsGoBack(t *testing.T) {
	e := e2eStart(t)
	ctx := context.Background()
	const n = 5
	items := faultItems("job", n)
	faultPush(t, e.Direct, "jobs", items)
	faultFill(t, e.Direct)
	received := 0
	for i := 0; i < n; i++ {
		nc, err := net.Dial("tcp", e.Qgate.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write([]byte("LPOP jobs\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = nc.(*net.TCPConn).CloseWrite()
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, _ := io.ReadAll(nc)
		_ = nc.Close()
		if len(got) > 0 {
			received++
		}
	}
	if got, want := e.Qgate.Server.Stats().LostItems, int64(0); got != want {
		t.Fatalf("lost_items = %d, want %d", got, want)
	}
	left, err := e.Direct.LLen(ctx, "jobs").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := int(left)+received, n; got != want {
		t.Fatalf("items in the list (%d) + received (%d) = %d, want %d", left, received, got, want)
	}
	if e.Qgate.Server.Stats().ReturnedItems == 0 {
		t.Fatalf("no item was returned (received %d of %d): the test did not exercise the return path", received, n)
	}
}

// faultFill sets maxmemory just above what Redis uses and fills it until writes fail with OOM.
func faultFill(t *testing.T, direct *redis.Client) {
	t.Helper()
	ctx := context.Background()
	info, err := direct.InfoMap(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	used, _ := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	if err := direct.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := direct.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+2<<20, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("p", 64<<10)
	for i := 0; ; i++ {
		err := direct.RPush(ctx, "filler", pad).Err()
		if err != nil && strings.HasPrefix(err.Error(), "OOM") {
			return
		}
		if err != nil || i > 10000 {
			t.Fatalf("filling Redis: %v after %d pushes", err, i)
		}
	}
}

// TestShutdown_FrozenBackendIsBounded sends SIGTERM's shutdown while Redis is frozen with 20 pops in
// flight and 20 clients blocked: it ends within shutdown_timeout without an error, the blocked clients
// are disconnected without a reply, and once Redis resumes another instance gives back the items the
// stuck pops took.
func TestShutdown_FrozenBackendIsBounded(t *testing.T) {
	r := proxytest.StartRedis(t)
	direct := r.Client(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.ShutdownTimeout = 3 * time.Second
	cfg.InstanceTTL = 2 * time.Second
	q, err := proxytest.LaunchQgate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	items := faultItems("job", n)
	faultPush(t, direct, "work", items)
	var blocked []net.Conn
	for i := 0; i < 20; i++ {
		blocked = append(blocked, faultRaw(t, q.Addr, "BLPOP idle 0\r\n"))
	}
	e2eEventually(t, "20 blocked", func() bool { return q.Server.Stats().BlockedClients == 20 })
	// One pop before the freeze registers the queue (a first pop of a queue writes to Redis first).
	first, err := q.Client(t).LPop(context.Background(), "work").Result()
	if err != nil || first != items[0] {
		t.Fatalf("LPOP before the freeze = %q, %v", first, err)
	}
	// The delivered item's record is deleted before the freeze: deleted after it, the delete may not
	// reach Redis before the shutdown (the kill -9 window of README "What survives which failure").
	e2eEventually(t, "the delivered pop's record deleted", func() bool { return faultInTransit(t, direct, "work") == 0 })
	// Counted from here: the client above also sent its connection handshake (HELLO, CLIENT SETINFO).
	sent := q.Server.Stats().TotalCommands
	r.Freeze()
	defer r.Thaw()
	var popping []net.Conn
	for i := 0; i < 20; i++ {
		popping = append(popping, faultRaw(t, q.Addr, "LPOP work\r\n"))
	}
	e2eEventually(t, "20 pops read", func() bool { return q.Server.Stats().TotalCommands >= sent+20 })
	start := time.Now()
	err = q.Server.Shutdown(context.Background())
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Shutdown() = %v, want nil (nothing is lost)", err)
	}
	if took > cfg.ShutdownTimeout+500*time.Millisecond {
		t.Fatalf("Shutdown took %s, want at most shutdown_timeout %s", took, cfg.ShutdownTimeout)
	}
	for i, nc := range blocked {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(nc)
		if len(got) > 0 || err != nil {
			t.Fatalf("blocked client %d got %q, %v; want EOF without a reply", i, got, err)
		}
	}
	received := 1
	for _, nc := range popping {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(nc)
		if strings.HasPrefix(string(got), "$") && !strings.HasPrefix(string(got), "$-1") {
			received++
		}
	}
	r.Thaw()
	// Another instance finds the stopped one's records and gives the items back.
	proxytest.StartQgate(t, cfg) // another instance, to recover what the stopped one left
	l := newFaultLedger()
	faultAccountN(t, direct, "work", items, l, n-received)
	// The stuck pops did run once Redis resumed (Redis counts the LPOPs its scripts ran), and yet
	// every item is back: from the stopped instance's own late give-back (its abandoned connections got
	// their replies) or from q2's recovery.
	stats, err := direct.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, line := range strings.Split(stats, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_lpop:calls="); ok {
			calls, _ = strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
		}
	}
	// Pops grouped in one script call are one LPOP … COUNT k in Redis (proxy/DESIGN.md "The transit
	// record"), so the stuck pops show as at least one call after the one before the freeze.
	if calls < 2 {
		t.Fatalf("Redis ran %d LPOP calls, want at least 2 (one before the freeze, the stuck pops after it)", calls)
	}
}

// faultAccountN waits until want items are back in key and checks that they are distinct items.
func faultAccountN(t *testing.T, direct *redis.Client, key string, items []string, _ *faultLedger, want int) {
	t.Helper()
	var n, transit int64
	deadline := time.Now().Add(e2eWaitBound)
	for {
		var err error
		n, err = direct.LLen(context.Background(), key).Result()
		transit = faultInTransit(t, direct, key)
		if err == nil && n == int64(want) && transit == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %d items back in %s: %d in the list (%v), %d in transit", e2eWaitBound, want, key, n, err, transit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rest, _ := direct.LRange(context.Background(), key, 0, -1).Result()
	seen := map[string]bool{}
	for _, v := range rest {
		if seen[v] {
			t.Fatalf("item %s twice in the list", v)
		}
		seen[v] = true
	}
	sort.Strings(rest)
	if want == len(items) && strings.Join(rest, ",") != strings.Join(items, ",") {
		t.Fatalf("list holds %v, want every item once", rest)
	}
}

// faultRaw opens a raw connection to addr and sends cmd.
func faultRaw(t *testing.T, addr, cmd string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	if _, err := nc.Write([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	return nc
}

// TestShutdown_BlockedClientsAreDisconnectedWithoutReply: a client blocked in BLPOP q 0 never gets a
// nil reply (a timeout it did not ask for) at shutdown; its connection is closed, as Redis does.
func TestShutdown_BlockedClientsAreDisconnectedWithoutReply(t *testing.T) {
	for _, hello := range []string{"", "HELLO 3\r\n"} {
		name := "RESP2"
		if hello != "" {
			name = "RESP3"
		}
		t.Run(name, func(t *testing.T) {
			r := proxytest.StartRedis(t)
			cfg := proxy.DefaultConfig()
			cfg.Backend = r.URL()
			q, err := proxytest.LaunchQgate(cfg)
			if err != nil {
				t.Fatal(err)
			}
			nc := faultRaw(t, q.Addr, hello+"BLPOP q 0\r\n")
			if hello != "" {
				buf := make([]byte, 4096)
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := nc.Read(buf); err != nil { // the HELLO map
					t.Fatal(err)
				}
			}
			e2eEventually(t, "blocked", func() bool { return q.Server.Stats().BlockedClients == 1 })
			if err := q.Server.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(nc)
			if len(got) > 0 || err != nil {
				t.Fatalf("blocked client got %q, %v; want EOF without a reply", got, err)
			}
		})
	}
}

// TestTransit_DeadInstanceRecordIsGivenBack: items an instance popped but never delivered (it was
// killed) are in its transit record; a live instance's reaper puts them back at the head of the queue,
// in their original order, once the dead one's heartbeat is older than instance_ttl.
func TestTransit_DeadInstanceRecordIsGivenBack(t *testing.T) {
	r := proxytest.StartRedis(t)
	direct := r.Client(t)
	ctx := context.Background()
	items := faultItems("job", 10)
	faultPush(t, direct, "q", items)
	// A "killed" instance popped 3 items (LPOP, COUNT 3) and 1 (RPOP), then died without a heartbeat.
	const dead = "deadbeef0001"
	if err := rdb.TransitPop.Run(ctx, direct, rdb.TransitKeys("q", dead), "LPOP", "3", "L1.", dead).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.TransitPop.Run(ctx, direct, rdb.TransitKeys("q", dead), "RPOP", "", "R2.", dead).Err(); err != nil {
		t.Fatal(err)
	}
	if err := direct.ZAdd(ctx, rdb.LeasedQueuesKey, redis.Z{Score: float64(time.Now().UnixMilli()), Member: "q"}).Err(); err != nil {
		t.Fatal(err)
	}
	// Its last heartbeat is a minute old (a live instance's record on another queue must stay).
	if err := direct.ZAdd(ctx, rdb.InstancesKey, redis.Z{Score: float64(time.Now().Add(-time.Minute).UnixMilli()), Member: dead}).Err(); err != nil {
		t.Fatal(err)
	}
	if got, _ := direct.LLen(ctx, "q").Result(); got != 6 {
		t.Fatalf("LLEN after the dead instance's pops = %d, want 6", got)
	}
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.InstanceTTL = time.Second
	q := proxytest.StartQgate(t, cfg)
	e2eEventually(t, "the dead instance's items back", func() bool {
		n, _ := direct.LLen(ctx, "q").Result()
		return n == 10
	})
	got, err := direct.LRange(ctx, "q", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != strings.Join(items, ",") {
		t.Fatalf("queue after recovery = %v, want the original order %v", got, items)
	}
	if exists, _ := direct.Exists(ctx, rdb.TransitKey("q", dead), rdb.TransitOwnersKey("q")).Result(); exists != 0 {
		t.Fatalf("transit keys left after recovery: %d", exists)
	}
	if got := q.Server.Stats().RecoveredItems; got != 4 {
		t.Fatalf("recovered_items = %d, want 4", got)
	}
}

// TestPush_UnknownOutcomeSaysSo: a push whose reply is lost (Redis frozen past the read timeout) is
// reported as "may have been applied", never as a plain failure.
func TestPush_UnknownOutcomeSaysSo(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) { c.BackendReadTimeout = 300 * time.Millisecond })
	c := faultConsumerClient(t, e.Qgate)
	e.Redis.Freeze()
	err := c.RPush(context.Background(), "q", "x").Err()
	e.Redis.Thaw()
	if err == nil || !strings.Contains(err.Error(), "the push may have been applied") {
		t.Fatalf("RPUSH during a stall = %v; want an error saying the push may have been applied", err)
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		t.Fatalf("RPUSH error %v is not an error reply", err)
	}
}

// TestTransit_LiveInstanceRecordIsKept: an instance never gives back the record of another instance
// that is alive (its items may be on their way to a client), and takes it over once that instance
// stopped.
func TestTransit_LiveInstanceRecordIsKept(t *testing.T) {
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
	b := proxytest.StartQgate(t, cfg)
	items := faultItems("job", 4)
	faultPush(t, direct, "q", items)
	// Instance a has popped two items (as if their replies were being written).
	inst := a.Server.Stats().Instance
	if err := rdb.TransitPop.Run(ctx, direct, rdb.TransitKeys("q", inst), "LPOP", "2", "L1.", inst).Err(); err != nil {
		t.Fatal(err)
	}
	if err := direct.ZAdd(ctx, rdb.LeasedQueuesKey, redis.Z{Score: float64(time.Now().UnixMilli()), Member: "q"}).Err(); err != nil {
		t.Fatal(err)
	}
	// Five instance TTLs of b's reaper passes: a beats, so its record stays.
	passes := 0
	deadline := time.Now().Add(5 * cfg.InstanceTTL)
	for time.Now().Before(deadline) {
		if _, err := b.Server.Reap(ctx); err != nil {
			t.Fatal(err)
		}
		passes++
		time.Sleep(50 * time.Millisecond) // between reaper passes, as the reaper itself does
	}
	if n, _ := direct.HLen(ctx, rdb.TransitKey("q", inst)).Result(); n != 2 {
		t.Fatalf("a live instance's record holds %d items after %d reaper passes of another instance, want 2", n, passes)
	}
	if got := b.Server.Stats().RecoveredItems; got != 0 {
		t.Fatalf("recovered_items = %d while the owner is alive, want 0", got)
	}
	// a stops: its record (not of its own pops, so its last sweep leaves it) goes back via b.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	e2eEventually(t, "a's items back", func() bool {
		_, _ = b.Server.Reap(ctx)
		n, _ := direct.LLen(ctx, "q").Result()
		return n == 4
	})
	got, _ := direct.LRange(ctx, "q", 0, -1).Result()
	if strings.Join(got, ",") != strings.Join(items, ",") {
		t.Fatalf("queue = %v, want %v", got, items)
	}
}

// TestTransit_IdleQueueForgotten: a queue popped at most once joins the reapers' set (so a dead
// instance's record there is found) and leaves it once idle, although its live instance stays an owner.
func TestTransit_IdleQueueForgotten(t *testing.T) {
	e := e2eStart(t)
	e.Qgate.Server.SetLeasedQueueTTL(time.Millisecond)
	ctx := context.Background()
	c := e.Qgate.Client(t)
	if err := e.Direct.RPush(ctx, "plain", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.LPop(ctx, "plain").Result(); err != nil || v != "x" {
		t.Fatalf("LPOP = %q, %v", v, err)
	}
	reg := rdb.ScheduleRegistryKey(rdb.ScheduleShard("plain"))
	listed := func() bool { return e.Direct.ZScore(ctx, reg, "plain").Err() == nil }
	if !listed() {
		t.Fatal("queue not registered after an at-most-once pop")
	}
	e2eEventually(t, "idle queue dropped", func() bool {
		_, _ = e.Qgate.Server.Reap(ctx)
		return !listed()
	})
}
