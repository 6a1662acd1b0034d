package rdb_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// Contract tests of the reaper's schedule scripts (sched_*.lua), shard 0's keys.

var (
	schedKeys  = rdb.ScheduleKeys(0)
	schedTouch = rdb.ScheduleTouchKeys(0)
	regKey     = schedKeys[0]
	dueKey     = schedKeys[1]
	genKey     = schedKeys[2]
)

// schedState sets queue q's registry note, due time and generation.
func schedState(noted, due int64, gen int) func(t *testing.T, c *redis.Client) {
	return func(t *testing.T, c *redis.Client) {
		do(t, c, "ZADD", regKey, noted, q)
		do(t, c, "ZADD", dueKey, due, q)
		do(t, c, "HSET", genKey, q, gen)
	}
}

// wantSched checks q's registry note, due time and generation.
func wantSched(noted, due int64, gen string) func(t *testing.T, c *redis.Client, _ any) {
	return func(t *testing.T, c *redis.Client, _ any) {
		t.Helper()
		if got := score(t, c, regKey, q); got != noted {
			t.Fatalf("registry note %d, want %d", got, noted)
		}
		if got := score(t, c, dueKey, q); got != due {
			t.Fatalf("due %d, want %d", got, due)
		}
		if got := c.HGet(context.Background(), genKey, q).Val(); got != gen {
			t.Fatalf("generation %q, want %q", got, gen)
		}
	}
}

func TestSchedule_ShardKeysShareASlotInTheShardsRange(t *testing.T) {
	for k := 0; k < rdb.ScheduleShards; k++ {
		keys := rdb.ScheduleKeys(k)
		slot := rdb.Slot(keys[0])
		for _, key := range keys {
			if got, want := rdb.Slot(key), slot; got != want {
				t.Fatalf("shard %d: %s in slot %d, want %d", k, key, got, want)
			}
		}
		if got, want := int(slot)*rdb.ScheduleShards/rdb.NumSlots, k; got != want {
			t.Fatalf("shard %d's keys are in slot %d, which is shard %d's range", k, slot, got)
		}
	}
	for _, name := range []string{"q", "jobs", "a{t}", "{t}b"} {
		if got, want := rdb.ScheduleShard(name), int(rdb.Slot(name))*rdb.ScheduleShards/rdb.NumSlots; got != want {
			t.Fatalf("ScheduleShard(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestContract_SchedRegister(t *testing.T) {
	runContract(t, rdb.SchedRegister, []contractCase{
		{
			name: "a new queue: registered, due, generation 1",
			keys: schedKeys, args: []any{100, q, 150},
			want: int64(1), after: map[string]any{regKey: list(q), dueKey: list(q), genKey: map[string]string{q: "1"}},
			check: wantSched(100, 150, "1"),
		},
		{
			name:  "a known queue: the latest note and the earliest due time are kept",
			setup: schedState(100, 120, 4),
			keys:  schedKeys, args: []any{90, q, 130},
			want: int64(0), check: wantSched(100, 120, "5"),
		},
		{
			name:  "a later note and an earlier due time replace",
			setup: schedState(100, 120, 4),
			keys:  schedKeys, args: []any{200, q, 110},
			want: int64(1), check: wantSched(200, 110, "5"),
		},
	})
}

func TestContract_SchedTouch(t *testing.T) {
	runContract(t, rdb.SchedTouch, []contractCase{
		{
			name:  "earliest kept per queue, every generation bumped, unknown queues added",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", dueKey, 100, q); do(t, c, "HSET", genKey, q, 3) },
			keys:  schedTouch, args: []any{150, q, 50, "other"},
			want:  int64(2),
			after: map[string]any{dueKey: list("other", q), genKey: map[string]string{q: "4", "other": "1"}},
		},
		{
			name:  "an earlier time replaces",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", dueKey, 100, q) },
			keys:  schedTouch, args: []any{60, q},
			want: int64(1),
			check: func(t *testing.T, c *redis.Client, _ any) {
				if got := score(t, c, dueKey, q); got != 60 {
					t.Fatalf("due %d, want 60", got)
				}
			},
		},
		{name: "no pairs", keys: schedTouch, args: nil, want: int64(0), after: map[string]any{}},
	})
}

func TestContract_SchedClaim(t *testing.T) {
	runContract(t, rdb.SchedClaim, []contractCase{
		{
			name: "due: held until now + hold, generation bumped", setup: schedState(1, 100, 7),
			keys: schedTouch, args: []any{100, 30, q},
			want: int64(8), check: wantSched(1, 130, "8"),
		},
		{
			name: "not due yet (another reaper holds it): -1, unchanged", setup: schedState(1, 101, 7),
			keys: schedTouch, args: []any{100, 30, q},
			want: int64(-1), check: wantSched(1, 101, "7"),
		},
		{name: "unknown queue: -1", keys: schedTouch, args: []any{100, 30, q}, want: int64(-1), after: map[string]any{}},
	})
}

func TestContract_SchedDone(t *testing.T) {
	runContract(t, rdb.SchedDone, []contractCase{
		{
			name: "same generation: the due time is set, even later", setup: schedState(100, 130, 8),
			keys: schedKeys, args: []any{q, 8, 5000, "0", 0},
			want: int64(1), check: wantSched(100, 5000, "8"),
		},
		{
			name: "generation moved (a touch it did not see): the due time is only lowered", setup: schedState(100, 60, 9),
			keys: schedKeys, args: []any{q, 8, 5000, "0", 0},
			want: int64(0), check: wantSched(100, 60, "9"),
		},
		{
			name: "generation moved, earlier next: lowered", setup: schedState(100, 6000, 9),
			keys: schedKeys, args: []any{q, 8, 5000, "1", 1000},
			want: int64(0), check: wantSched(100, 5000, "9"),
		},
		{
			name: "idle and noted before the cutoff: forgotten", setup: schedState(100, 130, 8),
			keys: schedKeys, args: []any{q, 8, 5000, "1", 101},
			want: int64(2), after: map[string]any{},
		},
		{
			name: "idle but noted at the cutoff: kept, due at the recheck", setup: schedState(100, 130, 8),
			keys: schedKeys, args: []any{q, 8, 5000, "1", 100},
			want: int64(1), check: wantSched(100, 5000, "8"),
		},
	})
}

// TestSchedule_AllowOOM: the schedule scripts run when Redis is at maxmemory with noeviction (a pop
// registers first; the reaper frees memory).
func TestSchedule_AllowOOM(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *rdb.Script
		keys []string
		args []any
	}{
		{"sched_register", rdb.SchedRegister, schedKeys, []any{100, q, 100}},
		{"sched_touch", rdb.SchedTouch, schedTouch, []any{100, q}},
		{"sched_claim", rdb.SchedClaim, schedTouch, []any{100, 30, q}},
		{"sched_done", rdb.SchedDone, schedKeys, []any{q, 1, 500, "0", 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fresh(t)
			schedState(1, 1, 1)(t, c)
			outOfMemory(t, c)
			if err := tc.s.Run(context.Background(), c, tc.keys, tc.args...).Err(); err != nil {
				t.Fatalf("at maxmemory: %v", err)
			}
		})
	}
}
