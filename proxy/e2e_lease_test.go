package proxy_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// End-to-end tests of at-least-once queues: every lease transition against a real redis-server. The
// reaper is driven by calling Server.Reap in condition waits, never by sleeping.

func ptr[T any](v T) *T { return &v }

// leaseRule is an at-least-once rule for "jobs*" with fast backoff; tweak adjusts it.
func leaseEnv(t *testing.T, tweak func(r *policy.Rule)) *e2eEnv {
	t.Helper()
	r := policy.Rule{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: 30 * time.Second,
		Backoff: policy.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Jitter: ptr(0.0)}}
	if tweak != nil {
		tweak(&r)
	}
	return e2eStart(t, func(c *proxy.Config) { c.Queues = []policy.Rule{r} })
}

// envClient is a qgate client that receives envelopes (so it gets lease receipts).
func envClient(t *testing.T, e *e2eEnv, ctx context.Context) *redis.Client {
	t.Helper()
	c := e.Client(t, 3, func(o *redis.Options) {
		o.PoolSize = 1
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
			return cn.Do(ctx, "qdelivery", "envelope").Err()
		}
	})
	return c
}

func mustDecode(t *testing.T, item string) envelope.Envelope {
	t.Helper()
	env, ok := envelope.Decode([]byte(item))
	if !ok {
		t.Fatalf("not an envelope: %q", item)
	}
	return env
}

// mustReceipt returns the lease receipt in a delivered envelope.
func mustReceipt(t *testing.T, item string) string {
	t.Helper()
	r := mustDecode(t, item).Receipt
	if r == "" {
		t.Fatalf("no receipt in %q", item)
	}
	return r
}

func leaseCounts(t *testing.T, e *e2eEnv, ctx context.Context, q string) (ready, inflight, leases, delayed, dead int64) {
	t.Helper()
	d := e.Direct
	return d.LLen(ctx, q).Val(), d.ZCard(ctx, rdb.InflightKey(q)).Val(), d.HLen(ctx, rdb.LeasesKey(q)).Val(),
		d.ZCard(ctx, rdb.DelayedKey(q)).Val(), d.LLen(ctx, rdb.DeadKey(q)).Val()
}

func reapUntil(t *testing.T, e *e2eEnv, what string, cond func() bool) {
	t.Helper()
	e2eEventually(t, what, func() bool {
		if _, err := e.Qgate.Server.Reap(context.Background()); err != nil {
			t.Fatalf("Reap: %v", err)
		}
		return cond()
	})
}

func TestLease_PopAck(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	if err := c.RPush(ctx, "jobs", "a", "b", "c").Err(); err != nil {
		t.Fatal(err)
	}
	item, err := c.LPop(ctx, "jobs").Result()
	if err != nil {
		t.Fatal(err)
	}
	env := mustDecode(t, item)
	if string(env.Payload) != "a" || env.Attempts != 0 {
		t.Fatalf("got %q attempts %d", env.Payload, env.Attempts)
	}
	if r, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); r != 2 || in != 1 || l != 1 {
		t.Fatalf("ready %d inflight %d leases %d, want 2 1 1", r, in, l)
	}
	items, err := c.LPopCount(ctx, "jobs", 5).Result()
	if err != nil || len(items) != 2 {
		t.Fatalf("LPOP COUNT: %v %v", items, err)
	}
	acks := []interface{}{"qack", "jobs", env.Receipt}
	for _, it := range items {
		acks = append(acks, mustReceipt(t, it))
	}
	if n, err := c.Do(ctx, acks...).Int(); err != nil || n != 3 {
		t.Fatalf("QACK = %d, %v; want 3", n, err)
	}
	if n, err := c.Do(ctx, "qack", "jobs", env.Receipt).Int(); err != nil || n != 0 {
		t.Fatalf("second QACK = %d, %v; want 0", n, err)
	}
	if r, in, l, d, dd := leaseCounts(t, e, ctx, "jobs"); r+in+l+d+dd != 0 {
		t.Fatalf("left over: ready %d inflight %d leases %d delayed %d dead %d", r, in, l, d, dd)
	}
	// Empty queue: nil replies as Redis gives them.
	if err := c.LPop(ctx, "jobs").Err(); err != redis.Nil {
		t.Fatalf("LPOP on empty = %v, want nil", err)
	}
	if err := c.RPopCount(ctx, "jobs", 2).Err(); err != redis.Nil {
		t.Fatalf("RPOP COUNT on empty = %v, want nil", err)
	}
}

func TestLease_NackDelayedReady(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	c.RPush(ctx, "jobs", "x")
	env := mustDecode(t, c.RPop(ctx, "jobs").Val())
	if n, err := c.Do(ctx, "qnack", "jobs", env.Receipt, 60000).Int(); err != nil || n != 1 {
		t.Fatalf("QNACK = %d, %v", n, err)
	}
	if r, in, l, d, _ := leaseCounts(t, e, ctx, "jobs"); r != 0 || in != 0 || l != 0 || d != 1 {
		t.Fatalf("after nack: ready %d inflight %d leases %d delayed %d; want 0 0 0 1", r, in, l, d)
	}
	if n, _ := c.Do(ctx, "qnack", "jobs", env.Receipt).Int(); n != 0 {
		t.Fatalf("second QNACK = %d, want 0", n)
	}
	// Not yet due: a reaper pass leaves it delayed.
	if _, err := e.Qgate.Server.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, d, _ := leaseCounts(t, e, ctx, "jobs"); d != 1 {
		t.Fatalf("delayed item promoted early")
	}
	// Make it due now (rewrite the score), then the reaper moves it to the ready list.
	members := e.Direct.ZRange(ctx, rdb.DelayedKey("jobs"), 0, -1).Val()
	e.Direct.ZAdd(ctx, rdb.DelayedKey("jobs"), redis.Z{Score: 0, Member: members[0]})
	reapUntil(t, e, "delayed item ready", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 1 })
	again := mustDecode(t, c.LPop(ctx, "jobs").Val())
	if again.ID != env.ID || again.Attempts != 1 || string(again.Payload) != "x" {
		t.Fatalf("redelivered %+v, want id %s attempts 1", again, env.ID)
	}
	// QNACK with the rule's backoff (1ms here) then ready again.
	if n, _ := c.Do(ctx, "qnack", "jobs", again.Receipt).Int(); n != 1 {
		t.Fatalf("QNACK with backoff = %d", n)
	}
	reapUntil(t, e, "backoff over", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 1 })
	if a := mustDecode(t, c.LPop(ctx, "jobs").Val()).Attempts; a != 2 {
		t.Fatalf("attempts %d, want 2", a)
	}
}

