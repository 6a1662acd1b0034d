package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// Lease receipts: QACK, QNACK and QEXTEND need the receipt of the delivery, which only its receiver
// gets, not the envelope id that anyone who peeks sees.

// TestLease_PeekedIDCannotAck: a client that only peeked at an item (LRANGE, QDEAD) cannot ack,
// extend or nack the lease another client holds on it; the holder's ack works.
func TestLease_PeekedIDCannotAck(t *testing.T) {
	e := leaseEnv(t, func(r *policy.Rule) { r.MaxAttempts = ptr(1) })
	ctx := e2eCtx(t)
	holder, peeker := envClient(t, e, ctx), envClient(t, e, ctx)
	if err := holder.RPush(ctx, "jobs", "x").Err(); err != nil {
		t.Fatal(err)
	}
	peeked, err := peeker.LRange(ctx, "jobs", 0, -1).Result()
	if err != nil || len(peeked) != 1 {
		t.Fatalf("LRANGE = %q, %v", peeked, err)
	}
	if p := mustDecode(t, peeked[0]); p.Receipt != "" {
		t.Fatalf("LRANGE shows a receipt: %s", peeked[0])
	}
	id := mustDecode(t, peeked[0]).ID
	got := mustDecode(t, holder.LPop(ctx, "jobs").Val())
	if got.ID != id || got.Receipt == "" || got.Receipt == id {
		t.Fatalf("holder got id %s receipt %q; want id %s and a receipt of its own", got.ID, got.Receipt, id)
	}
	for _, cmd := range [][]interface{}{{"qack", "jobs", id}, {"qextend", "jobs", id, 1}, {"qnack", "jobs", id, 0}} {
		if n, err := peeker.Do(ctx, cmd...).Int(); err != nil || n != 0 {
			t.Fatalf("%v by a client that only peeked = %d, %v; want 0", cmd, n, err)
		}
	}
	if r, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); r != 0 || in != 1 || l != 1 {
		t.Fatalf("after the peeker's tries: ready %d inflight %d leases %d; want 0 1 1", r, in, l)
	}
	if n, err := holder.Do(ctx, "qack", "jobs", got.Receipt).Int(); err != nil || n != 1 {
		t.Fatalf("holder's QACK = %d, %v; want 1", n, err)
	}

	// A dead record shows the stored envelope: no receipt.
	if err := holder.RPush(ctx, "jobs", "poison").Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := holder.Do(ctx, "qnack", "jobs", mustReceipt(t, holder.LPop(ctx, "jobs").Val()), 0).Int(); err != nil || n != 1 {
		t.Fatalf("QNACK = %d, %v", n, err)
	}
	recs, err := e.Client(t, 3).Do(ctx, "qdead", "jobs").StringSlice()
	if err != nil || len(recs) != 1 || strings.Contains(recs[0], "receipt") {
		t.Fatalf("QDEAD = %q, %v; want one record without a receipt", recs, err)
	}
}

// TestLease_AckFromAnotherConnection: a worker that pops on one pooled connection and acks, extends or
// nacks on another with the receipt it received succeeds; closing the popping connection then gives
// nothing back.
func TestLease_AckFromAnotherConnection(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	c := e.Client(t, 3, func(o *redis.Options) {
		o.PoolSize = 2
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "qdelivery", "envelope").Err() }
	})
	popper, acker := c.Conn(), c.Conn()
	if a, b := popper.ClientID(ctx).Val(), acker.ClientID(ctx).Val(); a == b {
		t.Fatalf("both pooled connections have client id %d", a)
	}
	if err := popper.RPush(ctx, "jobs", "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	items, err := popper.LPopCount(ctx, "jobs", 2).Result()
	if err != nil || len(items) != 2 {
		t.Fatalf("LPOP 2 = %q, %v", items, err)
	}
	ra, rb := mustReceipt(t, items[0]), mustReceipt(t, items[1])
	if n, err := acker.Do(ctx, "qextend", "jobs", ra, 60000).Int(); err != nil || n != 1 {
		t.Fatalf("QEXTEND on another connection = %d, %v; want 1", n, err)
	}
	if n, err := acker.Do(ctx, "qack", "jobs", ra).Int(); err != nil || n != 1 {
		t.Fatalf("QACK on another connection = %d, %v; want 1", n, err)
	}
	if n, err := acker.Do(ctx, "qnack", "jobs", rb, 0).Int(); err != nil || n != 1 {
		t.Fatalf("QNACK on another connection = %d, %v; want 1", n, err)
	}
	if r, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); r != 1 || in != 0 || l != 0 {
		t.Fatalf("ready %d inflight %d leases %d; want 1 0 0", r, in, l)
	}
	_ = popper.Close()
	_ = acker.Close()
	_ = c.Close()
	e2eEventually(t, "both connections closed", func() bool { return e.Qgate.Server.Stats().ConnectedClients == 0 })
	if r, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); r != 1 || in != 0 || l != 0 {
		t.Fatalf("after the popper closed: ready %d inflight %d leases %d; want 1 0 0 (nothing requeued twice)", r, in, l)
	}
}

