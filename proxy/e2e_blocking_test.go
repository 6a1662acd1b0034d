package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// Blocking pops through qgate: BLPOP/BRPOP wait inside qgate (not on a backend connection of their
// own), and must still behave exactly like Redis: wake-ups by any producer, timeouts, priority by key
// order, FIFO among blocked clients, exactly-once delivery.

func e2eWantPop(t *testing.T, what string, r e2eBlpopResult, key, val string) {
	t.Helper()
	if r.err != nil || !reflect.DeepEqual(r.val, []string{key, val}) {
		t.Fatalf("%s: got %q, %v; want [%s %s]", what, r.val, r.err, key, val)
	}
}

func TestBlockingPop_WokenByPushThroughQgate(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		consumer, producer := e.Client(t, proto), e.Client(t, proto)

		res := e2eBlpop(ctx, consumer, 1, true, 0, "jobs")
		e2eWaitBlocked(t, producer, 1)
		e2eNothing(t, "BLPOP reply before any push", res)
		if got, err := producer.RPush(ctx, "jobs", "job-1").Result(); err != nil || got != 1 {
			t.Fatalf("RPUSH = %d, %v", got, err)
		}
		e2eWantPop(t, "BLPOP woken by RPUSH via qgate", e2eRecv(t, "BLPOP reply", res), "jobs", "job-1")
		if got, err := e.Direct.LLen(ctx, "jobs").Result(); err != nil || got != 0 {
			t.Fatalf("backend LLEN jobs = %d, %v; want 0", got, err)
		}
		e2eWaitBlocked(t, producer, 0)
	})
}

// TestBlockingPop_WokenByDirectPush: a legacy producer pushes straight into Redis, bypassing qgate.
func TestBlockingPop_WokenByDirectPush(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		consumer := e.Client(t, proto)

		res := e2eBlpop(ctx, consumer, 1, true, 0, "email_queue")
		e2eWaitBlocked(t, e.Client(t, proto), 1)
		start := time.Now()
		if err := e.Direct.RPush(ctx, "email_queue", "legacy").Err(); err != nil {
			t.Fatal(err)
		}
		e2eWantPop(t, "BLPOP woken by a direct RPUSH", e2eRecv(t, "BLPOP reply", res), "email_queue", "legacy")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("wake-up took %s", d)
		}
		// Again, with LPUSH straight into Redis and BRPOP through qgate.
		res = e2eBlpop(ctx, consumer, 1, false, 0, "email_queue")
		e2eWaitBlocked(t, e.Client(t, proto), 1)
		if err := e.Direct.LPush(ctx, "email_queue", "first", "second").Err(); err != nil {
			t.Fatal(err)
		}
		e2eWantPop(t, "BRPOP woken by a direct LPUSH", e2eRecv(t, "BRPOP reply", res), "email_queue", "first")
		if got, err := e.Direct.LRange(ctx, "email_queue", 0, -1).Result(); err != nil || !reflect.DeepEqual(got, []string{"second"}) {
			t.Fatalf("backend email_queue = %q, %v; want [second]", got, err)
		}
	})
}

func TestBlockingPop_TimeoutReturnsNil(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb := e.Client(t, proto)

		start := time.Now()
		_, err := rdb.Do(ctx, "blpop", "empty", "0.3").Result()
		elapsed := time.Since(start)
		if err != redis.Nil {
			t.Fatalf("BLPOP empty 0.3: err = %v, want redis.Nil", err)
		}
		if elapsed < 250*time.Millisecond || elapsed > 5*time.Second {
			t.Fatalf("BLPOP empty 0.3 returned after %s, want about 300ms", elapsed)
		}
		// The typed API (whole seconds).
		r := e2eRecv(t, "BRPOP reply", e2eBlpop(ctx, rdb, 1, false, time.Second, "empty", "empty2"))
		if r.err != redis.Nil {
			t.Fatalf("BRPOP empty empty2 1: %q, %v; want redis.Nil", r.val, r.err)
		}
		if r.elapsed < 950*time.Millisecond || r.elapsed > 6*time.Second {
			t.Fatalf("BRPOP 1 returned after %s, want about 1s", r.elapsed)
		}
		e2eWaitBlocked(t, rdb, 0)
		// The connection is still usable and in sync.
		if got, err := rdb.Echo(ctx, "after").Result(); err != nil || got != "after" {
			t.Fatalf("ECHO after timeout = %q, %v", got, err)
		}
	})
}

