package rdb_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// Contract test of fifo_turn.lua (README "Blocked pops across instances", global_fifo).

func init() { contracts["fifo_turn.lua"] = "TestContract_FIFOTurn" }

func TestContract_FIFOTurn(t *testing.T) {
	keys := rdb.FIFOTurnKeys(q)
	wk, tk := rdb.WaitersKey(q), rdb.TurnKey(q)
	// args asks a turn for member, whose score is 100 (after the places ahead adds) unless given.
	args := func(member string, score ...int) []any {
		sc := 100
		if len(score) > 0 {
			sc = score[0]
		}
		return []any{member, 250, 60000, sc, "turn"}
	}
	// ahead adds places of waiters that started to wait before the caller (scores 1, 2, …).
	ahead := func(t *testing.T, c *redis.Client, members ...string) {
		for i, m := range members {
			do(t, c, "ZADD", wk, i+1, m)
		}
	}
	mark := func(t *testing.T, c *redis.Client) (int64, string) {
		var ms int64
		var head string
		m := c.Get(context.Background(), tk).Val()
		if _, err := fmt.Sscanf(m, "%d|%s", &ms, &head); err != nil {
			t.Fatalf("turn mark %q: %v", m, err)
		}
		return ms, head
	}
	runContract(t, rdb.FIFOTurn, []contractCase{
		{
			name:  "empty list: the caller's place is added at its score, nothing to take",
			setup: func(t *testing.T, c *redis.Client) { ahead(t, c, "a:1") },
			keys:  keys, args: args("b:1"), want: arr(0, 0, 0, 100),
			after: map[string]any{wk: list("a:1", "b:1")},
			check: func(t *testing.T, c *redis.Client, _ any) {
				if ttl := c.PTTL(context.Background(), wk).Val().Milliseconds(); ttl <= 0 || ttl > 60000 {
					t.Fatalf("waiters PTTL %d ms, want the call's expiry (60000)", ttl)
				}
			},
		},
		{
			name:  "fewer places ahead than items: take now, the place is used",
			setup: func(t *testing.T, c *redis.Client) { ahead(t, c, "a:1"); rpush(t, c, q, "x", "y") },
			keys:  keys, args: args("b:1"), want: arr(1, 0, 0, 100),
			after: map[string]any{q: list("x", "y"), wk: list("a:1")},
		},
		{
			name:  "the head is the caller: take now",
			setup: func(t *testing.T, c *redis.Client) { ahead(t, c, "a:1", "b:1"); rpush(t, c, q, "x") },
			keys:  keys, args: args("a:1", 1), want: arr(1, 0, 0, 1),
			after: map[string]any{q: list("x"), wk: list("b:1")},
		},
		{
			name:  "the items belong to places ahead: wait the grace, the head's hold is timed",
			setup: func(t *testing.T, c *redis.Client) { ahead(t, c, "a:1", "b:1"); rpush(t, c, q, "x") },
			keys:  keys, args: args("c:1"), want: arr(2, 250, 0, 100),
			after: nil,
			check: func(t *testing.T, c *redis.Client, _ any) {
				ms, head := mark(t, c)
				if now := redisNow(t, c); head != "a:1" || ms > now || now-ms > 1000 {
					t.Fatalf("turn mark %d|%s, want <now>|a:1 (server clock %d)", ms, head, now)
				}
				if ttl := c.PTTL(context.Background(), tk).Val().Milliseconds(); ttl <= 0 || ttl > 2500 {
					t.Fatalf("turn mark PTTL %d ms, want ten graces at most", ttl)
				}
				if got := c.ZRange(context.Background(), wk, 0, -1).Val(); show(got) != show(list("a:1", "b:1", "c:1")) {
					t.Fatalf("places %v, want the caller's kept behind a:1 b:1", got)
				}
			},
		},
		{
			name: "same head still within the grace: wait what is left of it",
			setup: func(t *testing.T, c *redis.Client) {
				ahead(t, c, "a:1")
				rpush(t, c, q, "x")
				do(t, c, "SET", tk, fmt.Sprintf("%d|a:1", redisNow(t, c)-100))
			},
			keys: keys, args: args("b:1"),
			check: func(t *testing.T, c *redis.Client, res any) {
				r := res.([]any)
				if r[0] != int64(2) || r[1].(int64) <= 0 || r[1].(int64) > 150 || r[2] != int64(0) || r[3] != int64(100) {
					t.Fatalf("reply %v, want {2, at most 150 (250 - 100), 0, 100}", r)
				}
			},
		},
		{
			name: "the head held the items past the grace: the places ahead and the caller's are removed, take now",
			setup: func(t *testing.T, c *redis.Client) {
				ahead(t, c, "a:1", "a:2", "b:1")
				rpush(t, c, q, "x")
				do(t, c, "ZADD", wk, 10, "c:1")
				do(t, c, "ZADD", wk, 20, "d:1")
				do(t, c, "SET", tk, fmt.Sprintf("%d|a:1", redisNow(t, c)-300))
			},
			keys: keys, args: args("c:1", 10), want: arr(1, 0, 3, 10),
			after: map[string]any{q: list("x"), wk: list("d:1")},
		},
		{
			name: "past the grace the head's instance loses its places behind the caller too: each would hold the items a grace of its own",
			setup: func(t *testing.T, c *redis.Client) {
				ahead(t, c, "a:1", "b:1")
				rpush(t, c, q, "x")
				do(t, c, "ZADD", wk, 10, "c:1")
				do(t, c, "ZADD", wk, 20, "a:2")
				do(t, c, "ZADD", wk, 30, "d:1")
				do(t, c, "ZADD", wk, 40, "a:3")
				do(t, c, "ZADD", wk, 50, "ab:1")
				do(t, c, "SET", tk, fmt.Sprintf("%d|a:1", redisNow(t, c)-300))
			},
			keys: keys, args: args("c:1", 10), want: arr(1, 0, 4, 10),
			after: map[string]any{q: list("x"), wk: list("d:1", "ab:1")},
		},
		{
			name: "a mark of an earlier head (it took in time): the new head's hold starts now",
			setup: func(t *testing.T, c *redis.Client) {
				ahead(t, c, "b:1")
				rpush(t, c, q, "x")
				do(t, c, "SET", tk, fmt.Sprintf("%d|a:1", redisNow(t, c)-5000))
			},
			keys: keys, args: args("c:1"), want: arr(2, 250, 0, 100),
			check: func(t *testing.T, c *redis.Client, _ any) {
				if ms, head := mark(t, c); head != "b:1" || redisNow(t, c)-ms > 1000 {
					t.Fatalf("turn mark %d|%s, want <now>|b:1", ms, head)
				}
			},
		},
		{
			name: "paused queue: nothing to take, the place is kept",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "x")
				do(t, c, "SET", rdb.PausedKey(q), "1")
			},
			keys: keys, args: args("a:1"), want: arr(0, 0, 0, 100),
			after: map[string]any{q: list("x"), wk: list("a:1"), rdb.PausedKey(q): "1"},
		},
		{
			name:  "a dropped or used place is put back at the waiter's own score, ahead of later ones",
			setup: func(t *testing.T, c *redis.Client) { ahead(t, c, "a:1", "b:1"); do(t, c, "ZADD", wk, 50, "c:1") },
			keys:  keys, args: args("d:1", 20), want: arr(0, 0, 0, 20),
			after: map[string]any{wk: list("a:1", "b:1", "d:1", "c:1")},
		},
		{
			name:  "enter: the place only, even with items (no turn, nothing removed)",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x") },
			keys:  keys, args: []any{"a:1", 250, 60000, 7, "enter"}, want: arr(0, 0, 0, 7),
			after: map[string]any{q: list("x"), wk: list("a:1")},
		},
		{
			name: "score 0: the waiter's score is Redis's clock in µs",
			keys: keys, args: []any{"a:1", 250, 60000, 0, "enter"},
			check: func(t *testing.T, c *redis.Client, res any) {
				sc := res.([]any)[3].(int64)
				if now := redisNow(t, c) * 1000; sc > now+1000 || now-sc > 1000000 {
					t.Fatalf("score %d, server clock %d µs", sc, now)
				}
				if got := c.ZScore(context.Background(), wk, "a:1").Val(); int64(got) != sc {
					t.Fatalf("place score %v, want the reply's %d", got, sc)
				}
			},
		},
		{
			name:  "a key of another type: WRONGTYPE",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", q, "s") },
			keys:  keys, args: args("a:1"), wantErr: "WRONGTYPE",
		},
	})
	// The waiter gets this error as its reply: it must be Redis's own, without the script's name and
	// line that an error raised by redis.call carries.
	t.Run("a key of another type: Redis's WRONGTYPE reply unchanged", func(t *testing.T) {
		c := fresh(t)
		do(t, c, "SET", q, "s")
		_, err := rdb.FIFOTurn.Run(context.Background(), c, keys, args("a:1")...).Result()
		if got, want := fmt.Sprint(err), "WRONGTYPE Operation against a key holding the wrong kind of value"; got != want {
			t.Fatalf("fifo_turn on a string key: error %q, want %q", got, want)
		}
	})
	t.Run("at maxmemory it runs", func(t *testing.T) {
		c := fresh(t)
		rpush(t, c, q, "x")
		outOfMemory(t, c)
		got, err := rdb.FIFOTurn.Run(context.Background(), c, keys, args("a:1")...).Result()
		if err != nil || show(got) != show(arr(1, 0, 0, 100)) {
			t.Fatalf("fifo_turn at maxmemory: %v, %v; want [1 0 0 100]", got, err)
		}
	})
}
