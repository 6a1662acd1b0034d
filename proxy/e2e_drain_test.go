package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// End-to-end tests of the drain on Shutdown (proxy/DESIGN.md "Shutdown", README "Running several
// instances"): every command qgate read is answered, connections close at clean points, leases get
// their chance to be acked, and the whole is bounded by shutdown_timeout.

// drainConn is a raw RESP2 client that tells apart "answered" from "the connection ended first".
type drainConn struct {
	nc net.Conn
	rd *bufio.Reader
}

// drainReply is one decoded RESP2 reply: an error, a simple string/integer/bulk as text, nil, or an array.
type drainReply struct {
	err   string
	text  string
	null  bool
	array []drainReply
}

func drainDial(addr string) (*drainConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &drainConn{nc: nc, rd: bufio.NewReader(nc)}, nil
}

func drainDialT(t *testing.T, addr string) *drainConn {
	t.Helper()
	c, err := drainDial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.nc.Close() })
	return c
}

// send writes the commands as one pipeline.
func (c *drainConn) send(cmds ...[]string) error {
	var b []byte
	for _, cmd := range cmds {
		b = append(b, '*')
		b = strconv.AppendInt(b, int64(len(cmd)), 10)
		b = append(b, '\r', '\n')
		for _, a := range cmd {
			b = append(b, '$')
			b = strconv.AppendInt(b, int64(len(a)), 10)
			b = append(b, '\r', '\n')
			b = append(b, a...)
			b = append(b, '\r', '\n')
		}
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(e2eWaitBound))
	_, err := c.nc.Write(b)
	return err
}

// read reads one reply; an error means the connection ended (or the bound passed) before it.
func (c *drainConn) read() (drainReply, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(e2eWaitBound))
	line, err := c.rd.ReadString('\n')
	if err != nil {
		return drainReply{}, err
	}
	if len(line) < 3 {
		return drainReply{}, fmt.Errorf("short line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '-':
		return drainReply{err: body}, nil
	case '+', ':':
		return drainReply{text: body}, nil
	case '$', '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return drainReply{}, err
		}
		if n < 0 {
			return drainReply{null: true}, nil
		}
		if line[0] == '*' {
			out := drainReply{array: make([]drainReply, 0, n)}
			for range n {
				r, err := c.read()
				if err != nil {
					return drainReply{}, err
				}
				out.array = append(out.array, r)
			}
			return out, nil
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(c.rd, buf); err != nil {
			return drainReply{}, err
		}
		return drainReply{text: string(buf[:n])}, nil
	}
	return drainReply{}, fmt.Errorf("unexpected reply %q", line)
}

func ioReadFull(rd *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := rd.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// drainCluster is one redis-server and n qgate instances sharing it.
func drainCluster(t *testing.T, n int, tweak func(*proxy.Config)) (*proxytest.Redis, []*proxytest.Qgate) {
	t.Helper()
	r := proxytest.StartRedis(t)
	cfg := proxy.DefaultConfig()
	cfg.Backend = r.URL()
	if tweak != nil {
		tweak(&cfg)
	}
	qs := make([]*proxytest.Qgate, n)
	for i := range qs {
		qs[i] = proxytest.StartQgate(t, cfg)
	}
	return r, qs
}

func drainRule(ack string) func(*proxy.Config) {
	return func(c *proxy.Config) {
		c.Queues = []policy.Rule{{Match: "dq*", Delivery: "at-least-once", Ack: ack, VisibilityTimeout: 30 * time.Second}}
	}
}

// drainStarted waits until q's drain has begun: its listener refuses new connections.
func drainStarted(t *testing.T, q *proxytest.Qgate) {
	t.Helper()
	e2eEventually(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", q.Addr, time.Second)
		if err != nil {
			return true
		}
		_ = c.Close()
		return false
	})
}

// stopAsync runs q.Stop in the background; the channel gets its error and duration.
func stopAsync(q *proxytest.Qgate) <-chan struct {
	err  error
	took time.Duration
} {
	ch := make(chan struct {
		err  error
		took time.Duration
	}, 1)
	go func() {
		start := time.Now()
		err := q.Stop()
		ch <- struct {
			err  error
			took time.Duration
		}{err, time.Since(start)}
	}()
	return ch
}