// TestBlockingPop_TimeoutRawReply checks the exact bytes of a timed-out BLPOP: *-1 in RESP2 and _ in
// RESP3, the same as redis-server.
func TestBlockingPop_TimeoutRawReply(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	raw := func(addr string, proto int) string {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(e2eWaitBound))
		br := bufio.NewReader(nc)
		if proto == 3 {
			if _, err := io.WriteString(nc, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n"); err != nil {
				t.Fatal(err)
			}
			for { // skip the HELLO map up to PING's reply
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if line == "+PONG\r\n" {
					break
				}
			}
		}
		if _, err := io.WriteString(nc, "*3\r\n$5\r\nBLPOP\r\n$4\r\nnone\r\n$4\r\n0.05\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n"); err != nil {
			t.Fatal(err)
		}
		var out string
		for i := 0; i < 3; i++ {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, out)
			}
			out += line
		}
		return out
	}
	for _, proto := range []int{2, 3} {
		got, want := raw(e.Qgate.Addr, proto), raw(e.Redis.Addr, proto)
		if got != want {
			t.Errorf("RESP%d timed-out BLPOP + ECHO: qgate %q, redis %q", proto, got, want)
		}
		if proto == 2 && got != "*-1\r\n$1\r\nx\r\n" || proto == 3 && got != "_\r\n$1\r\nx\r\n" {
			t.Errorf("RESP%d timed-out BLPOP + ECHO = %q", proto, got)
		}
	}
}

func TestBlockingPop_FractionalTimeout(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	rdb := e.Client(t, 3)
	for _, arg := range []string{"0.1", ".1", "0.1e0", "1e-1"} {
		start := time.Now()
		_, err := rdb.Do(ctx, "blpop", "empty", arg).Result()
		elapsed := time.Since(start)
		if err != redis.Nil {
			t.Fatalf("BLPOP empty %s: err = %v, want redis.Nil", arg, err)
		}
		if elapsed < 90*time.Millisecond || elapsed > 5*time.Second {
			t.Fatalf("BLPOP empty %s returned after %s, want about 100ms", arg, elapsed)
		}
	}
	// A fractional timeout still lets a push wake the client.
	if err := rdb.RPush(ctx, "full", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := rdb.Do(ctx, "blpop", "full", "0.1").StringSlice(); err != nil || !reflect.DeepEqual(got, []string{"full", "x"}) {
		t.Fatalf("BLPOP full 0.1 = %q, %v", got, err)
	}
}

// TestBlockingPop_ZeroWaitsUntilPushed: timeout 0 never expires on its own. While it waits, another
// client's 0.3 s BLPOP times out; the first one must still be blocked afterwards.
func TestBlockingPop_ZeroWaitsUntilPushed(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, other := e.Client(t, proto), e.Client(t, proto)

		res := e2eBlpop(ctx, rdb, 1, true, 0, "forever")
		e2eWaitBlocked(t, other, 1)
		for i := 0; i < 2; i++ {
			if err := other.Do(ctx, "blpop", "elsewhere", "0.3").Err(); err != redis.Nil {
				t.Fatalf("BLPOP elsewhere 0.3: %v", err)
			}
		}
		e2eNothing(t, "BLPOP forever reply after 0.6 s without a push", res)
		if got := e2eBlockedClients(t, other); got != 1 {
			t.Fatalf("blocked_clients = %d, want 1", got)
		}
		if err := other.RPush(ctx, "forever", "finally").Err(); err != nil {
			t.Fatal(err)
		}
		e2eWantPop(t, "BLPOP forever", e2eRecv(t, "BLPOP reply", res), "forever", "finally")
	})
}