// TestLease_EarlierReceiptRefused: after a lease expires and the item is delivered again, the first
// delivery's receipt no longer acks, extends or nacks anything; the new one does.
func TestLease_EarlierReceiptRefused(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	c := envClient(t, e, ctx)
	if err := c.RPush(ctx, "jobs", "x").Err(); err != nil {
		t.Fatal(err)
	}
	first := mustDecode(t, c.LPop(ctx, "jobs").Val())
	if n, err := c.Do(ctx, "qextend", "jobs", first.Receipt, 1).Int(); err != nil || n != 1 {
		t.Fatalf("QEXTEND = %d, %v", n, err)
	}
	reapUntil(t, e, "expired lease requeued", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 1 })
	second := mustDecode(t, c.LPop(ctx, "jobs").Val())
	if second.ID != first.ID || second.Receipt == "" || second.Receipt == first.Receipt {
		t.Fatalf("second delivery id %s receipt %q; want id %s and a new receipt (first %q)", second.ID, second.Receipt, first.ID, first.Receipt)
	}
	for _, cmd := range [][]interface{}{{"qack", "jobs", first.Receipt}, {"qextend", "jobs", first.Receipt, 1}, {"qnack", "jobs", first.Receipt, 0}} {
		if n, err := c.Do(ctx, cmd...).Int(); err != nil || n != 0 {
			t.Fatalf("%v with the first delivery's receipt = %d, %v; want 0", cmd, n, err)
		}
	}
	if _, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); in != 1 || l != 1 {
		t.Fatalf("inflight %d leases %d; want 1 1", in, l)
	}
	if n, err := c.Do(ctx, "qack", "jobs", second.Receipt).Int(); err != nil || n != 1 {
		t.Fatalf("QACK with the second receipt = %d, %v; want 1", n, err)
	}
}

// TestLease_EmbeddedBackend: the lease scripts run on the embedded backend (miniredis does not
// understand the scripts' flags line: qgate runs their plain variant), through every path: a pop
// pipelined with the batch, a chunked pop, QACK, QNACK, QEXTEND, a blocking pop, the requeue on close
// and the reaper.
func TestLease_EmbeddedBackend(t *testing.T) {
	cfg := proxy.DefaultConfig() // no backend: the embedded one
	cfg.Queues = []policy.Rule{{Match: "jobs*", Delivery: "at-least-once",
		Backoff: policy.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Jitter: ptr(0.0)}}}
	q := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	c := q.Client(t, func(o *redis.Options) {
		o.PoolSize = 1
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.Do(ctx, "qdelivery", "envelope").Err() }
	})
	admin := q.Client(t)
	ready := func() int64 {
		t.Helper()
		m, err := admin.Do(ctx, "qstats", "jobs").Result()
		if err != nil {
			t.Fatalf("QSTATS: %v", err)
		}
		return m.(map[interface{}]interface{})["ready"].(int64)
	}
	const n = rdb.Chunk + 500
	vals := make([]interface{}, n)
	for i := range vals {
		vals[i] = i
	}
	if err := c.RPush(ctx, "jobs", vals...).Err(); err != nil {
		t.Fatal(err)
	}
	r := mustReceipt(t, c.LPop(ctx, "jobs").Val())
	if n, err := c.Do(ctx, "qextend", "jobs", r, 60000).Int(); err != nil || n != 1 {
		t.Fatalf("QEXTEND = %d, %v", n, err)
	}
	if n, err := c.Do(ctx, "qnack", "jobs", r, 0).Int(); err != nil || n != 1 {
		t.Fatalf("QNACK = %d, %v", n, err)
	}
	items, err := c.LPopCount(ctx, "jobs", n).Result()
	if err != nil || len(items) != n {
		t.Fatalf("LPOP %d: %d items, %v", n, len(items), err)
	}
	args := []interface{}{"qack", "jobs"}
	for _, it := range items {
		args = append(args, mustReceipt(t, it))
	}
	if got, err := c.Do(ctx, args...).Int(); err != nil || got != n {
		t.Fatalf("QACK = %d, %v; want %d", got, err, n)
	}
	if err := c.RPush(ctx, "jobs", "y").Err(); err != nil {
		t.Fatal(err)
	}
	if res, err := c.BLPop(ctx, time.Second, "jobs").Result(); err != nil || len(res) != 2 || mustReceipt(t, res[1]) == "" {
		t.Fatalf("BLPOP = %q, %v", res, err)
	}
	_ = c.Close()
	e2eEventually(t, "leases of the closed connection requeued", func() bool { return ready() == 1 })
	if _, err := q.Server.Reap(ctx); err != nil {
		t.Fatalf("Reap: %v", err)
	}
}
