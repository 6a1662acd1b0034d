package queue

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// Engine unit tests on the embedded in-memory Redis (miniredis), through the Go API only: what a
// handler does (queue an operation, Run the batch, read the result, Settle its pops).

type testEngine struct {
	*Engine
	mr     *miniredis.Miniredis
	client *redis.Client
}

func newTestEngine(t *testing.T, rules []policy.Rule, maxBulk int64) *testEngine {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	rdb.UsePlainScripts(client) // miniredis does not understand script flags
	set, err := policy.NewSet(rules, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if maxBulk == 0 {
		maxBulk = 512 << 20
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := New(Options{Ctx: ctx, Client: client,
		Policies: func() *policy.Set { return set }, Log: slog.New(slog.DiscardHandler),
		Instance: "test", InstanceTTL: 10 * time.Second, MaxBulk: maxBulk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		e.Stop(sctx, time.Now().Add(time.Second))
		cancel()
		_ = client.Close()
		rdb.ForgetClient(client)
	})
	return &testEngine{Engine: e, mr: mr, client: client}
}

// run runs one operation as a batch of its own and returns its result.
func run[T any](e *testEngine, op *Result[T]) (T, error) {
	if !op.Sync() {
		e.Run([]Queued{op})
	}
	return op.Result()
}

func (e *testEngine) push(t *testing.T, queue string, vals ...string) {
	t.Helper()
	b := make([][]byte, len(vals))
	for i, v := range vals {
		b[i] = []byte(v)
	}
	op, err := e.Push(queue, false, "tester", b)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := run(e, op); err != nil || n < int64(len(vals)) {
		t.Fatalf("push: %d, %v", n, err)
	}
}

func (e *testEngine) llen(t *testing.T, queue string) int64 {
	t.Helper()
	n, err := run(e, e.Len(queue))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// transitFields is how many items this instance's transit record on queue holds.
func (e *testEngine) transitFields(queue string) int64 {
	return e.client.HLen(context.Background(), rdb.TransitKey(queue, e.instance)).Val()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEngine_PushPopDelivered(t *testing.T) {
	e := newTestEngine(t, nil, 0)
	e.push(t, "jobs", "a", "b")
	p, err := run(e, e.Pop("jobs", true, -1))
	if err != nil || p == nil {
		t.Fatalf("pop: %v, %v", p, err)
	}
	if got, want := len(p.Items), 1; got != want {
		t.Fatalf("items %d, want %d", got, want)
	}
	env, ok := envelope.Decode([]byte(p.Items[0]))
	if !ok {
		t.Fatalf("item %q is not an envelope", p.Items[0])
	}
	if got, want := envelope.Payload(p.Items[0]), "a"; got != want {
		t.Fatalf("payload %q, want %q", got, want)
	}
	if got, want := env.Producer, "tester"; got != want {
		t.Fatalf("producer %q, want %q", got, want)
	}
	if got, want := e.transitFields("jobs"), int64(1); got != want {
		t.Fatalf("transit record holds %d items before the reply, want %d", got, want)
	}
	e.Settle([]*Pop{p}, true)
	waitFor(t, "the delivered record to be deleted", func() bool { return e.transitFields("jobs") == 0 })
	if got, want := e.llen(t, "jobs"), int64(1); got != want {
		t.Fatalf("llen %d, want %d", got, want)
	}
}

func TestEngine_PopNotDeliveredGoesBack(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "raw", Envelope: new(bool)}}, 0)
	e.push(t, "raw", "a", "b", "c")
	p, err := run(e, e.Pop("raw", true, 2))
	if err != nil || p == nil {
		t.Fatalf("pop: %v, %v", p, err)
	}
	if got, want := len(p.Items), 2; got != want {
		t.Fatalf("items %d, want %d", got, want)
	}
	e.Settle([]*Pop{p}, false)
	got, err := run(e, e.Range("raw", []byte("0"), []byte("-1")))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("list %q, want %q", got, want)
	}
	if got, want := e.Stats().Returned, int64(2); got != want {
		t.Fatalf("returned %d, want %d", got, want)
	}
	if got, want := e.transitFields("raw"), int64(0); got != want {
		t.Fatalf("transit record holds %d items, want %d", got, want)
	}
}

