package rdb_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// One redis-server for the contract tests of this binary, started by the first test that needs it
// (tests that need none run without redis-server) and stopped by TestMain. The tests using it do not
// run in parallel: each starts by emptying it (fresh).
var shared struct {
	once sync.Once
	dir  string
	r    *proxytest.Redis
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.r != nil {
		_ = shared.r.Close()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// fresh returns a client of the shared redis-server (RESP3, go-redis's default and the proxy's unless
// its backend URL asks for protocol 2; protocol 2 or 3 may be given), after emptying the server and
// resetting maxmemory. The client runs the flagged scripts, as the proxy does on Redis 7.
func fresh(t *testing.T, protocol ...int) *redis.Client {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "qgate-rdb-test-")
		if shared.err == nil {
			shared.r, shared.err = proxytest.LaunchRedis(shared.dir)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	o := &redis.Options{Addr: shared.r.Addr}
	if len(protocol) > 0 {
		o.Protocol = protocol[0]
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

// outOfMemory puts the server at maxmemory with noeviction (every ordinary write refused with -OOM)
// until the test ends.
func outOfMemory(t *testing.T, c *redis.Client) {
	t.Helper()
	ctx := context.Background()
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.ConfigSet(ctx, "maxmemory", "0").Err() })
	if err := c.Set(ctx, "oom-probe", "x", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("SET at maxmemory 1: %v, want an OOM error", err)
	}
}

// state renders every key of the server: a list as []string (head first), a hash as
// map[string]string, a set as sorted []string, a sorted set as []string (members by ascending score),
// a string as string.
func state(t *testing.T, c *redis.Client) map[string]any {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for _, k := range keys {
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "list":
			out[k] = c.LRange(ctx, k, 0, -1).Val()
		case "hash":
			out[k] = c.HGetAll(ctx, k).Val()
		case "set":
			m := c.SMembers(ctx, k).Val()
			sort.Strings(m)
			out[k] = m
		case "zset":
			out[k] = c.ZRange(ctx, k, 0, -1).Val()
		case "string":
			out[k] = c.Get(ctx, k).Val()
		default:
			t.Fatalf("key %q of type %s", k, typ)
		}
	}
	return out
}

// redisNow is the server's clock in ms, the clock the scripts read with TIME.
func redisNow(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	tm, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMilli()
}

// A contract case: setup writes the keys (on an empty server), the script runs with keys and args,
// and its reply must be want (or its error contain wantErr); after, if not nil, is the whole server
// state afterwards (see state); check may look further.
type contractCase struct {
	name    string
	setup   func(t *testing.T, c *redis.Client)
	keys    []string
	args    []any
	want    any
	wantErr string
	after   map[string]any
	check   func(t *testing.T, c *redis.Client, res any)
}

// runContract runs each case against a freshly emptied server.
func runContract(t *testing.T, s *rdb.Script, cases []contractCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fresh(t)
			if tc.setup != nil {
				tc.setup(t, c)
			}
			res, err := s.Run(context.Background(), c, tc.keys, tc.args...).Result()
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("reply %s, err %v; want an error containing %q", show(res), err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("error %v, want %s", err, show(tc.want))
			case tc.want != nil && !reflect.DeepEqual(res, tc.want):
				t.Fatalf("reply\n got %s\nwant %s", show(res), show(tc.want))
			}
			if tc.after != nil {
				if got := state(t, c); !reflect.DeepEqual(got, tc.after) {
					t.Fatalf("state after the call\n got %s\nwant %s", show(got), show(tc.after))
				}
			}
			if tc.check != nil {
				tc.check(t, c, res)
			}
		})
	}
}

func show(v any) string {
	s := fmt.Sprintf("%#v", v)
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

// arr builds an expected array reply: ints become int64, as go-redis decodes integer replies.
func arr(vs ...any) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		if n, ok := v.(int); ok {
			v = int64(n)
		}
		out[i] = v
	}
	return out
}

func list(items ...string) []string { return items }

func do(t *testing.T, c *redis.Client, args ...any) {
	t.Helper()
	if err := c.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

// within fails unless lo <= v <= hi.
func within(t *testing.T, what string, v, lo, hi int64) {
	t.Helper()
	if v < lo || v > hi {
		t.Fatalf("%s = %d, want in [%d, %d]", what, v, lo, hi)
	}
}
