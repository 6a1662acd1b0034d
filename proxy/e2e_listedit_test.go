package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// The list edits and key commands (README "List edits") against a real redis-server: every command,
// option and error path is sent to qgate and to a redis-server 7.0 spoken to directly, and the reply
// bytes must be the same, in RESP2 and RESP3. The queues are "rawq" (stored as they are) and "envq"
// (enveloped: its element arguments match payloads, so a payload-mode client sees Redis's replies).

// leReadReply reads one whole RESP2/RESP3 reply and returns its bytes.
func leReadReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return line, err
	}
	if len(line) < 3 {
		return line, fmt.Errorf("short line %q", line)
	}
	out := line
	body := line[1 : len(line)-2]
	switch line[0] {
	case '$', '=', '!':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return out, nil // nil bulk
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return out, err
		}
		return out + string(buf), nil
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return out, nil // nil array
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for i := 0; i < n; i++ {
			s, err := leReadReply(br)
			out += s
			if err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// leConn is a raw connection that sends one command and returns its reply's bytes.
type leConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func leDial(t *testing.T, addr string, proto int) *leConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, rawTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	lc := &leConn{t: t, c: c, br: bufio.NewReader(c)}
	if proto == 3 {
		lc.do("HELLO", "3") // its reply (server, version, id) differs; not compared
	}
	return lc
}

func (lc *leConn) do(args ...string) string {
	lc.t.Helper()
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString(bulk(a))
	}
	_ = lc.c.SetDeadline(time.Now().Add(rawTimeout))
	if _, err := io.WriteString(lc.c, b.String()); err != nil {
		lc.t.Fatalf("send %q: %v", args, err)
	}
	r, err := leReadReply(lc.br)
	if err != nil {
		lc.t.Fatalf("%q: read %q: %v", args, r, err)
	}
	return r
}

// leCompare sends each command to qgate and to the direct redis-server and fails on any difference.
func leCompare(t *testing.T, q, r *leConn, cmds [][]string) {
	t.Helper()
	for _, cmd := range cmds {
		got, want := q.do(cmd...), r.do(cmd...)
		if got != want {
			t.Errorf("%q\n qgate %q\n redis %q", cmd, clipQ(got), clipQ(want))
		}
	}
}

func leRules(c *proxy.Config) {
	off := false
	c.Queues = []policy.Rule{{Match: "raw*", Envelope: &off}}
}

