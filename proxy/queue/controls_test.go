package queue

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// Engine tests of the queue controls (README "Queue controls") on miniredis; the scripts' contracts
// are pinned against redis-server in proxy/rdb/controls_contract_test.go.

func bytesOf(vals ...string) [][]byte {
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[i] = []byte(v)
	}
	return out
}

// sha is the SHA1 the engine's client runs s under.
func sha(e *testEngine, s *rdb.Script) string {
	return s.Cmd(context.Background(), e.cmds(), nil).Args()[1].(string)
}

// TestControl_PlainPushesKeepTheirCommand: a queue without max_length or delay sends exactly the
// command it sent before the controls existed; only controlled queues run control_push.
func TestControl_PlainPushesKeepTheirCommand(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{
		{Match: "capped", MaxLength: 5},
		{Match: "later", Delay: time.Second},
		{Match: "dd", Dedup: policy.Dedup{Key: "body"}},
	}, 0)
	for _, tc := range []struct {
		queue, want string
	}{{"plain", "rpush"}, {"dd", "evalsha " + sha(e, rdb.DedupPush)},
		{"capped", "evalsha " + sha(e, rdb.ControlPush)}, {"later", "evalsha " + sha(e, rdb.ControlPush)}} {
		op, err := e.Push(tc.queue, false, "p", bytesOf("a"))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(op.cmds), 1; got != want {
			t.Fatalf("%s: %d backend commands, want %d", tc.queue, got, want)
		}
		args := op.cmds[0].Args()
		got := args[0].(string)
		if got == "evalsha" {
			got += " " + args[1].(string)
		}
		if got != tc.want {
			t.Errorf("push to %s sends %q, want %q", tc.queue, got, tc.want)
		}
	}
}

func TestMaxLength_EngineCounts(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{
		{Match: "capped", MaxLength: 2, Envelope: new(bool)},
		{Match: "ring", MaxLength: 2, Overflow: "drop-oldest", Envelope: new(bool)},
	}, 0)
	op, _ := e.Push("capped", false, "p", bytesOf("a", "b", "c"))
	if _, err := run(e, op); err == nil || err.Error() != "ERR queue 'capped' is full (max_length 2)" {
		t.Fatalf("push of 3 onto max_length 2: %v", err)
	}
	if got, want := e.llen(t, "capped"), int64(0); got != want {
		t.Fatalf("LLEN after a refused push = %d, want %d", got, want)
	}
	op, _ = e.Push("ring", false, "p", bytesOf("a", "b", "c"))
	if n, err := run(e, op); err != nil || n != 2 {
		t.Fatalf("push of 3 onto a ring of 2 = %d, %v; want 2", n, err)
	}
	c := e.QueueCounts()
	if got, want := [2]int64{c["capped"].RejectedFull, c["ring"].Dropped}, [2]int64{1, 1}; got != want {
		t.Fatalf("rejected full, dropped = %v, want %v", got, want)
	}
}

func TestPause_EngineBatchedAndLeasedPops(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "alo", Delivery: "at-least-once"}, {Match: "*", Envelope: new(bool)}}, 0)
	e.push(t, "w", "1", "2")
	e.push(t, "alo", `{"n":1}`)
	for _, q := range []string{"w", "alo"} {
		if _, err := run(e, e.Pause(q)); err != nil {
			t.Fatal(err)
		}
	}
	ops := []*Result[*Pop]{e.Pop("w", true, -1), e.Pop("w", true, -1), e.Pop("w", true, 5)}
	e.Run([]Queued{ops[0], ops[1], ops[2]})
	for i, op := range ops {
		if p, err := op.Result(); err != nil || p != nil {
			t.Fatalf("pop %d of a paused queue: %v, %v; want nil", i+1, p, err)
		}
	}
	var c Consumer
	if p, err := run(e, e.LeasePop(&c, "alo", true, -1)); err != nil || p != nil {
		t.Fatalf("lease pop of a paused queue: %v, %v; want nil", p, err)
	}
	if st, err := run(e, e.QueueStats("w")); err != nil || !st.Paused || st.Ready != 2 {
		t.Fatalf("QueueStats of the paused queue: %+v, %v", st, err)
	}
	if was, err := run(e, e.Resume("w")); err != nil || !was {
		t.Fatalf("Resume = %v, %v; want true", was, err)
	}
	p, err := run(e, e.Pop("w", true, 5))
	if err != nil || p == nil || len(p.Items) != 2 {
		t.Fatalf("pop after resume: %v, %v", p, err)
	}
	e.Settle([]*Pop{p}, true)
	if got, want := e.transitFields("alo")+e.client.Exists(context.Background(), rdb.PausedKey("w")).Val(), int64(0); got != want {
		t.Fatalf("transit fields and pause flag left: %d", got)
	}
}

func TestDelay_EngineReaperPromotesIdenticalRawItems(t *testing.T) {
	e := newTestEngine(t, []policy.Rule{{Match: "*", Envelope: new(bool)}}, 0)
	op, err := e.PushDelayed("d", "p", time.Millisecond, bytesOf("same", "same"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := run(e, op); err != nil || r.Stored != 2 || r.Len != 0 {
		t.Fatalf("PushDelayed = %+v, %v; want 2 stored, ready list 0", r, err)
	}
	// The queue is registered for the reapers although nothing was ever popped from it.
	if _, err := e.client.ZScore(context.Background(), rdb.ScheduleRegistryKey(rdb.ScheduleShard("d")), "d").Result(); err == redis.Nil {
		t.Fatal("a delayed push did not register its queue for the reapers")
	}
	waitFor(t, "the reaper to move both delayed items", func() bool {
		_, _ = e.Reap(context.Background())
		return e.llen(t, "d") == 2
	})
	items := e.client.LRange(context.Background(), "d", 0, -1).Val()
	if got, want := items[0]+","+items[1], "same,same"; got != want {
		t.Fatalf("ready list %s, want %s (unwrapped)", got, want)
	}
}
