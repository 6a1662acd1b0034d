package wait_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/queue/wait"
)

const (
	bound    = 10 * time.Second // generous upper bound of every condition
	hubName  = "qgate-wait-test"
	poolSize = 4
)

// hubClient is the Hub's pooled client (named, so CLIENT LIST can count its connections).
func hubClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: poolSize, ClientName: hubName, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newHub(t testing.TB, cfg wait.Config) *wait.Hub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	h, err := wait.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// eventually polls cond until it holds or bound passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s", what, bound)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// popTake is a plain LPOP (or RPOP) take.
func popTake(c redis.Cmdable, left bool) wait.TakeFunc {
	return func(ctx context.Context, key string) (any, bool, error) {
		var v string
		var err error
		if left {
			v, err = c.LPop(ctx, key).Result()
		} else {
			v, err = c.RPop(ctx, key).Result()
		}
		if err == redis.Nil {
			return nil, false, nil
		}
		return v, err == nil, err
	}
}

// transitPop moves the head of a list into a hash (the recoverable pop the engine's transit_pop is).
var transitPop = redis.NewScript(`
local v = redis.call('LPOP', KEYS[1])
if not v then return false end
redis.call('HSET', KEYS[2], ARGV[1], v)
return v`)

func transitKey(key string) string { return "{" + key + "}:transit" }

func transitTake(c redis.Scripter, id string) wait.TakeFunc {
	return func(ctx context.Context, key string) (any, bool, error) {
		v, err := transitPop.Run(ctx, c, []string{key, transitKey(key)}, id).Text()
		if err == redis.Nil {
			return nil, false, nil
		}
		return v, err == nil, err
	}
}

// giveBackTo returns a transit-popped item to the head of its list.
func giveBackTo(c *redis.Client, id string) wait.GiveBackFunc {
	return func(key string, v any) {
		ctx := context.Background()
		_, _ = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.LPush(ctx, key, v)
			p.HDel(ctx, transitKey(key), id)
			return nil
		})
	}
}

type outcome struct {
	res wait.Result
	ok  bool
	err error
	at  time.Time
}

func goWait(h *wait.Hub, ctx context.Context, timeout time.Duration, req wait.Request) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		r, ok, err := h.Wait(ctx, timeout, req)
		ch <- outcome{r, ok, err, time.Now()}
	}()
	return ch
}

func recv(t testing.TB, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(bound):
		t.Fatalf("wait not ended after %s", bound)
		return outcome{}
	}
}

