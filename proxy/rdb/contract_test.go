package rdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/rdb"
)

// Contract tests: each script of scripts/ against a real redis-server, pinning what its header
// promises (KEYS, ARGV, reply shape, which keys it writes) for its main cases. The replies are as
// go-redis decodes them on a RESP3 connection (a Lua false is a nil reply: a nil element in an array,
// redis.Nil at the top); TestContract_FalseReplies pins that RESP2 gives the same.

const q = "q"

// env is a stored envelope of queue q with the given attempts, always the same id and time.
func env(attempts int) string {
	return string(envelope.AppendEnvelope(nil, &envelope.Envelope{
		ID: "01JDX3B6T9Q4M2ZK8YJ3R5W7NC", Queue: q, Producer: "default", Attempts: attempts,
		EnqueuedAt: time.Date(2026, 11, 23, 20, 55, 1, 123e6, time.UTC), Payload: []byte(`{"job":1}`),
	}))
}

func rpush(t *testing.T, c *redis.Client, key string, items ...string) {
	t.Helper()
	args := []any{"RPUSH", key}
	for _, it := range items {
		args = append(args, it)
	}
	do(t, c, args...)
}

// lease stores a lease the way lease_pop.lua does: receipt -> owner "\n" item, deadline in inflight.
func lease(t *testing.T, c *redis.Client, queue, owner, receipt, item string, deadline int64) {
	t.Helper()
	do(t, c, "HSET", rdb.LeasesKey(queue), receipt, owner+"\n"+item)
	do(t, c, "ZADD", rdb.InflightKey(queue), deadline, receipt)
}

func score(t *testing.T, c *redis.Client, key, member string) int64 {
	t.Helper()
	s, err := c.ZScore(context.Background(), key, member).Result()
	if err != nil {
		t.Fatalf("ZSCORE %s %s: %v", key, member, err)
	}
	return int64(s)
}

// deadRecord decodes the i-th record of q's dead list.
type deadRecord struct {
	Reason   string `json:"reason"`
	FailedAt int64  `json:"failed_at"`
	Attempts int    `json:"attempts"`
	Item     string `json:"item"`
}

func dead(t *testing.T, c *redis.Client, i int64) deadRecord {
	t.Helper()
	var rec deadRecord
	raw := c.LIndex(context.Background(), rdb.DeadKey(q), i).Val()
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatalf("dead record %q: %v", raw, err)
	}
	return rec
}

// contracts names the test that pins each script; TestContract_EveryScript fails when a script is
// added to scripts/ without one.
var contracts = map[string]string{
	"ack.lua":              "TestContract_Ack",
	"dedup_push.lua":       "TestContract_DedupPush",
	"extend.lua":           "TestContract_Extend",
	"forget_queue.lua":     "TestContract_ForgetQueue",
	"handoff_back.lua":     "TestContract_HandoffBack",
	"heartbeat.lua":        "TestContract_Heartbeat",
	"lease_pop.lua":        "TestContract_LeasePop",
	"lease_pop_each.lua":   "TestContract_LeasePopEach",
	"lease_return.lua":     "TestContract_LeaseReturn",
	"nack.lua":             "TestContract_Nack",
	"promote_delayed.lua":  "TestContract_PromoteDelayed",
	"redrive.lua":          "TestContract_Redrive",
	"register_queue.lua":   "TestContract_RegisterQueue",
	"requeue_expired.lua":  "TestContract_RequeueExpired",
	"retry.lua":            "TestContract_Nack, TestContract_RequeueExpired",
	"sched_claim.lua":      "TestContract_SchedClaim",
	"sched_done.lua":       "TestContract_SchedDone",
	"sched_register.lua":   "TestContract_SchedRegister",
	"sched_touch.lua":      "TestContract_SchedTouch",
	"transit_pop.lua":      "TestContract_TransitPop",
	"transit_pop_each.lua": "TestContract_TransitPopEach",
	"transit_recover.lua":  "TestContract_TransitRecover",
	"transit_return.lua":   "TestContract_TransitReturn",
}