func TestBlockingPop_MultiKeyPriority(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb := e.Client(t, proto)

		// Items in both: the first key named wins, as in Redis.
		if err := rdb.RPush(ctx, "b", "b1", "b2").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.RPush(ctx, "a", "a1").Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := rdb.BLPop(ctx, time.Second, "a", "b").Result(); err != nil || !reflect.DeepEqual(got, []string{"a", "a1"}) {
			t.Fatalf("BLPOP a b = %q, %v; want [a a1]", got, err)
		}
		// Only b has items.
		if got, err := rdb.BLPop(ctx, time.Second, "a", "b").Result(); err != nil || !reflect.DeepEqual(got, []string{"b", "b1"}) {
			t.Fatalf("BLPOP a b = %q, %v; want [b b1]", got, err)
		}
		if got, err := rdb.BRPop(ctx, time.Second, "a", "b").Result(); err != nil || !reflect.DeepEqual(got, []string{"b", "b2"}) {
			t.Fatalf("BRPOP a b = %q, %v; want [b b2]", got, err)
		}
		// The same key named twice.
		if err := rdb.RPush(ctx, "c", "c1", "c2").Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := rdb.BLPop(ctx, time.Second, "a", "c", "c").Result(); err != nil || !reflect.DeepEqual(got, []string{"c", "c1"}) {
			t.Fatalf("BLPOP a c c = %q, %v; want [c c1]", got, err)
		}
		if got, err := rdb.BRPop(ctx, time.Second, "c", "a").Result(); err != nil || !reflect.DeepEqual(got, []string{"c", "c2"}) {
			t.Fatalf("BRPOP c a = %q, %v; want [c c2]", got, err)
		}
		if err := rdb.Do(ctx, "blpop", "a", "b", "c", "0.05").Err(); err != redis.Nil {
			t.Fatalf("BLPOP a b c 0.05 on empty lists: err = %v, want redis.Nil", err)
		}
		// Blocked on a b: a push to b wakes it with b's item.
		res := e2eBlpop(ctx, rdb, 1, true, 0, "a", "b")
		e2eWaitBlocked(t, e.Client(t, proto), 1)
		if err := e.Direct.RPush(ctx, "b", "late-b").Err(); err != nil {
			t.Fatal(err)
		}
		e2eWantPop(t, "BLPOP a b woken by b", e2eRecv(t, "BLPOP reply", res), "b", "late-b")
		// Blocked on one key named twice: one item is taken, the other stays.
		res = e2eBlpop(ctx, rdb, 1, true, 0, "dup", "dup")
		e2eWaitBlocked(t, e.Client(t, proto), 1)
		if err := e.Direct.RPush(ctx, "dup", "d1", "d2").Err(); err != nil {
			t.Fatal(err)
		}
		e2eWantPop(t, "BLPOP dup dup", e2eRecv(t, "BLPOP reply", res), "dup", "d1")
		e2eWaitBlocked(t, e.Client(t, proto), 0)
		if got, err := e.Direct.LRange(ctx, "dup", 0, -1).Result(); err != nil || !reflect.DeepEqual(got, []string{"d2"}) {
			t.Fatalf("backend dup = %q, %v; want [d2]", got, err)
		}
	})
}