func TestLease_ExpiryRedelivered(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.VisibilityTimeout = 50 * time.Millisecond })
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	c.RPush(ctx, "jobs", `{"task":1}`)
	env := mustDecode(t, c.LPop(ctx, "jobs").Val())
	// QEXTEND keeps it leased past its first deadline.
	if n, err := c.Do(ctx, "qextend", "jobs", env.Receipt, 60000).Int(); err != nil || n != 1 {
		t.Fatalf("QEXTEND = %d, %v", n, err)
	}
	deadline := e.Direct.ZScore(ctx, rdb.InflightKey("jobs"), env.Receipt).Val()
	if time.UnixMilli(int64(deadline)).Before(time.Now().Add(50 * time.Second)) {
		t.Fatalf("QEXTEND did not move the deadline")
	}
	if n, _ := c.Do(ctx, "qextend", "jobs", "nope", 1000).Int(); n != 0 {
		t.Fatalf("QEXTEND unknown id = %d", n)
	}
	c.Do(ctx, "qextend", "jobs", env.Receipt, 1)
	reapUntil(t, e, "expired lease redelivered", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 1 })
	again := mustDecode(t, c.LPop(ctx, "jobs").Val())
	if again.ID != env.ID || again.Attempts != 1 || string(again.Payload) != `{"task":1}` {
		t.Fatalf("redelivered %+v", again)
	}
}

func TestLease_DisconnectRequeue(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	c.RPush(ctx, "jobs", "a", "b", "c")
	if got := c.LPopCount(ctx, "jobs", 2).Val(); len(got) != 2 {
		t.Fatalf("popped %d", len(got))
	}
	_ = c.Close()
	e2eEventually(t, "leases requeued on close", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 3 })
	if _, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); in != 0 || l != 0 {
		t.Fatalf("inflight %d leases %d after requeue", in, l)
	}
	items := e.Direct.LRange(ctx, "jobs", 0, -1).Val()
	var got []string
	for _, it := range items {
		env := mustDecode(t, it)
		got = append(got, string(env.Payload)+":"+string(rune('0'+env.Attempts)))
	}
	if strings.Join(got, ",") != "c:0,a:1,b:1" {
		t.Fatalf("ready list %v", got)
	}
}

// An expired lease that went to another consumer is not requeued when the first consumer leaves.
func TestLease_DisconnectLeavesOthersLease(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	a, b := envClient(t, e, ctx), envClient(t, e, ctx)
	a.RPush(ctx, "jobs", "x")
	first := mustDecode(t, a.LPop(ctx, "jobs").Val())
	a.Do(ctx, "qextend", "jobs", first.Receipt, 1) // a's lease runs out
	reapUntil(t, e, "redelivery", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 1 })
	again := mustDecode(t, b.LPop(ctx, "jobs").Val())
	if again.ID != first.ID {
		t.Fatal("b got another item")
	}
	_ = a.Close()
	e2eEventually(t, "a's connection gone", func() bool { return e.Qgate.Server.Stats().ConnectedClients == 1 })
	if l := e.Direct.HLen(ctx, rdb.LeasesKey("jobs")).Val(); l != 1 {
		t.Fatalf("b's lease gone: leases %d", l)
	}
	if n, _ := b.Do(ctx, "qack", "jobs", again.Receipt).Int(); n != 1 {
		t.Fatalf("b's QACK = %d", n)
	}
}

// An unmodified worker loop (LPOP → work → LPOP) with ack: next-pop: each pop acks the previous one.
func TestLease_NextPopImplicitAck(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.Ack = "next-pop" })
	ctx := e2eCtx(t)
	w := e.Client(t, 2, func(o *redis.Options) { o.PoolSize = 1 })
	w.RPush(ctx, "jobs", "t1", "t2", "t3")
	var got []string
	for {
		v, err := w.LPop(ctx, "jobs").Result()
		if err == redis.Nil {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
		if _, in, _, _, _ := leaseCounts(t, e, ctx, "jobs"); in != 1 {
			t.Fatalf("after popping %s: %d in flight, want 1 (the previous one acked)", v, in)
		}
	}
	if strings.Join(got, ",") != "t1,t2,t3" {
		t.Fatalf("worker got %v", got)
	}
	if r, in, l, d, dd := leaseCounts(t, e, ctx, "jobs"); r+in+l+d+dd != 0 {
		t.Fatalf("left over after the empty pop: %d %d %d %d %d", r, in, l, d, dd)
	}
	// Pipelined pops: the next pop acks all of them (one sticky connection: go-redis may run a
	// pipeline on another connection of its pool).
	w.RPush(ctx, "jobs", "p1", "p2", "p3")
	wc := w.Conn()
	cmds, err := wc.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.LPop(ctx, "jobs")
		p.LPop(ctx, "jobs")
		return nil
	})
	if err != nil || cmds[0].(*redis.StringCmd).Val() != "p1" || cmds[1].(*redis.StringCmd).Val() != "p2" {
		t.Fatalf("pipelined pops %v %v", cmds, err)
	}
	if _, in, _, _, _ := leaseCounts(t, e, ctx, "jobs"); in != 2 {
		t.Fatalf("%d in flight, want 2", in)
	}
	if v := wc.LPop(ctx, "jobs").Val(); v != "p3" {
		t.Fatalf("got %q", v)
	}
	if _, in, _, _, _ := leaseCounts(t, e, ctx, "jobs"); in != 1 {
		t.Fatalf("%d in flight after the next pop, want 1", in)
	}
	wc.LPop(ctx, "jobs")
	if _, in, _, _, _ := leaseCounts(t, e, ctx, "jobs"); in != 0 {
		t.Fatalf("%d in flight after the empty pop, want 0", in)
	}
	_ = wc.Close() // back to w's pool

	// A worker that dies mid-task: its task comes back.
	w.RPush(ctx, "jobs", "t4")
	if v := w.LPop(ctx, "jobs").Val(); v != "t4" {
		t.Fatalf("got %q", v)
	}
	_ = w.Close()
	e2eEventually(t, "t4 requeued", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 1 })
	w2 := e.Client(t, 2, func(o *redis.Options) { o.PoolSize = 1 })
	if v := w2.LPop(ctx, "jobs").Val(); v != "t4" {
		t.Fatalf("redelivered %q", v)
	}
}

