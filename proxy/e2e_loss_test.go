package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// These tests close client sockets at the worst moments and account for every item: each one is
// either received by a client or still in its list. qgate must never swallow an item it popped.

func startPair(t *testing.T) (*proxytest.Qgate, *redis.Client) {
	t.Helper()
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	q := proxytest.StartQgate(t, cfg)
	return q, r.Client(t)
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func blockedClients(q *proxytest.Qgate) int { return q.Server.Stats().BlockedClients }

func connectedClients(q *proxytest.Qgate) int { return q.Server.Stats().ConnectedClients }

// TestBlockedPop_HalfCloseRacesDelivery: a blocked client shuts down its sending side while an item is
// pushed. The client keeps reading: either it receives the item, or the item stays in the list.
func TestBlockedPop_HalfCloseRacesDelivery(t *testing.T) {
	q, direct := startPair(t)
	ctx := context.Background()
	const rounds = 200
	received := 0
	for i := 0; i < rounds; i++ {
		nc, err := net.Dial("tcp", q.Addr)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("jobs-%03d", i) // a fresh key: an item left by an earlier round would not block
		if _, err := fmt.Fprintf(nc, "BLPOP %s 0\r\n", key); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("client to block in round %d", i), func() bool { return blockedClients(q) == 1 })
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = nc.(*net.TCPConn).CloseWrite() }()
		go func() { defer wg.Done(); direct.RPush(ctx, key, fmt.Sprintf("item-%03d", i)) }()
		wg.Wait()
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(nc)
		if err != nil {
			t.Fatalf("round %d: read: %v", i, err)
		}
		if len(got) > 0 {
			want := fmt.Sprintf("*2\r\n$8\r\n%s\r\n$8\r\nitem-%03d\r\n", key, i)
			if string(got) != want {
				t.Fatalf("round %d: got %q, want %q", i, got, want)
			}
			received++
		}
		_ = nc.Close()
		waitFor(t, "client to leave", func() bool { return blockedClients(q) == 0 && connectedClients(q) == 0 })
	}
	left := 0
	for i := 0; i < rounds; i++ {
		left += int(direct.LLen(ctx, fmt.Sprintf("jobs-%03d", i)).Val())
	}
	if got, want := received+left, rounds; got != want {
		t.Fatalf("received %d + left in lists %d = %d items, want %d: items were lost", received, left, got, want)
	}
	t.Logf("%d of %d items reached half-closed clients, %d stayed in their list", received, rounds, left)
}

// TestBlockedPop_ResetThenPush: a blocked client resets its connection, then an item is pushed straight
// into Redis. Nobody can receive it, so it must end up back in the list (ordered before later items).
func TestBlockedPop_ResetThenPush(t *testing.T) {
	q, direct := startPair(t)
	ctx := context.Background()
	const rounds = 100
	for i := 0; i < rounds; i++ {
		nc, err := net.Dial("tcp", q.Addr)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("jobs-%03d", i)
		if _, err := fmt.Fprintf(nc, "BLPOP %s 0\r\n", key); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("client to block in round %d", i), func() bool { return blockedClients(q) == 1 })
		_ = nc.(*net.TCPConn).SetLinger(0)
		_ = nc.Close() // RST
		direct.RPush(ctx, key, fmt.Sprintf("item-%03d", i), "later")
		waitFor(t, "client to leave", func() bool { return blockedClients(q) == 0 && connectedClients(q) == 0 })
	}
	for i := 0; i < rounds; i++ {
		key := fmt.Sprintf("jobs-%03d", i)
		waitFor(t, key+" to be whole again", func() bool { return direct.LLen(ctx, key).Val() == 2 })
		if got, want := direct.LIndex(ctx, key, 0).Val(), fmt.Sprintf("item-%03d", i); got != want {
			t.Fatalf("%s head is %q, want %q", key, got, want)
		}
	}
}

// TestPop_ClientResetsWhilePopInFlight: clients send LPOP, LPOP with COUNT or a pipeline of pops and
// reset the connection while the pop is still on its way to Redis (the backend is paused for writes,
// so the reset deterministically comes first). Everything qgate popped for them must go back.
func TestPop_ClientResetsWhilePopInFlight(t *testing.T) {
	q, direct := startPair(t)
	ctx := context.Background()
	const items = 100
	for i := 0; i < items; i++ {
		direct.RPush(ctx, "jobs", fmt.Sprintf("item-%03d", i))
	}
	requests := []string{"LPOP jobs\r\n", "LPOP jobs 3\r\n", "RPOP jobs\r\n", "LPOP jobs\r\nLPOP jobs\r\nRPOP jobs 2\r\n"}
	for i, req := range requests {
		if err := direct.Do(ctx, "client", "pause", "150", "write").Err(); err != nil {
			t.Fatal(err)
		}
		nc, err := net.Dial("tcp", q.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "qgate to run the pop", func() bool { return q.Server.Stats().TotalCommands > int64(i) })
		_ = nc.(*net.TCPConn).SetLinger(0)
		_ = nc.Close() // RST while Redis holds the pop
		waitFor(t, "client to leave", func() bool { return connectedClients(q) == 0 })
		left := direct.LRange(ctx, "jobs", 0, -1).Val() // runs once the pause is over
		if got, want := len(left), items; got != want {
			t.Fatalf("%q: list holds %d items, want %d", req, got, want)
		}
		for j, v := range left {
			if want := fmt.Sprintf("item-%03d", j); v != want {
				t.Fatalf("%q: item %d is %q, want %q: order not restored", req, j, v, want)
			}
		}
	}
}