// leScript is every command and option of the list edits on key k, Redis's list.tcl cases among
// them; "str" is a string key.
func leScript(k string) [][]string {
	s := func(a ...string) []string { return a }
	long := strings.Repeat("x", 300)
	return [][]string{
		// No key yet.
		s("RPUSHX", k, "a"), s("LPUSHX", k, "a", "b"), s("LINDEX", k, "0"), s("LINDEX", k, "x"),
		s("LPOS", k, "a"), s("LPOS", k, "a", "COUNT", "0"), s("LPOS", k, "a", "COUNT", "2", "RANK", "-1"),
		s("LINSERT", k, "BEFORE", "a", "b"), s("LINSERT", k, "after", "a", "b"), s("LREM", k, "0", "a"),
		s("LTRIM", k, "0", "1"), s("LTRIM", k, "x", "1"), s("LSET", k, "0", "a"), s("LSET", k, "x", "a"),
		s("EXISTS", k), s("TYPE", k), s("DEL", k),
		// list.tcl "LPOS basic usage", RANK, COUNT, MAXLEN.
		s("RPUSH", k, "a", "b", "c", "1", "2", "3", "c", "c"),
		s("LPOS", k, "a"), s("LPOS", k, "c"),
		s("LPOS", k, "c", "RANK", "1"), s("LPOS", k, "c", "RANK", "2"), s("LPOS", k, "c", "RANK", "4"),
		s("LPOS", k, "c", "RANK", "-1"), s("LPOS", k, "c", "RANK", "-2"), s("LPOS", k, "c", "RANK", "0"),
		s("LPOS", k, "c", "RANK", "9223372036854775807"), s("LPOS", k, "c", "RANK", "-9223372036854775807"),
		s("LPOS", k, "c", "RANK", "-9223372036854775808"), s("LPOS", k, "c", "RANK", "-9223372036854775808", "COUNT", "1"),
		s("LPOS", k, "c", "RANK", "9223372036854775808"), s("LPOS", k, "c", "RANK", "x"),
		s("LPOS", k, "c", "COUNT", "0"), s("LPOS", k, "c", "COUNT", "1"), s("LPOS", k, "c", "COUNT", "2"),
		s("LPOS", k, "c", "COUNT", "100"), s("LPOS", k, "c", "COUNT", "-1"), s("LPOS", k, "c", "COUNT", "x"),
		s("LPOS", k, "c", "COUNT", "01"), s("LPOS", k, "c", "COUNT", "9223372036854775808"),
		s("LPOS", k, "c", "COUNT", "0", "RANK", "2"), s("LPOS", k, "c", "COUNT", "2", "RANK", "-1"),
		s("LPOS", k, "c", "COUNT", "0", "RANK", "-2"), s("LPOS", k, "c", "RANK", "2", "COUNT", "1", "MAXLEN", "7"),
		s("LPOS", k, "x"), s("LPOS", k, "x", "COUNT", "0"),
		s("LPOS", k, "a", "COUNT", "0", "MAXLEN", "1"), s("LPOS", k, "c", "COUNT", "0", "MAXLEN", "1"),
		s("LPOS", k, "c", "COUNT", "0", "MAXLEN", "1", "RANK", "-1"), s("LPOS", k, "c", "MAXLEN", "3", "COUNT", "0"),
		s("LPOS", k, "c", "MAXLEN", "-1"), s("LPOS", k, "c", "MAXLEN", "x"), s("LPOS", k, "c", "MAXLEN", "0"),
		s("LPOS", k, "c", "RANK", "5"), s("LPOS", k, "c", "rank", "2", "Rank", "1"),
		s("LPOS", k, "c", "FOO"), s("LPOS", k, "c", "RANK"), s("LPOS", k, "c", "COUNT"), s("LPOS", k, "c", "MAXLEN", "1", "x"),
		s("LPOS", "nokey", "c"), s("LPOS", "nokey", "c", "COUNT", "0"),
		// LINDEX, LSET.
		s("LINDEX", k, "0"), s("LINDEX", k, "-1"), s("LINDEX", k, "7"), s("LINDEX", k, "8"), s("LINDEX", k, "-9"),
		s("LINDEX", k, "x"), s("LINDEX", k, "99999999999999999999"),
		s("LSET", k, "0", "foo"), s("LSET", k, "-1", "bar"), s("LSET", k, "8", "x"), s("LSET", k, "x", "y"),
		s("LRANGE", k, "0", "-1"),
		// LINSERT (list.tcl "LINSERT raw list", "LINSERT against non existing pivot").
		s("LINSERT", k, "BEFORE", "b", "zz"), s("LINSERT", k, "AFTER", "c", "yy"), s("LINSERT", k, "after", "bar", "last"),
		s("LINSERT", k, "BEFORE", "foo", "first"), s("LINSERT", k, "BEFORE", "nope", "x"), s("LINSERT", k, "AROUND", "b", "x"),
		s("LRANGE", k, "0", "-1"),
		// LREM (list.tcl "LREM remove all occurrences", "first occurrence", "from tail").
		s("RPUSH", k, "c", long, "c"), s("LREM", k, "1", "c"), s("LREM", k, "-1", "c"), s("LREM", k, "-2", "c"),
		s("LREM", k, "0", long), s("LREM", k, "0", "nope"), s("LREM", k, "x", "c"), s("LREM", k, "01", "c"),
		s("LRANGE", k, "0", "-1"),
		// JSON and binary payloads are compared as their exact bytes.
		s("RPUSH", k, `{"a":1}`, `[1, 2]`, ` x`, "\xff\x00b", `"q"`, "", `{"a":1}`),
		s("LPOS", k, `{"a":1}`, "COUNT", "0"), s("LPOS", k, `{"a": 1}`), s("LPOS", k, `[1, 2]`), s("LPOS", k, `[1,2]`),
		s("LPOS", k, ` x`), s("LPOS", k, "x"), s("LPOS", k, "\xff\x00b"), s("LPOS", k, `"q"`), s("LPOS", k, "q"), s("LPOS", k, ""),
		s("LINSERT", k, "AFTER", "", "after-empty"), s("LREM", k, "-1", `{"a":1}`), s("LREM", k, "0", "\xff\x00b"),
		s("LRANGE", k, "0", "-1"),
		// LTRIM, LPUSHX, RPUSHX (list.tcl "LTRIM basics", "LPUSHX, RPUSHX").
		s("LTRIM", k, "1", "-2"), s("LRANGE", k, "0", "-1"), s("LTRIM", k, "0", "x"), s("LTRIM", k, "-3", "-1"),
		s("RPUSHX", k, "r1", "r2"), s("LPUSHX", k, "l1", "l2"), s("LRANGE", k, "0", "-1"),
		s("LTRIM", k, "5", "1"), s("EXISTS", k), s("RPUSHX", k, "a"), s("LPUSHX", k, "a"),
		// list.tcl "LREM deleting objects that may be int encoded".
		s("RPUSH", k, "1", "2", "3"), s("LREM", k, "1", "2"), s("LRANGE", k, "0", "-1"),
		// The last item removed: the key is gone.
		s("LREM", k, "0", "1"), s("LREM", k, "0", "3"), s("EXISTS", k), s("TYPE", k),
		// Keys.
		s("RPUSH", k, "a"), s("EXISTS", k, k, "nokey", "str"), s("TYPE", k), s("TYPE", "str"), s("TYPE", "nokey"),
		s("DEL", k, k, "nokey"), s("RPUSH", k, "a"), s("UNLINK", k, "nokey"), s("EXISTS", k),
		// Another type.
		s("LINDEX", "str", "0"), s("LINDEX", "str", "x"), s("LPOS", "str", "a"), s("LPOS", "str", "a", "RANK", "0"),
		s("LSET", "str", "0", "a"), s("LSET", "str", "x", "a"), s("LINSERT", "str", "AFTER", "a", "b"),
		s("LINSERT", "str", "foo", "a", "b"), s("LREM", "str", "0", "a"), s("LREM", "str", "x", "a"),
		s("LTRIM", "str", "0", "1"), s("LPUSHX", "str", "a"), s("RPUSHX", "str", "a"),
		// Arity.
		s("LINDEX", k), s("LPOS", k), s("LSET", k, "0"), s("LINSERT", k, "BEFORE", "a"), s("LREM", k, "1"),
		s("LTRIM", k, "1"), s("LPUSHX", k), s("RPUSHX", k), s("DEL"), s("UNLINK"), s("EXISTS"), s("TYPE"), s("TYPE", k, k),
		s("LINDEX", k, "0", "1"), s("LSET", k, "0", "a", "b"),
	}
}