// Three instances behind clients that reconnect to another instance on EOF; one instance is shut down
// under load. Producers pipeline pushes and resend only those that got no reply; next-pop consumers
// loop on BLPOP. A push that qgate executed without answering would show up twice; a lease the drain
// requeued before its ack would be delivered twice; a lost item would be missing.
func TestDrain_ReconnectingClientsUnderLoadLoseAndDuplicateNothing(t *testing.T) {
	r, qs := drainCluster(t, 3, func(c *proxy.Config) {
		drainRule("next-pop")(c)
		c.ShutdownTimeout = 10 * time.Second
	})
	ctx := e2eCtx(t)
	const producers, consumers, per, pipe = 4, 4, 600, 4
	total := producers * per
	addrs := make([]string, len(qs))
	for i, q := range qs {
		addrs[i] = q.Addr
	}
	// dial connects to the first instance, from start on, that accepts.
	dial := func(start int) (*drainConn, int, error) {
		for k := range len(addrs) {
			i := (start + k) % len(addrs)
			if c, err := drainDial(addrs[i]); err == nil {
				return c, i, nil
			}
		}
		return nil, 0, errors.New("no instance accepts")
	}

	var (
		acked, eofs, resent, errReplies atomic.Int64
		mu                              sync.Mutex
		delivered                       = map[string]int{}
		producersDone                   = make(chan struct{})
		wg, pwg                         sync.WaitGroup
	)
	for p := range producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			pending := make([]string, 0, per)
			for j := range per {
				pending = append(pending, fmt.Sprintf("p%d-%d", p, j))
			}
			var c *drainConn
			at := p
			for len(pending) > 0 && ctx.Err() == nil {
				if c == nil {
					var err error
					if c, at, err = dial(at); err != nil {
						t.Error(err)
						return
					}
				}
				batch := pending[:min(pipe, len(pending))]
				cmds := make([][]string, len(batch))
				for i, id := range batch {
					cmds[i] = []string{"RPUSH", "dq", id}
				}
				answered := 0
				var retry []string
				err := c.send(cmds...)
				for err == nil && answered < len(batch) {
					var rep drainReply
					if rep, err = c.read(); err == nil {
						if rep.err != "" { // refused: not executed, sent again
							errReplies.Add(1)
							retry = append(retry, batch[answered])
						} else {
							acked.Add(1)
						}
						answered++
					}
				}
				if err != nil {
					// No reply: qgate never ran it; send it again (to another instance).
					eofs.Add(1)
					resent.Add(int64(len(batch) - answered))
					_ = c.nc.Close()
					c, at = nil, at+1
				}
				pending = append(append(retry, batch[answered:]...), pending[len(batch):]...)
			}
			if c != nil {
				_ = c.nc.Close()
			}
		}()
	}
	go func() { pwg.Wait(); close(producersDone) }()
	for w := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *drainConn
			at := w
			for ctx.Err() == nil {
				if c == nil {
					var err error
					if c, at, err = dial(at); err != nil {
						t.Error(err)
						return
					}
				}
				done := false
				select {
				case <-producersDone:
					done = true
				default:
				}
				rep, err := drainReply{}, c.send([]string{"BLPOP", "dq", "0.2"})
				if err == nil {
					rep, err = c.read()
				}
				switch {
				case err != nil:
					eofs.Add(1)
					_ = c.nc.Close()
					c, at = nil, at+1
				case rep.err != "":
					errReplies.Add(1)
				case rep.null:
					mu.Lock()
					all := len(delivered) >= total
					mu.Unlock()
					if done && all { // this empty pop acked the last item
						_ = c.nc.Close()
						return
					}
				default:
					mu.Lock()
					delivered[rep.array[1].text]++
					mu.Unlock()
				}
			}
			if c != nil {
				_ = c.nc.Close()
			}
		}()
	}

	// Shut instance 0 down once a third of the items is pushed.
	e2eEventually(t, "a third of the pushes", func() bool { return acked.Load() >= int64(total/3) })
	stopped := stopAsync(qs[0])
	var st struct {
		err  error
		took time.Duration
	}
	select {
	case st = <-stopped:
	case <-ctx.Done():
		t.Fatal("Shutdown did not return")
	}
	if st.err != nil {
		t.Fatalf("Shutdown: %v", st.err)
	}
	wg.Wait()
	<-producersDone
	if t.Failed() {
		return
	}

	dups, missing := 0, 0
	for p := range producers {
		for j := range per {
			switch n := delivered[fmt.Sprintf("p%d-%d", p, j)]; {
			case n == 0:
				missing++
			case n > 1:
				dups += n - 1
			}
		}
	}
	t.Logf("shutdown took %s; %d pushes acknowledged, %d unanswered and resent, %d error replies, %d reconnects",
		st.took.Round(time.Millisecond), acked.Load(), resent.Load(), errReplies.Load(), eofs.Load())
	t.Logf("FIGURE drain_sigterm_1_of_3_under_load error_replies=%d duplicates=%d missing=%d (%d pushes, %d unanswered at the close and resent, shutdown %s)",
		errReplies.Load(), dups, missing, total, resent.Load(), st.took.Round(time.Millisecond))
	if got, want := acked.Load(), int64(total); got != want {
		t.Errorf("acknowledged pushes = %d, want %d", got, want)
	}
	if got, want := dups, 0; got != want {
		t.Errorf("duplicates (a push run without a reply, or a lease requeued by the drain) = %d, want %d", got, want)
	}
	if got, want := missing, 0; got != want {
		t.Errorf("items never delivered = %d, want %d", got, want)
	}
	if got, want := eofs.Load(), int64(1); got < want {
		t.Errorf("reconnects = %d, want at least %d (the drain closed no client: the test proves nothing)", got, want)
	}
	if st.took >= 10*time.Second {
		t.Errorf("shutdown took %s, want under shutdown_timeout 10s", st.took)
	}
	d := r.Client(t)
	if got := d.LLen(ctx, "dq").Val() + d.ZCard(ctx, rdb.InflightKey("dq")).Val() + d.ZCard(ctx, rdb.DelayedKey("dq")).Val(); got != 0 {
		t.Errorf("left in Redis (ready + in flight + delayed) = %d, want 0", got)
	}
}

