package proxy_test

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
)

// End-to-end tests through redigo, a RESP2-only client that sends nothing on connect.

func e2eRedigo(t *testing.T, addr string, opts ...redigo.DialOption) redigo.Conn {
	t.Helper()
	opts = append([]redigo.DialOption{redigo.DialConnectTimeout(5 * time.Second)}, opts...)
	c, err := redigo.Dial("tcp", addr, opts...)
	if err != nil {
		t.Fatalf("redigo dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// e2eRedigoSame runs a command on qgate and straight on Redis and fails unless replies and errors match.
func e2eRedigoSame(t *testing.T, viaQgate, direct redigo.Conn, cmd string, args ...any) (any, error) {
	t.Helper()
	gv, gerr := viaQgate.Do(cmd, args...)
	wv, werr := direct.Do(cmd, args...)
	if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(gv, wv) {
		t.Fatalf("%s %v:\n qgate: %#v err=%v\n redis: %#v err=%v", cmd, args, gv, gerr, wv, werr)
	}
	return gv, gerr
}

func TestRedigo_ListCommands(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	c := e2eRedigo(t, e.Qgate.Addr)
	direct := e2eRedigo(t, e.Redis.Addr)

	if got, err := redigo.String(c.Do("PING")); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	if got, err := redigo.String(c.Do("ECHO", "hi\x00there")); err != nil || got != "hi\x00there" {
		t.Fatalf("ECHO = %q, %v", got, err)
	}
	if got, err := redigo.Int(c.Do("RPUSH", "tasks", "a", "b", "c")); err != nil || got != 3 {
		t.Fatalf("RPUSH = %d, %v; want 3", got, err)
	}
	if got, err := redigo.Int(c.Do("LPUSH", "tasks", "z")); err != nil || got != 4 {
		t.Fatalf("LPUSH = %d, %v; want 4", got, err)
	}
	if got, err := redigo.Strings(c.Do("LRANGE", "tasks", 0, -1)); err != nil || !reflect.DeepEqual(got, []string{"z", "a", "b", "c"}) {
		t.Fatalf("LRANGE = %q, %v", got, err)
	}
	if got, err := redigo.Int(c.Do("LLEN", "tasks")); err != nil || got != 4 {
		t.Fatalf("LLEN = %d, %v; want 4", got, err)
	}
	if got, err := redigo.String(c.Do("LPOP", "tasks")); err != nil || got != "z" {
		t.Fatalf("LPOP = %q, %v; want z", got, err)
	}
	if got, err := redigo.String(c.Do("RPOP", "tasks")); err != nil || got != "c" {
		t.Fatalf("RPOP = %q, %v; want c", got, err)
	}
	if got, err := redigo.Strings(c.Do("LPOP", "tasks", 5)); err != nil || !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("LPOP tasks 5 = %q, %v; want [a b]", got, err)
	}
	if _, err := redigo.String(c.Do("LPOP", "tasks")); !errors.Is(err, redigo.ErrNil) {
		t.Fatalf("LPOP missing: err = %v, want ErrNil", err)
	}
	if _, err := redigo.Strings(c.Do("RPOP", "tasks", 2)); !errors.Is(err, redigo.ErrNil) {
		t.Fatalf("RPOP missing 2: err = %v, want ErrNil", err)
	}
	if got, err := redigo.Bytes(c.Do("BLPOP", "tasks", "0.05")); !errors.Is(err, redigo.ErrNil) {
		t.Fatalf("BLPOP timeout = %q, %v; want ErrNil", got, err)
	}
	if _, err := c.Do("RPUSH", "tasks", []byte{0, 1, 2, 255}); err != nil {
		t.Fatal(err)
	}
	if got, err := redigo.Values(c.Do("BLPOP", "none", "tasks", 1)); err != nil || len(got) != 2 ||
		string(got[0].([]byte)) != "tasks" || !reflect.DeepEqual(got[1], []byte{0, 1, 2, 255}) {
		t.Fatalf("BLPOP none tasks = %q, %v", got, err)
	}

	// Side by side with Redis, RESP2 raw replies.
	if _, err := e.Direct.Set(e2eCtx(t), "str", "x", 0).Result(); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]any{
		{"RPUSH", "str", "x"},
		{"LPOP", "str"},
		{"LRANGE", "none", 0, -1},
		{"LLEN", "none"},
		{"LPOP", "none"},
		{"LPOP", "none", 2},
		{"RPOP", "none", 0},
		{"LPOP", "none", -2},
		{"RPUSH", "k"},
		{"LRANGE", "k", "a", "b"},
		{"SET", "k", "v"},
		{"HELLO", 4},
		{"SELECT", 0},
		{"CLIENT", "GETNAME"},
		{"PING", "x"},
		{"PUBLISH", "nobody", "m"},
		{"PUBSUB", "NUMSUB", "nobody"},
		{"PUBSUB", "NUMPAT"},
	} {
		if cmd[0] == "SET" {
			if _, err := c.Do("SET", "k", "v"); err == nil || err.Error() != "ERR unknown command 'SET', with args beginning with: 'k' 'v' " {
				t.Fatalf("SET via qgate: err = %v", err)
			}
			continue
		}
		e2eRedigoSame(t, c, direct, cmd[0].(string), cmd[1:]...)
	}
	if got, err := redigo.Int(e.Direct.Exists(e2eCtx(t), "k").Result()); err != nil || got != 0 {
		t.Fatalf("backend EXISTS k = %d, %v; want 0", got, err)
	}
}

func TestRedigo_DialOptions(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	c := e2eRedigo(t, e.Qgate.Addr, redigo.DialClientName("redigo-worker"), redigo.DialDatabase(0))
	if got, err := redigo.String(c.Do("CLIENT", "GETNAME")); err != nil || got != "redigo-worker" {
		t.Fatalf("CLIENT GETNAME = %q, %v; want redigo-worker", got, err)
	}
	info, err := redigo.String(c.Do("CLIENT", "INFO"))
	if err != nil || !strings.Contains(info, " name=redigo-worker ") || !strings.Contains(info, " resp=2 ") {
		t.Fatalf("CLIENT INFO = %q, %v", info, err)
	}
	if _, err := redigo.Dial("tcp", e.Qgate.Addr, redigo.DialDatabase(1)); err == nil || !strings.Contains(err.Error(), "DB index is out of range") {
		t.Fatalf("dial with DialDatabase(1): err = %v, want the SELECT refusal", err)
	}
	if got, err := redigo.Int(c.Do("CLIENT", "ID")); err != nil || got <= 0 {
		t.Fatalf("CLIENT ID = %d, %v", got, err)
	}
}

// TestRedigo_Pipeline: 300 commands sent with Send, one Flush, replies read in order with Receive.
func TestRedigo_Pipeline(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	c := e2eRedigo(t, e.Qgate.Addr)
	const n = 100
	for i := 0; i < n; i++ {
		if err := c.Send("RPUSH", "pipe", "v"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		if err := c.Send("LLEN", "pipe"); err != nil {
			t.Fatal(err)
		}
		if i%10 == 5 {
			if err := c.Send("NOSUCH", i); err != nil {
				t.Fatal(err)
			}
		} else if err := c.Send("ECHO", "e"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if got, err := redigo.Int(c.Receive()); err != nil || got != i+1 {
			t.Fatalf("RPUSH #%d = %d, %v; want %d", i, got, err, i+1)
		}
		if got, err := redigo.Int(c.Receive()); err != nil || got != i+1 {
			t.Fatalf("LLEN #%d = %d, %v; want %d", i, got, err, i+1)
		}
		got, err := redigo.String(c.Receive())
		if i%10 == 5 {
			if want := fmt.Sprintf("ERR unknown command 'NOSUCH', with args beginning with: '%d' ", i); err == nil || err.Error() != want {
				t.Fatalf("NOSUCH #%d: %q, %v; want %q", i, got, err, want)
			}
		} else if err != nil || got != "e"+strconv.Itoa(i) {
			t.Fatalf("ECHO #%d = %q, %v", i, got, err)
		}
	}
	// Pop them all in one more pipeline.
	for i := 0; i < n; i++ {
		if err := c.Send("LPOP", "pipe"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if got, err := redigo.String(c.Receive()); err != nil || got != "v"+strconv.Itoa(i) {
			t.Fatalf("LPOP #%d = %q, %v", i, got, err)
		}
	}
}

func TestRedigo_BlockingPop(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	consumer := e2eRedigo(t, e.Qgate.Addr)
	producer := e2eRedigo(t, e.Qgate.Addr)
	type result struct {
		vals []string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		v, err := redigo.Strings(consumer.Do("BLPOP", "email_queue", 0))
		done <- result{v, err}
	}()
	e2eEventually(t, "BLPOP to block", func() bool { return e.Qgate.Server.Stats().BlockedClients == 1 })
	if _, err := producer.Do("RPUSH", "email_queue", "hello"); err != nil {
		t.Fatal(err)
	}
	r := e2eRecv(t, "BLPOP reply", done)
	if r.err != nil || !reflect.DeepEqual(r.vals, []string{"email_queue", "hello"}) {
		t.Fatalf("BLPOP = %q, %v", r.vals, r.err)
	}
	start := time.Now()
	if _, err := redigo.Strings(consumer.Do("BRPOP", "email_queue", "0.2")); !errors.Is(err, redigo.ErrNil) {
		t.Fatalf("BRPOP timeout: err = %v, want ErrNil", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Fatalf("BRPOP 0.2 returned after %s", d)
	}
}

func TestRedigo_PubSub(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	sc := e2eRedigo(t, e.Qgate.Addr)
	direct := e2eRedigo(t, e.Redis.Addr)
	pub := e2eRedigo(t, e.Qgate.Addr)
	ps := redigo.PubSubConn{Conn: sc}

	recv := func() any {
		t.Helper()
		v := ps.ReceiveWithTimeout(e2eWaitBound)
		if err, ok := v.(error); ok {
			t.Fatalf("pub/sub receive: %v", err)
		}
		return v
	}
	wantSub := func(kind, channel string, count int) {
		t.Helper()
		got := recv()
		if want := (redigo.Subscription{Kind: kind, Channel: channel, Count: count}); got != want {
			t.Fatalf("got %#v, want %#v", got, want)
		}
	}
	wantMsg := func(pattern, channel, data string) {
		t.Helper()
		got, ok := recv().(redigo.Message)
		if !ok || got.Pattern != pattern || got.Channel != channel || string(got.Data) != data {
			t.Fatalf("got %#v, want message %q %q %q", got, pattern, channel, data)
		}
	}

	if err := ps.Subscribe("alerts", "jobs"); err != nil {
		t.Fatal(err)
	}
	wantSub("subscribe", "alerts", 1)
	wantSub("subscribe", "jobs", 2)
	if err := ps.PSubscribe("log.*"); err != nil {
		t.Fatal(err)
	}
	wantSub("psubscribe", "log.*", 3)

	if got, err := redigo.Int(pub.Do("PUBLISH", "alerts", "fire")); err != nil || got != 1 {
		t.Fatalf("PUBLISH alerts = %d, %v; want 1", got, err)
	}
	wantMsg("", "alerts", "fire")
	if got, err := redigo.Int(pub.Do("PUBLISH", "log.error", "disk full")); err != nil || got != 1 {
		t.Fatalf("PUBLISH log.error = %d, %v; want 1", got, err)
	}
	wantMsg("log.*", "log.error", "disk full")
	if _, err := direct.Do("PUBLISH", "jobs", "from redis"); err != nil {
		t.Fatal(err)
	}
	wantMsg("", "jobs", "from redis")

	// PING in RESP2 subscribed state replies ["pong", data].
	if err := ps.Ping("still-there"); err != nil {
		t.Fatal(err)
	}
	if got, want := recv(), (redigo.Pong{Data: "still-there"}); got != want {
		t.Fatalf("PING: got %#v, want %#v", got, want)
	}
	// Other commands are refused in subscribed state with Redis's own text.
	dps := redigo.PubSubConn{Conn: direct}
	if err := dps.Subscribe("x"); err != nil {
		t.Fatal(err)
	}
	if v := dps.ReceiveWithTimeout(e2eWaitBound); v != (redigo.Subscription{Kind: "subscribe", Channel: "x", Count: 1}) {
		t.Fatalf("direct subscribe: %#v", v)
	}
	for _, conn := range []redigo.Conn{sc, direct} {
		if err := conn.Send("LPUSH", "k", "v"); err != nil {
			t.Fatal(err)
		}
		if err := conn.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	gotErr, wantErr := ps.ReceiveWithTimeout(e2eWaitBound), dps.ReceiveWithTimeout(e2eWaitBound)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !strings.Contains(fmt.Sprint(gotErr), "only (P|S)SUBSCRIBE") {
		t.Fatalf("LPUSH in subscribed state:\n qgate %#v\n redis %#v", gotErr, wantErr)
	}

	if err := ps.Unsubscribe("alerts"); err != nil {
		t.Fatal(err)
	}
	wantSub("unsubscribe", "alerts", 2)
	if err := ps.PUnsubscribe(); err != nil {
		t.Fatal(err)
	}
	wantSub("punsubscribe", "log.*", 1)
	if err := ps.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	wantSub("unsubscribe", "jobs", 0)
	// Unsubscribed: the connection is a normal one again.
	if got, err := redigo.Int(sc.Do("RPUSH", "after", "1")); err != nil || got != 1 {
		t.Fatalf("RPUSH after leaving subscribed state = %d, %v", got, err)
	}
}