func TestListEdit_SameBytesAsRedis(t *testing.T) {
	e := newRawEnv(t, leRules)
	if e.direct == nil {
		t.Skip(e.noRedis)
	}
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		for _, k := range []string{"rawq", "envq"} {
			t.Run(fmt.Sprintf("RESP%d/%s", proto, k), func(t *testing.T) {
				for _, c := range []*redis.Client{e.backend.Client(t), e.direct.Client(t)} {
					if err := c.FlushAll(ctx).Err(); err != nil {
						t.Fatal(err)
					}
					if err := c.Set(ctx, "str", "x", 0).Err(); err != nil {
						t.Fatal(err)
					}
				}
				leCompare(t, leDial(t, e.q.Addr, proto), leDial(t, e.direct.Addr, proto), leScript(k))
			})
		}
	}
}

// A pipelined batch of list edits gets Redis's replies in order.
func TestListEdit_PipelineSameBytesAsRedis(t *testing.T) {
	e := newRawEnv(t, leRules)
	if e.direct == nil {
		t.Skip(e.noRedis)
	}
	var b strings.Builder
	n := 0
	for _, cmd := range leScript("envq")[:60] {
		if cmd[0] == "TYPE" && len(cmd) == 2 && cmd[1] == "str" {
			continue
		}
		b.WriteString("*" + strconv.Itoa(len(cmd)) + "\r\n")
		for _, a := range cmd {
			b.WriteString(bulk(a))
		}
		n++
	}
	read := func(addr string) string {
		lc := leDial(t, addr, 2)
		_ = lc.c.SetDeadline(time.Now().Add(rawTimeout))
		if _, err := io.WriteString(lc.c, b.String()); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		for i := 0; i < n; i++ {
			r, err := leReadReply(lc.br)
			if err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			out.WriteString(r)
		}
		return out.String()
	}
	if got, want := read(e.q.Addr), read(e.direct.Addr); got != want {
		t.Fatalf("pipelined replies differ\n qgate %q\n redis %q", clipQ(got), clipQ(want))
	}
}