// TestPop_ClientHalfClosesAfterSending: many clients send pops and shut down their sending side at
// once, then read what comes back. Every item is either received or still in the list.
func TestPop_ClientHalfClosesAfterSending(t *testing.T) {
	q, direct := startPair(t)
	ctx := context.Background()
	const items = 400
	for i := 0; i < items; i++ {
		direct.RPush(ctx, "jobs", fmt.Sprintf("item-%03d", i))
	}
	requests := []string{"LPOP jobs\r\n", "LPOP jobs 3\r\n", "RPOP jobs\r\n", "LPOP jobs\r\nLPOP jobs\r\nRPOP jobs 2\r\n"}
	var mu sync.Mutex
	received := 0
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(req string) {
			defer wg.Done()
			nc, err := net.Dial("tcp", q.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			_, _ = nc.Write([]byte(req))
			_ = nc.(*net.TCPConn).CloseWrite()
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(nc)
			mu.Lock()
			received += strings.Count(string(b), "item-")
			mu.Unlock()
		}(requests[i%len(requests)])
	}
	wg.Wait()
	waitFor(t, "clients to leave", func() bool {
		st := q.Server.Stats()
		return st.TotalConnections == 100 && st.ConnectedClients == 0
	})
	left := int(direct.LLen(ctx, "jobs").Val())
	if got, want := received+left, items; got != want {
		t.Fatalf("received %d + left %d = %d, want %d: items were lost", received, left, got, want)
	}
	t.Logf("%d items received by half-closed clients, %d returned to the list", received, left)
}

// TestBlockedPop_TimeoutRacesPush: blocked clients with tiny timeouts race pushes; every item is
// either received (as a reply, not a timeout) or left in the list.
func TestBlockedPop_TimeoutRacesPush(t *testing.T) {
	q, direct := startPair(t)
	ctx := context.Background()
	const rounds = 300
	client := q.Client(t)
	received := 0
	for i := 0; i < rounds; i++ {
		done := make(chan []string, 1)
		go func() {
			// go-redis rounds BLPop timeouts up to 1 s; send the fractional timeout as is.
			v, _ := client.Do(ctx, "blpop", "jobs", "0.01").StringSlice()
			done <- v
		}()
		direct.RPush(ctx, "jobs", fmt.Sprintf("item-%03d", i))
		if v := <-done; v != nil {
			received++
		}
		// Whatever the client did not get must still be poppable by the next round or the final count.
	}
	left := direct.LLen(ctx, "jobs").Val()
	if got, want := int64(received)+left, int64(rounds); got != want {
		t.Fatalf("received %d + left %d = %d, want %d", received, left, got, want)
	}
}

// TestShutdown_ReturnsBlockedAndDrains: SIGTERM-style shutdown with blocked clients: they are
// disconnected, items pushed meanwhile stay in Redis, and in-flight replies are written.
func TestShutdown_ReturnsBlockedAndDrains(t *testing.T) {
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	q := proxytest.StartQgate(t, cfg)
	direct := r.Client(t)
	ctx := context.Background()

	var conns []net.Conn
	for i := 0; i < 20; i++ {
		nc, err := net.Dial("tcp", q.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
		if _, err := nc.Write([]byte("BLPOP jobs 0\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "clients to block", func() bool { return blockedClients(q) == 20 })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = q.Stop() }()
	for i := 0; i < 10; i++ {
		direct.RPush(ctx, "jobs", fmt.Sprintf("item-%d", i))
	}
	wg.Wait()
	received := 0
	for _, nc := range conns {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(bufio.NewReader(nc))
		received += strings.Count(string(b), "$6\r\nitem-")
		_ = nc.Close()
	}
	if got, want := int64(received)+direct.LLen(ctx, "jobs").Val(), int64(10); got != want {
		t.Fatalf("received %d + left = %d, want %d", received, got, want)
	}
	if keys := direct.Keys(ctx, "qgate:wake:*").Val(); len(keys) != 0 {
		t.Fatalf("wake keys left behind: %v", keys)
	}
}
