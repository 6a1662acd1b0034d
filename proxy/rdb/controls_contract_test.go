package rdb_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// Contract tests of the queue control scripts (README "Queue controls") and of the pause checks and
// the delayed raw-value wrapping added to the pop and promote scripts.

func init() {
	contracts["control_push.lua"] = "TestContract_ControlPush"
	contracts["resume.lua"] = "TestContract_Resume"
}

// cpArgs are control_push's ARGV before the values.
func cpArgs(push string, max int, overflow, window string, delay int, rawPrefix string, vals ...string) []any {
	out := []any{push, max, overflow, window, delay, rawPrefix}
	for _, v := range vals {
		out = append(out, v)
	}
	return out
}

func TestContract_ControlPush(t *testing.T) {
	keys := rdb.ControlPushKeys(q)
	dk1, dk2 := rdb.DedupKey(q, "h1"), rdb.DedupKey(q, "h2")
	withDedup := append(append([]string{}, keys...), dk1, dk2)
	raw := rdb.DelayedRawPrefix + "ID."
	runContract(t, rdb.ControlPush, []contractCase{
		{
			name:  "max_length with room: pushed; reply {LLEN, stored, dropped}",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x") },
			keys:  keys, args: cpArgs("RPUSH", 3, "reject", "", 0, "", "a", "b"),
			want: arr(3, 2, 0), after: map[string]any{q: list("x", "a", "b")},
		},
		{
			name:  "reject: all or nothing, the error names the queue and max_length",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x") },
			keys:  keys, args: cpArgs("RPUSH", 2, "reject", "", 0, "", "a", "b"),
			wantErr: "ERR queue 'q' is full (max_length 2)", after: map[string]any{q: list("x")},
		},
		{
			name: "reject counts the delayed items too",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "x")
				do(t, c, "ZADD", keys[1], redisNow(t, c)+60000, "later")
			},
			keys: keys, args: cpArgs("RPUSH", 2, "reject", "", 0, "", "a"),
			wantErr: "is full (max_length 2)", after: map[string]any{q: list("x"), keys[1]: list("later")},
		},
		{
			name:  "reject: duplicates do not count against max_length, and no dedup key is set on refusal",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x"); do(t, c, "SET", dk1, "1") },
			keys:  withDedup, args: cpArgs("RPUSH", 2, "reject", "60000", 0, "", "a", "b"),
			want: arr(2, 1, 0), after: map[string]any{q: list("x", "b"), dk1: "1", dk2: "1"},
		},
		{
			name:  "reject with dedup and no room: nothing stored, no dedup key set",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x") },
			keys:  withDedup, args: cpArgs("RPUSH", 2, "reject", "60000", 0, "", "a", "b"),
			wantErr: "is full", after: map[string]any{q: list("x")},
		},
		{
			name:  "drop-oldest with RPUSH trims the head",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x", "y") },
			keys:  keys, args: cpArgs("RPUSH", 3, "drop-oldest", "", 0, "", "a", "b"),
			want: arr(3, 2, 1), after: map[string]any{q: list("y", "a", "b")},
		},
		{
			name:  "drop-oldest with LPUSH trims the tail (its oldest end)",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "y", "x") },
			keys:  keys, args: cpArgs("LPUSH", 3, "drop-oldest", "", 0, "", "a", "b"),
			want: arr(3, 2, 1), after: map[string]any{q: list("b", "a", "y")},
		},
		{
			name: "drop-oldest: a push larger than max_length keeps its newest values",
			keys: keys, args: cpArgs("RPUSH", 2, "drop-oldest", "", 0, "", "a", "b", "c"),
			want: arr(2, 3, 1), after: map[string]any{q: list("b", "c")},
		},
		{
			name: "no max_length, no delay: a plain push",
			keys: keys, args: cpArgs("LPUSH", 0, "reject", "", 0, "", "a", "b"),
			want: arr(2, 2, 0), after: map[string]any{q: list("b", "a")},
		},
		{
			name: "delay: values go to the delayed ZSET at now + delay; the ready list is untouched",
			keys: keys, args: cpArgs("RPUSH", 0, "reject", "", 5000, "", `{"id":"1"}`),
			want: arr(0, 1, 0), after: map[string]any{keys[1]: list(`{"id":"1"}`)},
			check: func(t *testing.T, c *redis.Client, _ any) {
				within(t, "ready-at - now", score(t, c, keys[1], `{"id":"1"}`)-redisNow(t, c), 4000, 5000)
			},
		},
		{
			name: "delay with a raw prefix: equal raw values are two members",
			keys: keys, args: cpArgs("RPUSH", 0, "reject", "", 5000, raw, "same", "same"),
			want: arr(0, 2, 0), after: map[string]any{keys[1]: list(raw+"1\x00same", raw+"2\x00same")},
		},
		{
			name:  "delayed values count against max_length (reject)",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x") },
			keys:  keys, args: cpArgs("RPUSH", 2, "reject", "", 5000, raw, "a", "b"),
			wantErr: "is full", after: map[string]any{q: list("x")},
		},
		{
			name:  "a delayed push with drop-oldest trims the ready list",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x", "y") },
			keys:  keys, args: cpArgs("RPUSH", 2, "drop-oldest", "", 5000, raw, "a"),
			want: arr(1, 1, 1), after: map[string]any{q: list("y"), keys[1]: list(raw + "1\x00a")},
		},
	})
}

