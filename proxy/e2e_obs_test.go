package proxy_test

import (
	"context"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/rdb"
)

// CLIENT LIST, CLIENT KILL and INFO commandstats/errorstats over raw sockets, each scenario run
// against qgate and against redis-server 7.0 with the same expected bytes.

// readLine reads one reply line (without CRLF) under the raw deadline.
func readLine(t *testing.T, rd *rawReader) string {
	t.Helper()
	_ = rd.c.SetReadDeadline(time.Now().Add(rawTimeout))
	l, err := rd.br.ReadString('\n')
	if err != nil {
		t.Fatalf("read reply line: %q, %v", l, err)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// readBulk reads a RESP2 bulk string reply.
func readBulk(t *testing.T, rd *rawReader) string {
	t.Helper()
	h := readLine(t, rd)
	n, err := strconv.Atoi(strings.TrimPrefix(h, "$"))
	if !strings.HasPrefix(h, "$") || err != nil {
		t.Fatalf("want a bulk string, got %q", h)
	}
	b := make([]byte, n+2)
	for off := 0; off < len(b); {
		m, err := rd.br.Read(b[off:])
		if err != nil {
			t.Fatalf("read bulk: %v", err)
		}
		off += m
	}
	return string(b[:n])
}

// clientID asks the connection's own id.
func clientID(t *testing.T, c net.Conn, rd *rawReader) string {
	t.Helper()
	send(t, c, "CLIENT ID\r\n")
	l := readLine(t, rd)
	if !strings.HasPrefix(l, ":") {
		t.Fatalf("CLIENT ID = %q", l)
	}
	return l[1:]
}

func TestClient_ListAndKillErrorsAsRedis(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		for _, tc := range []struct{ in, want string }{
			{"CLIENT LIST TYPE nosuch\r\n", "-ERR Unknown client type 'nosuch'\r\n"},
			{"CLIENT LIST ID x\r\n", "-ERR Invalid client ID\r\n"},
			{"CLIENT LIST ID 1 x\r\n", "-ERR Invalid client ID\r\n"},
			{"CLIENT LIST ID\r\n", "-ERR syntax error\r\n"},
			{"CLIENT LIST TYPE\r\n", "-ERR syntax error\r\n"},
			{"CLIENT LIST TYPE normal ID 1\r\n", "-ERR syntax error\r\n"},
			{"CLIENT LIST foo\r\n", "-ERR syntax error\r\n"},
			{"CLIENT LIST ID 999999\r\n", "$0\r\n\r\n"},
			{"CLIENT LIST TYPE master\r\n", "$0\r\n\r\n"},
			{"CLIENT LIST TYPE replica\r\n", "$0\r\n\r\n"},
			{"CLIENT KILL\r\n", "-ERR wrong number of arguments for 'client|kill' command\r\n"},
			{"CLIENT KILL 10.9.9.9:1\r\n", "-ERR No such client\r\n"},
			{"CLIENT KILL ID 0\r\n", "-ERR client-id should be greater than 0\r\n"},
			{"CLIENT KILL ID x\r\n", "-ERR client-id should be greater than 0\r\n"},
			{"CLIENT KILL TYPE nosuch\r\n", "-ERR Unknown client type 'nosuch'\r\n"},
			{"CLIENT KILL USER nosuch\r\n", "-ERR No such user 'nosuch'\r\n"},
			{"CLIENT KILL SKIPME maybe\r\n", "-ERR syntax error\r\n"},
			{"CLIENT KILL ID 1 extra\r\n", "-ERR syntax error\r\n"},
			{"CLIENT KILL FOO bar\r\n", "-ERR syntax error\r\n"},
			{"CLIENT KILL ID 999999\r\n", ":0\r\n"},
			{"CLIENT KILL TYPE master\r\n", ":0\r\n"},
			{"CLIENT KILL ADDR 10.9.9.9:1 SKIPME no\r\n", ":0\r\n"},
			{"CLIENT KILL LADDR 10.9.9.9:1\r\n", ":0\r\n"},
		} {
			send(t, c, tc.in)
			expect(t, rd, tc.want)
		}
		expectAlive(t, c, rd)
	})
}

var lineKeys = regexp.MustCompile(`(\S+?)=`)