// QACK works during the drain: a consumer that holds a lease is kept open until it acks it, then
// closed. An idle connection is closed at once. /readyz answers 503 from the start of the drain.
func TestDrain_QackDuringDrainAndReadyz(t *testing.T) {
	r, qs := drainCluster(t, 1, func(c *proxy.Config) {
		drainRule("explicit")(c)
		c.Queues[0].Deliver = "envelope"
		httpOn(c)
		c.ShutdownTimeout = 20 * time.Second
	})
	q := qs[0]
	base := httpBase(t, q)
	if code, body := httpDo(t, "GET", base+"/readyz", "", "", ""); code != 200 {
		t.Fatalf("/readyz before the drain = %d %q, want 200", code, body)
	}
	c := drainDialT(t, q.Addr)
	idle := drainDialT(t, q.Addr)
	if err := c.send([]string{"RPUSH", "dq", "a", "b"}, []string{"LPOP", "dq"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := c.read(); err != nil || rep.text != "2" {
		t.Fatalf("RPUSH = %+v, %v", rep, err)
	}
	rep, err := c.read()
	if err != nil || rep.text == "" {
		t.Fatalf("LPOP = %+v, %v", rep, err)
	}
	receipt := mustReceipt(t, rep.text)
	if err := idle.send([]string{"PING"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := idle.read(); err != nil || rep.text != "PONG" {
		t.Fatalf("PING = %+v, %v", rep, err)
	}

	start := time.Now()
	stopped := stopAsync(q)
	drainStarted(t, q)
	if code, _ := httpDo(t, "GET", base+"/readyz", "", "", ""); code != 503 {
		t.Errorf("/readyz during the drain = %d, want 503", code)
	}
	if _, err := idle.read(); err == nil {
		t.Error("the idle connection got a reply, want EOF")
	} else if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the idle connection was closed after %s, want at once", waited)
	}
	if err := c.send([]string{"QACK", "dq", receipt}); err != nil {
		t.Fatal(err)
	}
	if rep, err := c.read(); err != nil || rep.text != "1" {
		t.Fatalf("QACK during the drain = %+v, %v; want 1", rep, err)
	}
	if _, err := c.read(); err == nil {
		t.Error("the consumer's connection stayed open after its last ack")
	}
	st := <-stopped
	if st.err != nil {
		t.Fatal(st.err)
	}
	if st.took > 10*time.Second {
		t.Errorf("Shutdown took %s after the last ack, want far below shutdown_timeout 20s", st.took)
	}
	d := r.Client(t)
	ctx := e2eCtx(t)
	if got, want := d.LLen(ctx, "dq").Val(), int64(1); got != want {
		t.Errorf("ready after the drain = %d, want %d", got, want)
	}
	if got, want := d.ZCard(ctx, rdb.InflightKey("dq")).Val(), int64(0); got != want {
		t.Errorf("in flight after the drain = %d, want %d", got, want)
	}
}

// With ack: next-pop, a pop sent during the drain acks the previous pop and takes nothing: the client
// gets EOF (the pop is safe to retry elsewhere); the queue keeps its other items.
func TestDrain_NextPopAcksThenCloses(t *testing.T) {
	r, qs := drainCluster(t, 1, func(c *proxy.Config) {
		drainRule("next-pop")(c)
		c.ShutdownTimeout = 20 * time.Second
	})
	q := qs[0]
	c := drainDialT(t, q.Addr)
	if err := c.send([]string{"RPUSH", "dq", "a", "b", "c"}, []string{"LPOP", "dq"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := c.read(); err != nil || rep.text != "3" {
		t.Fatalf("RPUSH = %+v, %v", rep, err)
	}
	if rep, err := c.read(); err != nil || rep.text != "a" {
		t.Fatalf("LPOP = %+v, %v", rep, err)
	}
	stopped := stopAsync(q)
	drainStarted(t, q)
	if err := c.send([]string{"BLPOP", "dq", "0"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := c.read(); err == nil {
		t.Fatalf("BLPOP during the drain = %+v, want EOF", rep)
	}
	st := <-stopped
	if st.err != nil {
		t.Fatal(st.err)
	}
	if st.took > 10*time.Second {
		t.Errorf("Shutdown took %s, want far below shutdown_timeout 20s", st.took)
	}
	d := r.Client(t)
	ctx := e2eCtx(t)
	if got, want := d.LRange(ctx, "dq", 0, -1).Val(), 2; len(got) != want {
		t.Errorf("ready after the drain = %q, want %d items (b and c)", got, want)
	}
	if got, want := d.ZCard(ctx, rdb.InflightKey("dq")).Val(), int64(0); got != want {
		t.Errorf("in flight after the drain = %d, want %d (a acked)", got, want)
	}
}

// A client that never acks holds the drain only until shutdown_timeout; its lease is requeued.
func TestShutdown_BoundedWithClientThatNeverAcks(t *testing.T) {
	const timeout = 2 * time.Second
	r, qs := drainCluster(t, 1, func(c *proxy.Config) {
		drainRule("explicit")(c)
		c.ShutdownTimeout = timeout
	})
	q := qs[0]
	c := drainDialT(t, q.Addr)
	if err := c.send([]string{"RPUSH", "dq", "a"}, []string{"LPOP", "dq"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if rep, err := c.read(); err != nil || rep.err != "" {
			t.Fatalf("reply %+v, %v", rep, err)
		}
	}
	start := time.Now()
	err := q.Server.Shutdown(context.Background())
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Shutdown took %s with shutdown_timeout %s", took.Round(time.Millisecond), timeout)
	if took > timeout+time.Second {
		t.Errorf("Shutdown took %s, want at most shutdown_timeout %s (+1s)", took, timeout)
	}
	if _, err := c.read(); err == nil {
		t.Error("the lease holder's connection is still open after Shutdown")
	}
	d := r.Client(t)
	ctx := e2eCtx(t)
	if got, want := d.LLen(ctx, "dq").Val(), int64(1); got != want {
		t.Errorf("ready after Shutdown = %d, want %d (the lease requeued)", got, want)
	}
	if got, want := d.ZCard(ctx, rdb.InflightKey("dq")).Val(), int64(0); got != want {
		t.Errorf("in flight after Shutdown = %d, want %d", got, want)
	}
}

// A pipeline that reaches a pop during the drain: the commands before the pop are run and answered;
// the pop and everything after it are neither run nor answered (so resending them elsewhere is safe).
func TestDrain_PipelineStopsAtPop(t *testing.T) {
	r, qs := drainCluster(t, 1, func(c *proxy.Config) {
		drainRule("explicit")(c)
		c.ShutdownTimeout = 20 * time.Second
	})
	q := qs[0]
	c := drainDialT(t, q.Addr)
	// A lease keeps the connection open through the drain.
	if err := c.send([]string{"RPUSH", "dq", "a"}, []string{"LPOP", "dq"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if rep, err := c.read(); err != nil || rep.err != "" {
			t.Fatalf("reply %+v, %v", rep, err)
		}
	}
	stopped := stopAsync(q)
	drainStarted(t, q)
	if err := c.send([]string{"RPUSH", "dq", "before"}, []string{"LPOP", "dq"}, []string{"RPUSH", "dq", "after"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := c.read(); err != nil || rep.text != "1" {
		t.Fatalf("RPUSH before the pop = %+v, %v; want 1", rep, err)
	}
	if rep, err := c.read(); err == nil {
		t.Fatalf("LPOP during the drain = %+v, want EOF", rep)
	}
	if st := <-stopped; st.err != nil {
		t.Fatal(st.err)
	}
	d := r.Client(t)
	ctx := e2eCtx(t)
	got := d.LRange(ctx, "dq", 0, -1).Val()
	// "a" comes back (its lease requeued at close), "before" was pushed, "after" never ran.
	if len(got) != 2 {
		t.Fatalf("ready after the drain = %q, want 2 items (a requeued, before)", got)
	}
	for _, it := range got {
		if env := mustDecode(t, it); string(env.Payload) == "after" {
			t.Errorf("the push after the pop ran: %q", got)
		}
	}
}