func TestContract_Resume(t *testing.T) {
	keys := rdb.ResumeKeys(q)
	runContract(t, rdb.Resume, []contractCase{
		{
			name: "not paused: 0",
			keys: keys, want: int64(0), after: map[string]any{},
		},
		{
			name:  "paused, empty list: the flag is deleted, 1",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", keys[1], "1") },
			keys:  keys, want: int64(1), after: map[string]any{},
		},
		{
			name:  "paused with items: the list is unchanged, 1",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", keys[1], "1"); rpush(t, c, q, "a", "b", "c") },
			keys:  keys, want: int64(1), after: map[string]any{q: list("a", "b", "c")},
		},
		{
			name:  "paused, the queue's key is no list: the flag is deleted and the key left alone",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", keys[1], "1"); do(t, c, "SET", q, "v") },
			keys:  keys, want: int64(1), after: map[string]any{q: "v"},
		},
	})
}

// TestContract_ResumeKeyspaceEvent: resume raises a list event on the queue's key, which the wait hubs
// of other instances subscribe to.
func TestContract_ResumeKeyspaceEvent(t *testing.T) {
	c := fresh(t)
	ctx := context.Background()
	do(t, c, "CONFIG", "SET", "notify-keyspace-events", "Kl")
	t.Cleanup(func() { c.ConfigSet(context.Background(), "notify-keyspace-events", "") })
	rpush(t, c, q, "a")
	do(t, c, "SET", rdb.PausedKey(q), "1")
	sub := c.Subscribe(ctx, "__keyspace@0__:"+q)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Resume.Run(ctx, c, rdb.ResumeKeys(q)).Err(); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Payload; got != "rpop" && got != "rpush" && got != "lmove" {
		t.Fatalf("keyspace event %q, want a list event", got)
	}
}