// Rights with users (README "Authentication and TLS"): peek, push, pop and admin as in the table.
func TestListEdit_Rights(t *testing.T) {
	env := e2eStart(t, func(c *proxy.Config) {
		leRules(c)
		c.Users = []auth.UserConfig{
			{Name: "default", PasswordHash: authHash(t, "d"), Push: []string{"*"}, Pop: []string{"*"}, Admin: []string{"*"}},
			{Name: "producer", PasswordHash: authHash(t, "p"), Push: []string{"raw*"}},
			{Name: "worker", PasswordHash: authHash(t, "w"), Pop: []string{"raw*"}},
		}
	})
	ctx := e2eCtx(t)
	e2eProtos(t, func(t *testing.T, proto int) {
		key := "rawq" + strconv.Itoa(proto)
		p := env.Client(t, proto, func(o *redis.Options) { o.Username, o.Password = "producer", "p" })
		w := env.Client(t, proto, func(o *redis.Options) { o.Username, o.Password = "worker", "w" })
		a := env.Client(t, proto, func(o *redis.Options) { o.Password = "d" })
		if err := p.RPush(ctx, key, "a", "b").Err(); err != nil {
			t.Fatal(err)
		}
		noperm := func(user, right string) string {
			return "NOPERM user '" + user + "' has no '" + right + "' right on queue '" + key + "'"
		}
		for _, tc := range []struct {
			c    *redis.Client
			args []any
			want string // "" = allowed
		}{
			{p, []any{"LSET", key, 0, "z"}, ""},
			{p, []any{"LINSERT", key, "AFTER", "z", "y"}, ""},
			{p, []any{"RPUSHX", key, "c"}, ""},
			{p, []any{"LPUSHX", key, "x"}, ""},
			{p, []any{"LINDEX", key, 0}, noperm("producer", "pop")},
			{p, []any{"LPOS", key, "a"}, noperm("producer", "pop")},
			{p, []any{"EXISTS", key}, noperm("producer", "pop")},
			{p, []any{"TYPE", key}, noperm("producer", "pop")},
			{p, []any{"LREM", key, 1, "c"}, noperm("producer", "pop")},
			{p, []any{"LTRIM", key, 0, -1}, noperm("producer", "pop")},
			{w, []any{"LINDEX", key, 0}, ""},
			{w, []any{"LPOS", key, "c"}, ""},
			{w, []any{"EXISTS", key}, ""},
			{w, []any{"TYPE", key}, ""},
			{w, []any{"LREM", key, 1, "c"}, ""},
			{w, []any{"LTRIM", key, 0, -1}, ""},
			{w, []any{"LSET", key, 0, "v"}, noperm("worker", "push")},
			{w, []any{"LINSERT", key, "AFTER", "z", "y"}, noperm("worker", "push")},
			{w, []any{"RPUSHX", key, "v"}, noperm("worker", "push")},
			{w, []any{"DEL", key}, noperm("worker", "admin")},
			{w, []any{"UNLINK", key}, noperm("worker", "admin")},
			{w, []any{"QPURGE", key}, noperm("worker", "admin")},
			{p, []any{"DEL", key}, noperm("producer", "admin")},
			{a, []any{"QPURGE", key}, ""},
		} {
			_, got := e2eDo(ctx, tc.c, tc.args...)
			if got != tc.want {
				t.Errorf("%v: %q, want %q", tc.args, got, tc.want)
			}
		}
	})
}

// Concurrent LREM, RPUSH and LPOP on one enveloped queue: every item is popped once, removed once or
// still in the list, never two of these and never lost.
func TestListEdit_RemRacesPushAndPop(t *testing.T) {
	env := e2eStart(t)
	ctx := e2eCtx(t)
	const items, pushers, poppers, removers = 600, 3, 3, 3
	var mu sync.Mutex
	seen := map[string]string{} // item → "popped" / "removed"
	note := func(item, how string) {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := seen[item]; ok {
			t.Errorf("item %q %s, already %s", item, how, prev)
		}
		seen[item] = how
	}
	var pushed sync.WaitGroup
	for p := 0; p < pushers; p++ {
		pushed.Add(1)
		go func(p int) {
			defer pushed.Done()
			c := env.Client(t, 3)
			for i := p; i < items; i += pushers {
				if err := c.RPush(ctx, "race", "item-"+strconv.Itoa(i)).Err(); err != nil {
					t.Error(err)
					return
				}
			}
		}(p)
	}
	done := make(chan struct{})
	var workers sync.WaitGroup
	for w := 0; w < poppers; w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			c := env.Client(t, 2)
			for {
				v, err := c.LPop(ctx, "race").Result()
				switch {
				case err == redis.Nil:
					select {
					case <-done:
						return
					default:
						continue
					}
				case err != nil:
					t.Error(err)
					return
				}
				note(v, "popped")
			}
		}()
	}
	for r := 0; r < removers; r++ {
		workers.Add(1)
		go func(r int) {
			defer workers.Done()
			c := env.Client(t, 3)
			rng := rand.New(rand.NewSource(int64(r)))
			for {
				select {
				case <-done:
					return
				default:
				}
				// Half the time an item seen in the list just now (a likely hit), else any item.
				item := "item-" + strconv.Itoa(rng.Intn(items))
				if rng.Intn(2) == 0 {
					if v, err := c.LIndex(ctx, "race", int64(rng.Intn(4))).Result(); err == nil {
						item = v
					}
				}
				n, err := c.LRem(ctx, "race", 1, item).Result()
				if err != nil {
					t.Error(err)
					return
				}
				if n == 1 {
					note(item, "removed")
				}
			}
		}(r)
	}
	pushed.Wait()
	e2eEventually(t, "the queue drained", func() bool { return env.Direct.LLen(ctx, "race").Val() == 0 })
	close(done)
	workers.Wait()
	mu.Lock()
	defer mu.Unlock()
	if got := len(seen); got != items {
		t.Fatalf("%d items accounted for, want %d", got, items)
	}
	removed := 0
	for _, how := range seen {
		if how == "removed" {
			removed++
		}
	}
	t.Logf("%d popped, %d removed by LREM", items-removed, removed)
}