func TestBlockingPop_TwoConsumersEachGetOne(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		c1, c2, producer := e.Client(t, proto), e.Client(t, proto), e.Client(t, proto)

		r1 := e2eBlpop(ctx, c1, 1, true, 0, "work")
		r2 := e2eBlpop(ctx, c2, 2, true, 0, "work")
		e2eWaitBlocked(t, producer, 2)
		if err := producer.RPush(ctx, "work", "x", "y").Err(); err != nil {
			t.Fatal(err)
		}
		a, b := e2eRecv(t, "consumer 1", r1), e2eRecv(t, "consumer 2", r2)
		if a.err != nil || b.err != nil {
			t.Fatalf("errors: %v, %v", a.err, b.err)
		}
		got := []string{a.val[1], b.val[1]}
		sort.Strings(got)
		if !reflect.DeepEqual(got, []string{"x", "y"}) {
			t.Fatalf("consumers got %q and %q, want x and y once each", a.val, b.val)
		}
		if got, err := e.Direct.LLen(ctx, "work").Result(); err != nil || got != 0 {
			t.Fatalf("backend LLEN work = %d, %v; want 0", got, err)
		}
	})
}

// TestBlockingPop_FIFOFairness: clients blocked on one key are served in the order they blocked.
func TestBlockingPop_FIFOFairness(t *testing.T) {
	for _, tc := range []struct {
		name    string
		oneCall bool
		left    bool
	}{{"OneRPUSH", true, true}, {"ThreePushes", false, true}, {"BRPOP", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := e2eStart(t)
			ctx := e2eCtx(t)
			admin := e.Client(t, 3)
			var results []<-chan e2eBlpopResult
			for i := 1; i <= 3; i++ {
				results = append(results, e2eBlpop(ctx, e.Client(t, 3), i, tc.left, 0, "fair"))
				e2eWaitBlocked(t, admin, i)
			}
			items := []any{"item-1", "item-2", "item-3"}
			if !tc.left {
				items = []any{"item-3", "item-2", "item-1"} // BRPOP takes from the tail
			}
			if tc.oneCall {
				if err := admin.RPush(ctx, "fair", items...).Err(); err != nil {
					t.Fatal(err)
				}
			} else {
				for _, it := range items {
					if err := admin.RPush(ctx, "fair", it).Err(); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i, ch := range results {
				e2eWantPop(t, fmt.Sprintf("client %d", i+1), e2eRecv(t, "reply", ch), "fair", fmt.Sprintf("item-%d", i+1))
			}
		})
	}
}

func TestBlockingPop_BRPOPTakesTail(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb := e.Client(t, proto)

		if err := rdb.RPush(ctx, "tail", "a", "b", "c").Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := rdb.BRPop(ctx, time.Second, "tail").Result(); err != nil || !reflect.DeepEqual(got, []string{"tail", "c"}) {
			t.Fatalf("BRPOP tail = %q, %v; want [tail c]", got, err)
		}
		if got, err := rdb.BLPop(ctx, time.Second, "tail").Result(); err != nil || !reflect.DeepEqual(got, []string{"tail", "a"}) {
			t.Fatalf("BLPOP tail = %q, %v; want [tail a]", got, err)
		}
		if err := rdb.LPop(ctx, "tail").Err(); err != nil {
			t.Fatal(err)
		}
		// Blocked BRPOP, then RPUSH x y: like Redis, the client gets the tail, y.
		res := e2eBlpop(ctx, rdb, 1, false, 0, "tail")
		e2eWaitBlocked(t, e.Client(t, proto), 1)
		if err := e.Direct.RPush(ctx, "tail", "x", "y").Err(); err != nil {
			t.Fatal(err)
		}
		e2eWantPop(t, "blocked BRPOP", e2eRecv(t, "BRPOP reply", res), "tail", "y")
		if got, err := e.Direct.LRange(ctx, "tail", 0, -1).Result(); err != nil || !reflect.DeepEqual(got, []string{"x"}) {
			t.Fatalf("backend tail = %q, %v; want [x]", got, err)
		}
	})
}

