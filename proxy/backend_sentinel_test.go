package proxy_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// pollUntil polls cond until it holds or the bound passes.
func pollUntilDone(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", bound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A write that reaches a demoted master (its Sentinel events missed) gets Redis's READONLY reply, as it
// is: it was not applied. The guard then closes its connections to every node but the master the
// Sentinels report, so the next command dials the new master.
func TestReadonly_DemotedMasterConnectionsClosed(t *testing.T) {
	set := proxytest.StartSentinelSet(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	old := set.Master
	// A guard whose event subscriptions are not started (the events are missed), with a plain client
	// dialing the old master through it.
	o := &redis.UniversalOptions{MasterName: proxytest.SentinelMaster}
	for _, s := range set.Sentinels {
		o.Addrs = append(o.Addrs, s.Addr)
	}
	g := proxy.NewSentinelGuard(o)
	defer g.Close()
	c := redis.NewClient(&redis.Options{Addr: old.Addr, Dialer: o.Dialer, MaxRetries: -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer c.Close()
	c.AddHook(g.ReadonlyHook())
	if err := c.RPush(ctx, "q", "before").Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := g.Open(old.Addr), 1; got != want {
		t.Fatalf("open connections to the master = %d, want %d", got, want)
	}

	newMaster, err := set.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Sentinel demotes the old master about 10 s after the switch; do it at once, as it will.
	host, port, _ := net.SplitHostPort(newMaster)
	oc := redis.NewClient(&redis.Options{Addr: old.Addr})
	defer oc.Close()
	if err := oc.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	err = c.RPush(ctx, "q", "after").Err()
	var rerr redis.Error
	if got, want := err, "READONLY You can't write against a read only replica."; !errors.As(got, &rerr) || got.Error() != want {
		t.Fatalf("RPUSH on the demoted master = %v, want the Redis error %q", got, want)
	}
	pollUntilDone(t, "the connections to the demoted master closed", 10*time.Second, func() bool { return g.Open(old.Addr) == 0 })
	if got, err := redis.NewClient(&redis.Options{Addr: newMaster}).LRange(ctx, "q", 0, -1).Result(); err != nil || len(got) != 1 || got[0] != "before" {
		t.Errorf("new master's q = %q, %v; want [before] (the READONLY push was not applied)", got, err)
	}
}

// The fence: +selected-slave of our master closes the connections to it and refuses to dial it until
// +switch-master; events of other masters do nothing.
func TestSentinel_FenceEvents(t *testing.T) {
	r := proxytest.StartRedis(t)
	o := &redis.UniversalOptions{MasterName: "mymaster", Addrs: []string{"127.0.0.1:1"}}
	g := proxy.NewSentinelGuard(o)
	defer g.Close()
	ctx := context.Background()
	host, port, _ := net.SplitHostPort(r.Addr)
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Dialer: o.Dialer, MaxRetries: -1, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	g.Event("+selected-slave", "slave 127.0.0.1:9 127.0.0.1 9 @ othermaster "+host+" "+port)
	if got, want := g.Open(r.Addr), 1; got != want {
		t.Fatalf("open connections after another master's event = %d, want %d", got, want)
	}
	g.Event("+selected-slave", "slave 127.0.0.1:9 127.0.0.1 9 @ mymaster "+host+" "+port)
	if got, want := g.Open(r.Addr), 0; got != want {
		t.Errorf("open connections once fenced = %d, want %d", got, want)
	}
	_ = c.Ping(ctx).Err() // the closed connection fails
	err := c.Ping(ctx).Err()
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, proxy.ErrFenced) {
		t.Errorf("PING while fenced = %v, want a refused dial (never sent)", err)
	}
	g.Event("+switch-master", "mymaster "+host+" "+port+" 127.0.0.1 "+strconv.Itoa(r.Port+1))
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after +switch-master = %v, want PONG (fence lifted)", err)
	}
}

// The guard's connections keep go-redis's idle-connection health check: a connection the server
// closed is dropped when taken from the pool, and the next command runs on a new one.
func TestSentinel_GuardKeepsHealthCheck(t *testing.T) {
	r := proxytest.StartRedis(t)
	o := &redis.UniversalOptions{MasterName: "mymaster", Addrs: []string{"127.0.0.1:1"}}
	g := proxy.NewSentinelGuard(o)
	defer g.Close()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Dialer: o.Dialer, MaxRetries: -1, PoolSize: 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rc := r.Client(t)
	if err := rc.Do(ctx, "client", "kill", "type", "normal", "skipme", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	pollUntilDone(t, "the server to drop the pooled connection", 10*time.Second, func() bool {
		list, err := rc.ClientList(ctx).Result()
		return err == nil && strings.Count(list, "\n") == 1 // only rc itself
	})
	// The health check drops the dead idle connection; without it this PING would fail with EOF.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after the server closed the idle connection = %v, want PONG", err)
	}
}
