package proxy_test

import (
	"bufio"
	"context"
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
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// Fault tests of global_fifo (README "Blocked pops across instances", proxy/DESIGN.md "Global FIFO"):
// they try to break its promises — nothing lost or duplicated, a stall delays the queue by about one
// grace (250 ms) per stall event, ended waits leave no place behind, bad inputs answered as Redis does —
// with many consumers on several instances, a frozen Redis, killed backend connections, a stopped
// instance and stale places of a dead one.

// fifoGrace is the engine's grace (proxy/queue/fifo.go), used only to size the bounds below.
const fifoGrace = 250 * time.Millisecond

// fifoLedger records what the workers received: deliveries per item and per worker, and anything a
// worker did not expect (an error reply, a failed QACK).
type fifoLedger struct {
	mu   sync.Mutex
	got  map[string]int
	by   map[int]int
	errs []string
	n    atomic.Int64
}

func newFifoLedger() *fifoLedger { return &fifoLedger{got: map[string]int{}, by: map[int]int{}} }

func (l *fifoLedger) add(who int, v string) {
	l.mu.Lock()
	l.got[v]++
	l.by[who]++
	l.mu.Unlock()
	l.n.Add(1)
}

func (l *fifoLedger) fail(format string, args ...any) {
	l.mu.Lock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *fifoLedger) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

func (l *fifoLedger) perWorker() map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]int{}
	for k, v := range l.by {
		out[k] = v
	}
	return out
}