// TestBlockingPop_MixedDirections: BLPOP and BRPOP clients blocked on the same key share its items.
func TestBlockingPop_MixedDirections(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	admin := e.Client(t, 3)
	l := e2eBlpop(ctx, e.Client(t, 3), 1, true, 0, "both")
	e2eWaitBlocked(t, admin, 1)
	r := e2eBlpop(ctx, e.Client(t, 3), 2, false, 0, "both")
	e2eWaitBlocked(t, admin, 2)
	if err := admin.RPush(ctx, "both", "p", "q").Err(); err != nil {
		t.Fatal(err)
	}
	lr, rr := e2eRecv(t, "BLPOP reply", l), e2eRecv(t, "BRPOP reply", r)
	if lr.err != nil || rr.err != nil || lr.val[1] == rr.val[1] {
		t.Fatalf("BLPOP got %q (%v), BRPOP got %q (%v); want p and q once each", lr.val, lr.err, rr.val, rr.err)
	}
	if got, err := e.Direct.LLen(ctx, "both").Result(); err != nil || got != 0 {
		t.Fatalf("backend LLEN both = %d, %v; want 0", got, err)
	}
}

func TestBlockingPop_WrongType(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, direct := e.Client(t, proto), e.DirectClient(t, proto)
		if err := e.Direct.Set(ctx, "str", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]any{
			{"blpop", "str", "0"},
			{"brpop", "str", "0"},
			{"blpop", "missing", "str", "0"},
		} {
			start := time.Now()
			_, errText := e2eSame(t, ctx, rdb, direct, args...)
			if got, want := errText, "WRONGTYPE Operation against a key holding the wrong kind of value"; got != want {
				t.Fatalf("%v: err = %q, want %q", args, got, want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("%v blocked for %s before failing", args, d)
			}
		}
		// A list named before the string is served without looking at the string, as in Redis.
		if err := rdb.RPush(ctx, "list", "v").Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := rdb.BLPop(ctx, time.Second, "list", "str").Result(); err != nil || !reflect.DeepEqual(got, []string{"list", "v"}) {
			t.Fatalf("BLPOP list str = %q, %v; want [list v]", got, err)
		}
		e2eWaitBlocked(t, rdb, 0)
	})
}

// TestBlockingPop_KeyTurnsWrongTypeWhileBlocked: a key a client is blocked on is overwritten with a
// string straight in Redis. Redis serves everyone else as usual, and keeps that client blocked until the
// key is a list again (7.0) or unblocks it with WRONGTYPE (7.2+). The scenario runs on redis-server first (the reference),
// then through qgate. qgate always ends that client with WRONGTYPE (a documented difference): the
// blocked-pop hub's safety poll (every 5 s) finds the key and the waiter's take gets WRONGTYPE.
func TestBlockingPop_KeyTurnsWrongTypeWhileBlocked(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	scenario := func(name string, newClient func() *redis.Client, blocked func() int, alwaysWrongType bool) {
		t.Helper()
		victimKey, otherKey := name+":a-victim", name+":z-other" // the string sorts before the other key
		victim := e2eBlpop(ctx, newClient(), 1, true, 0, victimKey)
		e2eEventually(t, name+": first client blocked", func() bool { return blocked() == 1 })
		if err := e.Direct.Set(ctx, victimKey, "now a string", 0).Err(); err != nil {
			t.Fatal(err)
		}
		other := e2eBlpop(ctx, newClient(), 2, true, 0, otherKey)
		// Both blocked; or (7.2+ semantics) the first was already unblocked with WRONGTYPE.
		e2eEventually(t, name+": second client blocked", func() bool {
			n := blocked()
			return n == 2 || n == 1 && len(victim) == 1
		})
		if err := e.Direct.RPush(ctx, otherKey, "for-other").Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-other:
			e2eWantPop(t, name+": client blocked on the other key", r, otherKey, "for-other")
		case <-time.After(3 * time.Second):
			n, _ := e.Direct.LLen(ctx, otherKey).Result()
			t.Fatalf("%s: a key overwritten with a string while a client is blocked on it stalls every other "+
				"waiter of the same blocked-pop listener: BLPOP %s not served 3s after RPUSH (LLEN %s = %d); qgate log tail:\n%s",
				name, otherKey, otherKey, n, e2eTail(e.Qgate.Logs.String(), 3))
		}
		if alwaysWrongType {
			// The WRONGTYPE reply travels on another connection than the other client's item: wait for it.
			if r := e2eRecv(t, name+" victim reply", victim); r.err == nil || !strings.HasPrefix(r.err.Error(), "WRONGTYPE ") {
				t.Fatalf("%s: client blocked on the string key got %q, %v; want WRONGTYPE", name, r.val, r.err)
			}
			return
		}
		// Redis 7.0 keeps the client blocked; Redis 7.2 and later unblock it with WRONGTYPE. Either is fine.
		select {
		case r := <-victim:
			if r.err == nil || !strings.HasPrefix(r.err.Error(), "WRONGTYPE ") {
				t.Fatalf("%s: client blocked on the string key got %q, %v; want to stay blocked or WRONGTYPE", name, r.val, r.err)
			}
			return
		default:
		}
		if err := e.Direct.Del(ctx, victimKey).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.Direct.RPush(ctx, victimKey, "list again").Err(); err != nil {
			t.Fatal(err)
		}
		e2eWantPop(t, name+": client blocked on the victim key", e2eRecv(t, "victim reply", victim), victimKey, "list again")
	}
	scenario("redis", func() *redis.Client { return e.DirectClient(t, 3) }, func() int {
		info, err := e.Direct.Info(ctx, "clients").Result()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(e2eInfoField(info, "blocked_clients"))
		return n
	}, false)
	admin := e.Client(t, 3)
	scenario("qgate", func() *redis.Client { return e.Client(t, 3) }, func() int { return e2eBlockedClients(t, admin) }, true)
}