func TestLease_MaxAttemptsDead(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.MaxAttempts = ptr(2) })
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	c.RPush(ctx, "jobs", "poison")
	first := mustDecode(t, c.LPop(ctx, "jobs").Val())
	id := first.ID
	if n, _ := c.Do(ctx, "qnack", "jobs", first.Receipt, 0).Int(); n != 1 {
		t.Fatal("first nack")
	}
	second := mustDecode(t, c.LPop(ctx, "jobs").Val())
	if second.Attempts != 1 {
		t.Fatalf("attempts %d", second.Attempts)
	}
	if n, _ := c.Do(ctx, "qnack", "jobs", second.Receipt, 0).Int(); n != 1 {
		t.Fatal("second nack")
	}
	r, in, l, d, dead := leaseCounts(t, e, ctx, "jobs")
	if r != 0 || in != 0 || l != 0 || d != 0 || dead != 1 {
		t.Fatalf("ready %d inflight %d leases %d delayed %d dead %d; want only 1 dead", r, in, l, d, dead)
	}
	var rec struct {
		Reason   string `json:"reason"`
		Attempts int    `json:"attempts"`
		FailedAt int64  `json:"failed_at"`
		Item     string `json:"item"`
	}
	if err := json.Unmarshal([]byte(e.Direct.LIndex(ctx, rdb.DeadKey("jobs"), 0).Val()), &rec); err != nil {
		t.Fatal(err)
	}
	env := mustDecode(t, rec.Item)
	if rec.Reason != "nack" || rec.Attempts != 2 || env.Attempts != 2 || string(env.Payload) != "poison" || rec.FailedAt == 0 {
		t.Fatalf("dead record %+v", rec)
	}

	// QSTATS, QDEAD, QREDRIVE.
	c.RPush(ctx, "jobs", "fresh")
	stats, err := c.Do(ctx, "qstats", "jobs").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := stats.(map[interface{}]interface{})
	if m["ready"] != int64(1) || m["in_flight"] != int64(0) || m["delayed"] != int64(0) || m["dead"] != int64(1) ||
		m["handoff"] != int64(0) || m["oldest_ready_age_ms"].(int64) < 0 {
		t.Fatalf("QSTATS %v", m)
	}
	recs, err := c.Do(ctx, "qdead", "jobs").StringSlice()
	if err != nil || len(recs) != 1 || !strings.Contains(recs[0], `"reason":"nack"`) {
		t.Fatalf("QDEAD %v %v", recs, err)
	}
	if err := c.Do(ctx, "qdead", "jobs", 0).Err(); err == nil {
		t.Fatal("QDEAD count 0 accepted")
	}
	if n, err := c.Do(ctx, "qredrive", "jobs").Int(); err != nil || n != 1 {
		t.Fatalf("QREDRIVE = %d, %v", n, err)
	}
	c.LPop(ctx, "jobs") // "fresh"
	back := mustDecode(t, c.LPop(ctx, "jobs").Val())
	if back.ID != id || back.Attempts != 0 || string(back.Payload) != "poison" {
		t.Fatalf("redriven %+v", back)
	}
	if n, _ := c.Do(ctx, "qredrive", "jobs", 5).Int(); n != 0 {
		t.Fatalf("QREDRIVE on empty dead list = %d", n)
	}
	info := c.Info(ctx, "qgate").Val()
	for field, want := range map[string]string{"leased_items": "4", "acked_items": "0", "retried_items": "1", "dead_items": "1", "redriven_items": "1"} {
		if got := e2eInfoField(info, field); got != want {
			t.Errorf("INFO %s = %q, want %s", field, got, want)
		}
	}
}

// Expired leases past max_attempts go to the dead list with reason "lease expired"; with
// dead_letter: false they are dropped.
func TestLease_ExpiryToDead(t *testing.T) {
	for _, keep := range []bool{true, false} {
		e := leaseEnv(t, func(r *policy.Rule) {
			r.MaxAttempts, r.VisibilityTimeout, r.DeadLetter = ptr(1), 10*time.Millisecond, ptr(keep)
		})
		ctx := e2eCtx(t)
		c := envClient(t, e, ctx)
		c.RPush(ctx, "jobs", "slow")
		c.LPop(ctx, "jobs")
		reapUntil(t, e, "lease expired", func() bool { return e.Direct.HLen(ctx, rdb.LeasesKey("jobs")).Val() == 0 })
		_, _, _, _, dead := leaseCounts(t, e, ctx, "jobs")
		if keep && (dead != 1 || !strings.Contains(e.Direct.LIndex(ctx, rdb.DeadKey("jobs"), 0).Val(), `"reason":"lease expired"`)) {
			t.Fatalf("dead %d: %v", dead, e.Direct.LRange(ctx, rdb.DeadKey("jobs"), 0, -1).Val())
		}
		if !keep && dead != 0 {
			t.Fatalf("dead_letter false kept %d", dead)
		}
	}
}