func TestEngine_PopEmptyIsNil(t *testing.T) {
	e := newTestEngine(t, nil, 0)
	p, err := run(e, e.Pop("none", false, 5))
	if err != nil || p != nil {
		t.Fatalf("pop of an empty list: %v, %v; want nil", p, err)
	}
}

func TestEngine_PopCountChunked(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "*", Envelope: new(bool)}}, 0)
	vals := make([]string, 2500)
	for i := range vals {
		vals[i] = strconv.Itoa(i)
	}
	e.push(t, "big", vals...)
	p, err := run(e, e.Pop("big", true, 2400))
	if err != nil || p == nil {
		t.Fatalf("pop: %v, %v", p, err)
	}
	if got, want := len(p.Items), 2400; got != want {
		t.Fatalf("items %d, want %d", got, want)
	}
	if got, want := p.Items[1999], "1999"; got != want {
		t.Fatalf("item 1999 %q, want %q", got, want)
	}
	e.Settle([]*Pop{p}, true)
	waitFor(t, "the delivered records to be deleted", func() bool { return e.transitFields("big") == 0 })
	if got, want := e.llen(t, "big"), int64(100); got != want {
		t.Fatalf("llen %d, want %d", got, want)
	}
}

// TestEngine_BatchGroupsSinglePops: adjacent single pops of one batch run as one script call and
// each gets its own item, in order.
func TestEngine_BatchGroupsSinglePops(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "*", Envelope: new(bool)}}, 0)
	e.push(t, "w", "1", "2", "3")
	ops := []*Result[*Pop]{e.Pop("w", true, -1), e.Pop("w", true, -1), e.Pop("w", true, -1), e.Pop("w", true, -1)}
	batch := make([]Queued, len(ops))
	for i, op := range ops {
		batch[i] = op
	}
	e.Run(batch)
	var pops []*Pop
	for i, op := range ops {
		p, err := op.Result()
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			if p != nil {
				t.Fatalf("pop 4 of 3 items: %q, want nil", p.Items)
			}
			continue
		}
		if got, want := p.Items[0], strconv.Itoa(i+1); got != want {
			t.Fatalf("pop %d: %q, want %q", i+1, got, want)
		}
		pops = append(pops, p)
	}
	e.Settle(pops, true)
	waitFor(t, "the delivered records to be deleted", func() bool { return e.transitFields("w") == 0 })
}

func TestEngine_PushRejected(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "json_*", Format: "json"}}, 0)
	_, err := e.Push("json_q", false, "tester", [][]byte{[]byte(`{"a":1}`), []byte("nope")})
	var rej *RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("err %v, want a *RejectedError", err)
	}
	if got, want := rej.Index, 2; got != want {
		t.Fatalf("index %d, want %d", got, want)
	}
	if got, want := e.llen(t, "json_q"), int64(0); got != want {
		t.Fatalf("llen %d, want %d (all or nothing)", got, want)
	}
}

func TestEngine_PushTooLarge(t *testing.T) {
	e := newTestEngine(t, nil, 100)
	_, err := e.Push("q", false, "tester", [][]byte{[]byte("small")}) // the envelope alone is over 100 bytes
	var big *TooLargeError
	if !errors.As(err, &big) {
		t.Fatalf("err %v, want a *TooLargeError", err)
	}
	if got, want := big.Limit, int64(100); got != want {
		t.Fatalf("limit %d, want %d", got, want)
	}
}

