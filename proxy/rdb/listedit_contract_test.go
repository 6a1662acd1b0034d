package rdb_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/rdb"
)

func init() {
	contracts["list_match.lua"] = "TestContract_ListMatch"
	contracts["list_pos.lua"] = "TestContract_ListPos"
	contracts["list_rem.lua"] = "TestContract_ListRem"
	contracts["list_insert.lua"] = "TestContract_ListInsert"
	contracts["list_pushx.lua"] = "TestContract_ListPushX"
	contracts["purge.lua"] = "TestContract_ListPurge"
}

// envOf is a stored envelope of queue q holding payload, pushed by producer, always the same id and
// time: what AppendEnvelope writes, so the json, text or b64 member follows the payload.
func envOf(payload, producer string) string {
	return string(envelope.AppendEnvelope(nil, &envelope.Envelope{
		ID: "01JDX3B6T9Q4M2ZK8YJ3R5W7NC", Queue: q, Producer: producer,
		EnqueuedAt: time.Date(2026, 11, 23, 20, 55, 1, 123e6, time.UTC), Payload: []byte(payload),
	}))
}

func tail(s string) string { return envelope.Tail([]byte(s)) } // ARGV[2] of the list scripts

const wrongType = "WRONGTYPE Operation against a key holding the wrong kind of value"

// posArgs are list_pos.lua's ARGV for elem: RANK 1, every match, whole list.
func posArgs(elem string, rest ...any) []any {
	args := []any{elem, tail(elem), 1, 0, 0}
	for i, v := range rest {
		args[2+i] = v
	}
	return args
}