// Items pushed straight into Redis (not envelopes) are leased too and come back unchanged.
func TestLease_RawItems(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	e.Direct.RPush(ctx, "jobs", "raw", "raw")
	if got := c.LPopCount(ctx, "jobs", 2).Val(); len(got) != 2 || got[0] != "raw" || got[1] != "raw" {
		t.Fatalf("got %v", got)
	}
	if l := e.Direct.HLen(ctx, rdb.LeasesKey("jobs")).Val(); l != 2 {
		t.Fatalf("%d leases for two equal raw items, want 2", l)
	}
	_ = c.Close()
	e2eEventually(t, "raw items requeued", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 2 })
	if got := e.Direct.LRange(ctx, "jobs", 0, -1).Val(); got[0] != "raw" || got[1] != "raw" {
		t.Fatalf("requeued %v", got)
	}
}

// BLPOP and BRPOP on at-least-once queues lease too: an item is delivered to a client blocked before
// it was pushed, and is in flight until acked.
func TestLease_BlockingPop(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	for _, left := range []bool{true, false} {
		c := envClient(t, e, ctx)
		got := make(chan []string, 1)
		go func() {
			var res []string
			var err error
			if left {
				res, err = c.BLPop(ctx, 0, "jobs_a", "jobs_b").Result()
			} else {
				res, err = c.BRPop(ctx, 0, "jobs_a", "jobs_b").Result()
			}
			if err != nil {
				t.Error(err)
			}
			got <- res
		}()
		e2eEventually(t, "client blocked", func() bool { return e.Qgate.Server.Stats().BlockedClients == 1 })
		if err := e.Direct.RPush(ctx, "jobs_b", "first", "second").Err(); err != nil { // straight into Redis
			t.Fatal(err)
		}
		res := <-got
		want := "first"
		if !left {
			want = "second"
		}
		if len(res) != 2 || res[0] != "jobs_b" || res[1] != want {
			t.Fatalf("left=%v: got %v, want [jobs_b %s]", left, res, want)
		}
		if r, in, l, _, _ := leaseCounts(t, e, ctx, "jobs_b"); r != 1 || in != 1 || l != 1 {
			t.Fatalf("ready %d inflight %d leases %d, want 1 1 1", r, in, l)
		}
		if h := e.Direct.LLen(ctx, rdb.HandoffKey("jobs_b")).Val(); h != 0 {
			t.Fatalf("handoff list holds %d", h)
		}
		// A blocking pop that finds an item does not wait.
		res2, err := c.BLPop(ctx, time.Second, "jobs_a", "jobs_b").Result()
		if err != nil || res2[1] != map[bool]string{true: "second", false: "first"}[left] {
			t.Fatalf("second BLPOP %v %v", res2, err)
		}
		_ = c.Close()
		e2eEventually(t, "requeued on close", func() bool { return e.Direct.LLen(ctx, "jobs_b").Val() == 2 })
		e.Direct.Del(ctx, "jobs_b")
	}
	c := e.Client(t, 3)
	if err := c.BLPop(ctx, 20*time.Millisecond, "jobs_a").Err(); err != redis.Nil {
		t.Fatalf("BLPOP timeout = %v, want nil", err)
	}
	if err := c.BLPop(ctx, time.Second, "other", "jobs").Err(); err == nil ||
		!strings.Contains(err.Error(), "cannot wait on at-least-once and at-most-once queues at once") {
		t.Fatalf("mixed BLPOP = %v", err)
	}
}

// The unmodified worker loop BLPOP → work → BLPOP with ack: next-pop.
func TestLease_NextPopBlockingLoop(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.Ack = "next-pop" })
	ctx := e2eCtx(t)
	w := e.Client(t, 2, func(o *redis.Options) { o.PoolSize = 1 })
	const n = 50
	done := make(chan []string)
	go func() {
		var got []string
		for len(got) < n {
			res, err := w.BLPop(ctx, 0, "jobs").Result()
			if err != nil {
				t.Error(err)
				break
			}
			got = append(got, res[1])
		}
		done <- got
	}()
	p := e.Client(t, 3)
	for i := 0; i < n; i++ {
		if err := p.RPush(ctx, "jobs", i).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got := <-done
	for i, v := range got {
		if v != strconv.Itoa(i) {
			t.Fatalf("item %d = %q (got %v)", i, v, got)
		}
	}
	if _, in, _, _, _ := leaseCounts(t, e, ctx, "jobs"); in != 1 {
		t.Fatalf("%d in flight, want only the last one", in)
	}
	// The worker's next BLPOP acks the last one, then times out.
	if err := w.BLPop(ctx, 10*time.Millisecond, "jobs").Err(); err != redis.Nil {
		t.Fatal(err)
	}
	if r, in, l, d, dd := leaseCounts(t, e, ctx, "jobs"); r+in+l+d+dd != 0 {
		t.Fatalf("left over: %d %d %d %d %d", r, in, l, d, dd)
	}
}

