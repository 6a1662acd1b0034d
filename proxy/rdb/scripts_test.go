package rdb_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// The scripts against both kinds of backend: a real redis-server 7 (script flags understood) and
// miniredis, the embedded backend (flags not understood: the plain variants run).

// leaseScripts are the scripts that must run when Redis is at maxmemory (they give items back, move
// them, or lease them), so they carry the allow-oom flag.
var leaseScripts = map[string]*rdb.Script{
	"LeasePop": rdb.LeasePop, "Ack": rdb.Ack, "Extend": rdb.Extend, "Nack": rdb.Nack,
	"RequeueExpired": rdb.RequeueExpired, "PromoteDelayed": rdb.PromoteDelayed, "Redrive": rdb.Redrive,
	"ForgetQueue": rdb.ForgetQueue, "RegisterQueue": rdb.RegisterQueue, "HandoffBack": rdb.HandoffBack,
}

// backends returns a client of a real redis-server and one of miniredis, each set up the way
// proxy.OpenBackend sets up its clients.
func backends(t *testing.T) map[string]redis.UniversalClient {
	t.Helper()
	mr := miniredis.RunT(t)
	out := map[string]redis.UniversalClient{
		"redis-server": proxytest.StartRedis(t).Client(t),
		"miniredis":    redis.NewClient(&redis.Options{Addr: mr.Addr()}),
	}
	for _, c := range out {
		t.Cleanup(func() { rdb.ForgetClient(c); _ = c.Close() })
		if !rdb.ScriptFlagsSupported(context.Background(), c) {
			rdb.UsePlainScripts(c)
		}
	}
	return out
}

// TestScript_FlagsVariants: every lease script declares allow-oom; its plain variant differs only
// in that line (so error line numbers agree); redis-server 7 is found to understand flags and
// miniredis not; and each variant compiles where it is used.
func TestScript_FlagsVariants(t *testing.T) {
	ctx := context.Background()
	cs := backends(t)
	if !rdb.ScriptFlagsSupported(ctx, cs["redis-server"]) {
		t.Fatal("redis-server 7: ScriptFlagsSupported = false")
	}
	if rdb.ScriptFlagsSupported(ctx, cs["miniredis"]) {
		t.Fatal("miniredis: ScriptFlagsSupported = true")
	}
	for name, s := range leaseScripts {
		flagged, plain := s.Sources()
		if first, _, _ := strings.Cut(flagged, "\n"); first != "#!lua flags=allow-oom" {
			t.Errorf("%s: first line %q, want #!lua flags=allow-oom", name, first)
		}
		if got, want := strings.Count(plain, "\n"), strings.Count(flagged, "\n"); got != want {
			t.Errorf("%s: plain variant has %d lines, flagged %d", name, got, want)
		}
		if strings.Contains(plain, "#!") {
			t.Errorf("%s: plain variant still has a flags line", name)
		}
		if err := cs["redis-server"].ScriptLoad(ctx, flagged).Err(); err != nil {
			t.Errorf("%s: redis-server: %v", name, err)
		}
		if err := cs["miniredis"].ScriptLoad(ctx, plain).Err(); err != nil {
			t.Errorf("%s: miniredis, plain: %v", name, err)
		}
	}
	// Pushes grow memory: dedup_push must stay refused at maxmemory, so it has no flags.
	if flagged, plain := rdb.DedupPush.Sources(); flagged != plain || strings.HasPrefix(flagged, "#!") {
		t.Error("DedupPush has a flags line")
	}
}

// TestScript_PlainClients: a client marked with UsePlainScripts runs the plain variant, through Run
// (EVALSHA, then EVAL) and through Cmd in a pipeline; an unmarked client runs the flagged one, which
// miniredis cannot compile.
func TestScript_PlainClients(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	keys := []string{rdb.LeasedQueuesKey}
	if err := rdb.RegisterQueue.Run(ctx, c, keys, 1, "q").Err(); err == nil || !strings.Contains(err.Error(), "Error compiling script") {
		t.Fatalf("flagged script on miniredis: err = %v, want a compile error", err)
	}
	rdb.UsePlainScripts(c)
	t.Cleanup(func() { rdb.ForgetClient(c) })
	if n, err := rdb.RegisterQueue.Run(ctx, c, keys, 1, "q").Int(); err != nil || n != 1 {
		t.Fatalf("plain Run = %d, %v; want 1", n, err)
	}
	cmd := rdb.RegisterQueue.Cmd(ctx, c, keys, 2, "r")
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { return p.Process(ctx, cmd) }); err != nil {
		t.Fatalf("plain Cmd in a pipeline: %v", err)
	}
	if got, want := mr.Keys(), []string{rdb.LeasedQueuesKey}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("keys %v, want %v", got, want)
	}
	if n, _ := c.ZCard(ctx, rdb.LeasedQueuesKey).Result(); n != 2 {
		t.Fatalf("%d queues registered, want 2", n)
	}
}