// TestContract_ListMatch: the matching rule of list_match.lua (through list_pos.lua): stored bytes,
// or an envelope's payload in each of its three members, compared as the exact payload bytes.
func TestContract_ListMatch(t *testing.T) {
	jsonOdd := `{"b":1,"a":[1.0,"\u00e9"]}` // cjson would re-encode this differently
	text := "he said \"hi\"\n\tthen é"
	bin := "\xff\x00\xfe"
	items := []string{
		"plain",                       // 0
		envOf(`{"job":1}`, "default"), // 1 json
		envOf(jsonOdd, `us"er\`),      // 2 json, producer with escapes
		envOf(text, "default"),        // 3 text with escapes
		envOf("simple text", "p"),     // 4 text without escapes
		envOf(bin, "default"),         // 5 b64
		envOf("", "default"),          // 6 empty payload (text "")
		`{"qgate":1,"id":"x"}`,        // 7 not a full envelope
		envOf("plain", "default"),     // 8 payload equal to item 0
	}
	cases := []contractCase{}
	for _, tc := range []struct {
		name, elem string
		want       any
	}{
		{"stored bytes", "plain", arr(0, 8)},
		{"json payload", `{"job":1}`, arr(1)},
		{"json payload compared as bytes, not re-encoded", jsonOdd, arr(2)},
		{"json payload in another encoding does not match", `{"a":[1,"é"],"b":1}`, arr()},
		{"text payload with escapes", text, arr(3)},
		{"text payload", "simple text", arr(4)},
		{"b64 payload", bin, arr(5)},
		{"empty payload", "", arr(6)},
		{"a whole stored envelope", items[1], arr(1)},
		{"not an envelope: stored bytes only", `{"qgate":1,"id":"x"}`, arr(7)},
		{"part of a payload does not match", `{"job":`, arr()},
		{"the payload's JSON string form does not match", `"simple text"`, arr()},
	} {
		cases = append(cases, contractCase{
			name: tc.name, setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, items...) },
			keys: []string{q}, args: posArgs(tc.elem), want: tc.want,
		})
	}
	runContract(t, rdb.ListPos, cases)
}

func TestContract_ListPos(t *testing.T) {
	a := envOf("a", "default")
	fill := func(t *testing.T, c *redis.Client) { rpush(t, c, q, a, "b", "a", "c", a) } // a at 0, 2, 4
	big := func(t *testing.T, c *redis.Client) {
		items := make([]string, 2500)
		for i := range items {
			items[i] = "x"
		}
		items[1200], items[2400] = "a", a
		rpush(t, c, q, items...)
	}
	runContract(t, rdb.ListPos, []contractCase{
		{name: "no key: empty", keys: []string{q}, args: posArgs("a"), want: arr()},
		{name: "every match from the head", setup: fill, keys: []string{q}, args: posArgs("a"), want: arr(0, 2, 4)},
		{name: "COUNT 1", setup: fill, keys: []string{q}, args: posArgs("a", 1, 1), want: arr(0)},
		{name: "RANK 2", setup: fill, keys: []string{q}, args: posArgs("a", 2), want: arr(2, 4)},
		{name: "RANK -1 scans from the tail", setup: fill, keys: []string{q}, args: posArgs("a", -1), want: arr(4, 2, 0)},
		{name: "RANK -2 COUNT 1", setup: fill, keys: []string{q}, args: posArgs("a", -2, 1), want: arr(2)},
		{name: "MAXLEN 3 from the head", setup: fill, keys: []string{q}, args: posArgs("a", 1, 0, 3), want: arr(0, 2)},
		{name: "MAXLEN 2 from the tail", setup: fill, keys: []string{q}, args: posArgs("a", -1, 0, 2), want: arr(4)},
		{name: "RANK past the matches", setup: fill, keys: []string{q}, args: posArgs("a", 4), want: arr()},
		{name: "no match", setup: fill, keys: []string{q}, args: posArgs("z"), want: arr()},
		{name: "across LRANGE chunks", setup: big, keys: []string{q}, args: posArgs("a"), want: arr(1200, 2400)},
		{name: "across LRANGE chunks from the tail", setup: big, keys: []string{q}, args: posArgs("a", -1), want: arr(2400, 1200)},
		{name: "the list is not changed", setup: fill, keys: []string{q}, args: posArgs("a"),
			after: map[string]any{q: list(a, "b", "a", "c", a)}},
		{name: "a key of another type", setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", q, "x") },
			keys: []string{q}, args: posArgs("a"), wantErr: wrongType},
	})
}

func TestContract_ListRem(t *testing.T) {
	a := envOf("a", "default")
	fill := func(t *testing.T, c *redis.Client) { rpush(t, c, q, a, "b", "a", "c", a) }
	args := func(elem string, count int) []any { return []any{elem, tail(elem), count, "\x00tomb"} }
	runContract(t, rdb.ListRem, []contractCase{
		{name: "no key", keys: []string{q}, args: args("a", 0), want: int64(0), after: map[string]any{}},
		{name: "count 0: every match", setup: fill, keys: []string{q}, args: args("a", 0), want: int64(3),
			after: map[string]any{q: list("b", "c")}},
		{name: "count 2: the first two from the head", setup: fill, keys: []string{q}, args: args("a", 2), want: int64(2),
			after: map[string]any{q: list("b", "c", a)}},
		{name: "count -1: the first from the tail", setup: fill, keys: []string{q}, args: args("a", -1), want: int64(1),
			after: map[string]any{q: list(a, "b", "a", "c")}},
		{name: "count -2", setup: fill, keys: []string{q}, args: args("a", -2), want: int64(2),
			after: map[string]any{q: list(a, "b", "c")}},
		{name: "no match: unchanged", setup: fill, keys: []string{q}, args: args("z", 0), want: int64(0),
			after: map[string]any{q: list(a, "b", "a", "c", a)}},
		{name: "the last item: the key is gone", setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, a) },
			keys: []string{q}, args: args("a", 1), want: int64(1), after: map[string]any{}},
		{name: "a key of another type", setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", q, "x") },
			keys: []string{q}, args: args("a", 1), wantErr: wrongType},
	})
}

func TestContract_ListInsert(t *testing.T) {
	a := envOf("a", "default")
	fill := func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x", a, "a") }
	args := func(pivot, where, val string) []any { return []any{pivot, tail(pivot), where, val, "\x00tomb"} }
	runContract(t, rdb.ListInsert, []contractCase{
		{name: "no key: 0, nothing written", keys: []string{q}, args: args("a", "BEFORE", "v"), want: int64(0), after: map[string]any{}},
		{name: "BEFORE the first match (an envelope)", setup: fill, keys: []string{q}, args: args("a", "BEFORE", "v"), want: int64(4),
			after: map[string]any{q: list("x", "v", a, "a")}},
		{name: "AFTER the first match", setup: fill, keys: []string{q}, args: args("a", "AFTER", "v"), want: int64(4),
			after: map[string]any{q: list("x", a, "v", "a")}},
		{name: "AFTER the head", setup: fill, keys: []string{q}, args: args("x", "AFTER", "v"), want: int64(4),
			after: map[string]any{q: list("x", "v", a, "a")}},
		{name: "no match: -1", setup: fill, keys: []string{q}, args: args("z", "AFTER", "v"), want: int64(-1),
			after: map[string]any{q: list("x", a, "a")}},
		{name: "a key of another type", setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", q, "x") },
			keys: []string{q}, args: args("a", "BEFORE", "v"), wantErr: wrongType},
	})
}

func TestContract_ListPushX(t *testing.T) {
	dk1, dk2 := rdb.DedupKey(q, "h1"), rdb.DedupKey(q, "h2")
	runContract(t, rdb.ListPushX, []contractCase{
		{name: "no list: nothing pushed, no dedup key set", keys: []string{q, dk1}, args: []any{"RPUSH", 60000, "a"},
			want: arr(0, 0), after: map[string]any{}},
		{name: "a list: new values pushed", setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x") },
			keys: []string{q, dk1, dk2}, args: []any{"LPUSH", 60000, "a", "b"},
			want: arr(3, 2), after: map[string]any{q: list("b", "a", "x"), dk1: "1", dk2: "1"}},
		{name: "a duplicate is skipped", setup: func(t *testing.T, c *redis.Client) { rpush(t, c, q, "x"); do(t, c, "SET", dk1, "1") },
			keys: []string{q, dk1, dk2}, args: []any{"RPUSH", 60000, "a", "b"},
			want: arr(2, 1), after: map[string]any{q: list("x", "b"), dk1: "1", dk2: "1"}},
		{name: "a key of another type", setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", q, "x") },
			keys: []string{q, dk1}, args: []any{"RPUSH", 60000, "a"}, wantErr: wrongType},
	})
}

func TestContract_ListPurge(t *testing.T) {
	keys := rdb.PurgeKeys(q)
	prefix := rdb.PurgeTransitPrefix(q)
	runContract(t, rdb.Purge, []contractCase{
		{name: "nothing there", keys: keys, args: []any{prefix}, want: int64(0), after: map[string]any{}},
		{
			name: "every key of the queue, only those",
			setup: func(t *testing.T, c *redis.Client) {
				rpush(t, c, q, "a", "b")
				lease(t, c, q, "o1", "r1", "c", 1)
				do(t, c, "ZADD", rdb.DelayedKey(q), 5, "d")
				rpush(t, c, rdb.DeadKey(q), "e")
				rpush(t, c, rdb.HandoffKey(q), "f")
				do(t, c, "HSET", rdb.TransitKey(q, "i1"), "L1.0", "g", "L1.1", "h")
				do(t, c, "HSET", rdb.TransitKey(q, "i2"), "R2.0", "i")
				do(t, c, "SADD", rdb.TransitOwnersKey(q), "i1", "i2")
				rpush(t, c, "other", "z")
				do(t, c, "HSET", rdb.TransitKey("other", "i1"), "L1.0", "y")
			},
			keys: keys, args: []any{prefix}, want: int64(9),
			after: map[string]any{"other": list("z"), rdb.TransitKey("other", "i1"): map[string]string{"L1.0": "y"}},
		},
		{name: "a ready list of another type is deleted, counting 0",
			setup: func(t *testing.T, c *redis.Client) { do(t, c, "SET", q, "x") },
			keys:  keys, args: []any{prefix}, want: int64(0), after: map[string]any{}},
	})
}

// TestContract_ListEditOOM: at maxmemory with noeviction, LPOS's and LREM's scripts still run (they
// read or only remove), LINSERT's and LPUSHX's are refused like the commands they stand for.
func TestContract_ListEditOOM(t *testing.T) {
	ctx := context.Background()
	c := fresh(t)
	rpush(t, c, q, "a", "b", "a")
	outOfMemory(t, c)
	if got, err := rdb.ListPos.Run(ctx, c, []string{q}, posArgs("a")...).Result(); err != nil || show(got) != show(arr(0, 2)) {
		t.Errorf("list_pos under OOM: %s, %v", show(got), err)
	}
	if got, err := rdb.ListRem.Run(ctx, c, []string{q}, "a", tail("a"), 1, "\x00tomb").Result(); err != nil || got != int64(1) {
		t.Errorf("list_rem under OOM: %s, %v", show(got), err)
	}
	if _, err := rdb.ListInsert.Run(ctx, c, []string{q}, "b", tail("b"), "BEFORE", "v", "\x00tomb").Result(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Errorf("list_insert under OOM: %v, want OOM", err)
	}
	if _, err := rdb.ListPushX.Run(ctx, c, []string{q, rdb.DedupKey(q, "h")}, "RPUSH", 1000, "v").Result(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Errorf("list_pushx under OOM: %v, want OOM", err)
	}
	if got, err := rdb.Purge.Run(ctx, c, rdb.PurgeKeys(q), rdb.PurgeTransitPrefix(q)).Result(); err != nil || got != int64(2) {
		t.Errorf("purge under OOM: %s, %v", show(got), err)
	}
}

// BenchmarkListPos compares a full scan of a 10,000-item list by list_pos.lua (envelopes, matched by
// payload) with Redis's native LPOS on the raw payloads (README "List edits": O(N) like Redis's).
// go test -run '^$' -bench BenchmarkListPos -benchtime 50x ./proxy/rdb/
func BenchmarkListPos(b *testing.B) {
	ctx := context.Background()
	c := fresh(&testing.T{})
	const n = 10000
	envs, raws := make([]any, 0, n+2), make([]any, 0, n+2)
	envs, raws = append(envs, "RPUSH", "envs"), append(raws, "RPUSH", "raws")
	for i := 0; i < n; i++ {
		p := `{"job":` + strings.Repeat("1", 1+i%7) + `}`
		envs, raws = append(envs, envOf(p, "default")), append(raws, p)
	}
	for _, args := range [][]any{envs, raws} {
		if err := c.Do(ctx, args...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("script-envelopes", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := rdb.ListPos.Run(ctx, c, []string{"envs"}, posArgs("missing")...).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("native-raw", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := c.Do(ctx, "LPOS", "raws", "missing").Err(); err != nil && err != redis.Nil {
				b.Fatal(err)
			}
		}
	})
}