// An item left in the handoff list (qgate killed between the listener's BLMOVE and the lease) is not
// lost: the next pop serves it first, and the reaper moves it back to the ready list.
func TestLease_HandoffLeftovers(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	c := e.Client(t, 3)
	c.RPush(ctx, "jobs", "b")
	e.Direct.RPush(ctx, rdb.HandoffKey("jobs"), "a")
	if v := c.LPop(ctx, "jobs").Val(); v != "a" {
		t.Fatalf("first pop %q, want the handoff item", v)
	}
	e.Direct.RPush(ctx, rdb.HandoffKey("jobs"), "z")
	reapUntil(t, e, "handoff item back", func() bool { return e.Direct.LLen(ctx, rdb.HandoffKey("jobs")).Val() == 0 })
	if got := e.Direct.LRange(ctx, "jobs", 0, -1).Val(); len(got) != 2 || got[0] != "z" || mustDecode(t, got[1]).Payload[0] != 'b' {
		t.Fatalf("ready list %v", got)
	}
}

// QACK, QNACK and QEXTEND need the pop right on the queue; QSTATS, QDEAD and QREDRIVE need admin.
func TestLease_Rights(t *testing.T) {
	e := startAuth(t, func(c *proxy.Config) {
		c.Queues = []policy.Rule{{Match: "email_*", Delivery: "at-least-once"}}
	})
	ctx := e2eCtx(t)
	worker := e.client(t, 3, "worker", pwWorker)
	producer := e.client(t, 3, "producer", pwProducer)
	admin := e.client(t, 3, "admin", pwAdmin)
	for _, cmd := range [][]interface{}{{"qack", "email_q", "x"}, {"qnack", "email_q", "x"}, {"qextend", "email_q", "x", 1}} {
		if err := worker.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("worker %v: %v", cmd, err)
		}
		if err := producer.Do(ctx, cmd...).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Fatalf("producer %v: %v, want NOPERM", cmd, err)
		}
	}
	for _, cmd := range [][]interface{}{{"qstats", "email_q"}, {"qdead", "email_q"}, {"qredrive", "email_q"}} {
		if err := worker.Do(ctx, cmd...).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Fatalf("worker %v: %v, want NOPERM", cmd, err)
		}
		if err := admin.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("admin %v: %v", cmd, err)
		}
	}
}

// Two qgate instances on one backend reap the same expired leases at the same time: every item is
// requeued exactly once.
func TestLease_TwoReapers(t *testing.T) {
	rule := policy.Rule{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: time.Hour,
		Backoff: policy.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Jitter: ptr(0.0)}}
	e := e2eStart(t, func(c *proxy.Config) { c.Queues = []policy.Rule{rule} })
	cfg := proxy.DefaultConfig()
	cfg.Backend, cfg.Queues = e.Redis.URL(), []policy.Rule{rule}
	other := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	const n = 300
	vals := make([]interface{}, n)
	for i := range vals {
		vals[i] = i
	}
	c.RPush(ctx, "jobs", vals...)
	if got := c.LPopCount(ctx, "jobs", n).Val(); len(got) != n {
		t.Fatalf("leased %d", len(got))
	}
	// Expire every lease (as if the hour had passed), then reap from both instances at once.
	ids := e.Direct.ZRange(ctx, rdb.InflightKey("jobs"), 0, -1).Val()
	for _, id := range ids {
		e.Direct.ZAdd(ctx, rdb.InflightKey("jobs"), redis.Z{Score: 1, Member: id})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			_, _ = other.Server.Reap(ctx)
		}
	}()
	reapUntil(t, e, "all requeued", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == n })
	<-done
	_, _ = e.Qgate.Server.Reap(ctx)
	seen := map[string]bool{}
	for _, it := range e.Direct.LRange(ctx, "jobs", 0, -1).Val() {
		env := mustDecode(t, it)
		if seen[string(env.Payload)] || env.Attempts != 1 {
			t.Fatalf("item %s twice or attempts %d", env.Payload, env.Attempts)
		}
		seen[string(env.Payload)] = true
	}
	if r, in, l, d, dd := leaseCounts(t, e, ctx, "jobs"); r != n || in+l+d+dd != 0 {
		t.Fatalf("ready %d inflight %d leases %d delayed %d dead %d", r, in, l, d, dd)
	}
}

// A qgate shutting down waits for a consumer holding leases to ack them (README "Running several
// instances") until its drain time is up, then closes the connection and gives the leases back.
func TestLease_ShutdownRequeues(t *testing.T) {
	r := policy.Rule{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: 30 * time.Second}
	e := e2eStart(t, func(c *proxy.Config) { c.Queues = []policy.Rule{r}; c.ShutdownTimeout = 2 * time.Second })
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	c.RPush(ctx, "jobs", "a", "b")
	if got := c.LPopCount(ctx, "jobs", 2).Val(); len(got) != 2 {
		t.Fatalf("popped %v", got)
	}
	if err := e.Qgate.Stop(); err != nil {
		t.Fatal(err)
	}
	if r, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); r != 2 || in != 0 || l != 0 {
		t.Fatalf("after shutdown: ready %d inflight %d leases %d", r, in, l)
	}
}

// Many blocked workers (ack: next-pop, BLPOP loops) and producers: every item is delivered exactly
// once (no failures here), none is left leased or in a handoff list.
func TestLease_BlockingWorkersStress(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.Ack = "next-pop" })
	ctx := e2eCtx(t)
	const workers, producers, per = 8, 4, 250
	got := make(chan string, producers*per)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		w := e.Client(t, 3, func(o *redis.Options) { o.PoolSize = 1 })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					_ = w.Do(ctx, "lpop", "jobs_x").Err() // acks the last one (jobs_x is another queue: nothing)
					_ = w.Do(ctx, "lpop", "jobs").Err()
					return
				default:
				}
				res, err := w.Do(ctx, "blpop", "jobs", "0.05").StringSlice()
				if err == redis.Nil {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				got <- res[1]
			}
		}()
	}
	p := e.Client(t, 3)
	for i := 0; i < producers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < per; j++ {
				if err := p.RPush(ctx, "jobs", strconv.Itoa(i*per+j)).Err(); err != nil {
					t.Error(err)
					return
				}
			}
		}(i)
	}
	seen := map[string]bool{}
	for len(seen) < producers*per {
		select {
		case v := <-got:
			if seen[v] {
				t.Fatalf("%s delivered twice", v)
			}
			seen[v] = true
		case <-ctx.Done():
			t.Fatalf("only %d of %d delivered", len(seen), producers*per)
		}
	}
	close(stop)
	wg.Wait()
	if r, in, l, d, dd := leaseCounts(t, e, ctx, "jobs"); r+in+l+d+dd != 0 {
		t.Fatalf("left over: ready %d inflight %d leases %d delayed %d dead %d", r, in, l, d, dd)
	}
	if h := e.Direct.LLen(ctx, rdb.HandoffKey("jobs")).Val(); h != 0 {
		t.Fatalf("handoff holds %d", h)
	}
}

