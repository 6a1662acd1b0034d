package rdb_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// Contract test of fifo_turn.lua (README "Delivery rules", global_fifo).

func init() { contracts["fifo_turn.lua"] = "TestContract_FIFOTurn" }

func TestContract_FIFOTurn(t *testing.T) {
	keys := rdb.FIFOTurnKeys(q)
	wk, tk := rdb.WaitersKey(q), rdb.TurnKey(q)
	args := func(member string) []any { return []any{member, 250, 60000} }
	// ahead registers waiters that started to wait before any call of the test (scores 1, 2, …).
	ahead := func(t *testing.T, c *redis.Client, members ...string) {
		for i, m := range members {
			do(t, c, "ZADD", wk, i+1, m)
		}
	}
	runContract(t, rdb.FIFOTurn, []contractCase{
		{
			name:  "empty list: the caller is added at the back, nothing to take",
			setup: func(t *testing.T, c *redis.Client) { ahead(t, c, "a:1") },
			keys:  keys, args: args("b:1"), want: arr(0, 0, 0),
			after: map[string]any{wk: list("a:1", "b:1")},
			check: func(t *testing.T, c *redis.Client, _ any) {
				if ttl := c.PTTL(context.Background(), wk).Val().Milliseconds(); ttl <= 0 || ttl > 60000 {
					t.Fatalf("waiters PTTL %d ms, want the call's expiry (60000)", ttl)
				}
			},
		},
		{
			name:  "fewer waiters ahead than items: take now",
			setup: func(t *testing.T, c *redis.Client) { ahead(t, c, "a:1"); rpush(t, c, q, "x", "y") },
			keys:  keys, args: args("b:1"), want: arr(1, 0, 0),
			after: map[string]any{q: list("x", "y"), wk: list("a:1", "b:1")},
		},
		{
			name:  "the head is the caller: take now",
			setup: func(t *testing.T, c *redis.Client) { ahead(t, c, "a:1", "b:1"); rpush(t, c, q, "x") },
			keys:  keys, args: args("a:1"), want: arr(1, 0, 0),
			after: map[string]any{q: list("x"), wk: list("a:1", "b:1")},
		},
		{
			name:  "the items belong to waiters ahead: wait the grace, the head's hold is timed",
			setup: func(t *testing.T, c *redis.Client) { ahead(t, c, "a:1", "b:1"); rpush(t, c, q, "x") },
			keys:  keys, args: args("c:1"), want: arr(2, 250, 0),
			check: func(t *testing.T, c *redis.Client, _ any) {
				mark := c.Get(context.Background(), tk).Val()
				var ms int64
				var head string
				if _, err := fmt.Sscanf(mark, "%d|%s", &ms, &head); err != nil || head != "a:1" {
					t.Fatalf("turn mark %q (%v), want <ms>|a:1", mark, err)
				}
				if now := redisNow(t, c); ms > now || now-ms > 1000 {
					t.Fatalf("turn mark since %d, server clock %d", ms, now)
				}
				if ttl := c.PTTL(context.Background(), tk).Val().Milliseconds(); ttl <= 0 || ttl > 2500 {
					t.Fatalf("turn mark PTTL %d ms, want ten graces at most", ttl)
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
				if r[0] != int64(2) || r[1].(int64) <= 0 || r[1].(int64) > 150 || r[2] != int64(0) {
					t.Fatalf("reply %v, want {2, at most 150 (250 - 100), 0}", r)
				}
			},
		},
		{
			name: "the head held the items past the grace: every place ahead is dropped, take now",
			setup: func(t *testing.T, c *redis.Client) {
				ahead(t, c, "a:1", "a:2", "b:1")
				rpush(t, c, q, "x")
				do(t, c, "ZADD", wk, 10, "c:1")
				do(t, c, "SET", tk, fmt.Sprintf("%d|a:1", redisNow(t, c)-300))
			},
			keys: keys, args: args("c:1"), want: arr(1, 0, 3),
			after: map[string]any{q: list("x"), wk: list("c:1")},
		},
		{
			name: "a mark of an earlier head (it took in time): the new head's hold starts now",
			setup: func(t *testing.T, c *redis.Client) {
				ahead(t, c, "b:1")
				rpush(t, c, q, "x")
				do(t, c, "SET", tk, fmt.Sprintf("%d|a:1", redisNow(t, c)-5000))
			},
			keys: keys, args: args("c:1"), want: arr(2, 250, 0),
			check: func(t *testing.T, c *redis.Client, _ any) {
				var ms int64
				var head string
				_, _ = fmt.Sscanf(c.Get(context.Background(), tk).Val(), "%d|%s", &ms, &head)
				if head != "b:1" || redisNow(t, c)-ms > 1000 {
					t.Fatalf("turn mark %d|%s, want now|b:1", ms, head)
				}
			},
		},
		{
			name: "paused queue: nothing to take, the place is kept",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "x")
				do(t, c, "SET", rdb.PausedKey(q), "1")
			},
			keys: keys, args: args("a:1"), want: arr(0, 0, 0),
			after: map[string]any{q: list("x"), wk: list("a:1"), rdb.PausedKey(q): "1"},
		},
		{
			name:  "a key of another type: WRONGTYPE",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", q, "s") },
			keys:  keys, args: args("a:1"), wantErr: "WRONGTYPE",
		},
	})
	t.Run("at maxmemory it runs", func(t *testing.T) {
		c := fresh(t)
		rpush(t, c, q, "x")
		outOfMemory(t, c)
		got, err := rdb.FIFOTurn.Run(context.Background(), c, keys, args("a:1")...).Result()
		if err != nil || show(got) != show(arr(1, 0, 0)) {
			t.Fatalf("fifo_turn at maxmemory: %v, %v; want [1 0 0]", got, err)
		}
	})
}
