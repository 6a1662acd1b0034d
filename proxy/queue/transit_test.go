package queue

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// Delivered pops' fields deleted by the queue's next pop (DESIGN.md "The transit record"), on the
// embedded Redis: the delete loop's wait is made an hour, so only a carrying pop can delete them.

// newEngineOn starts an engine with its own instance id on mr; stop says whether the test's end stops
// it (false: the test abandons it, as a kill -9 would).
func newEngineOn(t *testing.T, mr *miniredis.Miniredis, instance string, ttl time.Duration, stop bool) *testEngine {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	rdb.UsePlainScripts(client)
	set, err := policy.NewSet([]policy.Rule{{Match: "*", Envelope: new(bool)}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := New(Options{Ctx: ctx, Client: client,
		Policies: func() *policy.Set { return set }, Log: slog.New(slog.DiscardHandler),
		Instance: instance, InstanceTTL: ttl, MaxBulk: 512 << 20})
	if err != nil {
		t.Fatal(err)
	}
	e.transit.idle = time.Hour
	t.Cleanup(func() {
		if stop {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			e.Stop(sctx, time.Now().Add(time.Second))
		} else {
			e.Abandon()
			e.Forget(ctx)
		}
		cancel()
		_ = client.Close()
		rdb.ForgetClient(client)
	})
	return &testEngine{Engine: e, mr: mr, client: client}
}

// fields returns the engine's transit record on queue: field -> item.
func (e *testEngine) fields(t *testing.T, queue string) map[string]string {
	t.Helper()
	m, err := e.client.HGetAll(context.Background(), rdb.TransitKey(queue, e.instance)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (e *testEngine) pop1(t *testing.T, queue string) *Pop {
	t.Helper()
	p, err := run(e, e.Pop(queue, true, -1))
	if err != nil || p == nil {
		t.Fatalf("pop: %v, %v", p, err)
	}
	return p
}

func TestTransit_NextPopDeletesDeliveredFields(t *testing.T) {
	e := newEngineOn(t, miniredis.RunT(t), "a", 10*time.Second, true)
	e.push(t, "q", "1", "2", "3")
	p1 := e.pop1(t, "q")
	e.Settle([]*Pop{p1}, true)
	if got, want := len(e.fields(t, "q")), 1; got != want {
		t.Fatalf("record after a delivered pop holds %d fields, want %d (the next pop deletes it)", got, want)
	}
	p2 := e.pop1(t, "q")
	if got, want := e.fields(t, "q"), map[string]string{p2.parts[0].field: "2"}; !equalMaps(got, want) {
		t.Fatalf("record after the next pop = %v, want only the new pop's %v", got, want)
	}
	// A batch of several pops carries the same way.
	e.Settle([]*Pop{p2}, true)
	ops := []*Result[*Pop]{e.Pop("q", true, -1), e.Pop("q", true, -1)}
	e.Run([]Queued{ops[0], ops[1]})
	p3, err := ops[0].Result()
	if err != nil || p3 == nil {
		t.Fatalf("pop 3: %v, %v", p3, err)
	}
	if p4, err := ops[1].Result(); err != nil || p4 != nil {
		t.Fatalf("pop 4 of 3 items: %v, %v; want nil", p4, err)
	}
	if got, want := e.fields(t, "q"), map[string]string{p3.parts[0].field: "3"}; !equalMaps(got, want) {
		t.Fatalf("record after a batch = %v, want %v", got, want)
	}
	if got := e.transit.raced.Load(); got != 0 {
		t.Fatalf("redelivery risk %d, want 0", got)
	}
}

// TestTransit_CarryingPopFailsDeletesAtOnce: the carrying pop meets a key of another type (WRONGTYPE:
// the script writes nothing); the delete loop deletes the delivered fields at once, not after its wait.
func TestTransit_CarryingPopFailsDeletesAtOnce(t *testing.T) {
	e := newEngineOn(t, miniredis.RunT(t), "a", 10*time.Second, true)
	e.push(t, "q", "1")
	p1 := e.pop1(t, "q")
	e.Settle([]*Pop{p1}, true)
	if err := e.mr.Set("q", "a string"); err != nil {
		t.Fatal(err)
	}
	if p, err := run(e, e.Pop("q", true, -1)); err == nil {
		t.Fatalf("pop of a string key: %v, want WRONGTYPE", p)
	}
	waitFor(t, "the delivered field to be deleted", func() bool { return e.transitFields("q") == 0 })
	if got := e.transit.raced.Load(); got != 0 {
		t.Fatalf("redelivery risk %d, want 0", got)
	}
}

// TestTransit_LastFlushDeletesWhatUnansweredPopsCarry: a pop carrying a delivered pop's delete never
// gets its reply (stuck behind a frozen backend, or never sent) when the engine is abandoned; the
// last flush deletes that field itself, so no other instance gives the delivered item back.
func TestTransit_LastFlushDeletesWhatUnansweredPopsCarry(t *testing.T) {
	e := newEngineOn(t, miniredis.RunT(t), "a", 10*time.Second, false)
	e.push(t, "q", "1", "2")
	p1 := e.pop1(t, "q")
	e.Settle([]*Pop{p1}, true)
	g := &popGroup{t: e.transit, key: "q"}
	e.transit.takeDelivered(g)
	if got, want := len(g.carry), 1; got != want {
		t.Fatalf("the next pop carries %d delivered pops, want %d", got, want)
	}
	e.Abandon()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Forget(ctx)
	if got := e.fields(t, "q"); len(got) != 0 {
		t.Fatalf("record after the last flush = %v, want empty (item 1 was delivered)", got)
	}
	if got := e.transit.raced.Load(); got != 0 {
		t.Fatalf("redelivery risk %d, want 0 (the carrying pop's own delete is not a race)", got)
	}
}

// TestTransit_KilledAfterCarryingPop: an instance delivers pop 1, pops 2 (which deletes pop 1's field)
// and dies before pop 2's reply is written. Another instance gives back item 2 only: the delivered
// item 1 never comes back.
func TestTransit_KilledAfterCarryingPop(t *testing.T) {
	mr := miniredis.RunT(t)
	a := newEngineOn(t, mr, "a", time.Hour, false) // beats once an hour: dead once its beat is old
	a.push(t, "q", "1", "2", "3")
	p1 := a.pop1(t, "q")
	a.Settle([]*Pop{p1}, true)
	a.pop1(t, "q") // never settled: a dies with its reply unwritten
	// a's last heartbeat is a minute old.
	if _, err := mr.ZAdd(rdb.InstancesKey, float64(time.Now().Add(-time.Minute).UnixMilli()), "a"); err != nil {
		t.Fatal(err)
	}
	b := newEngineOn(t, mr, "b", time.Second, true)
	waitFor(t, "a's undelivered item back", func() bool {
		_, _ = b.Reap(context.Background())
		return b.llen(t, "q") == 2
	})
	if got, want := b.client.LRange(context.Background(), "q", 0, -1).Val(), []string{"2", "3"}; !slices.Equal(got, want) {
		t.Fatalf("queue after recovery = %v, want %v", got, want)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