func cli(t testing.TB, r *proxytest.Redis, args ...string) string {
	t.Helper()
	bin, err := proxytest.RedisCLIPath()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append([]string{"-p", strconv.Itoa(r.Port)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestMissingFlags_Union(t *testing.T) {
	for _, tc := range []struct{ cur, want string }{
		{"", "Kgl"}, {"Ex", "Kgl"}, {"KEA", ""}, {"A", "K"}, {"Kl", "g"}, {"glK", ""}, {"K$", "gl"},
	} {
		if got := wait.MissingFlags(tc.cur); got != tc.want {
			t.Errorf("MissingFlags(%q) = %q, want %q", tc.cur, got, tc.want)
		}
	}
}

func TestHub_ConfigSetKeepsOtherFlags(t *testing.T) {
	r := proxytest.StartRedis(t, "--notify-keyspace-events", "Ex")
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	flags := c.ConfigGet(context.Background(), "notify-keyspace-events").Val()["notify-keyspace-events"]
	for _, f := range "ExKgl" {
		if !strings.ContainsRune(flags, f) {
			t.Errorf("notify-keyspace-events = %q, lacks %q", flags, f)
		}
	}
	if got, want := h.Stats().Mode, "keyspace"; got != want {
		t.Errorf("mode = %q, want %q", got, want)
	}
}

// An item pushed by another program (redis-cli) wakes the waiter through a keyspace notification: the
// safety poll is off, so nothing else could.
func TestHub_ExternalPushWakes(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c, SafetyInterval: -1})
	ch := goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q"}, Take: popTake(c, true)})
	eventually(t, "subscription confirmed", func() bool { return h.Stats().SubscribeConfirms >= 1 })
	if got, want := cli(t, r, "RPUSH", "q", "hello"), "(integer) 1"; got != want && got != "1" {
		t.Fatalf("RPUSH = %q, want %q", got, want)
	}
	o := recv(t, ch)
	if o.err != nil || !o.ok {
		t.Fatalf("Wait = %v, %v, %v; want served", o.res, o.ok, o.err)
	}
	if got, want := o.res, (wait.Result{Key: "q", Value: "hello"}); got != want {
		t.Errorf("result = %+v, want %+v", got, want)
	}
	if got := h.Stats().Notifications; got < 1 {
		t.Errorf("notifications = %d, want ≥ 1", got)
	}
}

// Waiters on one key are served in the order they blocked, both ends mixed (one FIFO per key, as in
// Redis).
func TestHub_FIFOOnOneKey(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	const n = 6
	var ws []*wait.Waiter
	for i := range n {
		w, err := h.Add(wait.Request{Keys: []string{"q"}, Take: popTake(c, i%2 == 0)})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	eventually(t, "subscription confirmed", func() bool { return h.Stats().SubscribeConfirms >= 1 })
	// Pushed one by one: each item is taken before the next arrives, so the ends do not matter.
	for i := range n {
		if err := c.RPush(context.Background(), "q", "item"+strconv.Itoa(i)).Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ws[i].Done():
		case <-time.After(bound):
			t.Fatalf("waiter %d not served", i)
		}
	}
	for i, w := range ws {
		res, ok, err := w.Result()
		if err != nil || !ok {
			t.Fatalf("waiter %d: %v %v", i, ok, err)
		}
		if got, want := res.Value, "item"+strconv.Itoa(i); got != want {
			t.Errorf("waiter %d got %v, want %v", i, got, want)
		}
	}
	// All at once: still in blocking order.
	ws = ws[:0]
	for range n {
		w, _ := h.Add(wait.Request{Keys: []string{"q2"}, Take: popTake(c, true)})
		ws = append(ws, w)
	}
	eventually(t, "subscription confirmed", func() bool { return h.Stats().SubscribeConfirms >= 2 })
	vals := make([]any, n)
	for i := range vals {
		vals[i] = "v" + strconv.Itoa(i)
	}
	c.RPush(context.Background(), "q2", vals...)
	for i, w := range ws {
		res, _, _ := w.Result()
		if got, want := res.Value, vals[i]; got != want {
			t.Errorf("batch waiter %d got %v, want %v", i, got, want)
		}
	}
}

// clientCount counts the connections of the Hub's client (its pool and its pub/sub connections).
func clientCount(ctx context.Context, c *redis.Client) int {
	list, err := c.ClientList(ctx).Result()
	if err != nil {
		return -1
	}
	return strings.Count(list, "name="+hubName+" ")
}

// 300 keys with one waiter each (the old design served 18 at-least-once queues and starved the rest),
// one item pushed to each: all served, on at most pool + 1 backend connections.
func TestHub_ManyKeysBoundedConnections(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	const keys = 300
	var ws []*wait.Waiter
	for i := range keys {
		w, err := h.Add(wait.Request{Keys: []string{"k" + strconv.Itoa(i)}, Take: transitTake(c, "me")})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	watch := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer watch.Close()
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // sample the connection count while the test runs
		defer wg.Done()
		for {
			if n := int64(clientCount(context.Background(), watch)); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	eventually(t, "300 subscriptions confirmed", func() bool { return h.Stats().SubscribeConfirms >= keys })
	_, err := watch.Pipelined(context.Background(), func(p redis.Pipeliner) error {
		for i := range keys {
			p.RPush(context.Background(), "k"+strconv.Itoa(i), "item"+strconv.Itoa(i))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		select {
		case <-w.Done():
		case <-time.After(bound):
			t.Fatalf("waiter %d of %d not served (stats %+v)", i, keys, h.Stats())
		}
		res, ok, err := w.Result()
		if got, want := res.Value, "item"+strconv.Itoa(i); !ok || err != nil || got != want {
			t.Fatalf("waiter %d: %v %v %v, want %v", i, got, ok, err, want)
		}
	}
	close(stop)
	wg.Wait()
	if got, want := peak.Load(), int64(poolSize+1); got > want || got < 1 {
		t.Errorf("peak backend connections of the hub's client = %d, want 1..%d", got, want)
	}
	s := h.Stats()
	if got, want := s.PubSubConns, int64(1); got != want {
		t.Errorf("pub/sub connections = %d, want %d", got, want)
	}
	eventually(t, "keys unwatched", func() bool { return h.Stats().WatchedKeys == 0 })
	t.Logf("peak connections %d; stats %+v", peak.Load(), h.Stats())
}

// A waiter on several keys is served by the key that gets an item, and leaves every other key's FIFO.
func TestHub_WaiterOnManyKeys(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	keys := []string{"a", "b", "c", "d", "e"}
	ch := goWait(h, context.Background(), 0, wait.Request{Keys: keys, Take: popTake(c, true)})
	eventually(t, "5 subscriptions confirmed", func() bool { return h.Stats().SubscribeConfirms >= 5 })
	c.LPush(context.Background(), "d", "x")
	o := recv(t, ch)
	if got, want := o.res, (wait.Result{Key: "d", Value: "x"}); !o.ok || got != want {
		t.Fatalf("Wait = %+v %v %v, want %+v", got, o.ok, o.err, want)
	}
	for _, k := range keys {
		if h.HasWaiters(k) {
			t.Errorf("HasWaiters(%q) after the wait was served", k)
		}
	}
	// A later item on another key stays in Redis.
	c.LPush(context.Background(), "a", "y")
	h.Wake("a")
	if got, want := c.LLen(context.Background(), "a").Val(), int64(1); got != want {
		t.Errorf("LLEN a = %d, want %d", got, want)
	}
}

// A wait that times out returns nothing and takes nothing: an item pushed afterwards stays in Redis.
func TestHub_TimeoutLeavesItem(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	start := time.Now()
	o := recv(t, goWait(h, context.Background(), 100*time.Millisecond, wait.Request{Keys: []string{"q"}, Take: popTake(c, true)}))
	if o.ok || o.err != nil {
		t.Fatalf("Wait = %+v %v %v, want a timeout", o.res, o.ok, o.err)
	}
	if d := o.at.Sub(start); d < 100*time.Millisecond {
		t.Errorf("timed out after %s, before its 100ms", d)
	}
	takes := h.Stats().Takes
	c.RPush(context.Background(), "q", "x")
	h.Wake("q")
	if got := h.Stats().Takes; got != takes {
		t.Errorf("takes after the timeout: %d, want %d", got, takes)
	}
	if got, want := c.LLen(context.Background(), "q").Val(), int64(1); got != want {
		t.Errorf("LLEN = %d, want %d", got, want)
	}
}

// blockingTake pops into the transit hash, then holds the result until release is closed.
func blockingTake(c *redis.Client, popped chan<- struct{}, release <-chan struct{}) wait.TakeFunc {
	take := transitTake(c, "me")
	var once sync.Once
	return func(ctx context.Context, key string) (any, bool, error) {
		v, ok, err := take(ctx, key)
		if ok {
			once.Do(func() { close(popped) })
			<-release
		}
		return v, ok, err
	}
}

// A client that leaves while its take is in flight loses nothing: the result goes to GiveBack, which
// puts the item back into its list.
func TestHub_CancelDuringTakeGivesBack(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	popped, release := make(chan struct{}), make(chan struct{})
	var given atomic.Int64
	gb := giveBackTo(c, "me")
	ctx, cancel := context.WithCancel(context.Background())
	ch := goWait(h, ctx, 0, wait.Request{Keys: []string{"q"}, Take: blockingTake(c, popped, release),
		GiveBack: func(key string, v any) { gb(key, v); given.Add(1) }})
	eventually(t, "subscription confirmed", func() bool { return h.Stats().SubscribeConfirms >= 1 })
	c.RPush(context.Background(), "q", "precious")
	<-popped
	cancel()
	o := recv(t, ch) // returns at once, the take still in flight
	if !errors.Is(o.err, context.Canceled) || o.ok {
		t.Fatalf("Wait = %+v %v %v, want context.Canceled", o.res, o.ok, o.err)
	}
	if got, want := c.LLen(context.Background(), "q").Val(), int64(0); got != want {
		t.Fatalf("LLEN while the take is in flight = %d, want %d", got, want)
	}
	close(release)
	eventually(t, "item given back", func() bool { return given.Load() == 1 })
	if got, want := c.LRange(context.Background(), "q", 0, -1).Val(), []string{"precious"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("list = %v, want %v", got, want)
	}
	if got := c.HLen(context.Background(), transitKey("q")).Val(); got != 0 {
		t.Errorf("transit fields left: %d", got)
	}
}

// A timeout that passes while a take is in flight returns the take's result (Redis would have served
// the client at that instant).
func TestHub_TimeoutDuringTakeReturnsResult(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	popped, release := make(chan struct{}), make(chan struct{})
	w, err := h.Add(wait.Request{Keys: []string{"q"}, Take: blockingTake(c, popped, release)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "subscription confirmed", func() bool { return h.Stats().SubscribeConfirms >= 1 })
	c.RPush(context.Background(), "q", "late")
	<-popped
	ch := make(chan outcome, 1)
	go func() { res, ok, err := w.Stop(); ch <- outcome{res, ok, err, time.Now()} }()
	select {
	case <-ch:
		t.Fatal("Stop returned while the take was in flight")
	default:
	}
	close(release)
	o := recv(t, ch)
	if got, want := o.res, (wait.Result{Key: "q", Value: "late"}); !o.ok || o.err != nil || got != want {
		t.Fatalf("Stop = %+v %v %v, want %+v", got, o.ok, o.err, want)
	}
}

// With CONFIG disabled (renamed away, as on managed Redis), the Hub polls the keys with waiters and
// still serves an external push within the poll bound.
func TestHub_PollModeWhenConfigRefused(t *testing.T) {
	r := proxytest.StartRedis(t, "--rename-command", "CONFIG", "")
	c := hubClient(t, r.Addr)
	const interval = 50 * time.Millisecond
	h := newHub(t, wait.Config{Client: c, PollInterval: interval, SafetyInterval: -1})
	if got, want := h.Stats().Mode, "poll"; got != want {
		t.Fatalf("mode = %q, want %q", got, want)
	}
	ch := goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q"}, Take: popTake(c, true)})
	eventually(t, "waiter registered", func() bool { return h.Stats().Waiters == 1 })
	pushed := time.Now()
	cli(t, r, "RPUSH", "q", "x")
	o := recv(t, ch)
	if !o.ok || o.err != nil {
		t.Fatalf("Wait = %+v %v %v", o.res, o.ok, o.err)
	}
	// Generous: one poll interval plus scheduling on a loaded 2-core machine.
	if d := o.at.Sub(pushed); d > interval+time.Second {
		t.Errorf("served %s after the push, poll interval %s", d, interval)
	}
	// Wake from the same process serves without waiting for the poll.
	ch = goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q"}, Take: popTake(c, true)})
	eventually(t, "waiter registered", func() bool { return h.Stats().Waiters == 1 })
	c.RPush(context.Background(), "q", "y")
	h.Wake("q")
	if o = recv(t, ch); !o.ok || o.res.Value != "y" {
		t.Fatalf("Wait = %+v %v %v", o.res, o.ok, o.err)
	}
}

// The pub/sub connection killed while clients wait: go-redis reconnects and resubscribes, the
// confirmations wake the keys, and a push after that is served (the safety poll is off).
func TestHub_PubSubKilledStillServes(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c, SafetyInterval: -1})
	ch := goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q"}, Take: popTake(c, true)})
	ch2 := goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q2"}, Take: popTake(c, true)})
	eventually(t, "subscriptions confirmed", func() bool { return h.Stats().SubscribeConfirms >= 2 })
	if got := cli(t, r, "CLIENT", "KILL", "TYPE", "pubsub"); got != "(integer) 1" && got != "1" {
		t.Fatalf("CLIENT KILL = %q, want 1", got)
	}
	// An item that arrives while the connection is down is found by the resubscription's wake.
	cli(t, r, "RPUSH", "q2", "during")
	eventually(t, "reconnected", func() bool {
		s := h.Stats()
		return s.Reconnects >= 1 && s.SubscribeConfirms >= 4
	})
	cli(t, r, "RPUSH", "q", "after")
	if o := recv(t, ch); !o.ok || o.res.Value != "after" {
		t.Fatalf("Wait = %+v %v %v", o.res, o.ok, o.err)
	}
	if o := recv(t, ch2); !o.ok || o.res.Value != "during" {
		t.Fatalf("Wait = %+v %v %v", o.res, o.ok, o.err)
	}
}

// A waited key overwritten with another type: the safety poll wakes it and the take's WRONGTYPE ends
// the wait with that error (not retried).
func TestHub_WrongTypeEndsWait(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c, SafetyInterval: 100 * time.Millisecond})
	ch := goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q"}, Take: popTake(c, true)})
	eventually(t, "subscription confirmed", func() bool { return h.Stats().SubscribeConfirms >= 1 })
	c.Set(context.Background(), "q", "string", 0)
	o := recv(t, ch)
	if o.err == nil || !strings.HasPrefix(o.err.Error(), "WRONGTYPE") {
		t.Fatalf("Wait = %+v %v %v, want WRONGTYPE", o.res, o.ok, o.err)
	}
}

// A transient take error keeps the waiter, which is served once the take works.
func TestHub_TransientErrorRetried(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	var calls atomic.Int64
	take := popTake(c, true)
	ch := goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q"}, Take: func(ctx context.Context, key string) (any, bool, error) {
		if calls.Add(1) <= 3 {
			return nil, false, errors.New("connection reset")
		}
		return take(ctx, key)
	}})
	eventually(t, "subscription confirmed", func() bool { return h.Stats().SubscribeConfirms >= 1 })
	c.RPush(context.Background(), "q", "x")
	if o := recv(t, ch); !o.ok || o.res.Value != "x" {
		t.Fatalf("Wait = %+v %v %v", o.res, o.ok, o.err)
	}
	if got := h.Stats().TakeErrors; got < 1 {
		t.Errorf("take errors = %d, want ≥ 1", got)
	}
}