func TestClient_ListShowsConnectionsAsRedis(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		sub, srd := dialRaw(t, tg.addr)
		subID := clientID(t, sub, srd)
		send(t, sub, "CLIENT SETNAME listener\r\nSUBSCRIBE a b\r\nPSUBSCRIBE p*\r\n")
		expect(t, srd, "+OK\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n")
		myID := clientID(t, c, rd)

		// ID: the clients asked for, in the order asked, unknown ids skipped.
		send(t, c, "CLIENT LIST ID "+subID+" 999999 "+myID+"\r\n")
		lines := strings.Split(strings.TrimSuffix(readBulk(t, rd), "\n"), "\n")
		if got, want := len(lines), 2; got != want {
			t.Fatalf("CLIENT LIST ID: %d lines, want %d: %q", got, want, lines)
		}
		for i, want := range []string{
			"id=" + subID + " addr=" + sub.LocalAddr().String() + " laddr=" + sub.RemoteAddr().String() + " ",
			"id=" + myID + " addr=" + c.LocalAddr().String() + " laddr=" + c.RemoteAddr().String() + " ",
		} {
			if !strings.HasPrefix(lines[i], want) {
				t.Errorf("line %d = %q, want it to start %q", i, lines[i], want)
			}
		}
		for _, f := range []string{" name=listener ", " flags=P ", " sub=2 ", " psub=1 ", " cmd=psubscribe "} {
			if !strings.Contains(lines[0], f) {
				t.Errorf("subscriber's line lacks %q: %q", f, lines[0])
			}
		}
		for _, f := range []string{" name= ", " flags=N ", " sub=0 ", " cmd=client|list ", " user=default "} {
			if !strings.Contains(lines[1], f) {
				t.Errorf("own line lacks %q: %q", f, lines[1])
			}
		}
		// The fields are Redis 7.0's, in its order (qgate adds 7.2's lib-name and lib-ver at the end).
		keys := func(l string) string {
			var ks []string
			for _, m := range lineKeys.FindAllStringSubmatch(l, -1) {
				if m[1] != "lib-name" && m[1] != "lib-ver" {
					ks = append(ks, m[1])
				}
			}
			return strings.Join(ks, " ")
		}
		if got, want := keys(lines[1]), "id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp"; got != want {
			t.Errorf("fields %q, want %q", got, want)
		}

		// TYPE pubsub: only the subscriber; TYPE normal: not it.
		send(t, c, "CLIENT LIST TYPE pubsub\r\n")
		if got := readBulk(t, rd); !strings.HasPrefix(got, "id="+subID+" ") || strings.Count(got, "\n") != 1 {
			t.Errorf("CLIENT LIST TYPE pubsub = %q", got)
		}
		send(t, c, "CLIENT LIST TYPE normal\r\n")
		if got := readBulk(t, rd); strings.Contains(got, "id="+subID+" ") || !strings.Contains(got, "id="+myID+" ") {
			t.Errorf("CLIENT LIST TYPE normal = %q", got)
		}
		// Plain CLIENT LIST: ids ascending, this client (connected first) before the subscriber.
		send(t, c, "client list\r\n")
		all := readBulk(t, rd)
		if i, j := strings.Index(all, "id="+myID+" "), strings.Index(all, "id="+subID+" "); i < 0 || j < 0 || i > j {
			t.Errorf("CLIENT LIST = %q", all)
		}
	})
}

func TestClient_KillOthersAndSelfAsRedis(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		a, ard := dialRaw(t, tg.addr)
		b, brd := dialRaw(t, tg.addr)
		expectAlive(t, a, ard)
		expectAlive(t, b, brd)
		bID := clientID(t, b, brd)

		// New form by the peer's address: the count; the victim is disconnected.
		send(t, c, "CLIENT KILL ADDR "+a.LocalAddr().String()+"\r\n")
		expect(t, rd, ":1\r\n")
		expectEOF(t, ard)
		// By id and type together; a filter that does not match kills nobody.
		send(t, c, "CLIENT KILL ID "+bID+" TYPE pubsub\r\n")
		expect(t, rd, ":0\r\n")
		send(t, c, "client kill id "+bID+" type normal user default\r\n")
		expect(t, rd, ":1\r\n")
		expectEOF(t, brd)
		// The new form skips the caller by default.
		send(t, c, "CLIENT KILL ADDR "+c.LocalAddr().String()+"\r\n")
		expect(t, rd, ":0\r\n")
		expectAlive(t, c, rd)
		// The old form may kill the caller: +OK first, then the connection closes.
		send(t, c, "CLIENT KILL "+c.LocalAddr().String()+"\r\n")
		expect(t, rd, "+OK\r\n")
		expectEOF(t, rd)

		// SKIPME no: the caller is counted and closed after its reply; commands pipelined after it
		// are not run.
		d, drd := dialRaw(t, tg.addr)
		send(t, d, "CLIENT KILL ADDR "+d.LocalAddr().String()+" SKIPME no\r\nPING\r\n")
		expect(t, drd, ":1\r\n")
		expectEOF(t, drd)
	})
}