func TestContract_PausedPops(t *testing.T) {
	paused := rdb.PausedKey(q)
	pause := func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a", "b"); do(t, c, "SET", paused, "1") }
	t.Run("transit_pop", func(t *testing.T) {
		runContract(t, rdb.TransitPop, []contractCase{
			{
				name: "paused: nil, nothing moved", setup: pause,
				keys: rdb.TransitPopKeys(q, "i1"), args: []any{"LPOP", "2", "L1.", "i1"},
				wantErr: "redis: nil", after: map[string]any{q: list("a", "b"), paused: "1"},
			},
			{
				name:  "not paused: pops as before",
				setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a") },
				keys:  rdb.TransitPopKeys(q, "i1"), args: []any{"LPOP", "", "L1.", "i1"},
				want: "a",
			},
		})
	})
	t.Run("transit_pop_each", func(t *testing.T) {
		runContract(t, rdb.TransitPopEach, []contractCase{{
			name: "paused: every pop finds it empty; carried fields still deleted",
			setup: func(t *testing.T, c *redis.Client) {
				pause(t, c)
				do(t, c, "HSET", rdb.TransitKey(q, "i1"), "L0.1", "old")
			},
			keys: rdb.TransitPopKeys(q, "i1"), args: []any{"LPOP", "i1", 2, "L1.1", "L2.1", "L0.1"},
			want: arr(nil, nil, 1), after: map[string]any{q: list("a", "b"), paused: "1"},
		}})
	})
	t.Run("lease_pop", func(t *testing.T) {
		runContract(t, rdb.LeasePop, []contractCase{{
			name: "paused: next-pop acks still done, nothing leased",
			setup: func(t *testing.T, c *redis.Client) {
				pause(t, c)
				lease(t, c, q, "o1", "R.1", "old", 1)
			},
			keys: rdb.LeasePopKeys(q), args: []any{"LPOP", "", 1000, "o1", "P", "R.1"},
			want: arr(1, nil), after: map[string]any{q: list("a", "b"), paused: "1"},
		}})
	})
}

func TestContract_PromoteDelayedRaw(t *testing.T) {
	keys := []string{rdb.DelayedKey(q), q}
	raw := rdb.DelayedRawPrefix + "ID."
	runContract(t, rdb.PromoteDelayed, []contractCase{{
		name: "wrapped raw values are unwrapped; equal values both arrive; other members as they are",
		setup: func(t *testing.T, c *redis.Client) {
			do(t, c, "ZADD", keys[0], 1, raw+"1\x00same", 2, raw+"2\x00same", 3, `{"id":"e"}`, 4, raw+"3\x00with\x00nul")
		},
		keys: keys, args: []any{10},
		want: arr(4, -1), after: map[string]any{q: list("same", "same", `{"id":"e"}`, "with\x00nul")},
	}})
}

// TestContract_ControlsAtMaxmemory: resume runs at maxmemory with noeviction (allow-oom; popping is
// what frees memory), and a paused pop still answers; control_push is refused like any push, storing
// nothing.
func TestContract_ControlsAtMaxmemory(t *testing.T) {
	ctx := context.Background()
	t.Run("resume runs", func(t *testing.T) {
		c := fresh(t)
		rpush(t, c, q, "a", "b")
		do(t, c, "SET", rdb.PausedKey(q), "1")
		outOfMemory(t, c)
		if got, err := rdb.Resume.Run(ctx, c, rdb.ResumeKeys(q)).Int64(); err != nil || got != 1 {
			t.Fatalf("resume at maxmemory: %d, %v; want 1", got, err)
		}
		if got := state(t, c); show(got) != show(map[string]any{q: list("a", "b")}) {
			t.Fatalf("state %s, want the list unchanged and no pause flag", show(got))
		}
	})
	t.Run("control_push is refused", func(t *testing.T) {
		c := fresh(t)
		rpush(t, c, q, "x")
		outOfMemory(t, c)
		keys := append(rdb.ControlPushKeys(q), rdb.DedupKey(q, "h"))
		err := rdb.ControlPush.Run(ctx, c, keys, cpArgs("RPUSH", 10, "reject", "60000", 0, "", "a")...).Err()
		if err == nil || !strings.Contains(err.Error(), "OOM") {
			t.Fatalf("control_push at maxmemory: %v, want an OOM error", err)
		}
		if got := state(t, c); show(got) != show(map[string]any{q: list("x")}) {
			t.Fatalf("state %s, want the list unchanged and no dedup key", show(got))
		}
	})
}