// fifoCmd encodes a command as a RESP array.
func fifoCmd(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// fifoErrReply is an error reply read by fifoReadReply.
type fifoErrReply string

// fifoReadReply reads one RESP2 reply: string, fifoErrReply, int64, nil or []any.
func fifoReadReply(rd *bufio.Reader) (any, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 {
		return nil, fmt.Errorf("short reply line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return fifoErrReply(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = fifoReadReply(rd); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply line %q", line)
}

// fifoValues returns the items of a blocked pop's reply: BLPOP's [key value], BLMPOP's [key [values]],
// BLMOVE's value; none for a nil reply (timeout).
func fifoValues(r any) ([]string, error) {
	switch r := r.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{r}, nil
	case fifoErrReply:
		return nil, fmt.Errorf("error reply %q", string(r))
	case []any:
		if len(r) == 2 {
			switch v := r[1].(type) {
			case string:
				return []string{v}, nil
			case []any:
				out := make([]string, 0, len(v))
				for _, x := range v {
					s, ok := x.(string)
					if !ok {
						return nil, fmt.Errorf("unexpected element %#v", x)
					}
					out = append(out, s)
				}
				return out, nil
			}
		}
	}
	return nil, fmt.Errorf("unexpected reply %#v", r)
}

// fifoWorker is a client running one blocked-pop command in a loop on its own connection (RESP2),
// recording each item it gets; with qack it receives envelopes (QDELIVERY envelope) and acks each pop
// with QACK before the next. It ends when its connection closes (stop, or the server closed it).
type fifoWorker struct {
	nc   net.Conn
	done chan struct{}
}

func (w *fifoWorker) stop() {
	_ = w.nc.Close()
	<-w.done
}

// startFifoWorker starts worker who on addr looping on cmd (the queue is cmd's key for QACK).
func startFifoWorker(t *testing.T, addr string, who int, l *fifoLedger, qack string, cmd ...string) *fifoWorker {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	w := &fifoWorker{nc: nc, done: make(chan struct{})}
	t.Cleanup(w.stop)
	go func() {
		defer close(w.done)
		rd := bufio.NewReader(nc)
		if qack != "" {
			if _, err := nc.Write(fifoCmd("QDELIVERY", "envelope")); err != nil {
				return
			}
			if r, err := fifoReadReply(rd); err != nil || r != "OK" {
				l.fail("worker %d: QDELIVERY envelope = %#v, %v", who, r, err)
				return
			}
		}
		req := fifoCmd(cmd...)
		for {
			if _, err := nc.Write(req); err != nil {
				return
			}
			r, err := fifoReadReply(rd)
			if err != nil {
				return
			}
			vals, err := fifoValues(r)
			if err != nil {
				l.fail("worker %d: %v: %v", who, cmd, err)
				return
			}
			if qack == "" {
				for _, v := range vals {
					l.add(who, v)
				}
				continue
			}
			ack := []string{"QACK", qack}
			for _, v := range vals {
				env, ok := envelope.Decode([]byte(v))
				if !ok || env.Receipt == "" {
					l.fail("worker %d: not an envelope with a receipt: %q", who, v)
					return
				}
				ack = append(ack, env.Receipt)
				l.add(who, string(env.Payload))
			}
			if len(vals) == 0 {
				continue
			}
			if _, err := nc.Write(fifoCmd(ack...)); err != nil {
				return
			}
			r, err = fifoReadReply(rd)
			if err != nil {
				return
			}
			if n, ok := r.(int64); !ok || n != int64(len(vals)) {
				l.fail("worker %d: QACK of %d receipts = %#v", who, len(vals), r)
			}
		}
	}()
	return w
}

// fifoNames returns n distinct items.
func fifoNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

// fifoRPush pushes vals with one RPUSH.
func fifoRPush(ctx context.Context, c redis.Cmdable, queue string, vals []string) error {
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	return c.RPush(ctx, queue, args...).Err()
}

// fifoHeld counts what Redis still holds of queue outside its list: items in transit records and
// leases.
func fifoHeld(t *testing.T, direct *redis.Client, queue string) (transit, leased int64) {
	t.Helper()
	ctx := context.Background()
	owners, err := direct.SMembers(ctx, rdb.TransitOwnersKey(queue)).Result()
	if err != nil {
		t.Fatalf("SMEMBERS transit owners: %v", err)
	}
	for _, o := range owners {
		transit += direct.HLen(ctx, rdb.TransitKey(queue, o)).Val()
	}
	return transit, direct.HLen(ctx, rdb.LeasesKey(queue)).Val()
}

// fifoAccount waits (up to bound) until every item was delivered, then checks that each was
// delivered exactly once and that nothing of queue is left in its list or in transit records; leases
// left are at most maxLeased (ack: next-pop holds each worker's last pop until its next one). On a
// timeout it says where the missing items are.
func fifoAccount(t *testing.T, direct *redis.Client, queue string, items []string, l *fifoLedger, bound time.Duration, maxLeased int64) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for l.n.Load() < int64(len(items)) {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, e := range l.errors() {
		t.Errorf("worker: %s", e)
	}
	ctx := context.Background()
	rest, err := direct.LRange(ctx, queue, 0, -1).Result()
	if err != nil {
		t.Fatalf("LRANGE %s: %v", queue, err)
	}
	inList := map[string]int{}
	for _, v := range rest {
		inList[envelope.Payload(v)]++
	}
	transit, leased := fifoHeld(t, direct, queue)
	var missing, dups []string
	l.mu.Lock()
	for _, v := range items {
		switch n := l.got[v]; {
		case n == 0:
			missing = append(missing, v)
		case n > 1:
			dups = append(dups, fmt.Sprintf("%s×%d", v, n))
		}
	}
	distinct := len(l.got)
	l.mu.Unlock()
	if distinct > len(items) {
		t.Errorf("%d distinct values delivered, %d pushed: something delivered was never pushed", distinct, len(items))
	}
	sort.Strings(dups)
	if len(dups) > 0 {
		t.Errorf("%d items delivered more than once: %v", len(dups), dups[:min(len(dups), 10)])
	}
	if len(missing) > 0 {
		inside := 0
		for _, v := range missing {
			inside += inList[v]
		}
		t.Fatalf("%d of %d items not delivered within %s (%d of them still in the list; %d items in transit records, %d leased; %d in the list in all): first %v",
			len(missing), len(items), bound, inside, transit, leased, len(rest), missing[:min(len(missing), 10)])
	}
	if len(rest) > 0 {
		t.Fatalf("every item delivered, yet %d items in the list", len(rest))
	}
	// Delivered pops' transit records are deleted after their replies are written, in batches.
	deadline = time.Now().Add(e2eWaitBound)
	for transit > 0 || leased > maxLeased {
		if time.Now().After(deadline) {
			t.Fatalf("every item delivered, yet %d items in transit records, %d leased (at most %d may be) after %s", transit, leased, maxLeased, e2eWaitBound)
		}
		time.Sleep(5 * time.Millisecond)
		transit, leased = fifoHeld(t, direct, queue)
	}
}

// fifoPlaces counts queue's places ({queue}:qgate:waiters).
func fifoPlaces(t *testing.T, direct *redis.Client, queue string) int64 {
	t.Helper()
	n, err := direct.ZCard(context.Background(), rdb.WaitersKey(queue)).Result()
	if err != nil {
		t.Fatalf("ZCARD waiters: %v", err)
	}
	return n
}

// fifoWaitPlaces waits until queue has want places, and fails with the members if it never does.
func fifoWaitPlaces(t *testing.T, direct *redis.Client, queue string, want int64, why string) {
	t.Helper()
	deadline := time.Now().Add(e2eWaitBound)
	for fifoPlaces(t, direct, queue) != want {
		if time.Now().After(deadline) {
			m, _ := direct.ZRangeWithScores(context.Background(), rdb.WaitersKey(queue), 0, -1).Result()
			t.Fatalf("%s: %d places after %s, want %d: %v", why, len(m), e2eWaitBound, want, m)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fifoBlocked waits until each instance has want blocked clients.
func fifoBlocked(t *testing.T, want int, qs ...*proxytest.Qgate) {
	t.Helper()
	for i, q := range qs {
		e2eEventually(t, fmt.Sprintf("instance %d: %d blocked clients", i, want), func() bool {
			return q.Server.Stats().BlockedClients == want
		})
	}
}

// fifoStart starts a redis-server and n qgate instances on it with rule.
func fifoStart(t *testing.T, n int, rule policy.Rule, tweak ...func(*proxy.Config)) (*proxytest.Redis, *redis.Client, []*proxytest.Qgate) {
	t.Helper()
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.Queues = []policy.Rule{rule}
	for _, f := range tweak {
		f(&cfg)
	}
	qs := make([]*proxytest.Qgate, n)
	for i := range qs {
		qs[i] = proxytest.StartQgate(t, cfg)
	}
	return r, r.Client(t), qs
}

// fifoProbe pushes one item at a time (each once the workers are blocked again) and returns the
// longest push → delivery time; it waits for n deliveries beyond those already counted.
func fifoProbe(t *testing.T, via redis.Cmdable, queue string, l *fifoLedger, n int, wait func()) (longest time.Duration) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		wait()
		before := l.n.Load()
		start := time.Now()
		if err := via.RPush(ctx, queue, fmt.Sprintf("probe-%05d", i)).Err(); err != nil {
			t.Fatalf("RPUSH probe: %v", err)
		}
		e2eEventually(t, fmt.Sprintf("probe %d delivered", i), func() bool { return l.n.Load() > before })
		longest = max(longest, time.Since(start))
	}
	return longest
}

// TestGlobalFIFO_Fault_BurstsManyConsumersExactlyOnce: 48 consumers over 3 instances and 3 producers
// (one per instance) pushing bursts of 1–5 values with one RPUSH each, 2,000 items: each delivered
// exactly once, every consumer served, no grace paid per item (the run takes seconds, not 2,000 ×
// 250 ms), and once idle again the waiters set holds exactly the 48 live waits. At-most-once,
// at-least-once with QACK after each pop, and at-least-once with ack: next-pop.
func TestGlobalFIFO_Fault_BurstsManyConsumersExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule policy.Rule
		qack bool
	}{
		{"at-most-once", policy.Rule{Match: "jobs", GlobalFIFO: true}, false},
		{"at-least-once QACK", policy.Rule{Match: "jobs", GlobalFIFO: true, Delivery: "at-least-once"}, true},
		{"at-least-once next-pop", policy.Rule{Match: "jobs", GlobalFIFO: true, Delivery: "at-least-once", Ack: "next-pop"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const queue, instances, perInstance, n = "jobs", 3, 16, 2000
			_, direct, qs := fifoStart(t, instances, tc.rule)
			l := newFifoLedger()
			qack := ""
			if tc.qack {
				qack = queue
			}
			for i := range instances * perInstance {
				startFifoWorker(t, qs[i%instances].Addr, i, l, qack, "BLPOP", queue, "0")
			}
			fifoBlocked(t, perInstance, qs...)
			fifoWaitPlaces(t, direct, queue, instances*perInstance, "all consumers waiting")
			items := fifoNames("burst", n)
			start := time.Now()
			var wg sync.WaitGroup
			for p := range instances {
				c := qs[p].Client(t)
				wg.Add(1)
				go func() {
					defer wg.Done()
					var mine []string
					for i := p; i < n; i += instances {
						mine = append(mine, items[i])
					}
					for i, size := 0, 1; i < len(mine); i, size = i+size, size%5+1 {
						if err := fifoRPush(context.Background(), c, queue, mine[i:min(i+size, len(mine))]); err != nil {
							l.fail("producer %d: RPUSH: %v", p, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			maxLeased := int64(0)
			if tc.rule.Ack == "next-pop" {
				maxLeased = instances * perInstance
			}
			fifoAccount(t, direct, queue, items, l, 60*time.Second, maxLeased)
			took := time.Since(start)
			by := l.perWorker()
			low, high := n, 0
			for i := range instances * perInstance {
				low, high = min(low, by[i]), max(high, by[i])
			}
			var dropped, later int64
			for _, q := range qs {
				dropped += q.Server.Stats().FIFODropped
				later += q.Server.Stats().Wait.LaterTakes
			}
			t.Logf("FIGURE global_fifo_bursts_%s items=%d consumers=%d took=%s per_consumer=%d..%d dropped_places=%d later_takes=%d",
				strings.ReplaceAll(tc.name, " ", "_"), n, instances*perInstance, took.Round(time.Millisecond), low, high, dropped, later)
			if low == 0 {
				t.Errorf("a consumer got nothing of %d items (per consumer %v)", n, by)
			}
			if took > 30*time.Second {
				t.Errorf("%d items took %s to deliver, want well under 30s (a grace paid per item would be %s)", n, took, time.Duration(n)*fifoGrace)
			}
			fifoBlocked(t, perInstance, qs...)
			fifoWaitPlaces(t, direct, queue, instances*perInstance, "idle again: one place per live wait")
		})
	}
}

// TestGlobalFIFO_Fault_RedisFrozen: Redis is frozen (SIGSTOP) three times for 600 ms while 20
// consumers on 2 instances wait and a producer pushes bursts straight into Redis. After the thaws every
// item is delivered exactly once; single items pushed afterwards are each delivered within a grace and
// change; the waiters set is back to the 20 live waits. Without a backend read timeout (the default:
// qgate waits the stall out) and with 200 ms (takes, turns and removals fail meanwhile: outcomes unknown,
// removals lost); and at-least-once with a QACK after each pop (items pushed through qgate, which
// gives them the envelopes that carry receipts).
func TestGlobalFIFO_Fault_RedisFrozen(t *testing.T) {
	for _, tc := range []struct {
		name    string
		readTmo time.Duration
		lease   bool // at-least-once, QACK after each pop; items pushed through qgate (for receipts)
	}{
		{"wait", 0, false},
		{"read-timeout-200ms", 200 * time.Millisecond, false},
		{"wait at-least-once QACK", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const queue, per, n = "jobs", 10, 600
			rule := policy.Rule{Match: queue, GlobalFIFO: true}
			qack := ""
			if tc.lease {
				rule.Delivery, qack = "at-least-once", queue
			}
			r, direct, qs := fifoStart(t, 2, rule, func(c *proxy.Config) {
				c.BackendReadTimeout = tc.readTmo
			})
			t.Cleanup(r.Thaw)
			l := newFifoLedger()
			for i := range 2 * per {
				startFifoWorker(t, qs[i%2].Addr, i, l, qack, "BLPOP", queue, "0")
			}
			fifoBlocked(t, per, qs...)
			addr := r.Addr
			if tc.lease {
				addr = qs[0].Addr
			}
			producer := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: -1, MaxRetries: -1, PoolSize: 1})
			t.Cleanup(func() { _ = producer.Close() })
			items := fifoNames("frozen", n)
			pushed := make(chan error, 1)
			go func() {
				// Bursts of 1–4, each once the consumers have caught up to within 10 items: most pops
				// are blocked ones.
				for i, size := 0, 1; i < n; i, size = i+size, size%4+1 {
					for l.n.Load() < int64(i-10) {
						time.Sleep(time.Millisecond)
					}
					if err := fifoRPush(context.Background(), producer, queue, items[i:min(i+size, n)]); err != nil {
						pushed <- err
						return
					}
				}
				pushed <- nil
			}()
			for _, at := range []int64{n / 4, n / 2, 3 * n / 4} {
				e2eEventually(t, fmt.Sprintf("%d items delivered", at), func() bool { return l.n.Load() >= at })
				r.Freeze()
				time.Sleep(600 * time.Millisecond) // the stall being tested
				r.Thaw()
			}
			if err := e2eRecv(t, "the producer's end", pushed); err != nil {
				t.Fatalf("RPUSH: %v", err)
			}
			fifoAccount(t, direct, queue, items, l, 30*time.Second, 0)
			// Stale places (lost removals, a turn of a wait that ended) cost a grace each stall event,
			// never more: single items now each come within a grace and change.
			before := l.n.Load()
			longest := fifoProbe(t, producer, queue, l, 2*per, func() { fifoBlocked(t, per, qs...) })
			a, b := qs[0].Server.Stats(), qs[1].Server.Stats()
			t.Logf("FIGURE global_fifo_after_freeze_%s longest_single_item_delivery=%s dropped_places=%d take_errors=%d",
				strings.ReplaceAll(tc.name, " ", "_"), longest.Round(time.Millisecond), a.FIFODropped+b.FIFODropped, a.Wait.TakeErrors+b.Wait.TakeErrors)
			if got := l.n.Load() - before; got != 2*per {
				t.Fatalf("%d probes delivered, want %d", got, 2*per)
			}
			if longest > 4*fifoGrace {
				t.Errorf("after the freezes a single item took %s to be delivered, want at most about one grace (%s)", longest, fifoGrace)
			}
			fifoBlocked(t, per, qs...)
			fifoWaitPlaces(t, direct, queue, 2*per, "after the freezes: one place per live wait")
		})
	}
}

// TestGlobalFIFO_Fault_BackendConnectionsKilled: qgate's backend connections are killed (CLIENT KILL
// TYPE normal, and every third time TYPE pubsub: the Hubs' keyspace subscriptions) again and again
// while 16 consumers on 2 instances wait and bursts of 10 items arrive straight in Redis. Every burst is
// delivered within a few graces, every item exactly once, and the waiters set is back to the live
// waits once single items have passed every waiter.
func TestGlobalFIFO_Fault_BackendConnectionsKilled(t *testing.T) {
	const queue, per, rounds, burst = "jobs", 8, 40, 10
	r, direct, qs := fifoStart(t, 2, policy.Rule{Match: queue, GlobalFIFO: true})
	l := newFifoLedger()
	for i := range 2 * per {
		startFifoWorker(t, qs[i%2].Addr, i, l, "", "BLPOP", queue, "0")
	}
	fifoBlocked(t, per, qs...)
	// One connection pushes and kills (SKIPME yes spares it), so no push is lost with its reply.
	killer := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, PoolSize: 1})
	t.Cleanup(func() { _ = killer.Close() })
	ctx := context.Background()
	items := fifoNames("killed", rounds*burst)
	var longest time.Duration
	kills := 0
	for round := range rounds {
		start := time.Now()
		if err := fifoRPush(ctx, killer, queue, items[round*burst:(round+1)*burst]); err != nil {
			t.Fatalf("RPUSH: %v", err)
		}
		if round%2 == 0 {
			kind := "normal"
			if round%6 == 0 {
				kind = "pubsub"
			}
			n, err := killer.Do(ctx, "CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes").Int()
			if err != nil {
				t.Fatalf("CLIENT KILL: %v", err)
			}
			kills += n
		}
		want := int64((round + 1) * burst)
		e2eEventually(t, fmt.Sprintf("round %d delivered", round), func() bool { return l.n.Load() >= want })
		longest = max(longest, time.Since(start))
	}
	fifoAccount(t, direct, queue, items, l, 30*time.Second, 0)
	t.Logf("FIGURE global_fifo_killed_conns connections_killed=%d longest_burst=%s dropped_places=%d+%d",
		kills, longest.Round(time.Millisecond), qs[0].Server.Stats().FIFODropped, qs[1].Server.Stats().FIFODropped)
	if kills == 0 {
		t.Fatal("no connection was killed: the test did not exercise anything")
	}
	if longest > 3*time.Second {
		t.Errorf("a burst of %d items took %s to be delivered, want a few graces at most", burst, longest)
	}
	fifoProbe(t, direct, queue, l, 2*per, func() { fifoBlocked(t, per, qs...) })
	fifoBlocked(t, per, qs...)
	fifoWaitPlaces(t, direct, queue, 2*per, "after the kills: one place per live wait")
}

