package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
)

// Bounded blocking for every delivery mode (proxy/DESIGN.md "Blocked pops"): the number of backend
// connections qgate uses for waiting clients does not grow with the number of queues they wait on,
// whatever the queues' delivery mode.

// blockRaw sends "BLPOP key 0" on a new raw connection and returns a channel that gets the value.
func blockRaw(t *testing.T, addr, key string) <-chan string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := fmt.Fprintf(nc, "BLPOP %s 0\r\n", key); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		_ = nc.SetReadDeadline(time.Now().Add(2 * time.Minute))
		v, err := readBLPOPReply(bufio.NewReader(nc))
		if err != nil {
			v = "error: " + err.Error()
		}
		got <- v
	}()
	return got
}

// TestBlocking_ManyAtLeastOnceQueuesAllServed: 300 workers each wait on their own at-least-once queue
// (default settings); one item pushed to each queue reaches its worker, and the backend sees a bounded
// number of connections.
func TestBlocking_ManyAtLeastOnceQueuesAllServed(t *testing.T) {
	const queues = 300
	e := e2eStart(t, func(c *proxy.Config) {
		c.Queues = []policy.Rule{{Match: "alo_*", Delivery: "at-least-once"}}
	})
	ctx := e2eCtx(t)
	got := make([]<-chan string, queues)
	for i := range got {
		got[i] = blockRaw(t, e.Qgate.Addr, fmt.Sprintf("alo_%d", i))
	}
	via := e.Client(t, 2)
	e2eWaitBlocked(t, via, queues)
	// The bound the README states for the default config: 16 for standalone, whatever the waiters.
	if n, limit := backendConns(t, e.Redis), 16; n > limit {
		t.Errorf("backend has %d connections for %d blocked clients on %d queues, want at most %d", n, queues, queues, limit)
	}
	for i := 0; i < queues; i++ {
		if err := via.RPush(ctx, fmt.Sprintf("alo_%d", i), fmt.Sprintf("job-%d", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(60 * time.Second)
	for i, ch := range got {
		select {
		case v := <-ch:
			if want := fmt.Sprintf("job-%d", i); v != want {
				t.Fatalf("worker %d got %q, want %q", i, v, want)
			}
		case <-deadline:
			t.Fatalf("worker %d (and maybe more) not served within 60 s although its queue holds an item", i)
		}
	}
	if n, limit := backendConns(t, e.Redis), 16; n > limit {
		t.Errorf("backend has %d connections after serving, want at most %d", n, limit)
	}
}

// TestBlocking_IdleAtLeastOnceWaitersDoNotStarveOthers: clients idling on 40 empty at-least-once queues
// do not keep an at-most-once BLPOP on another queue from being served.
func TestBlocking_IdleAtLeastOnceWaitersDoNotStarveOthers(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) {
		c.Queues = []policy.Rule{{Match: "alo_*", Delivery: "at-least-once"}}
	})
	ctx := e2eCtx(t)
	for i := 0; i < 40; i++ {
		blockRaw(t, e.Qgate.Addr, fmt.Sprintf("alo_%d", i))
	}
	via := e.Client(t, 2)
	e2eWaitBlocked(t, via, 40)
	plain := blockRaw(t, e.Qgate.Addr, "plain")
	e2eWaitBlocked(t, via, 41)
	if err := via.RPush(ctx, "plain", "hello").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-plain:
		if v != "hello" {
			t.Fatalf("got %q, want hello", v)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("BLPOP plain not served within 30 s while 40 clients idle on at-least-once queues")
	}
}

// TestBlocking_WakeForItemsWrittenStraightIntoRedis: an at-least-once waiter is served when another
// program pushes straight into Redis (no qgate instance saw the push).
func TestBlocking_WakeForItemsWrittenStraightIntoRedis(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) {
		c.Queues = []policy.Rule{{Match: "alo_*", Delivery: "at-least-once"}}
	})
	ctx := e2eCtx(t)
	via := e.Client(t, 2)
	a := blockRaw(t, e.Qgate.Addr, "alo_direct")
	b := blockRaw(t, e.Qgate.Addr, "amo_direct")
	e2eWaitBlocked(t, via, 2)
	if err := e.Direct.RPush(ctx, "alo_direct", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.Direct.RPush(ctx, "amo_direct", "y").Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ch   <-chan string
		want string
	}{{a, "x"}, {b, "y"}} {
		select {
		case v := <-c.ch:
			if v != c.want {
				t.Fatalf("got %q, want %q", v, c.want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("waiter for %q not served within 30 s", c.want)
		}
	}
}