// e2eTail returns the last n lines of s.
func e2eTail(s string, n int) string {
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			lines++
			if lines > n {
				return s[i+1:]
			}
		}
	}
	return s
}

// TestBlockingPop_InPipeline: a BLPOP in the middle of a pipeline keeps replies in order, both when it is
// served at once and when it has to wait for a push from another client.
func TestBlockingPop_InPipeline(t *testing.T) {
	e2eProtos(t, func(t *testing.T, proto int) {
		e := e2eStart(t)
		ctx := e2eCtx(t)
		rdb, producer := e.Client(t, proto), e.Client(t, proto)

		pipe := rdb.Pipeline()
		push := pipe.RPush(ctx, "p", "one")
		pop := pipe.BLPop(ctx, time.Second, "p")
		llen := pipe.LLen(ctx, "p")
		echo := pipe.Echo(ctx, "end")
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("pipeline: %v", err)
		}
		if push.Val() != 1 || !reflect.DeepEqual(pop.Val(), []string{"p", "one"}) || llen.Val() != 0 || echo.Val() != "end" {
			t.Fatalf("pipeline replies: %d %q %d %q", push.Val(), pop.Val(), llen.Val(), echo.Val())
		}

		done := make(chan error, 1)
		var wait *redis.StringSliceCmd
		var after *redis.StringCmd
		var before *redis.IntCmd
		go func() {
			pipe := rdb.Pipeline()
			before = pipe.LLen(ctx, "later")
			wait = pipe.BLPop(ctx, 0, "later")
			after = pipe.Echo(ctx, "after")
			_, err := pipe.Exec(ctx)
			done <- err
		}()
		e2eWaitBlocked(t, producer, 1)
		if err := producer.RPush(ctx, "later", "v").Err(); err != nil {
			t.Fatal(err)
		}
		if err := e2eRecv(t, "pipeline with a blocked BLPOP", done); err != nil {
			t.Fatalf("pipeline: %v", err)
		}
		if before.Val() != 0 || !reflect.DeepEqual(wait.Val(), []string{"later", "v"}) || after.Val() != "after" {
			t.Fatalf("pipeline replies: %d %q %q", before.Val(), wait.Val(), after.Val())
		}
	})
}

