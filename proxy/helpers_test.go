package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// Shared helpers of the end-to-end tests (e2e_*_test.go). Every name starts with e2e so that it cannot
// collide with helpers of other test files in package proxy_test.

// e2eWaitBound bounds every condition wait; it only has to be generous, never tight.
const e2eWaitBound = 10 * time.Second

// e2eEnv is one real redis-server and a qgate in front of it.
type e2eEnv struct {
	Redis  *proxytest.Redis
	Qgate  *proxytest.Qgate
	Direct *redis.Client // straight to the backend redis-server (RESP3)
}

// e2eStart starts a redis-server and a qgate using it as its backend; both stop when the test ends.
func e2eStart(t *testing.T, tweak ...func(*proxy.Config)) *e2eEnv {
	t.Helper()
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	for _, f := range tweak {
		f(&cfg)
	}
	q := proxytest.StartQgate(t, cfg)
	return &e2eEnv{Redis: r, Qgate: q, Direct: r.Client(t)}
}

// Client returns a go-redis client for qgate speaking proto (2 or 3).
func (e *e2eEnv) Client(t *testing.T, proto int, opts ...func(*redis.Options)) *redis.Client {
	t.Helper()
	return e.Qgate.Client(t, append([]func(*redis.Options){func(o *redis.Options) { o.Protocol = proto }}, opts...)...)
}

// DirectClient returns a go-redis client for the backend redis-server speaking proto.
func (e *e2eEnv) DirectClient(t *testing.T, proto int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.Redis.Addr, Protocol: proto})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// e2eCtx returns a context that ends with the test (and after a generous bound, so a hang fails).
func e2eCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// e2eProtos runs f once per RESP version, as subtests RESP3 and RESP2.
func e2eProtos(t *testing.T, f func(t *testing.T, proto int)) {
	t.Helper()
	for _, proto := range []int{3, 2} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			t.Parallel()
			f(t, proto)
		})
	}
}

// e2eEventually polls cond until it holds; the test fails after e2eWaitBound.
func e2eEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(e2eWaitBound)
	for delay := time.Millisecond; !cond(); delay = min(2*delay, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", e2eWaitBound, what)
		}
		time.Sleep(delay)
	}
}

// e2eInfoField returns field from an INFO reply ("" if absent).
func e2eInfoField(info, field string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok && k == field {
			return v
		}
	}
	return ""
}

// e2eBlockedClients reads blocked_clients from qgate's INFO through c.
func e2eBlockedClients(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "clients").Result()
	if err != nil {
		t.Fatalf("INFO clients: %v", err)
	}
	n, err := strconv.Atoi(e2eInfoField(info, "blocked_clients"))
	if err != nil {
		t.Fatalf("INFO clients: blocked_clients: %v in\n%s", err, info)
	}
	return n
}

// e2eWaitBlocked waits until qgate's INFO reports n blocked clients.
func e2eWaitBlocked(t *testing.T, c *redis.Client, n int) {
	t.Helper()
	e2eEventually(t, fmt.Sprintf("INFO blocked_clients:%d", n), func() bool { return e2eBlockedClients(t, c) == n })
}

// e2eErrText is an error's text, "" for nil and "<nil reply>" for redis.Nil.
func e2eErrText(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, redis.Nil):
		return "<nil reply>"
	}
	return err.Error()
}

// e2eDo runs args on c and returns the reply and the error text.
func e2eDo(ctx context.Context, c *redis.Client, args ...any) (any, string) {
	v, err := c.Do(ctx, args...).Result()
	return v, e2eErrText(err)
}

// e2eSame runs the same command through qgate and straight against Redis and fails unless the replies
// (value and error text) are identical. It returns qgate's reply. Use it for commands whose effect on
// shared state does not matter (reads, errors) or use e2eMirror.
func e2eSame(t *testing.T, ctx context.Context, viaQgate, direct *redis.Client, args ...any) (any, string) {
	t.Helper()
	gv, ge := e2eDo(ctx, viaQgate, args...)
	wv, we := e2eDo(ctx, direct, args...)
	if ge != we || !reflect.DeepEqual(gv, wv) {
		t.Fatalf("%v:\n qgate: %#v err=%q\n redis: %#v err=%q", args, gv, ge, wv, we)
	}
	return gv, ge
}

// e2eMirror runs a command built by f through qgate on key "q:"+name and straight against Redis on key
// "d:"+name, and fails unless the replies are identical. Both sides share one backend, so the two keys
// evolve side by side; it returns qgate's reply.
func e2eMirror(t *testing.T, ctx context.Context, viaQgate, direct *redis.Client, name string, f func(key string) []any) (any, string) {
	t.Helper()
	gv, ge := e2eDo(ctx, viaQgate, f("q:"+name)...)
	wv, we := e2eDo(ctx, direct, f("d:"+name)...)
	if ge != we || !reflect.DeepEqual(gv, wv) {
		t.Fatalf("%v:\n qgate: %#v err=%q\n redis: %#v err=%q", f("<key>"), gv, ge, wv, we)
	}
	return gv, ge
}

// e2eRecv waits for one value on ch.
func e2eRecv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(e2eWaitBound):
		t.Fatalf("timed out after %s waiting for %s", e2eWaitBound, what)
	}
	var zero T
	return zero
}

// e2eNothing fails if ch yields a value right now (used after the value that would follow it was seen,
// or after a round trip that orders it).
func e2eNothing[T any](t *testing.T, what string, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %v", what, v)
	default:
	}
}

// e2eBlpopResult is what a goroutine running a blocking pop reports.
type e2eBlpopResult struct {
	who     int
	val     []string
	err     error
	elapsed time.Duration
}

// e2eBlpop runs BLPOP (or BRPOP) with go-redis in a goroutine and reports on the returned channel.
func e2eBlpop(ctx context.Context, c *redis.Client, who int, left bool, timeout time.Duration, keys ...string) <-chan e2eBlpopResult {
	ch := make(chan e2eBlpopResult, 1)
	go func() {
		start := time.Now()
		var cmd *redis.StringSliceCmd
		if left {
			cmd = c.BLPop(ctx, timeout, keys...)
		} else {
			cmd = c.BRPop(ctx, timeout, keys...)
		}
		v, err := cmd.Result()
		ch <- e2eBlpopResult{who: who, val: v, err: err, elapsed: time.Since(start)}
	}()
	return ch
}
