package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/proxytest"
)

// The list family and the key commands through real client libraries (go-redis typed methods in
// RESP2 and RESP3, redigo), each step run on qgate (enveloped queues, the default rule) and on a
// separate redis-server given the same steps: the values and errors the libraries return must match.

// familySteps are go-redis calls; each returns its command so that value and error can be compared.
func familySteps(ctx context.Context, c *redis.Client) []redis.Cmder {
	return []redis.Cmder{
		c.RPush(ctx, "fq", "a", "b", "c", "d", "e"),
		c.LMove(ctx, "fq", "fp", "RIGHT", "LEFT"),
		c.RPopLPush(ctx, "fq", "fp"),
		c.LRange(ctx, "fp", 0, -1),
		c.LIndex(ctx, "fq", 0),
		c.LIndex(ctx, "fq", 99),
		c.LPos(ctx, "fq", "b", redis.LPosArgs{}),
		c.LPos(ctx, "fq", "nope", redis.LPosArgs{}),
		c.LSet(ctx, "fq", 0, "x"),
		c.LSet(ctx, "fq", 99, "x"),
		c.LInsertBefore(ctx, "fq", "x", "w"),
		c.LInsertAfter(ctx, "fq", "nope", "w"),
		c.LRem(ctx, "fq", 1, "w"),
		c.LTrim(ctx, "fq", 0, 10),
		c.LPushX(ctx, "fq", "y"),
		c.RPushX(ctx, "fnone", "z"),
		c.LRange(ctx, "fq", 0, -1),
		c.LMPop(ctx, "left", 2, "fnone", "fq"),
		c.BLMPop(ctx, 100*time.Millisecond, "right", 1, "fnone", "fp"),
		c.BLMPop(ctx, 50*time.Millisecond, "right", 1, "fnone"),
		c.BLMove(ctx, "fp", "fq", "LEFT", "RIGHT", 100*time.Millisecond),
		c.BRPopLPush(ctx, "fq", "fp", 100*time.Millisecond),
		c.BRPopLPush(ctx, "fnone", "fp", 50*time.Millisecond),
		c.Exists(ctx, "fq", "fp", "fnone", "fq"),
		c.Type(ctx, "fq"),
		c.Type(ctx, "fnone"),
		c.LRange(ctx, "fq", 0, -1),
		c.LRange(ctx, "fp", 0, -1),
		c.Del(ctx, "fp", "fnone"),
		c.Unlink(ctx, "fq"),
		c.Exists(ctx, "fq", "fp"),
	}
}

func TestGoRedis_ListFamilySameAsRedis(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			e := e2eStart(t)
			ref := proxytest.StartRedis(t).Client(t)
			ctx := e2eCtx(t)
			got, want := familySteps(ctx, e.Client(t, proto)), familySteps(ctx, ref)
			for i := range want {
				if g, w := cmdString(got[i]), cmdString(want[i]); g != w {
					t.Errorf("step %d %v:\n qgate: %s\n redis: %s", i, want[i].Args(), g, w)
				}
			}
		})
	}
}

// cmdString is a command's result as a library user sees it: its value and its error.
func cmdString(c redis.Cmder) string {
	var v any
	switch c := c.(type) {
	case *redis.IntCmd:
		v = c.Val()
	case *redis.StringCmd:
		v = c.Val()
	case *redis.StatusCmd:
		v = c.Val()
	case *redis.StringSliceCmd:
		v = c.Val()
	case *redis.KeyValuesCmd:
		k, vals := c.Val()
		v = fmt.Sprint(k, vals)
	default:
		v = fmt.Sprintf("%T", c)
	}
	return fmt.Sprintf("%v err=%v", v, c.Err())
}

func TestRedigo_ListFamilySameAsRedis(t *testing.T) {
	e := e2eStart(t)
	c := e2eRedigo(t, e.Qgate.Addr)
	ref := e2eRedigo(t, proxytest.StartRedis(t).Addr)
	for _, cmd := range [][]any{
		{"RPUSH", "rq", "a", "b", "c", "b"},
		{"LMOVE", "rq", "rp", "LEFT", "RIGHT"},
		{"RPOPLPUSH", "rq", "rp"},
		{"LINDEX", "rq", -1},
		{"LPOS", "rq", "b", "RANK", -1},
		{"LPOS", "rq", "b", "COUNT", 0},
		{"LSET", "rq", 5, "x"},
		{"LINSERT", "rq", "BEFORE", "b", "n"},
		{"LREM", "rq", 0, "b"},
		{"LTRIM", "rq", 0, -1},
		{"LPUSHX", "rq", "y", "z"},
		{"RPUSHX", "rnone", "y"},
		{"LMPOP", 2, "rnone", "rp", "LEFT", "COUNT", 5},
		{"LMPOP", 1, "rnone", "LEFT"},
		{"BLMPOP", "0.05", 1, "rnone", "RIGHT"},
		{"BLMOVE", "rq", "rp", "RIGHT", "LEFT", "0.1"},
		{"BRPOPLPUSH", "rnone", "rp", "0.05"},
		{"LRANGE", "rq", 0, -1},
		{"LRANGE", "rp", 0, -1},
		{"EXISTS", "rq", "rp", "rnone"},
		{"TYPE", "rq"},
		{"DEL", "rq", "rp", "rnone"},
		{"UNLINK", "rq"},
		{"LMOVE", "rq", "rp", "UP", "LEFT"},
		{"LMPOP", 0, "rq", "LEFT"},
	} {
		gv, gerr := c.Do(cmd[0].(string), cmd[1:]...)
		wv, werr := ref.Do(cmd[0].(string), cmd[1:]...)
		if g, w := fmt.Sprintf("%q err=%v", gv, gerr), fmt.Sprintf("%q err=%v", wv, werr); g != w {
			t.Errorf("%v:\n qgate: %s\n redis: %s", cmd, g, w)
		}
	}
}

// Sharded pub/sub through go-redis's SSubscribe and SPublish.
func TestGoRedis_ShardedPubSub(t *testing.T) {
	e := e2eStart(t)
	ctx := e2eCtx(t)
	for _, proto := range []int{2, 3} {
		sub := e.Client(t, proto).SSubscribe(ctx, "sch")
		t.Cleanup(func() { _ = sub.Close() })
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatalf("RESP%d SSUBSCRIBE confirmation: %v", proto, err)
		}
		if got, err := e.Client(t, proto).SPublish(ctx, "sch", "m").Result(); err != nil || got != 1 {
			t.Fatalf("RESP%d SPUBLISH = %d, %v; want 1", proto, got, err)
		}
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil || msg.Channel != "sch" || msg.Payload != "m" {
			t.Fatalf("RESP%d message = %+v, %v", proto, msg, err)
		}
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