// A queue's rule flips between at-most-once and at-least-once on reload while clients are blocked on
// it: waiters of both kinds share the key's FIFO, and each gets an item the way its pop asked for,
// none is lost or left in the handoff list.
func TestLease_ReloadFlipWhileBlocked(t *testing.T) {
	amo := policy.Rule{Match: "jobs*"}
	alo := policy.Rule{Match: "jobs*", Delivery: "at-least-once"}
	for _, flip := range [][2]policy.Rule{{amo, alo}, {alo, amo}} {
		cfg := proxy.DefaultConfig()
		e := e2eStart(t, func(c *proxy.Config) { c.Queues = []policy.Rule{flip[0]}; cfg = *c })
		ctx := e2eCtx(t)
		type res struct {
			v   []string
			err error
		}
		first, second := make(chan res, 1), make(chan res, 1)
		c1, c2 := e.Client(t, 3), e.Client(t, 3)
		go func() { v, err := c1.BLPop(ctx, 0, "jobs").Result(); first <- res{v, err} }()
		e2eEventually(t, "first blocked", func() bool { return e.Qgate.Server.Stats().BlockedClients == 1 })
		cfg.Queues = []policy.Rule{flip[1]}
		if err := e.Qgate.Server.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		go func() { v, err := c2.BLPop(ctx, 0, "jobs").Result(); second <- res{v, err} }()
		e2eEventually(t, "second blocked", func() bool { return e.Qgate.Server.Stats().BlockedClients == 2 })
		e.Direct.RPush(ctx, "jobs", "one", "two")
		a, b := <-first, <-second
		if a.err != nil || b.err != nil {
			t.Fatalf("errors %v %v", a.err, b.err)
		}
		got := []string{a.v[1], b.v[1]}
		if !(got[0] == "one" && got[1] == "two") && !(got[0] == "two" && got[1] == "one") {
			t.Fatalf("got %v", got)
		}
		r, in, _, _, _ := leaseCounts(t, e, ctx, "jobs")
		if r != 0 || in != 1 || e.Direct.LLen(ctx, rdb.HandoffKey("jobs")).Val() != 0 {
			t.Fatalf("ready %d inflight %d (want 0 1: the at-least-once pop is leased)", r, in)
		}
	}
}

// Two copies of one envelope (copied by another program) are two leases, and both come back.
func TestLease_CopiedEnvelope(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	c.RPush(ctx, "jobs", "x")
	item := e.Direct.LIndex(ctx, "jobs", 0).Val()
	e.Direct.RPush(ctx, "jobs", item)
	got := c.LPopCount(ctx, "jobs", 2).Val()
	if len(got) != 2 {
		t.Fatalf("got %v", got)
	}
	for _, g := range got {
		if r := mustReceipt(t, g); g != envelope.WithReceipt(item, r) {
			t.Fatalf("got %s, want %s with its receipt", g, item)
		}
	}
	if mustReceipt(t, got[0]) == mustReceipt(t, got[1]) {
		t.Fatalf("both copies have receipt %s", mustReceipt(t, got[0]))
	}
	if l := e.Direct.HLen(ctx, rdb.LeasesKey("jobs")).Val(); l != 2 {
		t.Fatalf("%d leases, want 2", l)
	}
	_ = c.Close()
	e2eEventually(t, "both requeued", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 2 })
}

// On Redis Cluster every lease script runs (all of a queue's keys share its slot), for queues on
// different masters, blocking pops included.
func TestLease_Cluster(t *testing.T) {
	addrs := proxytest.StartCluster(t, 3)
	cfg := proxytest.ClusterConfig(addrs)
	cfg.Queues = []policy.Rule{{Match: "jobs*", Delivery: "at-least-once", MaxAttempts: ptr(2),
		Backoff: policy.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Jitter: ptr(0.0)}}}
	q := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	c := q.Client(t, func(o *redis.Options) {
		o.PoolSize = 1
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "qdelivery", "envelope").Err() }
	})
	for _, queue := range []string{"jobs_a", "jobs_b", "jobs_c", "jobs_d"} {
		c.RPush(ctx, queue, "x")
		env := mustDecode(t, c.LPop(ctx, queue).Val())
		if n, err := c.Do(ctx, "qnack", queue, env.Receipt, 0).Int(); err != nil || n != 1 {
			t.Fatalf("%s QNACK = %d, %v", queue, n, err)
		}
		res, err := c.BLPop(ctx, time.Second, queue).Result()
		if err != nil || mustDecode(t, res[1]).Attempts != 1 {
			t.Fatalf("%s BLPOP %v %v", queue, res, err)
		}
		if n, err := c.Do(ctx, "qextend", queue, mustReceipt(t, res[1]), 1).Int(); err != nil || n != 1 {
			t.Fatalf("%s QEXTEND = %d, %v", queue, n, err)
		}
		e2eEventually(t, queue+" dead after expiry", func() bool {
			_, _ = q.Server.Reap(ctx)
			m, err := c.Do(ctx, "qstats", queue).Result()
			return err == nil && m.(map[interface{}]interface{})["dead"] == int64(1)
		})
		if n, err := c.Do(ctx, "qredrive", queue).Int(); err != nil || n != 1 {
			t.Fatalf("%s QREDRIVE = %d, %v", queue, n, err)
		}
		env = mustDecode(t, c.RPop(ctx, queue).Val())
		if n, err := c.Do(ctx, "qack", queue, env.Receipt).Int(); err != nil || n != 1 {
			t.Fatalf("%s QACK = %d, %v", queue, n, err)
		}
	}
	// A client blocked before the push.
	got := make(chan []string, 1)
	go func() { v, _ := c.BRPop(ctx, 0, "jobs_e").Result(); got <- v }()
	e2eEventually(t, "blocked", func() bool { return q.Server.Stats().BlockedClients == 1 })
	p := q.Client(t)
	p.RPush(ctx, "jobs_e", "late")
	if v := <-got; len(v) != 2 || string(mustDecode(t, v[1]).Payload) != "late" {
		t.Fatalf("BRPOP %v", v)
	}
}