// TestBlockingPop_ManyClients: 100 clients blocked on 5 queues, 100 items pushed (half through qgate,
// half straight into Redis): each item is delivered exactly once and every client gets one.
func TestBlockingPop_ManyClients(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	const clients, queues = 100, 5
	pool := e.Client(t, 3, func(o *redis.Options) { o.PoolSize = clients + 10 })
	admin := e.Client(t, 3)

	results := make(chan e2eBlpopResult, clients)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			v, err := pool.BLPop(ctx, 0, "q"+strconv.Itoa(i%queues)).Result()
			results <- e2eBlpopResult{who: i, val: v, err: err}
		}(i)
	}
	e2eWaitBlocked(t, admin, clients)
	want := map[string]bool{}
	for q := 0; q < queues; q++ {
		var items []any
		for j := 0; j < clients/queues; j++ {
			item := fmt.Sprintf("q%d-item%d", q, j)
			want[item] = true
			items = append(items, item)
		}
		half := len(items) / 2
		if err := admin.RPush(ctx, "q"+strconv.Itoa(q), items[:half]...).Err(); err != nil {
			t.Fatal(err)
		}
		for _, it := range items[half:] {
			if err := e.Direct.RPush(ctx, "q"+strconv.Itoa(q), it).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	seen := map[string]int{}
	for i := 0; i < clients; i++ {
		r := e2eRecv(t, fmt.Sprintf("reply %d of %d", i+1, clients), results)
		if r.err != nil {
			t.Fatalf("client %d: %v", r.who, r.err)
		}
		if got, want := r.val[0], "q"+strconv.Itoa(r.who%queues); got != want {
			t.Fatalf("client %d blocked on %s got an item of %s", r.who, want, got)
		}
		seen[r.val[1]]++
	}
	wg.Wait()
	for item, n := range seen {
		if n != 1 || !want[item] {
			t.Errorf("item %q delivered %d times", item, n)
		}
	}
	if got, want := len(seen), clients; got != want {
		t.Fatalf("%d distinct items delivered, want %d", got, want)
	}
	for q := 0; q < queues; q++ {
		if n, err := e.Direct.LLen(ctx, "q"+strconv.Itoa(q)).Result(); err != nil || n != 0 {
			t.Fatalf("backend LLEN q%d = %d, %v; want 0", q, n, err)
		}
	}
	e2eWaitBlocked(t, admin, 0)
}

// TestBlockingPop_ManyKeysOneClient: one client blocked on 50 keys is woken by a push to the last.
func TestBlockingPop_ManyKeysOneClient(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	rdb := e.Client(t, 3)
	var keys []string
	for i := 0; i < 50; i++ {
		keys = append(keys, "k"+strconv.Itoa(i))
	}
	res := e2eBlpop(ctx, rdb, 1, true, 0, keys...)
	e2eWaitBlocked(t, e.Client(t, 3), 1)
	if err := e.Direct.RPush(ctx, "k49", "last").Err(); err != nil {
		t.Fatal(err)
	}
	e2eWantPop(t, "BLPOP on 50 keys", e2eRecv(t, "reply", res), "k49", "last")
}

// TestBlockingPop_ClientGoneItemStays: a client that disconnects while blocked never takes an item: the
// next push stays in Redis for the next consumer.
func TestBlockingPop_ClientGoneItemStays(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	admin := e.Client(t, 3)
	nc, err := net.Dial("tcp", e.Qgate.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(nc, "*3\r\n$5\r\nBLPOP\r\n$6\r\norphan\r\n$1\r\n0\r\n"); err != nil {
		t.Fatal(err)
	}
	e2eWaitBlocked(t, admin, 1)
	_ = nc.Close()
	e2eWaitBlocked(t, admin, 0)
	if err := admin.RPush(ctx, "orphan", "kept").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := admin.BLPop(ctx, time.Second, "orphan").Result(); err != nil || !reflect.DeepEqual(got, []string{"orphan", "kept"}) {
		t.Fatalf("next consumer: BLPOP orphan = %q, %v; want [orphan kept]", got, err)
	}
}

// e2eRelay is a TCP relay to a backend that records every byte its clients send.
type e2eRelay struct {
	Addr string
	mu   sync.Mutex
	sent []byte
}

func e2eStartRelay(t *testing.T, target string) *e2eRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &e2eRelay{Addr: ln.Addr().String()}
	var conns sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			conns.Add(2)
			go func() { // client to server, recorded
				defer conns.Done()
				defer s.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						r.mu.Lock()
						r.sent = append(r.sent, buf[:n]...)
						r.mu.Unlock()
						if _, werr := s.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { // server to client
				defer conns.Done()
				defer c.Close()
				_, _ = io.Copy(c, s)
			}()
		}
	}()
	return r
}