// TestContract_EveryScript: every script has a contract test here and a header naming its KEYS, its
// ARGV and its reply (DESIGN.md "Scripts and script flags").
func TestContract_EveryScript(t *testing.T) {
	files, err := filepath.Glob("scripts/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatalf("scripts/*.lua: %v, %d files", err, len(files))
	}
	for _, f := range files {
		name := filepath.Base(f)
		if contracts[name] == "" {
			t.Errorf("%s has no contract test (add one to contract_test.go and to contracts)", name)
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var header strings.Builder
		for _, line := range strings.Split(string(src), "\n") {
			if !strings.HasPrefix(line, "--") && !strings.HasPrefix(line, "#!") {
				break
			}
			header.WriteString(line + "\n")
		}
		for _, want := range []string{"KEYS[", "ARGV[", "Returns"} {
			if !strings.Contains(header.String(), want) {
				t.Errorf("%s: the header comment does not mention %s", name, want)
			}
		}
	}
}

func TestContract_LeasePop(t *testing.T) {
	keys := rdb.LeasePopKeys(q)
	inflight, leases, handoff := rdb.InflightKey(q), rdb.LeasesKey(q), rdb.HandoffKey(q)
	args := func(dir, count string, acks ...string) []any {
		a := []any{dir, count, 30000, "o1", "P"}
		for _, r := range acks {
			a = append(a, r)
		}
		return a
	}
	runContract(t, rdb.LeasePop, []contractCase{
		{
			name: "single pop of an empty list",
			keys: keys, args: args("LPOP", ""),
			want: arr(0, nil), after: map[string]any{},
		},
		{
			name:  "single pop: receipt prefix.1, lease owner\\nitem, deadline now+visibility",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a", "b") },
			keys:  keys, args: args("LPOP", ""),
			want: arr(0, arr("P.1", "a")),
			after: map[string]any{
				q: list("b"), leases: map[string]string{"P.1": "o1\na"}, inflight: list("P.1"),
			},
			check: func(t *testing.T, c *redis.Client, _ any) {
				now := redisNow(t, c)
				within(t, "deadline", score(t, c, inflight, "P.1"), now+30000-5000, now+30000)
			},
		},
		{
			name:  "single pop serves the handoff list first, from its head, whatever the direction",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, handoff, "h1", "h2"); rpush(t, c, q, "a") },
			keys:  keys, args: args("RPOP", ""),
			want: arr(0, arr("P.1", "h1")),
			after: map[string]any{
				q: list("a"), handoff: list("h2"), leases: map[string]string{"P.1": "o1\nh1"}, inflight: list("P.1"),
			},
		},
		{
			name:  "count from the left, in pop order",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a", "b", "c", "d") },
			keys:  keys, args: args("LPOP", "3"),
			want: arr(0, arr("P.1", "a", "P.2", "b", "P.3", "c")),
			after: map[string]any{
				q: list("d"), leases: map[string]string{"P.1": "o1\na", "P.2": "o1\nb", "P.3": "o1\nc"},
				inflight: list("P.1", "P.2", "P.3"),
			},
		},
		{
			name:  "count from the right",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a", "b", "c", "d") },
			keys:  keys, args: args("RPOP", "2"),
			want: arr(0, arr("P.1", "d", "P.2", "c")),
		},
		{
			name:  "count above the list's length leases what there is",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a") },
			keys:  keys, args: args("LPOP", "5"),
			want:  arr(0, arr("P.1", "a")),
			after: map[string]any{leases: map[string]string{"P.1": "o1\na"}, inflight: list("P.1")},
		},
		{
			name:  "count: the handoff list first, then the ready list",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, handoff, "h1", "h2"); rpush(t, c, q, "a", "b") },
			keys:  keys, args: args("RPOP", "3"),
			want: arr(0, arr("P.1", "h1", "P.2", "h2", "P.3", "b")),
			after: map[string]any{
				q: list("a"), leases: map[string]string{"P.1": "o1\nh1", "P.2": "o1\nh2", "P.3": "o1\nb"},
				inflight: list("P.1", "P.2", "P.3"),
			},
		},
		{
			name: "count on an empty list",
			keys: keys, args: args("LPOP", "3"),
			want: arr(0, nil), after: map[string]any{},
		},
		{
			name:  "count 0 on a list: an empty array, nothing leased, handoff list untouched",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a"); rpush(t, c, handoff, "h") },
			keys:  keys, args: args("LPOP", "0"),
			want: arr(0, arr()), after: map[string]any{q: list("a"), handoff: list("h")},
		},
		{
			name: "count 0 on a missing list: false, like LPOP key 0",
			keys: keys, args: args("LPOP", "0"),
			want: arr(0, nil), after: map[string]any{},
		},
		{
			name: "acks the owner's previous leases first (ack: next-pop), not others', not unknown ones",
			setup: func(t *testing.T, c *redis.Client) {
				lease(t, c, q, "o1", "P0.1", "x", 1)
				lease(t, c, q, "o2", "P0.2", "y", 1)
				lease(t, c, q, "o1x", "P0.3", "z", 1) // the owner is a whole token: "o1" does not own it
				rpush(t, c, q, "a")
			},
			keys: keys, args: args("LPOP", "", "P0.1", "P0.2", "P0.3", "unknown"),
			want: arr(1, arr("P.1", "a")),
			after: map[string]any{
				leases:   map[string]string{"P0.2": "o2\ny", "P0.3": "o1x\nz", "P.1": "o1\na"},
				inflight: list("P0.2", "P0.3", "P.1"),
			},
		},
		{
			name:  "acks even when the list is empty",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "P0.1", "x", 1) },
			keys:  keys, args: args("LPOP", "1", "P0.1"),
			want: arr(1, nil), after: map[string]any{},
		},
		{
			name: "items are not parsed: equal envelopes and raw items are leased alike",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, env(0), env(0), "raw")
			},
			keys: keys, args: args("LPOP", "3"),
			want: arr(0, arr("P.1", env(0), "P.2", env(0), "P.3", "raw")),
		},
		{
			name: "rdb.Chunk items in one call",
			setup: func(t *testing.T, c *redis.Client) {
				items := make([]string, rdb.Chunk+500)
				for i := range items {
					items[i] = strconv.Itoa(i)
				}
				rpush(t, c, q, items...)
			},
			keys: keys, args: args("LPOP", strconv.Itoa(rdb.Chunk)),
			check: func(t *testing.T, c *redis.Client, res any) {
				got := res.([]any)[1].([]any)
				if len(got) != 2*rdb.Chunk || got[0] != "P.1" || got[1] != "0" || got[2*rdb.Chunk-1] != strconv.Itoa(rdb.Chunk-1) {
					t.Fatalf("popped %d values, want %d (receipt, item) pairs", len(got), rdb.Chunk)
				}
				if n := c.LLen(context.Background(), q).Val(); n != 500 {
					t.Fatalf("%d items left, want 500", n)
				}
				if n := c.HLen(context.Background(), leases).Val(); n != rdb.Chunk {
					t.Fatalf("%d leases, want %d", n, rdb.Chunk)
				}
			},
		},
	})
}

func TestContract_Ack(t *testing.T) {
	keys := []string{rdb.InflightKey(q), rdb.LeasesKey(q)}
	inflight, leases := keys[0], keys[1]
	runContract(t, rdb.Ack, []contractCase{
		{
			name: "no receipts",
			keys: keys, args: []any{""},
			want: int64(0),
		},
		{
			name: `owner "": acks whoever holds the receipts; unknown ones count 0 and leave no inflight entry`,
			setup: func(t *testing.T, c *redis.Client) {
				lease(t, c, q, "o1", "r1", "a", 1)
				lease(t, c, q, "o2", "r2", "b", 1)
				lease(t, c, q, "o2", "r4", "d", 1)
				do(t, c, "ZADD", inflight, 1, "r3") // an inflight entry without lease
			},
			keys: keys, args: []any{"", "r1", "r2", "r3", "r5"},
			want:  int64(2),
			after: map[string]any{leases: map[string]string{"r4": "o2\nd"}, inflight: list("r4")},
		},
		{
			name: "an owner acks only its own leases",
			setup: func(t *testing.T, c *redis.Client) {
				lease(t, c, q, "o1", "r1", "a", 1)
				lease(t, c, q, "o2", "r2", "b", 1)
				lease(t, c, q, "o1x", "r3", "c", 1)
			},
			keys: keys, args: []any{"o1", "r1", "r2", "r3"},
			want:  int64(1),
			after: map[string]any{leases: map[string]string{"r2": "o2\nb", "r3": "o1x\nc"}, inflight: list("r2", "r3")},
		},
		{
			name:  "an acked receipt acks nothing again",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", "a", 1) },
			keys:  keys, args: []any{"", "r1", "r1"},
			want: int64(1), after: map[string]any{},
		},
		{
			// The header asks callers for at most rdb.Chunk; the script unpacks 1000 at a time anyway.
			name: `owner "": more than rdb.Chunk receipts in one call`,
			setup: func(t *testing.T, c *redis.Client) {
				for i := range 2*rdb.Chunk + 500 {
					lease(t, c, q, "o1", "r"+strconv.Itoa(i), "x", 1)
				}
			},
			keys: keys, args: func() []any {
				a := []any{""}
				for i := range 2*rdb.Chunk + 500 {
					a = append(a, "r"+strconv.Itoa(i))
				}
				return a
			}(),
			want: int64(2*rdb.Chunk + 500), after: map[string]any{},
		},
	})
}

func TestContract_Extend(t *testing.T) {
	keys := []string{rdb.InflightKey(q), rdb.LeasesKey(q)}
	inflight := keys[0]
	runContract(t, rdb.Extend, []contractCase{
		{
			name:  "a leased receipt: deadline = now + ms",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", "a", 1) },
			keys:  keys, args: []any{"r1", 5000},
			want: int64(1),
			check: func(t *testing.T, c *redis.Client, _ any) {
				now := redisNow(t, c)
				within(t, "deadline", score(t, c, inflight, "r1"), now+5000-3000, now+5000)
			},
		},
		{
			name: "an unknown receipt: 0, no inflight entry made",
			keys: keys, args: []any{"r1", 5000},
			want: int64(0), after: map[string]any{},
		},
		{
			name:  "an inflight entry without lease is not extended",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", inflight, 7, "r1") },
			keys:  keys, args: []any{"r1", 5000},
			want: int64(0),
			check: func(t *testing.T, c *redis.Client, _ any) {
				if s := score(t, c, inflight, "r1"); s != 7 {
					t.Fatalf("score %d, want 7", s)
				}
			},
		},
	})
}

// retryArgs are ARGV[1..9] of retry.lua: max_attempts 3, dead letter on, backoff 1000 ms × 2^(n-1)
// up to 60 s, no jitter, reason "nack", any owner.
func retryArgs() []any { return []any{3, "1", 1000, 60000, "2", "0", "0", "nack", ""} }

// with returns a copy of base with ARGV[i] (1-based) set to v.
func with(base []any, i int, v any) []any {
	out := append([]any(nil), base...)
	out[i-1] = v
	return out
}

func TestContract_Nack(t *testing.T) {
	keys := rdb.RetryKeys(q)
	inflight, leases, delayed, deadKey := keys[1], keys[2], keys[3], keys[4]
	nack := func(base []any, delay int, receipts ...string) []any {
		a := append(append([]any(nil), base...), delay)
		for _, r := range receipts {
			a = append(a, r)
		}
		return a
	}
	delayedBy := func(ms int64) func(t *testing.T, c *redis.Client, _ any) {
		return func(t *testing.T, c *redis.Client, _ any) {
			now := redisNow(t, c)
			within(t, "ready-at", score(t, c, delayed, env(3)), now+ms-3000, now+ms)
		}
	}
	runContract(t, rdb.Nack, []contractCase{
		{
			name:  "an unknown receipt: 0, its stray inflight entry removed",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", inflight, 1, "r9") },
			keys:  keys, args: nack(retryArgs(), 0, "r9"),
			want: arr(0), after: map[string]any{},
		},
		{
			name:  "another owner's lease: 0, the lease stays",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(0), 1) },
			keys:  keys, args: nack(with(retryArgs(), 9, "o2"), 0, "r1"),
			want: arr(0), after: map[string]any{leases: map[string]string{"r1": "o1\n" + env(0)}, inflight: list("r1")},
		},
		{
			name:  "delay 0: to the tail of the ready list with attempts + 1",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(0), 1); rpush(t, c, q, "x") },
			keys:  keys, args: nack(with(retryArgs(), 9, "o1"), 0, "r1"),
			want: arr(1), after: map[string]any{q: list("x", env(1))},
		},
		{
			name:  "a delay: to the delayed set, ready at now + delay",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			keys:  keys, args: nack(with(retryArgs(), 1, 10), 5000, "r1"),
			want: arr(2), after: map[string]any{delayed: list(env(3))},
			check: delayedBy(5000),
		},
		{
			name:  "delay -1: backoff initial × multiplier^(attempts after the retry - 1)",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			keys:  keys, args: nack(with(retryArgs(), 1, 10), -1, "r1"),
			want: arr(2), check: delayedBy(4000),
		},
		{
			name:  "delay -1: the backoff is capped at its max",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			keys:  keys, args: nack(with(with(retryArgs(), 1, 10), 4, 2500), -1, "r1"),
			want: arr(2), check: delayedBy(2500),
		},
		{
			name:  "delay -1: jitter 0.5 with random 0 halves the backoff",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			keys:  keys, args: nack(with(with(with(retryArgs(), 1, 10), 6, "0.5"), 7, "0"), -1, "r1"),
			want: arr(2), check: delayedBy(2000),
		},
		{
			name:  "delay -1: jitter 0.5 with random 0.75 adds a quarter",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			keys:  keys, args: nack(with(with(with(retryArgs(), 1, 10), 6, "0.5"), 7, "0.75"), -1, "r1"),
			want: arr(2), check: delayedBy(5000),
		},
		{
			name: "an equal copy already delayed: straight to the ready list instead",
			setup: func(t *testing.T, c *redis.Client) {
				lease(t, c, q, "o1", "r1", env(2), 1)
				do(t, c, "ZADD", delayed, 99, env(3))
			},
			keys: keys, args: nack(with(retryArgs(), 1, 10), 5000, "r1"),
			want: arr(1), after: map[string]any{q: list(env(3)), delayed: list(env(3))},
		},
		{
			name:  "attempts reach max_attempts: a dead record (reason, failed_at, attempts, item)",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			keys:  keys, args: nack(retryArgs(), 0, "r1"),
			want: arr(3),
			check: func(t *testing.T, c *redis.Client, _ any) {
				if got := state(t, c); len(got) != 1 || got[deadKey] == nil {
					t.Fatalf("state %s, want only the dead list", show(got))
				}
				rec, now := dead(t, c, 0), redisNow(t, c)
				if rec.Reason != "nack" || rec.Attempts != 3 || rec.Item != env(3) {
					t.Fatalf("dead record %+v", rec)
				}
				within(t, "failed_at", rec.FailedAt, now-3000, now)
			},
		},
		{
			name:  "max_attempts 1: the first failure is the last",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(0), 1) },
			keys:  keys, args: nack(with(retryArgs(), 1, 1), 0, "r1"),
			want: arr(3),
		},
		{
			name:  "attempts exhausted without dead letter: dropped",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			keys:  keys, args: nack(with(retryArgs(), 2, "0"), 0, "r1"),
			want: arr(4), after: map[string]any{},
		},
		{
			name:  "a raw item has no attempts: back to the ready list unchanged, never dead",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", "raw", 1) },
			keys:  keys, args: nack(with(retryArgs(), 1, 1), 5000, "r1"),
			want: arr(1), after: map[string]any{q: list("raw")},
		},
		{
			name: "one result per receipt, in order",
			setup: func(t *testing.T, c *redis.Client) {
				lease(t, c, q, "o1", "r1", env(0), 1)
				lease(t, c, q, "o1", "r2", env(2), 1)
				lease(t, c, q, "o1", "r3", "raw", 1)
			},
			keys: keys, args: nack(retryArgs(), 0, "r1", "r2", "r3", "r4"),
			want: arr(1, 3, 1, 0),
			check: func(t *testing.T, c *redis.Client, _ any) {
				if got := c.LRange(context.Background(), q, 0, -1).Val(); len(got) != 2 || got[0] != env(1) || got[1] != "raw" {
					t.Fatalf("ready list %q", got)
				}
				if n := c.HLen(context.Background(), leases).Val(); n != 0 {
					t.Fatalf("%d leases left", n)
				}
			},
		},
	})
}

func TestContract_RequeueExpired(t *testing.T) {
	keys := rdb.RetryKeys(q)
	inflight, leases, delayed := keys[1], keys[2], keys[3]
	args := func(base []any, limit int) []any { return append(append([]any(nil), base...), limit) }
	expiredReason := with(retryArgs(), 8, "lease expired")
	runContract(t, rdb.RequeueExpired, []contractCase{
		{
			name: "nothing leased",
			keys: keys, args: args(expiredReason, 10),
			want: arr(0, 0, 0, -1), after: map[string]any{},
		},
		{
			name: "an expired lease is retried with the backoff; a live one stays; next_in is its deadline",
			setup: func(t *testing.T, c *redis.Client) {
				lease(t, c, q, "o1", "r1", env(0), 1)
				lease(t, c, q, "o1", "r2", "live", redisNow(t, c)+60000)
			},
			keys: keys, args: args(expiredReason, 10),
			after: map[string]any{delayed: list(env(1)), leases: map[string]string{"r2": "o1\nlive"}, inflight: list("r2")},
			check: func(t *testing.T, c *redis.Client, res any) {
				r := res.([]any)
				if r[0] != int64(1) || r[1] != int64(1) || r[2] != int64(0) {
					t.Fatalf("reply %v, want [1 1 0 ~60000]", r)
				}
				within(t, "next_in", r[3].(int64), 55000, 60000)
				now := redisNow(t, c)
				within(t, "ready-at", score(t, c, delayed, env(1)), now+1000-3000, now+1000)
			},
		},
		{
			name:  "an expired lease past max_attempts: dead, with ARGV[8] as reason",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			keys:  keys, args: args(expiredReason, 10),
			want: arr(1, 0, 1, -1),
			check: func(t *testing.T, c *redis.Client, _ any) {
				if rec := dead(t, c, 0); rec.Reason != "lease expired" || rec.Attempts != 3 || rec.Item != env(3) {
					t.Fatalf("dead record %+v", rec)
				}
			},
		},
		{
			name:  "dropped items count as dead",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			keys:  keys, args: args(with(expiredReason, 2, "0"), 10),
			want: arr(1, 0, 1, -1), after: map[string]any{},
		},
		{
			name:  "a raw item is retried to the ready list",
			setup: func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", "raw", 1) },
			keys:  keys, args: args(expiredReason, 10),
			want: arr(1, 1, 0, -1), after: map[string]any{q: list("raw")},
		},
		{
			name:  "an inflight entry without lease is handled (removed) but neither retried nor dead",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", inflight, 1, "r9") },
			keys:  keys, args: args(expiredReason, 10),
			want: arr(1, 0, 0, -1), after: map[string]any{},
		},
		{
			name: "at most ARGV[10] leases, earliest deadline first; next_in 0 when more are due",
			setup: func(t *testing.T, c *redis.Client) {
				lease(t, c, q, "o1", "r1", "a", 1)
				lease(t, c, q, "o1", "r2", "b", 2)
				lease(t, c, q, "o1", "r3", "c", 3)
			},
			keys: keys, args: args(expiredReason, 2),
			want: arr(2, 2, 0, 0),
			after: map[string]any{
				q: list("a", "b"), leases: map[string]string{"r3": "o1\nc"}, inflight: list("r3"),
			},
		},
	})
}

func TestContract_PromoteDelayed(t *testing.T) {
	keys := []string{rdb.DelayedKey(q), q}
	runContract(t, rdb.PromoteDelayed, []contractCase{
		{
			name: "nothing delayed",
			keys: keys, args: []any{10},
			want: arr(0, -1), after: map[string]any{},
		},
		{
			name: "due items to the tail, oldest ready-at first; next_in is the next one's",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "x")
				do(t, c, "ZADD", keys[0], 2, "b", 1, "a", redisNow(t, c)+60000, "later")
			},
			keys: keys, args: []any{10},
			after: map[string]any{q: list("x", "a", "b"), keys[0]: list("later")},
			check: func(t *testing.T, c *redis.Client, res any) {
				r := res.([]any)
				if r[0] != int64(2) {
					t.Fatalf("reply %v, want 2 moved", r)
				}
				within(t, "next_in", r[1].(int64), 55000, 60000)
			},
		},
		{
			name:  "at most ARGV[1] items; next_in 0 when more are due",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", keys[0], 1, "a", 2, "b") },
			keys:  keys, args: []any{1},
			want: arr(1, 0), after: map[string]any{q: list("a"), keys[0]: list("b")},
		},
	})
}

func TestContract_Redrive(t *testing.T) {
	keys := []string{q, rdb.DeadKey(q)}
	record := func(item string) string {
		b, _ := json.Marshal(deadRecord{Reason: "nack", FailedAt: 1, Attempts: 3, Item: item})
		return string(b)
	}
	runContract(t, rdb.Redrive, []contractCase{
		{
			name: "nothing dead",
			keys: keys, args: []any{10},
			want: int64(0), after: map[string]any{},
		},
		{
			name: "oldest record first, appended to the ready list: envelopes with attempts 0, raw items as they are, unparsable records whole",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "x")
				rpush(t, c, keys[1], record(env(3)), record("raw"), "not json", `{"item":5}`, record(env(12)))
			},
			keys: keys, args: []any{10},
			want:  int64(5),
			after: map[string]any{q: list("x", env(0), "raw", "not json", `{"item":5}`, env(0))},
		},
		{
			name:  "at most ARGV[1] records",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, keys[1], record("a"), record("b")) },
			keys:  keys, args: []any{1},
			want: int64(1), after: map[string]any{q: list("a"), keys[1]: list(record("b"))},
		},
	})
}

func TestContract_ForgetQueue(t *testing.T) {
	keys := []string{rdb.LeasedQueuesKey}
	setup := func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", rdb.LeasedQueuesKey, 100, "q", 100, "other") }
	runContract(t, rdb.ForgetQueue, []contractCase{
		{name: "an unknown queue", keys: keys, args: []any{"q", 200}, want: int64(0), after: map[string]any{}},
		{
			name: "noted before the cutoff: dropped", setup: setup,
			keys: keys, args: []any{"q", 101},
			want: int64(1), after: map[string]any{rdb.LeasedQueuesKey: list("other")},
		},
		{
			name: "noted at the cutoff: kept", setup: setup,
			keys: keys, args: []any{"q", 100},
			want: int64(0), after: map[string]any{rdb.LeasedQueuesKey: list("other", "q")},
		},
	})
}

func TestContract_RegisterQueue(t *testing.T) {
	keys := []string{rdb.LeasedQueuesKey}
	runContract(t, rdb.RegisterQueue, []contractCase{
		{
			name: "a new queue: 1",
			keys: keys, args: []any{100, "q"},
			want: int64(1), after: map[string]any{rdb.LeasedQueuesKey: list("q")},
		},
		{
			// A plain ZADD: an instance whose clock is behind moves the note back in time.
			name:  "a known queue: 0, its score replaced (even by an older time)",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", rdb.LeasedQueuesKey, 100, "q") },
			keys:  keys, args: []any{50, "q"},
			want: int64(0),
			check: func(t *testing.T, c *redis.Client, _ any) {
				if s := score(t, c, rdb.LeasedQueuesKey, "q"); s != 50 {
					t.Fatalf("score %d, want 50", s)
				}
			},
		},
	})
}

func TestContract_HandoffBack(t *testing.T) {
	keys := rdb.HandoffBackKeys(q)
	handoff := keys[0]
	runContract(t, rdb.HandoffBack, []contractCase{
		{name: "an empty handoff list", keys: keys, args: []any{10}, want: int64(0), after: map[string]any{}},
		{
			name:  "to the head of the ready list, the handoff list's oldest (head) item first",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, handoff, "a", "b", "c"); rpush(t, c, q, "x") },
			keys:  keys, args: []any{10},
			want: int64(3), after: map[string]any{q: list("a", "b", "c", "x")},
		},
		{
			name:  "at most ARGV[1] items, newest first",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, handoff, "a", "b", "c"); rpush(t, c, q, "x") },
			keys:  keys, args: []any{2},
			want: int64(2), after: map[string]any{q: list("b", "c", "x"), handoff: list("a")},
		},
	})
}

func TestContract_Heartbeat(t *testing.T) {
	keys := []string{rdb.InstancesKey}
	const ttl, forget = 10000, 60000
	runContract(t, rdb.Heartbeat, []contractCase{
		{
			name: "the first beat is a gap",
			keys: keys, args: []any{"me", ttl, forget},
			want: arr(1), after: map[string]any{rdb.InstancesKey: list("me")},
			check: func(t *testing.T, c *redis.Client, _ any) {
				now := redisNow(t, c)
				within(t, "beat", score(t, c, rdb.InstancesKey, "me"), now-3000, now)
			},
		},
		{
			name: "a recent previous beat: 0 and the instances at most ttl old, oldest first; entries older than forget removed",
			setup: func(t *testing.T, c *redis.Client) {
				now := redisNow(t, c)
				do(t, c, "ZADD", rdb.InstancesKey, now-1000, "me", now-4000, "alive", now-20000, "dead", now-100000, "gone")
			},
			keys: keys, args: []any{"me", ttl, forget},
			want: arr(0, "alive", "me"), after: map[string]any{rdb.InstancesKey: list("dead", "alive", "me")},
		},
		{
			name: "a previous beat older than ttl/2 is a gap: nobody is reported",
			setup: func(t *testing.T, c *redis.Client) {
				now := redisNow(t, c)
				do(t, c, "ZADD", rdb.InstancesKey, now-6000, "me", now-4000, "alive", now-100000, "gone")
			},
			keys: keys, args: []any{"me", ttl, forget},
			want: arr(1), after: map[string]any{rdb.InstancesKey: list("alive", "me")},
		},
	})
}

func TestContract_DedupPush(t *testing.T) {
	dk1, dk2 := rdb.DedupKey(q, "h1"), rdb.DedupKey(q, "h2")
	runContract(t, rdb.DedupPush, []contractCase{
		{
			name: "new values: pushed, each dedup key set for the window",
			keys: []string{q, dk1, dk2}, args: []any{"RPUSH", 60000, "a", "b"},
			want: arr(2, 2), after: map[string]any{q: list("a", "b"), dk1: "1", dk2: "1"},
			check: func(t *testing.T, c *redis.Client, _ any) {
				for _, k := range []string{dk1, dk2} {
					if ttl := c.PTTL(context.Background(), k).Val(); ttl <= 55*time.Second || ttl > 60*time.Second {
						t.Fatalf("%s PTTL %v, want about 60s", k, ttl)
					}
				}
			},
		},
		{
			name:  "a value seen within the window is skipped; the reply is {LLEN, pushed}",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x"); do(t, c, "SET", dk1, "1") },
			keys:  []string{q, dk1, dk2}, args: []any{"RPUSH", 60000, "a", "b"},
			want: arr(2, 1), after: map[string]any{q: list("x", "b"), dk1: "1", dk2: "1"},
		},
		{
			name: "LPUSH, value by value",
			keys: []string{q, dk1, dk2}, args: []any{"LPUSH", 60000, "a", "b"},
			want: arr(2, 2), after: map[string]any{q: list("b", "a"), dk1: "1", dk2: "1"},
		},
		{
			name: "the same dedup key twice in one call: the first value only",
			keys: []string{q, dk1, dk1}, args: []any{"RPUSH", 60000, "a", "b"},
			want: arr(1, 1), after: map[string]any{q: list("a"), dk1: "1"},
		},
		{
			name:  "all duplicates on a missing list",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", dk1, "1") },
			keys:  []string{q, dk1}, args: []any{"RPUSH", 60000, "a"},
			want: arr(0, 0),
		},
	})
}

func TestContract_LeasePopEach(t *testing.T) {
	keys := rdb.LeasePopKeys(q)
	inflight, leases, handoff, paused := rdb.InflightKey(q), rdb.LeasesKey(q), rdb.HandoffKey(q), rdb.PausedKey(q)
	runContract(t, rdb.LeasePopEach, []contractCase{
		{
			name: "empty list: nil, nothing written",
			keys: keys, args: []any{"LPOP", 30000, "o1", "P", "o2", "Q"},
			wantErr: "redis: nil", after: map[string]any{},
		},
		{
			name:  "one item per owner, in order, receipt prefix.1, lease owner\\nitem, deadline now+visibility",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a", "b", "c") },
			keys:  keys, args: []any{"LPOP", 30000, "o1", "P", "o2", "Q"},
			want: arr("P.1", "a", "Q.1", "b"),
			after: map[string]any{
				q: list("c"), leases: map[string]string{"P.1": "o1\na", "Q.1": "o2\nb"}, inflight: list("P.1", "Q.1"),
			},
			check: func(t *testing.T, c *redis.Client, _ any) {
				now := redisNow(t, c)
				within(t, "deadline", score(t, c, inflight, "Q.1"), now+30000-5000, now+30000)
			},
		},
		{
			name:  "fewer items than owners: the first owners get them",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a") },
			keys:  keys, args: []any{"RPOP", 30000, "o1", "P", "o2", "Q", "o3", "R"},
			want:  arr("P.1", "a"),
			after: map[string]any{leases: map[string]string{"P.1": "o1\na"}, inflight: list("P.1")},
		},
		{
			name:  "from the right",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a", "b", "c") },
			keys:  keys, args: []any{"RPOP", 30000, "o1", "P", "o2", "Q"},
			want: arr("P.1", "c", "Q.1", "b"),
		},
		{
			name:  "the handoff list first, from its head, then the ready list",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, handoff, "h1"); rpush(t, c, q, "a", "b") },
			keys:  keys, args: []any{"RPOP", 30000, "o1", "P", "o2", "Q"},
			want: arr("P.1", "h1", "Q.1", "b"),
			after: map[string]any{
				q: list("a"), leases: map[string]string{"P.1": "o1\nh1", "Q.1": "o2\nb"}, inflight: list("P.1", "Q.1"),
			},
		},
		{
			name:  "paused: nil, nothing leased",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a"); do(t, c, "SET", paused, "1") },
			keys:  keys, args: []any{"LPOP", 30000, "o1", "P"},
			wantErr: "redis: nil", after: map[string]any{q: list("a"), paused: "1"},
		},
		{
			name:  "a list of another type: WRONGTYPE",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", q, "x") },
			keys:  keys, args: []any{"LPOP", 30000, "o1", "P"},
			wantErr: "WRONGTYPE",
		},
	})
}

func TestContract_LeaseReturn(t *testing.T) {
	keys := rdb.LeaseReturnKeys(q)
	inflight, leases := keys[1], keys[2]
	runContract(t, rdb.LeaseReturn, []contractCase{
		{
			name: "no lease: nothing", keys: keys, args: []any{"o1", "LPUSH", "r1"},
			want: int64(0), after: map[string]any{},
		},
		{
			name: "to the head, most recently leased first: the original order; no attempt counted",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "c")
				lease(t, c, q, "o1", "r1", "a", 1)
				lease(t, c, q, "o1", "r2", "b", 1)
			},
			keys: keys, args: []any{"o1", "LPUSH", "r2", "r1"},
			want: int64(2), after: map[string]any{q: list("a", "b", "c")},
		},
		{
			name: "to the tail for a right pop",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "a")
				lease(t, c, q, "o1", "r1", "z", 1)
			},
			keys: keys, args: []any{"o1", "RPUSH", "r1"},
			want: int64(1), after: map[string]any{q: list("a", "z")},
		},
		{
			name: "another owner's lease is left alone",
			setup: func(t *testing.T, c *redis.Client) {
				lease(t, c, q, "o2", "r1", "a", 1)
			},
			keys: keys, args: []any{"o1", "LPUSH", "r1"},
			want: int64(0), after: map[string]any{inflight: list("r1"), leases: map[string]string{"r1": "o2\na"}},
		},
	})
}

func TestContract_TransitPop(t *testing.T) {
	keys := rdb.TransitKeys(q, "i1")
	rec, owners := keys[1], keys[2]
	runContract(t, rdb.TransitPop, []contractCase{
		{
			name: "single pop of an empty list: false",
			keys: keys, args: []any{"LPOP", "", "L1.", "i1"},
			wantErr: "redis: nil", after: map[string]any{},
		},
		{
			name:  "single pop: the item, recorded under prefix..1, the instance an owner",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a", "b") },
			keys:  keys, args: []any{"LPOP", "", "L1.", "i1"},
			want: "a", after: map[string]any{q: list("b"), rec: map[string]string{"L1.1": "a"}, owners: list("i1")},
		},
		{
			name: "count from the right: the list in pop order, fields prefix..i; other records kept",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "a", "b", "c")
				do(t, c, "HSET", rec, "L1.1", "old")
				do(t, c, "SADD", owners, "i1", "i2")
			},
			keys: keys, args: []any{"RPOP", "2", "R2.", "i1"},
			want: arr("c", "b"),
			after: map[string]any{
				q: list("a"), rec: map[string]string{"L1.1": "old", "R2.1": "c", "R2.2": "b"}, owners: list("i1", "i2"),
			},
		},
		{
			name:  "count above the list's length: the whole list",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a") },
			keys:  keys, args: []any{"LPOP", "5", "L1.", "i1"},
			want: arr("a"), after: map[string]any{rec: map[string]string{"L1.1": "a"}, owners: list("i1")},
		},
		{
			name: "count on an empty list: false",
			keys: keys, args: []any{"LPOP", "5", "L1.", "i1"},
			wantErr: "redis: nil", after: map[string]any{},
		},
		{
			name:  "count 0 on a list: an empty list, no record, no owner",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a") },
			keys:  keys, args: []any{"LPOP", "0", "L1.", "i1"},
			want: arr(), after: map[string]any{q: list("a")},
		},
		{
			name:  "a key of another type: WRONGTYPE, nothing written",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", q, "s") },
			keys:  keys, args: []any{"LPOP", "", "L1.", "i1"},
			wantErr: "WRONGTYPE", after: map[string]any{q: "s"},
		},
	})
}

func TestContract_TransitPopEach(t *testing.T) {
	keys := rdb.TransitKeys(q, "i1")
	rec, owners := keys[1], keys[2]
	runContract(t, rdb.TransitPopEach, []contractCase{
		{
			name: "an empty list: false for each pop, no owner; 0 deleted",
			keys: keys, args: []any{"LPOP", "i1", 2, "L1.1", "L2.1"},
			want: arr(nil, nil, 0), after: map[string]any{},
		},
		{
			name:  "one item per pop under its own field; false once the list is empty",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a", "b") },
			keys:  keys, args: []any{"LPOP", "i1", 3, "L1.1", "L2.1", "L3.1"},
			want:  arr("a", "b", nil, 0),
			after: map[string]any{rec: map[string]string{"L1.1": "a", "L2.1": "b"}, owners: list("i1")},
		},
		{
			name:  "from the right",
			setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a", "b", "c") },
			keys:  keys, args: []any{"RPOP", "i1", 2, "R1.1", "R2.1"},
			want:  arr("c", "b", 0),
			after: map[string]any{q: list("a"), rec: map[string]string{"R1.1": "c", "R2.1": "b"}, owners: list("i1")},
		},
		{
			name: "carried fields deleted after the pops; gone ones (given back meanwhile) not counted; others kept",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "a")
				do(t, c, "HSET", rec, "L1.1", "x", "R2.1", "y", "R2.2", "z", "L3.1", "kept")
				do(t, c, "SADD", owners, "i1")
			},
			keys: keys, args: []any{"LPOP", "i1", 1, "L4.1", "L1.1", "R2.1", "R2.2", "L9.1"},
			want:  arr("a", 3),
			after: map[string]any{rec: map[string]string{"L3.1": "kept", "L4.1": "a"}, owners: list("i1")},
		},
		{
			name: "carried fields with an empty list: deleted all the same",
			setup: func(t *testing.T, c *redis.Client) {
				do(t, c, "HSET", rec, "L1.1", "x")
				do(t, c, "SADD", owners, "i1")
			},
			keys: keys, args: []any{"LPOP", "i1", 1, "L2.1", "L1.1"},
			want: arr(nil, 1), after: map[string]any{owners: list("i1")},
		},
		{
			name: "more pops than one HSET takes (1200 pops, 1100 items): every item recorded under its pop",
			setup: func(t *testing.T, c *redis.Client) {
				for i := 1; i <= 1100; i++ {
					rpush(t, c, q, "v"+strconv.Itoa(i))
				}
			},
			keys: keys, args: manyPops(1200),
			check: func(t *testing.T, c *redis.Client, res any) {
				out, _ := res.([]any)
				if got, want := len(out), 1201; got != want {
					t.Fatalf("%d entries, want %d", got, want)
				}
				if got, want := out[1099], any("v1100"); got != want {
					t.Fatalf("entry 1100 = %v, want %v", got, want)
				}
				if out[1100] != nil || out[1200] != int64(0) {
					t.Fatalf("entries 1101 and 1201 = %v, %v; want nil and 0", out[1100], out[1200])
				}
				ctx := context.Background()
				if got, want := c.HLen(ctx, rec).Val(), int64(1100); got != want {
					t.Fatalf("record holds %d fields, want %d", got, want)
				}
				if got, want := c.HGet(ctx, rec, "L1100.1").Val(), "v1100"; got != want {
					t.Fatalf("field L1100.1 = %q, want %q", got, want)
				}
			},
		},
		{
			name: "a key of another type: WRONGTYPE, nothing written, carried fields not deleted",
			setup: func(t *testing.T, c *redis.Client) {
				do(t, c, "SET", q, "s")
				do(t, c, "HSET", rec, "L1.1", "x")
			},
			keys: keys, args: []any{"LPOP", "i1", 1, "L2.1", "L1.1"},
			wantErr: "WRONGTYPE", after: map[string]any{q: "s", rec: map[string]string{"L1.1": "x"}},
		},
	})
}

// manyPops is transit_pop_each's ARGV for n left pops numbered 1..n by instance i1.
func manyPops(n int) []any {
	args := []any{"LPOP", "i1", n}
	for i := 1; i <= n; i++ {
		args = append(args, "L"+strconv.Itoa(i)+".1")
	}
	return args
}

func TestContract_TransitReturn(t *testing.T) {
	keys := rdb.TransitKeys(q, "i1")
	rec, owners := keys[1], keys[2]
	runContract(t, rdb.TransitReturn, []contractCase{
		{
			name: "L fields LPUSHed in ARGV order (most recent first): the original order; the owner stays",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "c")
				do(t, c, "HSET", rec, "L1.1", "a", "L1.2", "b")
				do(t, c, "SADD", owners, "i1")
			},
			keys: keys, args: []any{"i1", "L1.2", "L1.1"},
			want: int64(2), after: map[string]any{q: list("a", "b", "c"), owners: list("i1")},
		},
		{
			name: "R fields RPUSHed",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "a")
				do(t, c, "HSET", rec, "R1.1", "c", "R1.2", "b")
			},
			keys: keys, args: []any{"i1", "R1.2", "R1.1"},
			want: int64(2), after: map[string]any{q: list("a", "b", "c")},
		},
		{
			name: "fields already gone are skipped (a repeat does nothing); other fields untouched",
			setup: func(t *testing.T, c *redis.Client) {
				do(t, c, "HSET", rec, "L1.1", "a", "L2.1", "other")
			},
			keys: keys, args: []any{"i1", "L1.2", "L1.1", "L1.1"},
			want: int64(1), after: map[string]any{q: list("a"), rec: map[string]string{"L2.1": "other"}},
		},
		{name: "no fields", keys: keys, args: []any{"i1"}, want: int64(0), after: map[string]any{}},
	})
}

func TestContract_TransitRecover(t *testing.T) {
	keys := rdb.TransitKeys(q, "dead")
	rec, owners := keys[1], keys[2]
	runContract(t, rdb.TransitRecover, []contractCase{
		{
			name: "all back, most recent pop first, so the list is whole again; the dead owner dropped",
			setup: func(t *testing.T, c *redis.Client) {
				// The list was a b c d e: pop 1 took a (left), pop 2 e (right), pop 3 b (left).
				rpush(t, c, q, "c", "d")
				do(t, c, "HSET", rec, "L1.1", "a", "R2.1", "e", "L3.1", "b")
				do(t, c, "SADD", owners, "dead", "alive")
			},
			keys: keys, args: []any{"dead", 10},
			want: int64(3), after: map[string]any{q: list("a", "b", "c", "d", "e"), owners: list("alive")},
		},
		{
			name: "sequence numbers and positions compare as numbers",
			setup: func(t *testing.T, c *redis.Client) {
				// The list was a b0..b10 c: pop 9 took a, pop 10 took b0..b10 (COUNT 11).
				rpush(t, c, q, "c")
				do(t, c, "HSET", rec, "L9.1", "a")
				for i := 1; i <= 11; i++ {
					do(t, c, "HSET", rec, "L10."+strconv.Itoa(i), "b"+strconv.Itoa(i-1))
				}
			},
			keys: keys, args: []any{"dead", 100},
			want:  int64(12),
			after: map[string]any{q: list("a", "b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10", "c")},
		},
		{
			name: "at most ARGV[2] items; the owner stays while its record is not empty",
			setup: func(t *testing.T, c *redis.Client) {
				do(t, c, "HSET", rec, "L1.1", "a", "L1.2", "b", "L1.3", "c")
				do(t, c, "SADD", owners, "dead")
			},
			keys: keys, args: []any{"dead", 2},
			want: int64(2),
			check: func(t *testing.T, c *redis.Client, _ any) {
				ctx := context.Background()
				if n := c.LLen(ctx, q).Val(); n != 2 {
					t.Fatalf("%d items back, want 2", n)
				}
				if n := c.HLen(ctx, rec).Val(); n != 1 {
					t.Fatalf("%d fields left, want 1", n)
				}
				if !c.SIsMember(ctx, owners, "dead").Val() {
					t.Fatal("owner dropped with a record left")
				}
			},
		},
		{
			name:  "an owner without record: nothing back, owner dropped",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SADD", owners, "dead", "alive") },
			keys:  keys, args: []any{"dead", 10},
			want: int64(0), after: map[string]any{owners: list("alive")},
		},
	})
}

// TestContract_FalseReplies: a script's Lua false reaches the caller as a nil reply on RESP2 and on
// RESP3 alike (Redis converts it by the script's own protocol, 2 unless it calls redis.setresp(3),
// not as a RESP3 boolean), so callers of these scripts need to handle nil only, whichever protocol
// the proxy's backend URL asks for.
func TestContract_FalseReplies(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		s    *rdb.Script
		keys []string
		args []any
		// want is the reply on RESP2 and RESP3; nil means redis.Nil.
		want any
	}{
		{"transit_pop single", rdb.TransitPop, rdb.TransitKeys(q, "i1"), []any{"LPOP", "", "L1.", "i1"}, nil},
		{"transit_pop count", rdb.TransitPop, rdb.TransitKeys(q, "i1"), []any{"LPOP", "2", "L1.", "i1"}, nil},
		{"transit_pop_each", rdb.TransitPopEach, rdb.TransitKeys(q, "i1"), []any{"LPOP", "i1", 1, "L1.1"}, arr(nil, 0)},
		{"lease_pop", rdb.LeasePop, rdb.LeasePopKeys(q), []any{"LPOP", "", 1000, "o1", "P"}, arr(0, nil)},
		{"lease_pop_each", rdb.LeasePopEach, rdb.LeasePopKeys(q), []any{"LPOP", 1000, "o1", "P"}, nil},
	} {
		for _, proto := range []int{2, 3} {
			c := fresh(t, proto)
			res, err := tc.s.Run(ctx, c, tc.keys, tc.args...).Result()
			want := tc.want
			if want == nil {
				if err != redis.Nil {
					t.Errorf("%s, RESP%d: %s, %v; want redis.Nil", tc.name, proto, show(res), err)
				}
				continue
			}
			if err != nil || show(res) != show(want) {
				t.Errorf("%s, RESP%d: %s, %v; want %s", tc.name, proto, show(res), err, show(want))
			}
		}
	}
}

// TestContract_AllowOOM: at maxmemory with noeviction, every script flagged allow-oom still does its
// work (even those that add a little: a lease, a dead record, a heartbeat), and dedup_push, which
// has no flags, is refused without pushing anything (DESIGN.md "Scripts and script flags").
func TestContract_AllowOOM(t *testing.T) {
	retry := retryArgs()
	transit := rdb.TransitKeys(q, "i1")
	for _, tc := range []struct {
		name  string
		s     *rdb.Script
		setup func(t *testing.T, c *redis.Client)
		keys  []string
		args  []any
		want  any
	}{
		{"lease_pop", rdb.LeasePop, func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a") },
			rdb.LeasePopKeys(q), []any{"LPOP", "", 1000, "o1", "P"}, arr(0, arr("P.1", "a"))},
		{"ack", rdb.Ack, func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", "a", 1) },
			[]string{rdb.InflightKey(q), rdb.LeasesKey(q)}, []any{"o1", "r1"}, int64(1)},
		{"extend", rdb.Extend, func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", "a", 1) },
			[]string{rdb.InflightKey(q), rdb.LeasesKey(q)}, []any{"r1", 1000}, int64(1)},
		{"nack to the ready list", rdb.Nack, func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(0), 1) },
			rdb.RetryKeys(q), append(append([]any(nil), retry...), 0, "r1"), arr(1)},
		{"nack to the delayed set", rdb.Nack, func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(0), 1) },
			rdb.RetryKeys(q), append(append([]any(nil), retry...), 5000, "r1"), arr(2)},
		{"nack to the dead list", rdb.Nack, func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", env(2), 1) },
			rdb.RetryKeys(q), append(append([]any(nil), retry...), 0, "r1"), arr(3)},
		{"requeue_expired", rdb.RequeueExpired, func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", "raw", 1) },
			rdb.RetryKeys(q), append(append([]any(nil), retry...), 10), arr(1, 1, 0, -1)},
		{"promote_delayed", rdb.PromoteDelayed, func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", rdb.DelayedKey(q), 1, "a") },
			[]string{rdb.DelayedKey(q), q}, []any{10}, arr(1, -1)},
		{"redrive", rdb.Redrive, func(t *testing.T, c *redis.Client) { rpush(t, c, rdb.DeadKey(q), `{"item":"a"}`) },
			[]string{q, rdb.DeadKey(q)}, []any{10}, int64(1)},
		{"forget_queue", rdb.ForgetQueue, func(t *testing.T, c *redis.Client) { do(t, c, "ZADD", rdb.LeasedQueuesKey, 1, q) },
			[]string{rdb.LeasedQueuesKey}, []any{q, 2}, int64(1)},
		{"register_queue", rdb.RegisterQueue, nil, []string{rdb.LeasedQueuesKey}, []any{1, q}, int64(1)},
		{"handoff_back", rdb.HandoffBack, func(t *testing.T, c *redis.Client) { rpush(t, c, rdb.HandoffKey(q), "a") },
			rdb.HandoffBackKeys(q), []any{10}, int64(1)},
		{"heartbeat", rdb.Heartbeat, nil, []string{rdb.InstancesKey}, []any{"me", 10000, 60000}, arr(1)},
		{"lease_return", rdb.LeaseReturn, func(t *testing.T, c *redis.Client) { lease(t, c, q, "o1", "r1", "a", 1) },
			rdb.LeaseReturnKeys(q), []any{"o1", "LPUSH", "r1"}, int64(1)},
		{"transit_pop", rdb.TransitPop, func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a") },
			transit, []any{"LPOP", "", "L1.", "i1"}, "a"},
		{"transit_pop_each", rdb.TransitPopEach, func(t *testing.T, c *redis.Client) { rpush(t, c, q, "a") },
			transit, []any{"LPOP", "i1", 1, "L1.1"}, arr("a", 0)},
		{"transit_pop_each carrying deletes", rdb.TransitPopEach, func(t *testing.T, c *redis.Client) {
			rpush(t, c, q, "a")
			do(t, c, "HSET", transit[1], "L1.1", "x")
		}, transit, []any{"LPOP", "i1", 1, "L2.1", "L1.1"}, arr("a", 1)},
		{"transit_return", rdb.TransitReturn, func(t *testing.T, c *redis.Client) { do(t, c, "HSET", transit[1], "L1.1", "a") },
			transit, []any{"i1", "L1.1"}, int64(1)},
		{"transit_recover", rdb.TransitRecover, func(t *testing.T, c *redis.Client) { do(t, c, "HSET", transit[1], "L1.1", "a") },
			transit, []any{"i1", 10}, int64(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fresh(t)
			if tc.setup != nil {
				tc.setup(t, c)
			}
			outOfMemory(t, c)
			res, err := tc.s.Run(context.Background(), c, tc.keys, tc.args...).Result()
			if err != nil || show(res) != show(tc.want) {
				t.Fatalf("at maxmemory: %s, %v; want %s", show(res), err, show(tc.want))
			}
		})
	}

	t.Run("dedup_push is refused", func(t *testing.T) {
		c := fresh(t)
		rpush(t, c, q, "x")
		outOfMemory(t, c)
		err := rdb.DedupPush.Run(context.Background(), c, []string{q, rdb.DedupKey(q, "h")}, "RPUSH", 60000, "a").Err()
		if err == nil || !strings.HasPrefix(err.Error(), "OOM") {
			t.Fatalf("dedup_push at maxmemory: %v, want an OOM error", err)
		}
		if got := state(t, c); show(got) != show(map[string]any{q: list("x")}) {
			t.Fatalf("state %s, want the list unchanged and no dedup key", show(got))
		}
	})
}

// TestContract_BackoffOverflow: with backoff.initial 0 (policy allows it) the backoff would be
// 0 × multiplier^(n-1), which is 0 × inf = NaN once multiplier^(n-1) overflows a double (n > 1024
// with multiplier 2, n > 155 with multiplier 100; max_attempts has no upper bound). ZADD refuses a NaN
// score after the script deleted the lease, so retry.lua must never compute one: the item goes back
// at once (initial 0), or after the cap when initial × multiplier^(n-1) overflows.
func TestContract_BackoffOverflow(t *testing.T) {
	ctx := context.Background()
	c := fresh(t)
	for i, tc := range []struct {
		initial  int
		attempts int
		want     int64 // 1 ready, 2 delayed
	}{{0, 155, 1}, {0, 2000, 1}, {0, 154, 1}, {10, 2000, 2}} {
		r := fmt.Sprintf("r%d", i)
		lease(t, c, q, "o1", r, env(tc.attempts), 1)
		args := []any{100000, "1", tc.initial, 60000, "100", "0", "0", "nack", "", -1, r}
		res, err := rdb.Nack.Run(ctx, c, rdb.RetryKeys(q), args...).Int64Slice()
		if err != nil || len(res) != 1 || res[0] != tc.want {
			t.Fatalf("nack with backoff %d × 100^%d: %v, %v; want [%d]", tc.initial, tc.attempts, res, err, tc.want)
		}
		if tc.want == 2 {
			if n := c.ZCard(ctx, rdb.DelayedKey(q)).Val(); n != 1 {
				t.Fatalf("delayed set holds %d items, want 1", n)
			}
		} else if n := c.LLen(ctx, q).Val(); n < 1 {
			t.Fatalf("ready list holds %d items, want the nacked one", n)
		}
	}
}

// TestLoadAll_EveryScriptCached: after LoadAll, EVALSHA of every script finds it (SCRIPT FLUSH first,
// as after a restarted backend).
func TestLoadAll_EveryScriptCached(t *testing.T) {
	ctx := context.Background()
	c := fresh(t)
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.LoadAll(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, s := range rdb.All() {
		cmd := s.Cmd(ctx, c, []string{"{q}:none"}, "x")
		_ = c.Process(ctx, cmd)
		if rdb.IsNoScript(cmd.Err()) {
			t.Errorf("%v: NOSCRIPT after LoadAll", cmd.Args()[1])
		}
	}
}
