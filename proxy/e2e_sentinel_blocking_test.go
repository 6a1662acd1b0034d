package proxy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// Blocked pops across a Sentinel switch-over (proxy/DESIGN.md "Blocked pops", README "What survives
// which failure"): clients blocked in BLPOP through one qgate are woken by keyspace notifications of
// the new master, within a second of a push made after the switch by another qgate, not by the 5 s
// safety poll (a push in the first second after the switch may also wait for the waiters' instance to
// reconnect, at most a second); every item reaches exactly one of them.
func TestSentinel_BlockedPopsWokenAfterSwitch(t *testing.T) {
	if testing.Short() {
		t.Skip("two Sentinel failovers")
	}
	for _, how := range []string{"failover", "kill"} {
		t.Run(how, func(t *testing.T) { blockedAcrossSwitch(t, how) })
	}
}

func blockedAcrossSwitch(t *testing.T, how string) {
	const (
		waiters = 3 // per queue
		bound   = time.Second
	)
	set := proxytest.StartSentinelSet(t, 1)
	cfg := proxy.DefaultConfig()
	cfg.Backend = set.URL()
	cfg.Queues = []policy.Rule{{Match: "alo", Delivery: "at-least-once"}}
	a := proxytest.StartQgate(t, cfg) // the waiters' instance
	b := proxytest.StartQgate(t, cfg) // the producers' instance: its pushes wake a's waiters only through Redis
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	queues := []string{"amo", "alo"}

	type got struct {
		queue, value string
		at           time.Time
	}
	results := make(chan got, 2*waiters)
	var wg sync.WaitGroup
	for _, queue := range queues {
		for range waiters {
			c := a.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := c.BLPop(ctx, 0, queue).Result()
				if err != nil {
					t.Errorf("BLPOP %s 0 ended with %v", queue, err)
					return
				}
				results <- got{queue: v[0], value: v[1], at: time.Now()}
			}()
		}
	}
	e2eEventually(t, "every client blocked", func() bool { return a.Server.Stats().BlockedClients == 2*waiters })

	old := set.Master.Addr
	switch how {
	case "failover":
		if _, err := set.Failover(ctx); err != nil {
			t.Fatal(err)
		}
	case "kill":
		set.Master.Kill()
		if _, err := set.WaitMaster(ctx, old); err != nil {
			t.Fatal(err)
		}
	}
	switched := time.Now()

	// One push at a time through b once it writes to the new master; each must wake one of a's
	// waiters within the bound.
	pc := b.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
	seen := map[string]bool{}
	worst := time.Duration(0)
	var first time.Duration
	for i := range 2 * waiters {
		queue := queues[i%2]
		v := fmt.Sprintf("%s-%d", queue, i)
		for {
			err := pc.RPush(ctx, queue, v).Err()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("RPUSH %s through the other instance still fails after the switch: %v", queue, err)
			}
			time.Sleep(20 * time.Millisecond) // the other instance is still switching
		}
		pushed := time.Now()
		if i == 0 {
			first = pushed.Sub(switched)
		}
		select {
		case r := <-results:
			d := r.at.Sub(pushed)
			worst = max(worst, d)
			if r.queue != queue || r.value != v {
				t.Errorf("a waiter got %s %q, want %s %q", r.queue, r.value, queue, v)
			}
			if seen[r.value] {
				t.Errorf("%q delivered twice", r.value)
			}
			seen[r.value] = true
			// Right after the switch the waiters' instance may still be reconnecting (its pub/sub
			// connection retries at most every second): a push then waits for that too.
			want := bound
			if pushed.Sub(switched) < time.Second {
				want = bound + time.Second
			}
			if d > want {
				t.Errorf("%q pushed %s after the switch woke a waiter %s after its push, want within %s",
					v, pushed.Sub(switched).Round(time.Millisecond), d.Round(time.Millisecond), want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no waiter woken 10s after the push of %q (%s after the switch)", v, time.Since(switched).Round(time.Millisecond))
		}
	}
	wg.Wait()
	if t.Failed() {
		t.Logf("waiters' instance logs:\n%s", a.Logs.String())
	}
	t.Logf("FIGURE sentinel_%s_blocked_pop_woken_after_push_max=%s (%d clients in BLPOP 0, first push %s after the switch was announced)",
		how, worst.Round(time.Millisecond), 2*waiters, first.Round(time.Millisecond))
}