// Sent returns everything the relay's clients sent so far.
func (r *e2eRelay) Sent() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.sent)
}

// TestBlockingPop_ConcurrentListenerStartup: many clients block at once on keys spread over every
// blocked-pop listener of a fresh qgate, so the listeners open their backend connections concurrently.
// Under -race this catches data races in that start-up.
func TestBlockingPop_ConcurrentListenerStartup(t *testing.T) {
	t.Parallel()
	// Probe: does qgate's backend client send CLIENT MAINT_NOTIFICATIONS (go-redis "auto" mode)? Then the
	// listeners' concurrent handshakes race inside go-redis (each *redis.Conn writes the shared
	// Options.MaintNotificationsConfig.Mode under its own optLock when Redis rejects the command), and the
	// scenario below fails under -race.
	r := proxytest.StartRedis(t)
	relay := e2eStartRelay(t, r.Addr)
	cfg := proxy.DefaultConfig()
	cfg.Backend = "redis://" + relay.Addr
	proxytest.StartQgate(t, cfg) // its start-up PING is a backend handshake through the relay
	if sent := relay.Sent(); strings.Contains(strings.ToLower(sent), "maint_notifications") {
		t.Fatal("qgate's backend go-redis clients run maintenance notifications in auto mode: every new " +
			"backend connection sends CLIENT MAINT_NOTIFICATIONS ON moving-endpoint-type …, Redis < 8 rejects it, and " +
			"go-redis's fallback writes the shared Options from each Client.Conn() (blocked-pop listener) under a " +
			"per-Conn lock: `go test -race` reports a data race in redis.(*baseClient).initConn when two listeners " +
			"start together. Fix: MaintNotificationsConfig: &maintnotifications.Config{Mode: ModeDisabled} in proxy/backend.go")
	}

	ctx := e2eCtx(t)
	const rounds, n = 3, 32 // a fresh qgate each round: only the first listener connections matter
	for round := 0; round < rounds; round++ {
		e := e2eStart(t)
		pool := e.Client(t, 3, func(o *redis.Options) { o.PoolSize = n + 4 })
		var results []<-chan e2eBlpopResult
		for i := 0; i < n; i++ {
			results = append(results, e2eBlpop(ctx, pool, i, i%2 == 0, 0, "start:"+strconv.Itoa(i)))
		}
		e2eEventually(t, fmt.Sprintf("%d blocked clients", n), func() bool { return e.Qgate.Server.Stats().BlockedClients == n })
		for i := 0; i < n; i++ {
			if err := e.Direct.RPush(ctx, "start:"+strconv.Itoa(i), "v"+strconv.Itoa(i)).Err(); err != nil {
				t.Fatal(err)
			}
		}
		for i, ch := range results {
			e2eWantPop(t, fmt.Sprintf("round %d client %d", round, i), e2eRecv(t, "reply", ch), "start:"+strconv.Itoa(i), "v"+strconv.Itoa(i))
		}
	}
}