func TestEngine_PushDedup(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "d", Dedup: policy.Dedup{Key: "body"}}}, 0)
	e.push(t, "d", "x")
	op, err := e.Push("d", false, "tester", [][]byte{[]byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := run(e, op); err != nil || n != 1 {
		t.Fatalf("duplicate push: %d, %v; want the length 1", n, err)
	}
}

var atLeastOnce = []policy.Rule{{Match: "alo*", Delivery: "at-least-once", VisibilityTimeout: time.Minute}}

func TestEngine_LeasePopAck(t *testing.T) {
	e := newTestEngine(t, atLeastOnce, 0)
	e.push(t, "alo", "a", "b")
	c := &Consumer{LeaseOwner: "test:1"}
	p, err := run(e, e.LeasePop(c, "alo", true, 2))
	if err != nil || p == nil {
		t.Fatalf("lease pop: %v, %v", p, err)
	}
	if got, want := len(p.Receipts), 2; got != want {
		t.Fatalf("receipts %d, want %d", got, want)
	}
	if got, want := len(c.Held["alo"]), 2; got != want {
		t.Fatalf("held %d, want %d", got, want)
	}
	st, err := run(e, e.QueueStats("alo"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.InFlight, int64(2); got != want {
		t.Fatalf("in flight %d, want %d", got, want)
	}
	n, err := run(e, e.Ack(c, "alo", []string{p.Receipts[0], "not-a-receipt"}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := n, int64(1); got != want {
		t.Fatalf("acked %d, want %d", got, want)
	}
	if got, want := e.Stats().Leases.Acked, int64(1); got != want {
		t.Fatalf("acked counter %d, want %d", got, want)
	}
	// The connection closes holding the other lease: its item is ready again at once.
	e.Requeue(c)
	if got, want := e.llen(t, "alo"), int64(1); got != want {
		t.Fatalf("llen after requeue %d, want %d", got, want)
	}
	st, _ = run(e, e.QueueStats("alo"))
	if got, want := st.InFlight, int64(0); got != want {
		t.Fatalf("in flight after requeue %d, want %d", got, want)
	}
}

func TestEngine_LeaseNackAndExtend(t *testing.T) {
	e := newTestEngine(t, atLeastOnce, 0)
	e.push(t, "alo", "a")
	c := &Consumer{LeaseOwner: "test:1"}
	p, err := run(e, e.LeasePop(c, "alo", true, -1))
	if err != nil || p == nil || len(p.Items) != 1 {
		t.Fatalf("lease pop: %v, %v", p, err)
	}
	if n, err := run(e, e.Extend("alo", p.Receipts[0], 60000)); err != nil || n != 1 {
		t.Fatalf("extend: %d, %v; want 1", n, err)
	}
	if n, err := run(e, e.Nack(c, "alo", p.Receipts[0], 0)); err != nil || n != 1 {
		t.Fatalf("nack: %d, %v; want 1", n, err)
	}
	if n, err := run(e, e.Nack(c, "alo", p.Receipts[0], 0)); err != nil || n != 0 {
		t.Fatalf("second nack: %d, %v; want 0", n, err)
	}
	if got, want := e.llen(t, "alo"), int64(1); got != want {
		t.Fatalf("llen after nack %d, want %d", got, want)
	}
	// Redelivered with a new receipt and one more attempt.
	p2, err := run(e, e.LeasePop(c, "alo", true, -1))
	if err != nil || p2 == nil {
		t.Fatalf("second lease pop: %v, %v", p2, err)
	}
	if p2.Receipts[0] == p.Receipts[0] {
		t.Fatal("redelivery kept the old receipt")
	}
	env, _ := envelope.Decode([]byte(p2.Items[0]))
	if got, want := env.Attempts, 1; got != want {
		t.Fatalf("attempts %d, want %d", got, want)
	}
}

// TestEngine_LeaseNextPopAcks: with ack: next-pop the consumer's next pop acks its previous one.
func TestEngine_LeaseNextPopAcks(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "np", Delivery: "at-least-once", Ack: "next-pop"}}, 0)
	e.push(t, "np", "a", "b")
	c := &Consumer{LeaseOwner: "test:1"}
	for i := 0; i < 3; i++ {
		if _, err := run(e, e.LeasePop(c, "np", true, -1)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := e.Stats().Leases.Acked, int64(2); got != want {
		t.Fatalf("acked %d, want %d", got, want)
	}
	st, _ := run(e, e.QueueStats("np"))
	if got, want := st.InFlight, int64(0); got != want {
		t.Fatalf("in flight %d, want %d", got, want)
	}
}

// chanParker waits on the waiter's channel, as a connection waits on its socket.
type chanParker struct{ gone bool }

func (p *chanParker) Park(w *Waiter, deadline time.Time) bool {
	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-w.Ready():
		return true
	case <-timer:
		return false
	}
}

func (p *chanParker) Wake()      {}
func (p *chanParker) Gone() bool { return p.gone }

func TestEngine_BlockPopWakesOnPush(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "*", Envelope: new(bool)}}, 0)
	go func() {
		time.Sleep(50 * time.Millisecond)
		e.client.RPush(context.Background(), "b2", "x") // straight into Redis, as another program would
	}()
	p, err := e.BlockPop([]string{"b1", "b2"}, true, 5*time.Second, &chanParker{})
	if err != nil || p == nil {
		t.Fatalf("block pop: %v, %v", p, err)
	}
	if got, want := p.Key+"="+p.Items[0], "b2=x"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	e.Settle([]*Pop{p}, true)
	if got, want := e.Stats().Blocked, 0; got != want {
		t.Fatalf("blocked %d, want %d", got, want)
	}
}