// TestScript_EnvelopeLayout is the contract between envelope.AppendEnvelope and the scripts that
// read stored envelopes (retry.lua, redrive.lua): a retry writes attempts + 1 and a redrive attempts
// 0, and nothing else of the envelope changes, for every payload kind and for names and producers
// that need escaping. If envelope.go changes the layout the scripts' pattern reads, the scripts
// handle envelopes as raw items and this fails.
func TestScript_EnvelopeLayout(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 23, 20, 55, 1, 123e6, time.UTC)
	envs := []envelope.Envelope{
		{ID: envelope.NewID(), Queue: "jobs", Producer: "default", Payload: []byte(`{"a":[1,2]}`)},
		{ID: envelope.NewID(), Queue: "a.b-c_d:e", Producer: `we"ird\user`, Payload: []byte("text \"quoted\"")},
		{ID: envelope.NewID(), Queue: "q", Producer: "ünï", Attempts: 9, Payload: []byte{0xff, 0, 1}},
		{ID: envelope.NewID(), Queue: "q", Producer: "p", Attempts: 99, Payload: []byte{}},
		{ID: envelope.NewID(), Queue: "q", Producer: "p", Payload: []byte(`{"attempts":5,"qgate":1}`)},
	}
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			for i := range envs {
				e := envs[i]
				e.EnqueuedAt = at
				q := e.Queue
				item := string(envelope.AppendEnvelope(nil, &e))
				lease := func(receipt string) {
					t.Helper()
					if err := c.HSet(ctx, rdb.LeasesKey(q), receipt, "owner\n"+item).Err(); err != nil {
						t.Fatal(err)
					}
					if err := c.ZAdd(ctx, rdb.InflightKey(q), redis.Z{Score: 1, Member: receipt}).Err(); err != nil {
						t.Fatal(err)
					}
				}
				want := func(attempts int) string {
					w := e
					w.Attempts = attempts
					return string(envelope.AppendEnvelope(nil, &w))
				}

				// A nack with no delay: straight back to the ready list with attempts + 1.
				lease("r1")
				args := []interface{}{1000, "1", 1, 1, "2", "0", "0.5", "nack", "", 0, "r1"}
				if res, err := rdb.Nack.Run(ctx, c, rdb.RetryKeys(q), args...).Int64Slice(); err != nil || len(res) != 1 || res[0] != 1 {
					t.Fatalf("%s: nack = %v, %v; want [1] (ready)", item, res, err)
				}
				got, err := c.LPop(ctx, q).Result()
				if err != nil || got != want(e.Attempts+1) {
					t.Fatalf("after a nack the ready list holds %q (%v), want %s", got, err, want(e.Attempts+1))
				}

				// Past max_attempts: a dead record with attempts + 1; redrive resets them to 0.
				lease("r2")
				args = []interface{}{e.Attempts + 1, "1", 1, 1, "2", "0", "0.5", "nack", "", 0, "r2"}
				if res, err := rdb.Nack.Run(ctx, c, rdb.RetryKeys(q), args...).Int64Slice(); err != nil || len(res) != 1 || res[0] != 3 {
					t.Fatalf("%s: nack at max_attempts = %v, %v; want [3] (dead)", item, res, err)
				}
				var rec struct {
					Attempts int    `json:"attempts"`
					Item     string `json:"item"`
				}
				if err := json.Unmarshal([]byte(c.LIndex(ctx, rdb.DeadKey(q), 0).Val()), &rec); err != nil {
					t.Fatal(err)
				}
				if rec.Attempts != e.Attempts+1 || rec.Item != want(e.Attempts+1) {
					t.Fatalf("dead record attempts %d item %s; want %d %s", rec.Attempts, rec.Item, e.Attempts+1, want(e.Attempts+1))
				}
				if n, err := rdb.Redrive.Run(ctx, c, []string{q, rdb.DeadKey(q)}, 10).Int(); err != nil || n != 1 {
					t.Fatalf("redrive = %d, %v", n, err)
				}
				if got, err := c.LPop(ctx, q).Result(); err != nil || got != want(0) {
					t.Fatalf("redriven %q (%v), want %s", got, err, want(0))
				}
			}
		})
	}
}
