package proxy_test

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// End-to-end tests through rueidis, a RESP3-only client. On connect it pipelines HELLO 3, CLIENT
// TRACKING ON OPTIN (unless DisableCache), CLIENT SETINFO LIB-NAME/LIB-VER, and then CLUSTER SLOTS to
// find out whether it talks to a cluster (qgate's "unknown command" makes it fall back to a single node).

func e2eRueidis(t *testing.T, addr string, opt rueidis.ClientOption) (rueidis.Client, error) {
	t.Helper()
	opt.InitAddress = []string{addr}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, err
	}
	t.Cleanup(c.Close)
	return c, nil
}

// e2eRueidisNoCache connects with DisableCache: true, which qgate needs (see TestRueidis_DefaultOptionsConnect).
func e2eRueidisNoCache(t *testing.T, addr string) rueidis.Client {
	t.Helper()
	c, err := e2eRueidis(t, addr, rueidis.ClientOption{DisableCache: true})
	if err != nil {
		t.Fatalf("rueidis connect (DisableCache) to %s: %v", addr, err)
	}
	return c
}

// TestRueidis_DefaultOptionsConnect: rueidis with its default options (client-side caching on) must
// connect, as it does to redis-server.
func TestRueidis_DefaultOptionsConnect(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	ref, err := e2eRueidis(t, e.Redis.Addr, rueidis.ClientOption{})
	if err != nil {
		t.Fatalf("reference: rueidis with default options to redis-server: %v", err)
	}
	if err := ref.Do(ctx, ref.B().Ping().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	c, err := e2eRueidis(t, e.Qgate.Addr, rueidis.ClientOption{})
	if err != nil {
		if strings.Contains(err.Error(), "CLIENT TRACKING") {
			t.Fatalf("rueidis with default options cannot connect (CLIENT TRACKING ON OPTIN refused?): "+
				"which rueidis pipelines after HELLO 3 unless ClientOption.DisableCache is set: %v", err)
		}
		t.Fatalf("rueidis with default options: %v", err)
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	// Caching is opt-in per command; plain commands work, and a cached read must never return stale data.
	if err := c.Do(ctx, c.B().Rpush().Key("cached").Element("a").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DoCache(ctx, c.B().Llen().Key("cached").Cache(), time.Minute).AsInt64(); err == nil {
		if err := e.Direct.RPush(ctx, "cached", "b").Err(); err != nil {
			t.Fatal(err)
		}
		n, err := c.DoCache(ctx, c.B().Llen().Key("cached").Cache(), time.Minute).AsInt64()
		if err != nil || n != 2 {
			t.Fatalf("cached LLEN after another client pushed = %d, %v; want 2 (never stale)", n, err)
		}
	}
}

func TestRueidis_ListCommands(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	c := e2eRueidisNoCache(t, e.Qgate.Addr)
	direct := e2eRueidisNoCache(t, e.Redis.Addr)

	if got, err := c.Do(ctx, c.B().Ping().Build()).ToString(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	if got, err := c.Do(ctx, c.B().Rpush().Key("q").Element("a", "b", "c").Build()).AsInt64(); err != nil || got != 3 {
		t.Fatalf("RPUSH = %d, %v; want 3", got, err)
	}
	if got, err := c.Do(ctx, c.B().Lpush().Key("q").Element("z").Build()).AsInt64(); err != nil || got != 4 {
		t.Fatalf("LPUSH = %d, %v; want 4", got, err)
	}
	if got, err := c.Do(ctx, c.B().Lrange().Key("q").Start(0).Stop(-1).Build()).AsStrSlice(); err != nil || !reflect.DeepEqual(got, []string{"z", "a", "b", "c"}) {
		t.Fatalf("LRANGE = %q, %v", got, err)
	}
	if got, err := c.Do(ctx, c.B().Llen().Key("q").Build()).AsInt64(); err != nil || got != 4 {
		t.Fatalf("LLEN = %d, %v; want 4", got, err)
	}
	if got, err := c.Do(ctx, c.B().Lpop().Key("q").Build()).ToString(); err != nil || got != "z" {
		t.Fatalf("LPOP = %q, %v; want z", got, err)
	}
	if got, err := c.Do(ctx, c.B().Rpop().Key("q").Count(2).Build()).AsStrSlice(); err != nil || !reflect.DeepEqual(got, []string{"c", "b"}) {
		t.Fatalf("RPOP q 2 = %q, %v; want [c b]", got, err)
	}
	if got, err := c.Do(ctx, c.B().Lpop().Key("q").Count(5).Build()).AsStrSlice(); err != nil || !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("LPOP q 5 = %q, %v; want [a]", got, err)
	}
	if err := c.Do(ctx, c.B().Lpop().Key("q").Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Fatalf("LPOP missing: err = %v, want nil reply", err)
	}
	if err := c.Do(ctx, c.B().Rpop().Key("q").Count(2).Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Fatalf("RPOP missing 2: err = %v, want nil reply", err)
	}

	// Errors: the same text as redis-server gives rueidis.
	if err := e.Direct.Set(ctx, "str", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	same := func(build func(c rueidis.Client) rueidis.Completed) string {
		t.Helper()
		gerr := c.Do(ctx, build(c)).Error()
		werr := direct.Do(ctx, build(direct)).Error()
		if gerr == nil || werr == nil || gerr.Error() != werr.Error() {
			t.Fatalf("qgate err %v, redis err %v", gerr, werr)
		}
		return gerr.Error()
	}
	if got := same(func(c rueidis.Client) rueidis.Completed { return c.B().Rpush().Key("str").Element("x").Build() }); !strings.HasPrefix(got, "WRONGTYPE") {
		t.Fatalf("RPUSH on a string: %q, want WRONGTYPE", got)
	}
	same(func(c rueidis.Client) rueidis.Completed { return c.B().Arbitrary("RPUSH").Keys("k").Build() })
	same(func(c rueidis.Client) rueidis.Completed { return c.B().Arbitrary("NOSUCH").Args("a").Build() })
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err == nil || !strings.Contains(err.Error(), "unknown command 'SET'") {
		t.Fatalf("SET via qgate: err = %v, want unknown command", err)
	}
	if err := c.Do(ctx, c.B().Flushall().Build()).Error(); err == nil || !strings.Contains(err.Error(), "unknown command 'FLUSHALL'") {
		t.Fatalf("FLUSHALL via qgate: err = %v, want unknown command", err)
	}
	if got, err := e.Direct.Get(ctx, "str").Result(); err != nil || got != "v" {
		t.Fatalf("backend str = %q, %v; FLUSHALL must not reach Redis", got, err)
	}

	// Pipelining (DoMulti): replies in order.
	var cmds rueidis.Commands
	for i := 0; i < 150; i++ {
		cmds = append(cmds, c.B().Rpush().Key("multi").Element(strconv.Itoa(i)).Build())
	}
	for i, r := range c.DoMulti(ctx, cmds...) {
		if got, err := r.AsInt64(); err != nil || got != int64(i+1) {
			t.Fatalf("pipelined RPUSH #%d = %d, %v", i, got, err)
		}
	}
	cmds = cmds[:0]
	for i := 0; i < 150; i++ {
		cmds = append(cmds, c.B().Lpop().Key("multi").Build())
	}
	for i, r := range c.DoMulti(ctx, cmds...) {
		if got, err := r.ToString(); err != nil || got != strconv.Itoa(i) {
			t.Fatalf("pipelined LPOP #%d = %q, %v", i, got, err)
		}
	}

	// CLIENT INFO shows what rueidis said about itself on connect.
	info, err := c.Do(ctx, c.B().ClientInfo().Build()).ToString()
	if err != nil || !strings.Contains(info, " resp=3 ") || !strings.Contains(info, " lib-name=rueidis ") {
		t.Fatalf("CLIENT INFO = %q, %v; want resp=3 and lib-name=rueidis", info, err)
	}
}

func TestRueidis_BlockingPop(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	c := e2eRueidisNoCache(t, e.Qgate.Addr)

	type result struct {
		vals []string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		v, err := c.Do(ctx, c.B().Blpop().Key("email_queue").Timeout(0).Build()).AsStrSlice()
		done <- result{v, err}
	}()
	e2eEventually(t, "BLPOP to block", func() bool { return e.Qgate.Server.Stats().BlockedClients == 1 })
	if got, err := c.Do(ctx, c.B().Rpush().Key("email_queue").Element("task").Build()).AsInt64(); err != nil || got != 1 {
		t.Fatalf("RPUSH while another command of the same client is blocked = %d, %v", got, err)
	}
	r := e2eRecv(t, "BLPOP reply", done)
	if r.err != nil || !reflect.DeepEqual(r.vals, []string{"email_queue", "task"}) {
		t.Fatalf("BLPOP = %q, %v", r.vals, r.err)
	}
	start := time.Now()
	if err := c.Do(ctx, c.B().Brpop().Key("email_queue").Timeout(0.2).Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Fatalf("BRPOP timeout: err = %v, want nil reply", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Fatalf("BRPOP 0.2 returned after %s", d)
	}
}

func TestRueidis_PubSub(t *testing.T) {
	t.Parallel()
	e := e2eStart(t)
	ctx := e2eCtx(t)
	c := e2eRueidisNoCache(t, e.Qgate.Addr)
	admin := e.Client(t, 3)

	msgs := make(chan rueidis.PubSubMessage, 16)
	subs := make(chan rueidis.PubSubSubscription, 16)
	rctx, stop := context.WithCancel(rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) { subs <- s }))
	defer stop()
	received := make(chan error, 1)
	go func() {
		received <- c.Receive(rctx, c.B().Subscribe().Channel("orders", "refunds").Build(), func(m rueidis.PubSubMessage) { msgs <- m })
	}()
	for _, want := range []rueidis.PubSubSubscription{{Kind: "subscribe", Channel: "orders", Count: 1}, {Kind: "subscribe", Channel: "refunds", Count: 2}} {
		if got := e2eRecv(t, "subscription", subs); got != want {
			t.Fatalf("subscription %+v, want %+v", got, want)
		}
	}
	patterns := make(chan rueidis.PubSubMessage, 16)
	go func() {
		_ = c.Receive(rctx, c.B().Psubscribe().Pattern("orders.*").Build(), func(m rueidis.PubSubMessage) { patterns <- m })
	}()
	e2eEventually(t, "PUBSUB NUMPAT 1", func() bool { n, err := admin.PubSubNumPat(ctx).Result(); return err == nil && n == 1 })

	if got, err := c.Do(ctx, c.B().Publish().Channel("orders").Message("o-1").Build()).AsInt64(); err != nil || got != 1 {
		t.Fatalf("PUBLISH orders = %d, %v; want 1", got, err)
	}
	if got, want := e2eRecv(t, "message", msgs), (rueidis.PubSubMessage{Channel: "orders", Message: "o-1"}); got != want {
		t.Fatalf("message %+v, want %+v", got, want)
	}
	if err := e.Direct.Publish(ctx, "orders.eu", "from redis").Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := e2eRecv(t, "pattern message", patterns), (rueidis.PubSubMessage{Pattern: "orders.*", Channel: "orders.eu", Message: "from redis"}); got != want {
		t.Fatalf("pattern message %+v, want %+v", got, want)
	}
	if got, err := admin.PubSubNumSub(ctx, "orders", "refunds").Result(); err != nil || got["orders"] != 1 || got["refunds"] != 1 {
		t.Fatalf("PUBSUB NUMSUB = %v, %v", got, err)
	}
	stop()
	if err := e2eRecv(t, "Receive to return", received); err == nil {
		t.Log("Receive returned nil after cancel")
	}
}