func TestEngine_BlockPopTimesOut(t *testing.T) {
	e := newTestEngine(t, nil, 0)
	start := time.Now()
	p, err := e.BlockPop([]string{"empty"}, true, 100*time.Millisecond, &chanParker{})
	if err != nil || p != nil {
		t.Fatalf("block pop: %v, %v; want nil", p, err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("returned after %v, before the timeout", d)
	}
}

func TestEngine_BlockLeasePop(t *testing.T) {
	e := newTestEngine(t, atLeastOnce, 0)
	go func() {
		time.Sleep(50 * time.Millisecond)
		if op, err := e.Push("alo", false, "tester", [][]byte{[]byte("a")}); err == nil {
			_, _ = run(e, op)
		}
	}()
	c := &Consumer{LeaseOwner: "test:1"}
	p, err := e.BlockLeasePop(c, []string{"alo"}, true, 5*time.Second, &chanParker{})
	if err != nil || p == nil {
		t.Fatalf("block lease pop: %v, %v", p, err)
	}
	if got, want := envelope.Payload(p.Items[0]), "a"; got != want {
		t.Fatalf("payload %q, want %q", got, want)
	}
	if got, want := len(c.Held["alo"]), 1; got != want {
		t.Fatalf("held %d, want %d", got, want)
	}
}

// TestEngine_LeasePopChunked: a COUNT above rdb.Chunk leases in several calls (a Sync operation), and
// the next pop of a next-pop queue acks them all, even with COUNT 0.
func TestEngine_LeasePopChunked(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "np", Delivery: "at-least-once", Ack: "next-pop"}}, 0)
	vals := make([]string, rdb.Chunk+500)
	for i := range vals {
		vals[i] = strconv.Itoa(i)
	}
	e.push(t, "np", vals...)
	c := &Consumer{LeaseOwner: "test:1"}
	want := len(vals) - 100
	op := e.LeasePop(c, "np", true, int64(want))
	if !op.Sync() {
		t.Fatal("a pop over rdb.Chunk items is not a Sync operation")
	}
	p, err := run(e, op)
	if err != nil || p == nil {
		t.Fatalf("lease pop: %v, %v", p, err)
	}
	if got := len(p.Items); got != want {
		t.Fatalf("items %d, want %d", got, want)
	}
	p, err = run(e, e.LeasePop(c, "np", true, 0))
	if err != nil {
		t.Fatal(err)
	}
	if p != nil && len(p.Items) != 0 {
		t.Fatalf("COUNT 0 leased %d items", len(p.Items))
	}
	if got := e.Stats().Leases.Acked; got != int64(want) {
		t.Fatalf("acked %d, want %d", got, want)
	}
	if got, want := e.llen(t, "np"), int64(100); got != want {
		t.Fatalf("llen %d, want %d", got, want)
	}
}

// goneParker is a client that leaves at the instant its wait is served: Park sees the wait done but
// reports the client gone (afterServed: Park returns true, then Gone), the race a kill of the client
// or a reset makes with a take.
type goneParker struct {
	afterServed bool
	gone        bool
}

