package queue_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/queue"
)

// Mux tests against a real redis-server: ordering, leadership hand-off, the leaders bound on backend
// connections, errors and contexts.

// execHook records the multiplexer's pipelines: how many run at once, their sizes, and lets a test
// hold them until it releases them.
type execHook struct {
	running, most atomic.Int32
	mu            sync.Mutex
	sizes         []int
	started       chan struct{} // a pipeline started (buffered)
	hold          chan struct{} // when not nil, pipelines wait for it to be closed
}

func newExecHook() *execHook { return &execHook{started: make(chan struct{}, 1024)} }

func (h *execHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *execHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if handshake(cmd) {
			return next(ctx, cmd)
		}
		return h.around(1, func() error { return next(ctx, cmd) })
	}
}

func (h *execHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if handshake(cmds[0]) {
			return next(ctx, cmds)
		}
		return h.around(len(cmds), func() error { return next(ctx, cmds) })
	}
}

// handshake reports a command of a new connection's handshake (it runs through the hooks too).
func handshake(cmd redis.Cmder) bool {
	name := cmd.Name()
	return name == "hello" || name == "client" || name == "auth" || name == "select"
}

func (h *execHook) around(n int, run func() error) error {
	for r := h.running.Add(1); ; {
		if most := h.most.Load(); r <= most || h.most.CompareAndSwap(most, r) {
			break
		}
	}
	defer h.running.Add(-1)
	h.mu.Lock()
	h.sizes = append(h.sizes, n)
	hold := h.hold
	h.mu.Unlock()
	select {
	case h.started <- struct{}{}:
	default: // nobody waits for this many
	}
	if hold != nil {
		<-hold
	}
	return run()
}

func (h *execHook) pipelines() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.sizes...)
}

func newMux(t *testing.T, r *proxytest.Redis, leaders int) (*queue.Mux, *redis.Client, *execHook) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, PoolSize: 64})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	h := newExecHook()
	c.AddHook(h)
	return queue.NewMux(c, leaders), c, h
}

