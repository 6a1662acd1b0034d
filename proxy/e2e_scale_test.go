package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/proxytest"
)

// readBLPOPReply reads one BLPOP reply (*2 key value) from rd and returns the value.
func readBLPOPReply(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	if line != "*2\r\n" {
		return "", fmt.Errorf("unexpected reply %q", line)
	}
	var vals [2]string
	for i := range vals {
		hdr, err := rd.ReadString('\n')
		if err != nil {
			return "", err
		}
		n, err := strconv.Atoi(strings.TrimSpace(hdr[1:]))
		if err != nil {
			return "", fmt.Errorf("bad bulk header %q", hdr)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		vals[i] = string(buf[:n])
	}
	return vals[1], nil
}

// backendConns counts the backend's client connections other than the one asking.
func backendConns(t *testing.T, r *proxytest.Redis) int {
	t.Helper()
	list, err := r.Client(t).ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(strings.TrimSpace(list), "\n") // lines minus the asking connection
}

// TestBlocking_ThousandsOfWaitersFewBackendConns: 2,000 clients block on 20 queues; the backend sees
// a small, bounded number of connections; 2,000 items pushed half through qgate and half straight
// into Redis are each delivered exactly once.
func TestBlocking_ThousandsOfWaitersFewBackendConns(t *testing.T) {
	const clients, queues = 2000, 20
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.PoolSize = 8
	q := proxytest.StartQgate(t, cfg)
	ctx := context.Background()

	got := make(chan string, clients)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		nc, err := net.Dial("tcp", q.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		if _, err := fmt.Fprintf(nc, "BLPOP queue-%02d 0\r\n", i%queues); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = nc.SetReadDeadline(time.Now().Add(60 * time.Second))
			v, err := readBLPOPReply(bufio.NewReader(nc))
			if err != nil {
				t.Error(err)
				return
			}
			got <- v
		}()
	}
	waitFor(t, "all clients to block", func() bool { return blockedClients(q) == clients })

	// The pool (non-blocking pops, the waiters' takes, polls) and one pub/sub connection for the
	// keyspace notifications: far below one per client (README, "Blocking pops").
	if n, limit := backendConns(t, r), cfg.PoolSize+1; n > limit {
		t.Fatalf("backend has %d connections for %d blocked clients, want at most %d", n, clients, limit)
	}

	via := q.Client(t)
	direct := r.Client(t)
	for i := 0; i < clients; i++ {
		c := via
		if i%2 == 1 {
			c = direct // a legacy producer writing straight into Redis
		}
		if err := c.RPush(ctx, fmt.Sprintf("queue-%02d", i%queues), fmt.Sprintf("item-%04d", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(got)
	seen := map[string]bool{}
	for v := range got {
		if seen[v] {
			t.Fatalf("%s delivered twice", v)
		}
		seen[v] = true
	}
	if len(seen) != clients {
		t.Fatalf("%d distinct items delivered, want %d", len(seen), clients)
	}
	for i := 0; i < queues; i++ {
		if n := direct.LLen(ctx, fmt.Sprintf("queue-%02d", i)).Val(); n != 0 {
			t.Fatalf("queue-%02d still holds %d items", i, n)
		}
	}
}

// TestPubSub_SlowSubscriberIsCutOff: a subscriber that never reads is disconnected once its queued
// output passes the limit; a reading subscriber on the same channel gets every message.
func TestPubSub_SlowSubscriberIsCutOff(t *testing.T) {
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	cfg.PubSubOutputLimit = 256 * 1024
	q := proxytest.StartQgate(t, cfg)
	ctx := context.Background()

	slow, err := net.Dial("tcp", q.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_ = slow.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := slow.Write([]byte("SUBSCRIBE news\r\n")); err != nil {
		t.Fatal(err)
	}
	fast := q.Client(t).Subscribe(ctx, "news")
	defer fast.Close()
	if _, err := fast.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both subscribers", func() bool {
		n, _ := q.Client(t).PubSubNumSub(ctx, "news").Result()
		return n["news"] == 2
	})

	// Publish until qgate cuts the slow subscriber off (kernel socket buffers absorb the first few MB).
	payload := strings.Repeat("x", 4096)
	pub := q.Client(t)
	published := 0
	cut := func() bool { return strings.Contains(q.Logs.String(), "closing slow subscriber") }
	for !cut() {
		if published == 50000 {
			t.Fatalf("slow subscriber still connected after %d messages", published)
		}
		if err := pub.Publish(ctx, "news", payload).Err(); err != nil {
			t.Fatal(err)
		}
		published++
		if published%100 == 0 { // let the reading subscriber keep up so only the slow one overflows
			for i := 0; i < 100; i++ {
				if _, err := fast.ReceiveMessage(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for i := 0; i < published%100; i++ {
		if _, err := fast.ReceiveMessage(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the cut-off subscriber to leave the channel", func() bool {
		n, _ := pub.PubSubNumSub(ctx, "news").Result()
		return n["news"] == 1
	})
	if strings.Contains(q.Logs.String(), payload[:64]) {
		t.Fatal("a payload was logged")
	}
}

// TestInfo_PubSubClients: INFO counts distinct subscribed clients, whatever they subscribed to.
func TestInfo_PubSubClients(t *testing.T) {
	q, _ := startPair(t)
	ctx := context.Background()
	a := q.Client(t).Subscribe(ctx, "news")
	defer a.Close()
	if err := a.PSubscribe(ctx, "news.*"); err != nil {
		t.Fatal(err)
	}
	b := q.Client(t).Subscribe(ctx, "news")
	info := q.Client(t)
	waitFor(t, "two subscribers with three subscriptions", func() bool {
		n, _ := info.PubSubNumSub(ctx, "news").Result()
		return n["news"] == 2 && strings.Contains(info.Info(ctx, "clients").Val(), "pubsub_clients:2\r\n")
	})
	_ = b.Close()
	_ = a.Close()
	waitFor(t, "no subscribers", func() bool {
		return strings.Contains(info.Info(ctx, "clients").Val(), "pubsub_clients:0\r\n")
	})
}