// TestGlobalFIFO_Fault_InstanceStoppedMidRun: 18 consumers on 3 instances; one instance is stopped
// (SIGTERM's shutdown) in the middle of a run of bursts. Its clients are disconnected, it removes
// their places (README: "A stopped instance (SIGTERM) removes its places as it disconnects its
// clients"), the other two instances serve the rest, each burst within a few graces, every item once.
func TestGlobalFIFO_Fault_InstanceStoppedMidRun(t *testing.T) {
	const queue, per, rounds, burst = "jobs", 6, 30, 9
	_, direct, qs := fifoStart(t, 3, policy.Rule{Match: queue, GlobalFIFO: true})
	l := newFifoLedger()
	// Consumers start on the instances in turn, so the stopped one's places are among the others'.
	for i := range 3 * per {
		startFifoWorker(t, qs[i%3].Addr, i, l, "", "BLPOP", queue, "0")
		fifoWaitPlaces(t, direct, queue, int64(i+1), "consumer waiting")
	}
	fifoBlocked(t, per, qs...)
	stopped := qs[2].Server.Stats().Instance
	ctx := context.Background()
	items := fifoNames("stop", rounds*burst)
	var longest time.Duration
	for round := range rounds {
		if round == rounds/2 {
			if err := qs[2].Stop(); err != nil {
				t.Fatalf("stop instance: %v", err)
			}
			members, err := direct.ZRange(ctx, rdb.WaitersKey(queue), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range members {
				if strings.HasPrefix(m, stopped+":") {
					t.Errorf("the stopped instance's place %s is still in the waiters set after its shutdown returned", m)
				}
			}
		}
		start := time.Now()
		if err := fifoRPush(ctx, direct, queue, items[round*burst:(round+1)*burst]); err != nil {
			t.Fatalf("RPUSH: %v", err)
		}
		want := int64((round + 1) * burst)
		e2eEventually(t, fmt.Sprintf("round %d delivered", round), func() bool { return l.n.Load() >= want })
		longest = max(longest, time.Since(start))
	}
	fifoAccount(t, direct, queue, items, l, 30*time.Second, 0)
	t.Logf("FIGURE global_fifo_instance_stopped longest_burst=%s", longest.Round(time.Millisecond))
	if longest > 2*time.Second {
		t.Errorf("a burst of %d items took %s to be delivered, want a grace or so at most", burst, longest)
	}
	live := qs[:2]
	fifoBlocked(t, per, live...)
	fifoWaitPlaces(t, direct, queue, 2*per, "after the stop: the live waits' places only")
}

// TestGlobalFIFO_Fault_DeadInstancePlacesAmongLiveOnes: a dead instance's waiters (kill -9: no removal
// ever comes) started to wait at various times, so their places are among the live waiters' places,
// not all ahead of them. README: "a dead instance with any number of waiters delays the queue once,
// by 250 ms". 20 live consumers and 20 dead places, alternating; 20 items pushed one at a time: the
// dead instance may cost one grace (or a few), not one per dead place (20 × 250 ms = 5 s).
func TestGlobalFIFO_Fault_DeadInstancePlacesAmongLiveOnes(t *testing.T) {
	const queue, live = "jobs", 20
	_, direct, qs := fifoStart(t, 1, policy.Rule{Match: queue, GlobalFIFO: true})
	q := qs[0]
	ctx := context.Background()
	wk := rdb.WaitersKey(queue)
	l := newFifoLedger()
	for i := range live {
		startFifoWorker(t, q.Addr, i, l, "", "BLPOP", queue, "0")
		fifoWaitPlaces(t, direct, queue, int64(2*i+1), "consumer waiting")
		// A dead instance's waiter that started to wait right after it: scored by Redis's clock, as
		// fifo_turn scores places.
		now, err := direct.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := direct.ZAdd(ctx, wk, redis.Z{Score: float64(now.UnixMicro()), Member: fmt.Sprintf("dead0:%d", i)}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	fifoBlocked(t, live, q)
	start := time.Now()
	longest := fifoProbe(t, direct, queue, l, live, func() { fifoBlocked(t, live, q) })
	took := time.Since(start)
	t.Logf("FIGURE global_fifo_interleaved_dead_places items=%d dead_places=%d took=%s longest_item=%s dropped_places=%d",
		live, live, took.Round(time.Millisecond), longest.Round(time.Millisecond), q.Server.Stats().FIFODropped)
	if took > 5*fifoGrace {
		t.Errorf("%d items one at a time took %s with a dead instance's %d places among the live ones: "+
			"each dead place cost a grace, want the dead instance to delay the queue once (about %s)", live, took, live, fifoGrace)
	}
	members, err := direct.ZRange(ctx, wk, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if strings.HasPrefix(m, "dead0:") {
			t.Errorf("dead place %s still in the waiters set", m)
		}
	}
}

// TestGlobalFIFO_Fault_BadInputs: the cases a global_fifo queue must handle as a plain one does.
func TestGlobalFIFO_Fault_BadInputs(t *testing.T) {
	rule := policy.Rule{Match: "jobs*", GlobalFIFO: true}
	ctx := context.Background()

	// A multi-key wait on a global_fifo key and a plain key: served by either, its place goes either
	// way; a plain-key push is not held back by the global_fifo key's order.
	t.Run("BLPOP global_fifo and plain key", func(t *testing.T) {
		_, direct, qs := fifoStart(t, 2, rule)
		a, b := qs[0].Client(t), qs[1].Client(t)
		mixed := e2eBlpop(ctx, a, 1, true, 0, "jobs", "plain")
		fifoBlocked(t, 1, qs[0])
		only := e2eBlpop(ctx, b, 2, true, 0, "jobs")
		fifoBlocked(t, 1, qs[1])
		fifoWaitPlaces(t, direct, "jobs", 2, "two waits on jobs")
		if err := direct.RPush(ctx, "plain", "p").Err(); err != nil {
			t.Fatal(err)
		}
		if r := e2eRecv(t, "the mixed wait's reply", mixed); r.err != nil || strings.Join(r.val, " ") != "plain p" {
			t.Fatalf("BLPOP jobs plain = %q, %v; want [plain p]", r.val, r.err)
		}
		fifoWaitPlaces(t, direct, "jobs", 1, "the mixed wait served on the plain key: its jobs place removed")
		if err := direct.RPush(ctx, "jobs", "j").Err(); err != nil {
			t.Fatal(err)
		}
		if r := e2eRecv(t, "the jobs wait's reply", only); r.err != nil || strings.Join(r.val, " ") != "jobs j" {
			t.Fatalf("BLPOP jobs = %q, %v; want [jobs j]", r.val, r.err)
		}
		fifoWaitPlaces(t, direct, "jobs", 0, "both waits served")
		// And the other way round: the global_fifo key serves a wait named after a plain key.
		mixed = e2eBlpop(ctx, a, 1, true, 0, "plain", "jobs")
		fifoBlocked(t, 1, qs[0])
		if err := direct.RPush(ctx, "jobs", "k").Err(); err != nil {
			t.Fatal(err)
		}
		if r := e2eRecv(t, "the mixed wait's reply", mixed); r.err != nil || strings.Join(r.val, " ") != "jobs k" {
			t.Fatalf("BLPOP plain jobs = %q, %v; want [jobs k]", r.val, r.err)
		}
		fifoWaitPlaces(t, direct, "jobs", 0, "the mixed wait served")
	})

	// BLMPOP … COUNT 7 on one instance next to BLPOP consumers on another: a turn entitles a waiter to
	// one item and its take gets up to seven; the waiters behind it find nothing and keep their
	// waits. Every item once, every consumer served, the places back to the live waits.
	t.Run("BLMPOP COUNT", func(t *testing.T) {
		const per, n = 3, 300
		_, direct, qs := fifoStart(t, 2, rule)
		l := newFifoLedger()
		for i := range per {
			startFifoWorker(t, qs[0].Addr, i, l, "", "BLMPOP", "0", "1", "jobs", "LEFT", "COUNT", "7")
			startFifoWorker(t, qs[1].Addr, per+i, l, "", "BLPOP", "jobs", "0")
		}
		fifoBlocked(t, per, qs...)
		items := fifoNames("mpop", n)
		for i := 0; i < n; i += 10 {
			if err := fifoRPush(ctx, direct, "jobs", items[i:i+10]); err != nil {
				t.Fatal(err)
			}
			want := int64(i + 10)
			e2eEventually(t, "burst delivered", func() bool { return l.n.Load() >= want })
		}
		fifoAccount(t, direct, "jobs", items, l, 10*time.Second, 0)
		if by := l.perWorker(); len(by) != 2*per {
			t.Errorf("items per consumer %v: want every one of the %d served", by, 2*per)
		}
		fifoBlocked(t, per, qs...)
		fifoWaitPlaces(t, direct, "jobs", 2*per, "one place per live wait")
	})

	// QPAUSE with waiters on two instances: pushes wake them, their turns find the queue paused, nobody
	// is served; QRESUME through one instance serves the waiters of both.
	t.Run("QPAUSE and QRESUME", func(t *testing.T) {
		const per = 3
		_, direct, qs := fifoStart(t, 2, rule)
		a := qs[0].Client(t)
		l := newFifoLedger()
		for i := range 2 * per {
			startFifoWorker(t, qs[i%2].Addr, i, l, "", "BLPOP", "jobs", "0")
		}
		fifoBlocked(t, per, qs...)
		if err := a.Do(ctx, "QPAUSE", "jobs").Err(); err != nil {
			t.Fatalf("QPAUSE: %v", err)
		}
		takes := []int64{qs[0].Server.Stats().Wait.Takes, qs[1].Server.Stats().Wait.Takes}
		items := fifoNames("paused", 2*per)
		if err := fifoRPush(ctx, direct, "jobs", items); err != nil {
			t.Fatal(err)
		}
		for i, q := range qs {
			e2eEventually(t, fmt.Sprintf("instance %d tried the paused queue", i), func() bool { return q.Server.Stats().Wait.Takes > takes[i] })
		}
		if got := l.n.Load(); got != 0 {
			t.Fatalf("%d items delivered from a paused queue", got)
		}
		if got, err := direct.LLen(ctx, "jobs").Result(); err != nil || got != 2*per {
			t.Fatalf("LLEN jobs while paused = %d, %v; want %d", got, err, 2*per)
		}
		if n, err := a.Do(ctx, "QRESUME", "jobs").Int(); err != nil || n != 1 {
			t.Fatalf("QRESUME = %d, %v; want 1", n, err)
		}
		fifoAccount(t, direct, "jobs", items, l, 5*time.Second, 0)
		// Each waiter is entitled to one item; two neighbours may swap (README), but the waiters of
		// both instances are served.
		by := l.perWorker()
		if by[0]+by[2]+by[4] == 0 || by[1]+by[3]+by[5] == 0 {
			t.Errorf("items per consumer %v (even: instance A, odd: B): want the waiters of both instances served", by)
		}
		fifoBlocked(t, per, qs...)
		fifoWaitPlaces(t, direct, "jobs", 2*per, "one place per live wait")
	})

	// BLPOP with short timeouts (50 ms) in a loop on 2 instances while items trickle in: waits end by
	// timeout all the time, some while their turn or take is in flight. Every item once; once the
	// consumers are gone no place is left.
	t.Run("BLPOP timeouts while items arrive", func(t *testing.T) {
		const per, n = 8, 400
		_, direct, qs := fifoStart(t, 2, rule)
		l := newFifoLedger()
		var ws []*fifoWorker
		for i := range 2 * per {
			ws = append(ws, startFifoWorker(t, qs[i%2].Addr, i, l, "", "BLPOP", "jobs", "0.05"))
		}
		items := fifoNames("tmo", n)
		for i := 0; i < n; i += 4 {
			if err := fifoRPush(ctx, direct, "jobs", items[i:i+4]); err != nil {
				t.Fatal(err)
			}
			want := int64(i + 4)
			e2eEventually(t, "burst delivered", func() bool { return l.n.Load() >= want })
		}
		fifoAccount(t, direct, "jobs", items, l, 10*time.Second, 0)
		for _, w := range ws {
			w.stop()
		}
		fifoBlocked(t, 0, qs...)
		fifoWaitPlaces(t, direct, "jobs", 0, "consumers gone")
	})

	// Clients leave (half-close) at random moments of their waits while items trickle in and 4
	// consumers stay: a wait may end while its turn or take is in flight. Every item is delivered
	// once (to a consumer, or to a leaving client that read it before its connection closed); once
	// the dust settles only the staying consumers' places are left.
	t.Run("clients leaving while items arrive", func(t *testing.T) {
		const steady, churners, n = 2, 6, 300
		_, direct, qs := fifoStart(t, 2, rule)
		l := newFifoLedger()
		for i := range 2 * steady {
			startFifoWorker(t, qs[i%2].Addr, i, l, "", "BLPOP", "jobs", "0")
		}
		fifoBlocked(t, steady, qs...)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var leaves atomic.Int64
		for c := range churners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					nc, err := net.Dial("tcp", qs[(c+i)%2].Addr)
					if err != nil {
						l.fail("churner %d: dial: %v", c, err)
						return
					}
					if _, err := nc.Write(fifoCmd("BLPOP", "jobs", "0")); err != nil {
						l.fail("churner %d: write: %v", c, err)
						nc.Close()
						return
					}
					time.Sleep(time.Duration(i%7) * 3 * time.Millisecond) // the fault's pace: leave at varied moments
					_ = nc.(*net.TCPConn).CloseWrite()
					_ = nc.SetReadDeadline(time.Now().Add(e2eWaitBound))
					rd := bufio.NewReader(nc)
					for {
						r, err := fifoReadReply(rd)
						if err == io.EOF {
							break
						}
						if err != nil {
							l.fail("churner %d: qgate did not close a connection its client left: %v", c, err)
							break
						}
						vals, err := fifoValues(r)
						if err != nil {
							l.fail("churner %d: %v", c, err)
							break
						}
						for _, v := range vals {
							l.add(100+c, v)
						}
					}
					_ = nc.Close()
					leaves.Add(1)
				}
			}()
		}
		items := fifoNames("leave", n)
		for i := 0; i < n; i += 3 {
			if err := fifoRPush(ctx, direct, "jobs", items[i:i+3]); err != nil {
				t.Fatal(err)
			}
			want := int64(i + 3)
			e2eEventually(t, "burst delivered", func() bool { return l.n.Load() >= want })
		}
		close(stop)
		wg.Wait()
		fifoAccount(t, direct, "jobs", items, l, 10*time.Second, 0)
		t.Logf("%d waits ended by their clients leaving", leaves.Load())
		fifoBlocked(t, steady, qs...)
		fifoWaitPlaces(t, direct, "jobs", 2*steady, "the leaving clients gone: the staying consumers' places only")
	})

	// A waited key turned into a string (RENAME of a string onto it wakes the waits): each waiter gets
	// Redis's own WRONGTYPE reply, as on a plain queue, and its place goes.
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("WRONGTYPE global_fifo=%v", fifo), func(t *testing.T) {
			_, direct, qs := fifoStart(t, 2, policy.Rule{Match: "jobs*", GlobalFIFO: fifo})
			a, b := e2eBlpop(ctx, qs[0].Client(t), 1, true, 0, "jobs"), e2eBlpop(ctx, qs[1].Client(t), 2, true, 0, "jobs")
			fifoBlocked(t, 1, qs...)
			if err := direct.Set(ctx, "tmp", "a string", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := direct.Rename(ctx, "tmp", "jobs").Err(); err != nil {
				t.Fatal(err)
			}
			for _, ch := range []<-chan e2eBlpopResult{a, b} {
				r := e2eRecv(t, "the waiter's reply", ch)
				if got, want := e2eErrText(r.err), "WRONGTYPE Operation against a key holding the wrong kind of value"; got != want {
					t.Errorf("waiter %d: BLPOP jobs 0 = %q, error %q; want %q", r.who, r.val, got, want)
				}
			}
			fifoWaitPlaces(t, direct, "jobs", 0, "both waits ended")
		})
	}
}