// TestLease_BlockingPopFIFO: a new BLPOP does not take an item that belongs to a client blocked on the
// queue before it. The item sits in the handoff list, as when the listener just moved it for the first
// client: the newcomer must wait behind that client rather than lease it.
func TestLease_BlockingPopFIFO(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	first := e2eBlpop(ctx, envClient(t, e, ctx), 1, true, 0, "jobs")
	e2eEventually(t, "first client blocked", func() bool { return e.Qgate.Server.Stats().BlockedClients == 1 })
	if err := e.Direct.LPush(ctx, rdb.HandoffKey("jobs"), "for-the-first").Err(); err != nil {
		t.Fatal(err)
	}
	if err := envClient(t, e, ctx).Do(ctx, "blpop", "jobs", "0.2").Err(); err != redis.Nil {
		t.Fatalf("a client that came later: BLPOP = %v, want nil (the item is the first client's)", err)
	}
	// The reaper hands the item back to the ready list; the listener gives it to the first client.
	r := e2eRecv(t, "first client's item", first)
	if r.err != nil || len(r.val) != 2 || r.val[1] != "for-the-first" {
		t.Fatalf("first client got %q, %v", r.val, r.err)
	}
}

// TestLease_SubSecondDelay: an item nacked with a short delay is ready again after the delay, not on
// the reaper's next tick (1s with this rule's visibility timeout).
func TestLease_SubSecondDelay(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.VisibilityTimeout = time.Hour })
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	if err := c.RPush(ctx, "jobs", "soon").Err(); err != nil {
		t.Fatal(err)
	}
	env := mustDecode(t, c.LPop(ctx, "jobs").Val())
	const delay = 100 * time.Millisecond
	start := time.Now()
	if n, err := c.Do(ctx, "qnack", "jobs", env.Receipt, delay.Milliseconds()).Int(); err != nil || n != 1 {
		t.Fatalf("QNACK = %d, %v", n, err)
	}
	res, err := c.Do(ctx, "blpop", "jobs", "5").StringSlice()
	took := time.Since(start)
	if err != nil || len(res) != 2 || mustDecode(t, res[1]).ID != env.ID {
		t.Fatalf("BLPOP = %q, %v", res, err)
	}
	if took < delay-10*time.Millisecond || took > 900*time.Millisecond {
		t.Fatalf("nacked with %s delay, ready again after %s; want about the delay", delay, took)
	}
}

// TestLease_IdleQueueForgotten: the reapers' schedule registry does not grow forever: a queue with
// nothing in flight, delayed or handed off leaves it once no instance noted it within the TTL, and a
// queue that holds leases stays.
func TestLease_IdleQueueForgotten(t *testing.T) {
	e := leaseEnv(t, nil)
	e.Qgate.Server.SetLeasedQueueTTL(time.Millisecond)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	reg := rdb.ScheduleRegistryKey(rdb.ScheduleShard("jobs"))
	listed := func() bool {
		return e.Direct.ZScore(ctx, reg, "jobs").Err() == nil
	}
	if err := c.RPush(ctx, "jobs", "x").Err(); err != nil {
		t.Fatal(err)
	}
	env := mustDecode(t, c.LPop(ctx, "jobs").Val())
	if !listed() {
		t.Fatal("queue not in the leased queues after a lease")
	}
	// Past the TTL, but a lease is in flight: it stays however often the reaper runs.
	e2eEventually(t, "TTL passed", func() bool {
		s, _ := e.Direct.ZScore(ctx, reg, "jobs").Result()
		return time.Now().UnixMilli() > int64(s)+5
	})
	for i := 0; i < 3; i++ {
		if _, err := e.Qgate.Server.Reap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !listed() {
		t.Fatal("queue with a lease in flight dropped from the leased queues")
	}
	if n, err := c.Do(ctx, "qack", "jobs", env.Receipt).Int(); err != nil || n != 1 {
		t.Fatalf("QACK = %d, %v", n, err)
	}
	reapUntil(t, e, "idle queue dropped", func() bool { return !listed() })
	// The next pop registers it again.
	if err := c.LPop(ctx, "jobs").Err(); err != redis.Nil {
		t.Fatalf("LPOP = %v", err)
	}
	if !listed() {
		t.Fatal("queue not registered again by a pop")
	}
}

// TestLease_RegisterFails: a pop that cannot register its queue for the reapers leases nothing and
// says why; the item stays ready.
func TestLease_RegisterFails(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	reg := rdb.ScheduleRegistryKey(rdb.ScheduleShard("jobs"))
	if err := e.Direct.Set(ctx, reg, "not a zset", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c := envClient(t, e, ctx)
	if err := c.RPush(ctx, "jobs", "x").Err(); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]interface{}{{"lpop", "jobs"}, {"blpop", "jobs", "0.1"}} {
		if err := c.Do(ctx, cmd...).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
			t.Fatalf("%v = %v, want the WRONGTYPE of registering the queue", cmd, err)
		}
	}
	if r, in, _, _, _ := leaseCounts(t, e, ctx, "jobs"); r != 1 || in != 0 {
		t.Fatalf("ready %d in flight %d, want 1 0", r, in)
	}
	e.Direct.Del(ctx, reg)
	if err := c.LPop(ctx, "jobs").Err(); err != nil {
		t.Fatalf("LPOP once the key is fixed: %v", err)
	}
}