// waitFor polls cond until it holds or a few seconds passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMux_BatchesStayInOrderAndContiguous(t *testing.T) {
	r := proxytest.StartRedis(t)
	m, c, h := newMux(t, r, 2)
	ctx := context.Background()
	const clients, batches, per = 64, 40, 3
	var wg sync.WaitGroup
	for g := range clients {
		wg.Go(func() {
			own := "own:" + strconv.Itoa(g)
			for b := range batches {
				cmds := make([]redis.Cmder, 0, 2*per)
				for i := range per {
					v := fmt.Sprintf("%d:%d:%d", g, b, i)
					cmds = append(cmds, redis.NewIntCmd(ctx, "rpush", "all", v), redis.NewIntCmd(ctx, "rpush", own, v))
				}
				m.RunBatch(ctx, cmds)
				for _, cmd := range cmds {
					if err := cmd.Err(); err != nil {
						t.Errorf("batch %d of client %d: %v", b, g, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for g := range clients {
		got, err := c.LRange(ctx, "own:"+strconv.Itoa(g), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != batches*per {
			t.Fatalf("client %d: %d items, want %d", g, len(got), batches*per)
		}
		for i, v := range got {
			if want := fmt.Sprintf("%d:%d:%d", g, i/per, i%per); v != want {
				t.Fatalf("client %d item %d: got %q, want %q", g, i, v, want)
			}
		}
	}
	all, err := c.LRange(ctx, "all", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(all), clients*batches*per; got != want {
		t.Fatalf("shared list: %d items, want %d", got, want)
	}
	for i := 0; i < len(all); i += per {
		var g, b int
		if _, err := fmt.Sscanf(all[i], "%d:%d:0", &g, &b); err != nil {
			t.Fatalf("item %d %q does not start a batch: %v", i, all[i], err)
		}
		for j := 1; j < per; j++ {
			if got, want := all[i+j], fmt.Sprintf("%d:%d:%d", g, b, j); got != want {
				t.Fatalf("batch not contiguous at %d: got %q, want %q", i+j, got, want)
			}
		}
	}
	if sizes := h.pipelines(); len(sizes) >= clients*batches {
		t.Errorf("%d pipelines for %d batches: nothing merged", len(sizes), clients*batches)
	}
}

func TestMux_LeadersBoundConnections(t *testing.T) {
	r := proxytest.StartRedis(t)
	for _, leaders := range []int{1, 2, 4} {
		t.Run(strconv.Itoa(leaders), func(t *testing.T) {
			m, c, h := newMux(t, r, leaders)
			ctx := context.Background()
			var wg sync.WaitGroup
			for g := range 100 {
				wg.Go(func() {
					for range 50 {
						m.RunBatch(ctx, []redis.Cmder{redis.NewIntCmd(ctx, "incr", "n"+strconv.Itoa(g))})
					}
				})
			}
			wg.Wait()
			if got := h.most.Load(); got > int32(leaders) {
				t.Errorf("%d pipelines at once, want at most %d", got, leaders)
			}
			// The pool had one connection (the Ping); the mux adds at most leaders-1.
			if got := c.PoolStats().TotalConns; got > uint32(leaders) {
				t.Errorf("%d backend connections, want at most %d", got, leaders)
			}
		})
	}
}

func TestMux_LeadershipPassesToTheNextQueuedBatch(t *testing.T) {
	r := proxytest.StartRedis(t)
	m, c, h := newMux(t, r, 1)
	ctx := context.Background()
	hold := make(chan struct{})
	h.hold = hold
	var wg sync.WaitGroup
	wg.Go(func() { m.RunBatch(ctx, []redis.Cmder{redis.NewIntCmd(ctx, "rpush", "q", "first")}) })
	<-h.started // the first caller leads and is held in its pipeline
	const queued = 10
	cmds := make([]redis.Cmder, queued)
	for i := range queued {
		cmds[i] = redis.NewIntCmd(ctx, "rpush", "q", strconv.Itoa(i))
		wg.Go(func() { m.RunBatch(ctx, cmds[i:i+1]) })
		waitFor(t, "the batch to queue", func() bool { return m.Queued() == i+1 })
	}
	h.mu.Lock()
	h.hold = nil
	h.mu.Unlock()
	close(hold)
	wg.Wait()
	// One pipeline for the first batch, one for all the queued ones (led by the first queued caller).
	if got, want := fmt.Sprint(h.pipelines()), fmt.Sprint([]int{1, queued}); got != want {
		t.Fatalf("pipeline sizes %s, want %s", got, want)
	}
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			t.Fatalf("queued batch %d: %v", i, err)
		}
	}
	if got, err := c.LRange(ctx, "q", 0, -1).Result(); err != nil || len(got) != queued+1 || got[0] != "first" || got[1] != "0" {
		t.Fatalf("list: %v, %v", got, err)
	}
}

func TestMux_KilledBackendFailsEveryCommandWithUnknownOutcome(t *testing.T) {
	r := proxytest.StartRedis(t)
	m, _, h := newMux(t, r, 1)
	ctx := context.Background()
	hold := make(chan struct{})
	h.hold = hold
	// A first pipeline holds the leadership while the batches queue. The first queued batch leads the
	// next pipeline: its batch ends with a BLPOP that keeps the pipeline waiting on the backend, and
	// the other batches go after it in the same pipeline.
	var wg sync.WaitGroup
	wg.Go(func() { m.RunBatch(ctx, []redis.Cmder{redis.NewIntCmd(ctx, "incr", "n")}) })
	<-h.started
	lead := []redis.Cmder{redis.NewIntCmd(ctx, "rpush", "q", "a"), redis.NewStringSliceCmd(ctx, "blpop", "never", "30")}
	const followers = 4
	all := make([][]redis.Cmder, followers)
	for i := range followers + 1 {
		cmds := lead
		if i > 0 {
			all[i-1] = []redis.Cmder{redis.NewIntCmd(ctx, "rpush", "q", "b"), redis.NewStringCmd(ctx, "lpop", "q")}
			cmds = all[i-1]
		}
		wg.Go(func() { m.RunBatch(ctx, cmds) })
		waitFor(t, "the batch to queue", func() bool { return m.Queued() == i+1 })
	}
	h.mu.Lock()
	h.hold = nil
	h.mu.Unlock()
	close(hold)
	admin := r.Client(t)
	waitFor(t, "the BLPOP to block", func() bool {
		list, err := admin.ClientList(ctx).Result()
		return err == nil && strings.Contains(list, "cmd=blpop")
	})
	r.Kill()
	wg.Wait()
	if got, want := fmt.Sprint(h.pipelines()), fmt.Sprint([]int{1, 2 + 2*followers}); got != want {
		t.Fatalf("pipeline sizes %s, want %s", got, want)
	}
	// go-redis sets the pipeline's transport error on every command of it, the RPUSH answered before
	// the kill included.
	for i, cmds := range append([][]redis.Cmder{lead}, all...) {
		for j, cmd := range cmds {
			if err := cmd.Err(); err == nil || !queue.OutcomeUnknown(err) {
				t.Fatalf("batch %d command %d: got %v, want an unknown outcome", i, j, err)
			}
		}
	}
}

func TestMux_ContextsDoNotShareAPipeline(t *testing.T) {
	r := proxytest.StartRedis(t)
	m, _, h := newMux(t, r, 1)
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	ctxB := context.Background()
	hold := make(chan struct{})
	h.hold = hold
	var wg sync.WaitGroup
	lead := []redis.Cmder{redis.NewIntCmd(ctxA, "incr", "a")}
	wg.Go(func() { m.RunBatch(ctxA, lead) })
	<-h.started
	a := []redis.Cmder{redis.NewIntCmd(ctxA, "incr", "a")}
	b := []redis.Cmder{redis.NewIntCmd(ctxB, "incr", "b")}
	a2 := []redis.Cmder{redis.NewIntCmd(ctxA, "incr", "a")}
	for i, cmds := range [][]redis.Cmder{a, b, a2} {
		ctx := ctxA
		if i == 1 {
			ctx = ctxB
		}
		wg.Go(func() { m.RunBatch(ctx, cmds) })
		waitFor(t, "the batch to queue", func() bool { return m.Queued() == i+1 })
	}
	h.mu.Lock()
	h.hold = nil
	h.mu.Unlock()
	close(hold)
	wg.Wait()
	// a leads a and a2 (same context), b then runs on its own.
	if got, want := fmt.Sprint(h.pipelines()), "[1 2 1]"; got != want {
		t.Fatalf("pipeline sizes %s, want %s", got, want)
	}
	for _, cmd := range []redis.Cmder{lead[0], a[0], b[0], a2[0]} {
		if err := cmd.Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMux_CancelledContextSendsNothing(t *testing.T) {
	r := proxytest.StartRedis(t)
	m, c, _ := newMux(t, r, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cmds := []redis.Cmder{redis.NewIntCmd(ctx, "rpush", "q", "a"), redis.NewIntCmd(ctx, "rpush", "q", "b")}
	m.RunBatch(ctx, cmds)
	for i, cmd := range cmds {
		if got, want := cmd.Err(), context.Canceled; !errors.Is(got, want) {
			t.Fatalf("command %d: got %v, want %v", i, got, want)
		}
	}
	if n, err := c.LLen(context.Background(), "q").Result(); err != nil || n != 0 {
		t.Fatalf("LLEN q: %d, %v; want 0", n, err)
	}
}

func TestMux_ClusterKeepsEachBatchInOrder(t *testing.T) {
	addrs := proxytest.StartCluster(t, 3)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	m := queue.NewMux(c, 2)
	ctx := context.Background()
	var wg sync.WaitGroup
	const clients, batches = 20, 20
	for g := range clients {
		wg.Go(func() {
			for b := range batches {
				cmds := []redis.Cmder{
					redis.NewIntCmd(ctx, "rpush", "k"+strconv.Itoa(g), strconv.Itoa(2*b)),
					redis.NewIntCmd(ctx, "rpush", "other"+strconv.Itoa(g%5), "x"),
					redis.NewIntCmd(ctx, "rpush", "k"+strconv.Itoa(g), strconv.Itoa(2*b+1)),
				}
				m.RunBatch(ctx, cmds)
				for _, cmd := range cmds {
					if err := cmd.Err(); err != nil {
						t.Errorf("client %d batch %d: %v", g, b, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for g := range clients {
		got, err := c.LRange(ctx, "k"+strconv.Itoa(g), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != strconv.Itoa(i) {
				t.Fatalf("k%d: item %d is %q", g, i, v)
			}
		}
		if got, want := len(got), 2*batches; got != want {
			t.Fatalf("k%d: %d items, want %d", g, got, want)
		}
	}
}