// A client killed while it holds leases and while it waits in a blocked pop is handled as a
// disconnect: its leases go back (attempts counted), nothing popped is lost.
func TestClient_KillRequeuesLeases(t *testing.T) {
	e := leaseEnv(t, nil)
	ctx := e2eCtx(t)
	victim := envClient(t, e, ctx)
	victim.RPush(ctx, "jobs", "a", "b", "c")
	if got := victim.LPopCount(ctx, "jobs", 2).Val(); len(got) != 2 {
		t.Fatalf("popped %d", len(got))
	}
	id := victim.ClientID(ctx).Val()
	admin := e.Client(t, 2)
	if got, err := admin.Do(ctx, "client", "kill", "id", id).Int(); err != nil || got != 1 {
		t.Fatalf("CLIENT KILL ID = %d, %v", got, err)
	}
	e2eEventually(t, "leases requeued after CLIENT KILL", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 3 })
	if _, in, l, _, _ := leaseCounts(t, e, ctx, "jobs"); in != 0 || l != 0 {
		t.Fatalf("inflight %d leases %d after the kill", in, l)
	}
	e2eEventually(t, "disconnect logged", func() bool {
		return strings.Contains(e.Qgate.Logs.String(), "consumer disconnected holding leases")
	})

	// A blocked pop killed: it ends without taking anything.
	blocked := e.Client(t, 2, func(o *redis.Options) { o.PoolSize, o.MaxRetries = 1, -1 })
	bid := blocked.ClientID(ctx).Val()
	done := make(chan error, 1)
	go func() { done <- blocked.BLPop(context.Background(), 0, "empty-q").Err() }()
	e2eWaitBlocked(t, admin, 1)
	if got, err := admin.Do(ctx, "client", "kill", "id", bid).Int(); err != nil || got != 1 {
		t.Fatalf("CLIENT KILL ID (blocked) = %d, %v", got, err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the killed BLPOP returned no error")
		}
	case <-time.After(e2eWaitBound):
		t.Fatal("the killed BLPOP did not end")
	}
	e2eWaitBlocked(t, admin, 0)
}

func TestClient_ListAndKillNeedAdminOnEveryQueue(t *testing.T) {
	pw := "Secret-pw-1"
	e := e2eStart(t, func(c *proxy.Config) {
		c.Users = []auth.UserConfig{
			{Name: "default", PasswordHash: authHash(t, pw), Push: []string{"*"}, Pop: []string{"*"}},
			{Name: "ops", PasswordHash: authHash(t, pw), Admin: []string{"orders*"}},
			{Name: "root", PasswordHash: authHash(t, pw), Admin: []string{"*"}},
		}
	})
	c, rd := dialRaw(t, e.Qgate.Addr)
	send(t, c, "CLIENT LIST\r\n")
	expect(t, rd, "-NOAUTH Authentication required.\r\n")
	send(t, c, "AUTH "+pw+"\r\nCLIENT LIST\r\nCLIENT KILL ID 1\r\n")
	expect(t, rd, "+OK\r\n-NOPERM user 'default' has no 'admin' right on queue '*'\r\n-NOPERM user 'default' has no 'admin' right on queue '*'\r\n")
	send(t, c, "AUTH ops "+pw+"\r\nCLIENT LIST TYPE pubsub\r\n")
	expect(t, rd, "+OK\r\n-NOPERM user 'ops' has no 'admin' right on queue '*'\r\n")
	send(t, c, "AUTH root "+pw+"\r\nCLIENT LIST TYPE pubsub\r\nCLIENT KILL USER nosuch\r\nCLIENT KILL USER ops\r\n")
	expect(t, rd, "+OK\r\n$0\r\n\r\n-ERR No such user 'nosuch'\r\n:0\r\n")
}

var usecs = regexp.MustCompile(`usec=\d+,usec_per_call=\d+\.\d\d,`)