// TestLease_AckMany: one QACK with more receipts than one script call takes (qgate splits them);
// unknown receipts do not count.
func TestLease_AckMany(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	const n = 2500
	vals := make([]interface{}, n)
	for i := range vals {
		vals[i] = strconv.Itoa(i)
	}
	if err := c.RPush(ctx, "jobs", vals...).Err(); err != nil {
		t.Fatal(err)
	}
	items, err := c.LPopCount(ctx, "jobs", n).Result()
	if err != nil || len(items) != n {
		t.Fatalf("LPOP %d: %d items, %v", n, len(items), err)
	}
	args := []interface{}{"qack", "jobs", "no-such-receipt"}
	for _, it := range items {
		args = append(args, mustReceipt(t, it))
	}
	if got, err := c.Do(ctx, args...).Int(); err != nil || got != n {
		t.Fatalf("QACK of %d leases and one unknown id = %d, %v; want %d", n, got, err, n)
	}
	if r, in, l, d, dd := leaseCounts(t, e, ctx, "jobs"); r+in+l+d+dd != 0 {
		t.Fatalf("left over: ready %d inflight %d leases %d delayed %d dead %d", r, in, l, d, dd)
	}
}

// TestLease_NextPopAckWhileOthersWait: with ack: next-pop, a worker's next BLPOP acks its previous
// item even when it is not that worker's turn on the queue (another client is blocked on it first) and
// the pop then finds nothing. Found by bench/chaos: the item used to stay leased, expire, and bounce
// between two idle workers until it was dead.
func TestLease_NextPopAckWhileOthersWait(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.Ack = "next-pop" })
	ctx := e2eCtx(t)
	b := e.Client(t, 3, func(o *redis.Options) { o.PoolSize = 1 })
	if err := e.Direct.RPush(ctx, "jobs", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if res, err := b.Do(ctx, "blpop", "jobs", "1").StringSlice(); err != nil || len(res) != 2 {
		t.Fatalf("B's BLPOP = %q, %v", res, err)
	}
	a := e2eBlpop(ctx, e.Client(t, 3), 1, true, 0, "jobs")
	e2eEventually(t, "A blocked", func() bool { return e.Qgate.Server.Stats().BlockedClients == 1 })
	if err := b.Do(ctx, "blpop", "jobs", "0.05").Err(); err != redis.Nil {
		t.Fatalf("B's second BLPOP = %v, want nil", err)
	}
	if _, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); in != 0 || l != 0 {
		t.Fatalf("after B's next pop: in flight %d, leases %d; want 0 0 (acked)", in, l)
	}
	e2eNothing(t, "A's reply", a)
}

// evalshaCalls returns how many EVALSHA calls the backend ran so far.
func evalshaCalls(t *testing.T, e *e2eEnv, ctx context.Context) int64 {
	t.Helper()
	info := e.Direct.Info(ctx, "commandstats").Val()
	_, rest, ok := strings.Cut(info, "cmdstat_evalsha:calls=")
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	return n
}

// N clients blocked on one at-least-once queue and N items pushed at once: one take leases for the
// waiters behind it (lease_pop_each), each client gets one item leased to its own connection (its
// next pop acks it: owner-checked), and far fewer scripts run than one per waiter.
func TestLease_BlockingBatchedTake(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.Ack = "next-pop" })
	ctx := e2eCtx(t)
	const n = 20
	clients := make([]*redis.Client, n)
	results := make([]<-chan e2eBlpopResult, n)
	for i := range clients {
		clients[i] = e.Client(t, 3, func(o *redis.Options) { o.PoolSize = 1 })
		results[i] = e2eBlpop(ctx, clients[i], i, true, 0, "jobs")
	}
	e2eEventually(t, "clients blocked", func() bool { return e.Qgate.Server.Stats().BlockedClients == n })
	before := evalshaCalls(t, e, ctx)
	items := make([]any, n)
	for i := range items {
		items[i] = strconv.Itoa(i)
	}
	if err := e.Direct.RPush(ctx, "jobs", items...).Err(); err != nil { // straight into Redis
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, ch := range results {
		r := <-ch
		if r.err != nil || len(r.val) != 2 || r.val[0] != "jobs" {
			t.Fatalf("client %d: BLPOP = %q, %v", i, r.val, r.err)
		}
		if seen[r.val[1]] {
			t.Fatalf("%s delivered twice", r.val[1])
		}
		seen[r.val[1]] = true
	}
	if got, limit := evalshaCalls(t, e, ctx)-before, int64(n/2); got >= limit {
		t.Fatalf("%d scripts ran for %d waiters, want fewer than %d (batched takes)", got, n, limit)
	}
	if r, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); r != 0 || in != n || l != n {
		t.Fatalf("ready %d inflight %d leases %d, want 0 %d %d", r, in, l, n, n)
	}
	for i, c := range clients {
		if err := c.LPop(ctx, "jobs").Err(); err != redis.Nil { // acks its own lease
			t.Fatalf("client %d: LPOP = %v, want nil", i, err)
		}
	}
	if r, in, l, d, dd := leaseCounts(t, e, ctx, "jobs"); r+in+l+d+dd != 0 {
		t.Fatalf("left over: ready %d inflight %d leases %d delayed %d dead %d", r, in, l, d, dd)
	}
}