func (p *goneParker) Park(w *Waiter, deadline time.Time) bool {
	select {
	case <-w.Ready():
	case <-time.After(5 * time.Second):
	}
	p.gone = true
	return p.afterServed
}

func (p *goneParker) Wake()      {}
func (p *goneParker) Gone() bool { return p.gone }

// TestEngine_BlockPopTakenForGoneClientGoesBack: an item the hub took for a waiter whose client left at
// that instant goes back to the head of its list, in order, and no transit record is left.
func TestEngine_BlockPopTakenForGoneClientGoesBack(t *testing.T) {
	for _, afterServed := range []bool{false, true} {
		e := newTestEngine(t, []policy.Rule{{Match: "*", Envelope: new(bool)}}, 0)
		go func() {
			time.Sleep(50 * time.Millisecond)
			if op, err := e.Push("gb", false, "tester", [][]byte{[]byte("a"), []byte("b")}); err == nil {
				_, _ = run(e, op)
			}
		}()
		p, err := e.BlockPop([]string{"gb"}, true, 5*time.Second, &goneParker{afterServed: afterServed})
		if err != nil || p != nil {
			t.Fatalf("afterServed=%v: block pop = %v, %v; want nil (client gone)", afterServed, p, err)
		}
		if got, err := e.client.LRange(context.Background(), "gb", 0, -1).Result(); err != nil || strings.Join(got, ",") != "a,b" {
			t.Fatalf("afterServed=%v: list %v, %v; want a,b", afterServed, got, err)
		}
		if n := e.transitFields("gb"); n != 0 {
			t.Fatalf("afterServed=%v: %d transit fields left", afterServed, n)
		}
		if st := e.Stats(); st.Returned != 1 || st.Lost != 0 || st.Blocked != 0 {
			t.Fatalf("afterServed=%v: returned %d lost %d blocked %d; want 1 0 0", afterServed, st.Returned, st.Lost, st.Blocked)
		}
	}
}

// TestEngine_BlockLeasePopTakenForGoneClientGoesBack: the same for an at-least-once queue: the lease
// taken for the gone client ends, the item is back at the head without an attempt counted.
func TestEngine_BlockLeasePopTakenForGoneClientGoesBack(t *testing.T) {
	for _, afterServed := range []bool{false, true} {
		e := newTestEngine(t, atLeastOnce, 0)
		go func() {
			time.Sleep(50 * time.Millisecond)
			if op, err := e.Push("alo", false, "tester", [][]byte{[]byte("a"), []byte("b")}); err == nil {
				_, _ = run(e, op)
			}
		}()
		c := &Consumer{LeaseOwner: "test:1"}
		p, err := e.BlockLeasePop(c, []string{"alo"}, true, 5*time.Second, &goneParker{afterServed: afterServed})
		if err != nil || p != nil {
			t.Fatalf("afterServed=%v: block lease pop = %v, %v; want nil (client gone)", afterServed, p, err)
		}
		got, err := e.client.LRange(context.Background(), "alo", 0, -1).Result()
		if err != nil || len(got) != 2 || envelope.Payload(got[0]) != "a" || envelope.Payload(got[1]) != "b" {
			t.Fatalf("afterServed=%v: list %v, %v; want a, b", afterServed, got, err)
		}
		if env, ok := envelope.Decode([]byte(got[0])); !ok || env.Attempts != 0 {
			t.Fatalf("afterServed=%v: returned item %q counts an attempt", afterServed, got[0])
		}
		st, _ := run(e, e.QueueStats("alo"))
		if st.InFlight != 0 || len(c.Held) != 0 {
			t.Fatalf("afterServed=%v: in flight %d, held %v; want none", afterServed, st.InFlight, c.Held)
		}
		if s := e.Stats(); s.Leases.Leased != 0 || s.Returned != 1 {
			t.Fatalf("afterServed=%v: leased %d returned %d; want 0 1", afterServed, s.Leases.Leased, s.Returned)
		}
	}
}