func TestInfo_CommandstatsAndErrorstatsAsRedis(t *testing.T) {
	newRawEnv(t, nil).both(t, func(t *testing.T, tg target) {
		c, rd := dialRaw(t, tg.addr)
		send(t, c, "PING\r\nPING\r\nCLIENT ID\r\nLPUSH\r\nECHO a b\r\nCLIENT NOSUCH\r\nNOSUCH\r\nRPUSH obsq a\r\nCLIENT KILL 10.9.9.9:1\r\nSUBSCRIBE ch\r\nLLEN q\r\nRESET\r\n")
		// RPUSH is queued for the batch's round trip: CLIENT KILL's error is told apart from its reply.
		for range 17 { // nine replies, SUBSCRIBE's six lines, LLEN's error, RESET's
			readLine(t, rd)
		}
		send(t, c, "INFO commandstats\r\n")
		got := usecs.ReplaceAllString(readBulk(t, rd), "usec=U,usec_per_call=P,")
		want := "# Commandstats\r\n" +
			"cmdstat_client|id:calls=1,usec=U,usec_per_call=P,rejected_calls=0,failed_calls=0\r\n" +
			"cmdstat_client|kill:calls=1,usec=U,usec_per_call=P,rejected_calls=0,failed_calls=1\r\n" +
			"cmdstat_echo:calls=0,usec=U,usec_per_call=P,rejected_calls=1,failed_calls=0\r\n" +
			"cmdstat_llen:calls=0,usec=U,usec_per_call=P,rejected_calls=1,failed_calls=0\r\n" +
			"cmdstat_lpush:calls=0,usec=U,usec_per_call=P,rejected_calls=1,failed_calls=0\r\n" +
			"cmdstat_ping:calls=2,usec=U,usec_per_call=P,rejected_calls=0,failed_calls=0\r\n" +
			"cmdstat_rpush:calls=1,usec=U,usec_per_call=P,rejected_calls=0,failed_calls=0\r\n" +
			"cmdstat_reset:calls=1,usec=U,usec_per_call=P,rejected_calls=0,failed_calls=0\r\n" +
			"cmdstat_subscribe:calls=1,usec=U,usec_per_call=P,rejected_calls=0,failed_calls=0\r\n"
		// Redis lists commands in hash order: compare sorted lines.
		if sortLines(got) != sortLines(want) {
			t.Errorf("INFO commandstats:\n got %q\nwant %q", got, want)
		}
		send(t, c, "INFO errorstats\r\n")
		expect(t, rd, bulk("# Errorstats\r\nerrorstat_ERR:count=6\r\n"))
		send(t, c, "INFO\r\n")
		if body := readBulk(t, rd); strings.Contains(body, "cmdstat_") || !strings.Contains(body, "\r\nerrorstat_ERR:count=6\r\n") ||
			!strings.Contains(body, "\r\ntotal_error_replies:6\r\n") {
			t.Errorf("plain INFO has commandstats or lacks errorstats: %q", body)
		}
		send(t, c, "INFO everything\r\n")
		if body := readBulk(t, rd); !strings.Contains(body, "\r\ncmdstat_ping:calls=2,") || !strings.Contains(body, "cmdstat_info:calls=3,") {
			t.Errorf("INFO everything lacks commandstats: %q", body)
		}
	})
}

func sortLines(s string) string {
	l := strings.Split(s, "\r\n")
	sort.Strings(l)
	return strings.Join(l, "\n")
}

// logLines returns the lines of logs with msg="<msg>" (the text handler quotes messages with spaces).
func logLines(logs, msg string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, ` msg="`+msg+`"`) || strings.Contains(l, " msg="+msg+" ") {
			out = append(out, l)
		}
	}
	return out
}