// Close ends every wait promptly with ErrClosed.
func TestHub_CloseEndsWaits(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	var chs []<-chan outcome
	for i := range 20 {
		chs = append(chs, goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q" + strconv.Itoa(i%3)}, Take: popTake(c, true)}))
	}
	eventually(t, "waiters registered", func() bool { return h.Stats().Waiters == 20 })
	start := time.Now()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		if o := recv(t, ch); !errors.Is(o.err, wait.ErrClosed) {
			t.Fatalf("Wait after Close = %v, want ErrClosed", o.err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s", d)
	}
	if _, err := h.Add(wait.Request{Keys: []string{"q"}, Take: popTake(c, true)}); !errors.Is(err, wait.ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
}

// On Redis Cluster notifications are node-local: keys in slots of all three masters are each
// subscribed on their owner, and all are served.
func TestHub_Cluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	addrs := proxytest.StartCluster(t, 3)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: poolSize, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	h := newHub(t, wait.Config{Client: c, SafetyInterval: -1})
	if got, want := h.Stats().Mode, "keyspace"; got != want {
		t.Fatalf("mode = %q, want %q", got, want)
	}
	const keys = 30
	var chs []<-chan outcome
	for i := range keys {
		k := "ck" + strconv.Itoa(i)
		chs = append(chs, goWait(h, context.Background(), 0, wait.Request{Keys: []string{k}, Take: popTake(c, true)}))
	}
	eventually(t, "subscriptions confirmed", func() bool { return h.Stats().SubscribeConfirms >= keys })
	for i := range keys {
		if err := c.RPush(context.Background(), "ck"+strconv.Itoa(i), "v"+strconv.Itoa(i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, ch := range chs {
		if o := recv(t, ch); !o.ok || o.res.Value != "v"+strconv.Itoa(i) {
			t.Fatalf("key %d: Wait = %+v %v %v", i, o.res, o.ok, o.err)
		}
	}
	if got, want := h.Stats().PubSubConns, int64(3); got != want {
		t.Errorf("pub/sub connections = %d, want %d (one per master)", got, want)
	}
	// A waiter on keys of different slots (and nodes).
	ch := goWait(h, context.Background(), 0, wait.Request{Keys: []string{"ck1", "ck2", "ck3"}, Take: popTake(c, true)})
	eventually(t, "subscriptions confirmed", func() bool { return h.Stats().SubscribeConfirms >= keys+3 })
	c.RPush(context.Background(), "ck3", "z")
	if o := recv(t, ch); !o.ok || o.res != (wait.Result{Key: "ck3", Value: "z"}) {
		t.Fatalf("Wait = %+v %v %v", o.res, o.ok, o.err)
	}
}

// A waiter on two keys whose take on one is in flight is not taken for on the other at the same time;
// the other key's item goes to the next waiter once the first take succeeded (never two results for one
// waiter, FIFO kept).
func TestHub_BusyWaiterDefersOtherKey(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	popped, release := make(chan struct{}), make(chan struct{})
	var takesB atomic.Int64
	block := blockingTake(c, popped, release)
	plain := popTake(c, true)
	w1, _ := h.Add(wait.Request{Keys: []string{"a", "b"}, Take: func(ctx context.Context, key string) (any, bool, error) {
		if key == "b" {
			takesB.Add(1)
			return plain(ctx, key)
		}
		return block(ctx, key)
	}})
	w2, _ := h.Add(wait.Request{Keys: []string{"b"}, Take: plain})
	eventually(t, "subscriptions confirmed", func() bool { return h.Stats().SubscribeConfirms >= 2 })
	// Each confirmation wakes its key: wait for those takes (w1's on a and on b, both empty: an empty
	// take ends a key's round) to be over, or the one on b could land after before is read.
	eventually(t, "the confirmations' empty takes done", func() bool { return h.Stats().EmptyTakes >= 2 && takesB.Load() >= 1 })
	before := takesB.Load()
	c.RPush(context.Background(), "a", "fromA")
	<-popped // w1's take on a is in flight
	wakes := h.Stats().Wakes
	c.RPush(context.Background(), "b", "fromB")
	eventually(t, "b woken", func() bool { return h.Stats().Wakes > wakes })
	close(release)
	res1, ok1, _ := w1.Result()
	res2, ok2, _ := w2.Result()
	if got, want := res1, (wait.Result{Key: "a", Value: "fromA"}); !ok1 || got != want {
		t.Errorf("w1 = %+v, want %+v", got, want)
	}
	if got, want := res2, (wait.Result{Key: "b", Value: "fromB"}); !ok2 || got != want {
		t.Errorf("w2 = %+v, want %+v", got, want)
	}
	if got := takesB.Load() - before; got != 0 {
		t.Errorf("takes on b for the busy waiter: %d, want 0", got)
	}
}

// BenchmarkHub_WakeLatency measures push (by another client) → item taken, once the waiter's first
// (empty) take is done. Modes: keyspace notifications; poll only (100 ms); poll only plus Wake after
// the push (what the engine does for its own pushes). Reported: p50 and p99 in µs.
func BenchmarkHub_WakeLatency(b *testing.B) {
	for _, mode := range []string{"keyspace", "poll", "wake"} {
		b.Run(mode, func(b *testing.B) {
			r := proxytest.StartRedis(b)
			c := hubClient(b, r.Addr)
			cfg := wait.Config{Client: c}
			if mode != "keyspace" {
				cfg.PollOnly = true
			}
			h := newHub(b, cfg)
			pusher := r.Client(b)
			ctx := context.Background()
			var lat []time.Duration
			take := popTake(c, true)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				var got atomic.Int64
				key := "q" + strconv.Itoa(i)
				takes := h.Stats().Takes
				w, err := h.Add(wait.Request{Keys: []string{key}, Take: func(ctx context.Context, key string) (any, bool, error) {
					v, ok, err := take(ctx, key)
					if ok {
						got.Store(time.Now().UnixNano())
					}
					return v, ok, err
				}})
				if err != nil {
					b.Fatal(err)
				}
				// The first (empty) take: after the confirmation (keyspace) or at once (poll).
				eventually(b, "first take", func() bool { return h.Stats().Takes > takes })
				b.StartTimer()
				t0 := time.Now()
				pusher.RPush(ctx, key, "x")
				if mode == "wake" {
					h.Wake(key)
				}
				<-w.Done()
				b.StopTimer()
				lat = append(lat, time.Duration(got.Load()-t0.UnixNano()))
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// An item that arrived after the caller's non-blocking try and before Add is served without waiting
// for a poll: by the SUBSCRIBE confirmation (keyspace mode) or at once (poll mode). Polls are off.
func TestHub_ItemBeforeAddServed(t *testing.T) {
	for _, pollOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("pollOnly=%v", pollOnly), func(t *testing.T) {
			r := proxytest.StartRedis(t)
			c := hubClient(t, r.Addr)
			h := newHub(t, wait.Config{Client: c, PollOnly: pollOnly, PollInterval: time.Hour, SafetyInterval: -1})
			c.RPush(context.Background(), "q", "early")
			o := recv(t, goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q"}, Take: popTake(c, true)}))
			if got, want := o.res, (wait.Result{Key: "q", Value: "early"}); !o.ok || got != want {
				t.Fatalf("Wait = %+v %v %v, want %+v", got, o.ok, o.err, want)
			}
		})
	}
}

// Abandon after the wait was served but before the result was collected gives the result back.
func TestHub_AbandonServedGivesBack(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	var given []any
	w, _ := h.Add(wait.Request{Keys: []string{"q"}, Take: popTake(c, true),
		GiveBack: func(key string, v any) { given = append(given, v) }})
	c.RPush(context.Background(), "q", "x")
	select {
	case <-w.Done():
	case <-time.After(bound):
		t.Fatal("not served")
	}
	w.Abandon()
	if got, want := fmt.Sprint(given), "[x]"; got != want {
		t.Errorf("given back %s, want %s", got, want)
	}
	if got, want := h.Stats().GivenBack, int64(1); got != want {
		t.Errorf("GivenBack = %d, want %d", got, want)
	}
}

// lastTake is popTake (LPOP) with an LLEN in the same round trip: a take that leaves the key empty
// returns its result as a wait.Last.
func lastTake(c *redis.Client) wait.TakeFunc {
	return func(ctx context.Context, key string) (any, bool, error) {
		var pop *redis.StringCmd
		var n *redis.IntCmd
		_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			pop, n = p.LPop(ctx, key), p.LLen(ctx, key)
			return nil
		})
		v, err := pop.Result()
		switch {
		case err == redis.Nil:
			return nil, false, nil
		case err != nil:
			return nil, false, err
		case n.Val() == 0:
			return wait.Last{Value: v}, true, nil
		}
		return v, true, nil
	}
}

// A take that reports the key empty after it (wait.Last) ends the key's pass: the next waiter is not
// sent a take that would find nothing, and is served by the next push. A plain take costs one empty
// take after the push's (the control).
func TestHub_LastTakeEndsPass(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	for _, tc := range []struct {
		name string
		take wait.TakeFunc
		last bool
	}{
		{"last", lastTake(c), true},
		{"plain", popTake(c, true), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub(t, wait.Config{Client: c, SafetyInterval: -1})
			key := "q-" + tc.name
			var ws []*wait.Waiter
			for range 3 {
				w, err := h.Add(wait.Request{Keys: []string{key}, Take: tc.take})
				if err != nil {
					t.Fatal(err)
				}
				ws = append(ws, w)
			}
			// The confirmation's wake makes one take, which finds nothing.
			eventually(t, "subscription confirmed and its take done", func() bool {
				s := h.Stats()
				return s.SubscribeConfirms >= 1 && s.EmptyTakes >= 1
			})
			before := h.Stats()
			for i := range 2 {
				if err := c.RPush(context.Background(), key, "item"+strconv.Itoa(i)).Err(); err != nil {
					t.Fatal(err)
				}
				res, ok, err := ws[i].Result()
				if err != nil || !ok {
					t.Fatalf("waiter %d: %v %v", i, ok, err)
				}
				if got, want := res.Value, "item"+strconv.Itoa(i); got != want {
					t.Fatalf("waiter %d got %v, want %v", i, got, want)
				}
			}
			if !tc.last {
				// Its pass went on to the next waiter, whose take found nothing (or met the second
				// push, and the pass after it found nothing): the empty take lands after the result.
				eventually(t, "an empty take", func() bool { return h.Stats().EmptyTakes > before.EmptyTakes })
				ws[2].Stop()
				return
			}
			after := h.Stats()
			if got, want := after.EmptyTakes-before.EmptyTakes, int64(0); got != want {
				t.Errorf("empty takes during two pushes = %d, want %d", got, want)
			}
			if got, want := after.Takes-before.Takes, int64(2); got != want {
				t.Errorf("takes during two pushes = %d, want %d", got, want)
			}
			ws[2].Stop()
		})
	}
}

// A take that answers Later is not served and its key is served again after Later's delay, with no
// push or other wake in between; the later take gets the item.
func TestHub_LaterTakeServedAgainAfterDelay(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c, SafetyInterval: -1})
	var calls atomic.Int64
	var laterAt atomic.Int64
	take := popTake(c, true)
	ch := goWait(h, context.Background(), 0, wait.Request{Keys: []string{"q"}, Take: func(ctx context.Context, key string) (any, bool, error) {
		n, err := c.LLen(ctx, key).Result()
		if err != nil || n == 0 {
			return nil, false, err
		}
		if calls.Add(1) == 1 {
			laterAt.Store(time.Now().UnixNano())
			return wait.Later{After: 50 * time.Millisecond}, false, nil
		}
		return take(ctx, key)
	}})
	eventually(t, "subscription confirmed", func() bool { return h.Stats().SubscribeConfirms >= 1 })
	c.RPush(context.Background(), "q", "x")
	o := recv(t, ch)
	if !o.ok || o.res.Value != "x" {
		t.Fatalf("Wait = %+v %v %v", o.res, o.ok, o.err)
	}
	if got, want := calls.Load(), int64(2); got != want {
		t.Fatalf("takes with an item = %d, want %d (one Later, then the take)", got, want)
	}
	if d := o.at.Sub(time.Unix(0, laterAt.Load())); d < 50*time.Millisecond {
		t.Errorf("served %s after the Later, want at least its 50ms", d)
	}
	if got := h.Stats().LaterTakes; got != 1 {
		t.Errorf("LaterTakes = %d, want 1", got)
	}
}

// Waits with an Order are served in that order, whatever order they were added in.
func TestHub_OrderedWaitsServedByOrder(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := hubClient(t, r.Addr)
	h := newHub(t, wait.Config{Client: c})
	var chs []<-chan outcome
	for _, order := range []int64{30, 10, 20} {
		w, err := h.Add(wait.Request{Keys: []string{"q"}, Take: popTake(c, true), Order: order})
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan outcome, 1)
		go func() { r, ok, err := w.Result(); ch <- outcome{r, ok, err, time.Now()} }()
		chs = append(chs, ch)
	}
	eventually(t, "subscription confirmed", func() bool { return h.Stats().SubscribeConfirms >= 1 })
	c.RPush(context.Background(), "q", "a", "b", "c")
	got := []any{recv(t, chs[0]).res.Value, recv(t, chs[1]).res.Value, recv(t, chs[2]).res.Value}
	if want := []any{"c", "a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("waits ordered 30, 10, 20 got %v, want %v", got, want)
	}
}

// On a Cluster, takes stuck on one master (frozen: no reply, no error) hold at most half the workers:
// waiters on the other masters' keys are still served. Before, 8 stuck takes held every worker.
func TestHub_ClusterStuckMasterHoldsHalfTheWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	addrs := proxytest.StartCluster(t, 3)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: poolSize, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	h := newHub(t, wait.Config{Client: c, SafetyInterval: -1})
	ctx := context.Background()
	// The master of the first key is the "frozen" one: takes on its keys block until released.
	stuckNode, err := c.MasterForKey(ctx, "sk0")
	if err != nil {
		t.Fatal(err)
	}
	onStuck := func(k string) bool {
		n, err := c.MasterForKey(ctx, k)
		return err == nil && n == stuckNode
	}
	release := make(chan struct{})
	var blocked atomic.Int64
	stuckTake := func(context.Context, string) (any, bool, error) {
		blocked.Add(1)
		<-release
		return nil, false, nil
	}
	var stuckKeys, liveKeys []string
	for i := 0; len(stuckKeys) < 12 || len(liveKeys) < 6; i++ {
		k := "sk" + strconv.Itoa(i)
		if onStuck(k) {
			stuckKeys = append(stuckKeys, k)
		} else {
			liveKeys = append(liveKeys, k)
		}
	}
	for _, k := range stuckKeys[:12] {
		goWait(h, ctx, 0, wait.Request{Keys: []string{k}, Take: stuckTake})
	}
	var chs []<-chan outcome
	for _, k := range liveKeys[:6] {
		chs = append(chs, goWait(h, ctx, 0, wait.Request{Keys: []string{k}, Take: popTake(c, true)}))
	}
	eventually(t, "subscriptions confirmed", func() bool { return h.Stats().SubscribeConfirms >= 18 })
	for _, k := range stuckKeys[:12] {
		h.Wake(k)
	}
	eventually(t, "takes stuck on one master", func() bool { return blocked.Load() >= wait.DefaultWorkers/2 })
	for i, k := range liveKeys[:6] {
		if err := c.RPush(ctx, k, "v"+strconv.Itoa(i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, ch := range chs {
		if o := recv(t, ch); !o.ok || o.res.Value != "v"+strconv.Itoa(i) {
			t.Fatalf("live key %d: Wait = %+v %v %v", i, o.res, o.ok, o.err)
		}
	}
	if got, max := blocked.Load(), int64(wait.DefaultWorkers/2); got != max {
		t.Errorf("takes stuck on one master = %d, want %d (half the workers)", got, max)
	}
	close(release)
}