// QPURGE through qgate removes everything of an at-least-once queue, leases included; DEL only the
// ready list.
func TestPurge_AtLeastOnceQueue(t *testing.T) {
	env := e2eStart(t, func(c *proxy.Config) {
		c.Queues = []policy.Rule{{Match: "alo*", Delivery: "at-least-once", VisibilityTimeout: time.Minute}}
	})
	ctx := e2eCtx(t)
	c := env.Client(t, 3)
	if err := c.RPush(ctx, "alo", "a", "b", "c").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.LPop(ctx, "alo").Err(); err != nil { // leased
		t.Fatal(err)
	}
	if got, err := c.Del(ctx, "alo").Result(); err != nil || got != 1 {
		t.Fatalf("DEL: %d, %v", got, err)
	}
	if err := c.RPush(ctx, "alo", "d").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Do(ctx, "QPURGE", "alo").Int64(); err != nil || got != 2 {
		t.Fatalf("QPURGE: %d, %v; want 2 (the lease and d)", got, err)
	}
	keys, err := env.Direct.Keys(ctx, "*alo*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys left: %v, %v", keys, err)
	}
}

// On a Cluster: multi-key DEL/EXISTS across slots are split per slot and summed, the list edit
// scripts run on the queue's node, and QPURGE reaches every instance's transit record (keys it
// builds from the owners set, in the queue's slot).
func TestKey_ClusterMultiSlot(t *testing.T) {
	addrs := proxytest.StartCluster(t, 3)
	cfg := proxytest.ClusterConfig(addrs)
	q := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	c := q.Client(t)
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = direct.Close() })
	names := []string{"a", "b", "c", "d", "e"} // spread over the slots of three masters
	for _, n := range names {
		if err := c.RPush(ctx, n, "x", "y", "x").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.Exists(ctx, "a", "b", "c", "a", "nokey").Result(); err != nil || got != 4 {
		t.Fatalf("EXISTS across slots: %d, %v; want 4", got, err)
	}
	if got, err := c.LRem(ctx, "b", 0, "x").Result(); err != nil || got != 2 {
		t.Fatalf("LREM: %d, %v; want 2", got, err)
	}
	if got, err := c.LInsertBefore(ctx, "c", "y", "w").Result(); err != nil || got != 4 {
		t.Fatalf("LINSERT: %d, %v; want 4", got, err)
	}
	if got, err := c.LPos(ctx, "c", "y", redis.LPosArgs{}).Result(); err != nil || got != 2 {
		t.Fatalf("LPOS: %d, %v; want 2", got, err)
	}
	if got, err := c.Del(ctx, "a", "b", "c", "nokey").Result(); err != nil || got != 3 {
		t.Fatalf("DEL across slots: %d, %v; want 3", got, err)
	}
	for _, cmd := range [][]any{
		{"HSET", rdb.TransitKey("d", "dead-instance"), "L1.0", "t1", "L1.1", "t2"},
		{"SADD", rdb.TransitOwnersKey("d"), "dead-instance"},
		{"RPUSH", rdb.DeadKey("e"), "z"},
	} {
		if err := direct.Do(ctx, cmd...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.Do(ctx, "QPURGE", "d", "e").Int64(); err != nil || got != 9 {
		t.Fatalf("QPURGE: %d, %v; want 9 (3 + 2 in transit, 3 + 1 dead)", got, err)
	}
	if got := direct.Exists(ctx, "d", "e", rdb.TransitKey("d", "dead-instance"), rdb.TransitOwnersKey("d"), rdb.DeadKey("e")).Val(); got != 0 {
		t.Fatalf("%d keys left after QPURGE", got)
	}
}