// waitLog waits until the server logged a line with msg and every field (key=value) given.
func waitLog(t *testing.T, q func() string, msg string, fields ...string) string {
	t.Helper()
	var found string
	e2eEventually(t, "log "+msg+" "+strings.Join(fields, " "), func() bool {
		for _, l := range logLines(q(), msg) {
			ok := true
			for _, f := range fields {
				ok = ok && strings.Contains(l, " "+f)
			}
			if ok {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// Every event of an item's life is logged with its queue and counts, and never with its payload.
func TestLog_ItemEventsWithoutPayload(t *testing.T) {
	const marker = "PAYLOAD-MARKER-7f3a"
	one := 1
	e := e2eStart(t, httpOn, func(c *proxy.Config) {
		c.Queues = []policy.Rule{
			{Match: "jobs*", Delivery: "at-least-once", VisibilityTimeout: 30 * time.Second, MaxAttempts: &one},
			{Match: "small*", MaxBytes: 8},
			{Match: "typed*", Format: "json"},
		}
	})
	ctx := e2eCtx(t)
	logs := e.Qgate.Logs.String
	c := envClient(t, e, ctx)

	// Refused pushes: the reason is named, the value is not quoted.
	if err := c.RPush(ctx, "small", "ok", marker).Err(); err == nil {
		t.Fatal("RPUSH over max_bytes accepted")
	}
	waitLog(t, logs, "push rejected", "queue=small", `rule="queues[1] \"small*\""`, "reason=max_bytes")
	if err := c.RPush(ctx, "typed", "{"+marker).Err(); err == nil {
		t.Fatal("RPUSH of bad JSON accepted")
	}
	waitLog(t, logs, "push rejected", "queue=typed", "reason=not_json")

	// A lease that runs out with max_attempts 1: expired, then dead-lettered.
	c.RPush(ctx, "jobs", marker+"-1")
	env := mustDecode(t, c.LPop(ctx, "jobs").Val())
	c.Do(ctx, "qextend", "jobs", env.Receipt, 1)
	reapUntil(t, e, "the expired lease dead-lettered", func() bool { return e.Direct.LLen(ctx, rdb.DeadKey("jobs")).Val() == 1 })
	waitLog(t, logs, "leases expired", "queue=jobs", "items=1", "dead_lettered=1", "max_attempts=1")
	waitLog(t, logs, "items dead-lettered", "queue=jobs", "items=1", "cause=\"lease expired\"")

	// Redrive over RESP, then over HTTP.
	if got, err := c.Do(ctx, "qredrive", "jobs").Int(); err != nil || got != 1 {
		t.Fatalf("QREDRIVE = %d, %v", got, err)
	}
	waitLog(t, logs, "dead letters redriven", "queue=jobs", "items=1", "via=resp")
	env = mustDecode(t, c.LPop(ctx, "jobs").Val())
	c.Do(ctx, "qextend", "jobs", env.Receipt, 1)
	reapUntil(t, e, "dead-lettered again", func() bool { return e.Direct.LLen(ctx, rdb.DeadKey("jobs")).Val() == 1 })
	if code, body := httpDo(t, "POST", httpBase(t, e.Qgate)+"/api/v1/queues/jobs/redrive", "", "", `{"count":1}`); code != 200 {
		t.Fatalf("HTTP redrive = %d %s", code, body)
	}
	waitLog(t, logs, "dead letters redriven", "queue=jobs", "items=1", "via=http")

	// A consumer leaving with a lease.
	consumer := envClient(t, e, ctx)
	if got := consumer.LPop(ctx, "jobs").Val(); got == "" {
		t.Fatal("nothing to lease")
	}
	_ = consumer.Close()
	waitLog(t, logs, "consumer disconnected holding leases", "queue=jobs", "leases=1", "killed=false")

	if strings.Contains(logs(), marker) {
		t.Fatalf("the payload marker is in the logs:\n%s", logs())
	}
}

// With the backend stopped and restarted on its port, qgate logs one "backend down" and one "backend
// back up", however many commands fail in between.
func TestLog_BackendDownAndUpOnce(t *testing.T) {
	e := e2eStart(t)
	ctx := e2eCtx(t)
	c := e.Client(t, 2, func(o *redis.Options) { o.MaxRetries = -1 })
	if err := c.RPush(ctx, "q", "a").Err(); err != nil {
		t.Fatal(err)
	}
	logs := e.Qgate.Logs.String
	e.Redis.Stop()
	e2eEventually(t, "backend down logged", func() bool {
		_ = c.LLen(ctx, "q").Err()
		return len(logLines(logs(), "backend down")) > 0
	})
	for range 20 {
		if err := c.LLen(ctx, "q").Err(); err == nil {
			t.Fatal("LLEN succeeded with the backend stopped")
		}
	}
	e.Redis.Restart(t)
	e2eEventually(t, "commands succeed again", func() bool { return c.LLen(ctx, "q").Err() == nil })
	e2eEventually(t, "backend back up logged", func() bool { return len(logLines(logs(), "backend back up")) > 0 })
	for range 20 {
		if err := c.LLen(ctx, "q").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := len(logLines(logs(), "backend down")), 1; got != want {
		t.Errorf("%d backend down lines, want %d:\n%s", got, want, strings.Join(logLines(logs(), "backend down"), "\n"))
	}
	if got, want := len(logLines(logs(), "backend back up")), 1; got != want {
		t.Errorf("%d backend back up lines, want %d:\n%s", got, want, logs())
	}
}
