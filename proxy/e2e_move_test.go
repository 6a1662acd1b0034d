package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/proxytest"
	"github.com/qgate/qgate/proxy/rdb"
)

// Moves and multi-pops end to end (README "Moving items", proxy/DESIGN.md "Blocking moves"): exact
// bytes against a real redis-server in both protocols, blocking moves waiting in qgate's hub (woken
// by pushes through qgate and straight into Redis, FIFO, timeouts), the reliable-queue pattern with
// workers killed mid-task, and many blocked clients on few backend connections.

// moveRawRules stores values as they are, so qgate's replies and Redis's can be compared byte for byte.
var moveRawRules = []policy.Rule{{Match: "*", Envelope: new(bool)}}

// moveConn is a raw client connection that reads whole RESP replies as their exact bytes.
type moveConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func moveDial(t *testing.T, addr string, proto int) *moveConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, e2eWaitBound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &moveConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	if proto == 3 {
		c.Send("HELLO", "3")
		c.Read()
	}
	return c
}

// Send writes one command as a RESP array.
func (c *moveConn) Send(args ...string) {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(e2eWaitBound))
	if _, err := io.WriteString(c.nc, b.String()); err != nil {
		c.t.Fatalf("send %v: %v", args, err)
	}
}

// Read returns the next whole reply's bytes (the test fails after e2eWaitBound).
func (c *moveConn) Read() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(e2eWaitBound))
	s, err := moveReadReply(c.br)
	if err != nil {
		c.t.Fatalf("read reply: %v (so far %q)", err, s)
	}
	return s
}

// Do sends a command and returns its reply's bytes.
func (c *moveConn) Do(args ...string) string {
	c.t.Helper()
	c.Send(args...)
	return c.Read()
}

// moveReadReply reads one RESP2/RESP3 reply and returns its bytes.
func moveReadReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return line, err
	}
	if len(line) < 3 {
		return line, fmt.Errorf("short line %q", line)
	}
	n, _ := strconv.Atoi(strings.TrimSuffix(line[1:], "\r\n"))
	switch line[0] {
	case '$', '=', '!':
		if n < 0 {
			return line, nil
		}
		body := make([]byte, n+2)
		_, err := io.ReadFull(br, body)
		return line + string(body), err
	case '*', '~', '>', '%', '|':
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		out := line
		for i := 0; i < n; i++ {
			s, err := moveReadReply(br)
			out += s
			if err != nil {
				return out, err
			}
		}
		return out, nil
	}
	return line, nil
}

// moveRESP are the command scripts compared byte for byte with redis-server; keys are set up by
// moveSetup on each backend.
var moveRESP = [][]string{
	// Arity, syntax, numkeys, count and timeout errors, in Redis's check order.
	{"LMOVE", "a", "b", "LEFT"}, {"LMOVE", "a", "b", "up", "down"}, {"LMOVE", "a", "b", "left", "down"},
	{"RPOPLPUSH", "a"}, {"BLMOVE", "a", "b", "LEFT", "LEFT"}, {"BLMOVE", "a", "b", "left", "middle", "0"},
	{"BLMOVE", "a", "b", "middle", "left", "abc"}, {"BLMOVE", "a", "b", "left", "left", "abc"},
	{"BLMOVE", "a", "b", "left", "left", "-1"}, {"BRPOPLPUSH", "a", "b", "abc"}, {"BRPOPLPUSH", "a", "b", "-1"},
	{"BRPOPLPUSH", "a", "b", "1e400"}, {"LMPOP", "1", "a"}, {"LMPOP", "0", "a", "left"}, {"LMPOP", "abc", "a", "left"},
	{"LMPOP", "-1", "a", "left"}, {"LMPOP", "2", "a", "left"}, {"LMPOP", "9223372036854775807", "a", "left"},
	{"LMPOP", "1", "a", "middle"}, {"LMPOP", "1", "a", "left", "count", "0"}, {"LMPOP", "1", "a", "left", "count", "x"},
	{"LMPOP", "1", "a", "left", "count"}, {"LMPOP", "1", "a", "left", "count", "1", "count", "2"},
	{"LMPOP", "1", "a", "left", "foo"}, {"BLMPOP", "0", "1", "a"}, {"BLMPOP", "0", "0", "a", "left"},
	{"BLMPOP", "-1", "0", "a", "left"}, {"BLMPOP", "abc", "1", "a", "middle"},
	{"BLMPOP", "abc", "1", "a", "left", "count", "0"}, {"BLMPOP", "-1", "1", "a", "left"},
	{"BLMPOP", "abc", "1", "a", "left"}, {"BLMPOP", "inf", "1", "a", "left"},
	// Empty sources: nil (LMOVE, RPOPLPUSH), nil array (LMPOP, and every timed-out blocking one).
	{"LMOVE", "none", "b", "LEFT", "LEFT"}, {"RPOPLPUSH", "none", "b"}, {"LMPOP", "2", "none", "none2", "LEFT"},
	{"BLMOVE", "none", "b", "LEFT", "RIGHT", "0.05"}, {"BRPOPLPUSH", "none", "b", "0.05"},
	{"BLMPOP", "0.05", "2", "none", "none2", "RIGHT", "COUNT", "3"},
	// Moves in every direction, rotation, RPOPLPUSH.
	{"LMOVE", "a", "b", "LEFT", "LEFT"}, {"LMOVE", "a", "b", "LEFT", "RIGHT"}, {"LMOVE", "a", "b", "RIGHT", "LEFT"},
	{"lmove", "a", "b", "right", "right"}, {"RPOPLPUSH", "a", "b"}, {"LMOVE", "a", "a", "LEFT", "RIGHT"},
	{"RPOPLPUSH", "a", "a"}, {"LRANGE", "a", "0", "-1"}, {"LRANGE", "b", "0", "-1"},
	{"BLMOVE", "a", "b", "LEFT", "RIGHT", "0"}, {"BRPOPLPUSH", "b", "a", "0"},
	// Wrong types: the source is checked first.
	{"LMOVE", "none", "str", "LEFT", "LEFT"}, {"LMOVE", "a", "str", "LEFT", "LEFT"}, {"LMOVE", "str", "a", "LEFT", "LEFT"},
	{"BLMOVE", "str", "a", "LEFT", "LEFT", "0"}, {"BLMOVE", "none", "str", "LEFT", "LEFT", "0.05"}, {"LMPOP", "2", "none", "str", "LEFT"}, {"LMPOP", "2", "str", "a", "LEFT"},
	{"BLMPOP", "0", "2", "str", "a", "LEFT"},
	// Multi-pops.
	{"LMPOP", "2", "none", "m", "RIGHT", "COUNT", "2"}, {"LMPOP", "1", "m", "left"}, {"LMPOP", "2", "m", "a", "left", "COUNT", "100"},
	{"BLMPOP", "0", "3", "none", "m", "b", "LEFT", "COUNT", "2"}, {"BLMPOP", "0.01", "1", "b", "RIGHT"},
	{"LRANGE", "b", "0", "-1"}, {"LLEN", "m"},
}

// moveSetup gives a backend the keys moveRESP expects.
func moveSetup(t *testing.T, c *redis.Client) {
	t.Helper()
	ctx := context.Background()
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	c.RPush(ctx, "a", "1", "2", "3", "4", "5", "6", "7", "8")
	c.RPush(ctx, "m", "x", "y", "z", "w")
	c.Set(ctx, "str", "v", 0)
}

func TestMove_SameBytesAsRedis(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) { c.Queues = moveRawRules })
	direct := proxytest.StartRedis(t)
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			moveSetup(t, e.Direct)
			moveSetup(t, direct.Client(t))
			q, r := moveDial(t, e.Qgate.Addr, proto), moveDial(t, direct.Addr, proto)
			for _, cmd := range moveRESP {
				if got, want := q.Do(cmd...), r.Do(cmd...); got != want {
					t.Errorf("%s\n qgate %q\n redis %q", strings.Join(cmd, " "), got, want)
				}
			}
		})
	}
}

// moveResult is what a goroutine running a blocking command reports.
type moveResult struct {
	who   int
	reply string
}

// moveBlock sends a blocking command on a new raw connection and reports its reply on the channel.
func moveBlock(t *testing.T, addr string, who int, args ...string) (<-chan moveResult, *moveConn) {
	t.Helper()
	c := moveDial(t, addr, 2)
	c.Send(args...)
	ch := make(chan moveResult, 1)
	go func() {
		_ = c.nc.SetReadDeadline(time.Now().Add(2 * time.Minute))
		s, err := moveReadReply(c.br)
		if err != nil {
			s = "error: " + err.Error()
		}
		ch <- moveResult{who, s}
	}()
	return ch, c
}

func TestBLMove_WokenByPushThroughQgateAndStraightIntoRedis(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) { c.Queues = moveRawRules })
	ctx := e2eCtx(t)
	via := e.Client(t, 2)
	a, _ := moveBlock(t, e.Qgate.Addr, 1, "BLMOVE", "srcA", "dstA", "RIGHT", "LEFT", "0")
	b, _ := moveBlock(t, e.Qgate.Addr, 2, "BLMPOP", "0", "2", "srcB1", "srcB2", "LEFT", "COUNT", "5")
	c, _ := moveBlock(t, e.Qgate.Addr, 3, "BRPOPLPUSH", "srcC", "dstC", "0")
	e2eWaitBlocked(t, via, 3)
	if err := via.RPush(ctx, "srcA", "via-qgate").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.Direct.RPush(ctx, "srcB2", "d1", "d2").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.Direct.LPush(ctx, "srcC", "direct").Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := e2eRecv(t, "BLMOVE reply", a).reply, "$9\r\nvia-qgate\r\n"; got != want {
		t.Errorf("BLMOVE = %q, want %q", got, want)
	}
	if got, want := e2eRecv(t, "BLMPOP reply", b).reply, "*2\r\n$5\r\nsrcB2\r\n*2\r\n$2\r\nd1\r\n$2\r\nd2\r\n"; got != want {
		t.Errorf("BLMPOP = %q, want %q", got, want)
	}
	if got, want := e2eRecv(t, "BRPOPLPUSH reply", c).reply, "$6\r\ndirect\r\n"; got != want {
		t.Errorf("BRPOPLPUSH = %q, want %q", got, want)
	}
	if got, want := e.Direct.LRange(ctx, "dstA", 0, -1).Val(), []string{"via-qgate"}; !slices.Equal(got, want) {
		t.Errorf("dstA = %q, want %q", got, want)
	}
	if got, want := e.Direct.LRange(ctx, "dstC", 0, -1).Val(), []string{"direct"}; !slices.Equal(got, want) {
		t.Errorf("dstC = %q, want %q", got, want)
	}
}

func TestBLMove_FIFOOfWaitersAndTimeouts(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) { c.Queues = moveRawRules })
	ctx := e2eCtx(t)
	via := e.Client(t, 2)
	const waiters = 4
	var chans []<-chan moveResult
	for i := 0; i < waiters; i++ {
		var ch <-chan moveResult
		if i%2 == 0 {
			ch, _ = moveBlock(t, e.Qgate.Addr, i, "BLMOVE", "fifo", "done", "LEFT", "RIGHT", "0")
		} else {
			ch, _ = moveBlock(t, e.Qgate.Addr, i, "BLMPOP", "0", "1", "fifo", "LEFT")
		}
		chans = append(chans, ch)
		e2eWaitBlocked(t, via, i+1) // registered in this order
	}
	// A non-blocking LMOVE by another client does not jump the queue in Redis either, but an item
	// pushed while clients wait goes to the first waiter.
	for i := 0; i < waiters; i++ {
		item := fmt.Sprintf("item%d", i)
		if err := via.RPush(ctx, "fifo", item).Err(); err != nil {
			t.Fatal(err)
		}
		r := e2eRecv(t, "waiter "+strconv.Itoa(i), chans[i])
		want := "$5\r\n" + item + "\r\n"
		if i%2 == 1 {
			want = "*2\r\n$4\r\nfifo\r\n*1\r\n$5\r\n" + item + "\r\n"
		}
		if r.reply != want {
			t.Fatalf("waiter %d got %q, want %q (FIFO)", i, r.reply, want)
		}
	}
	// Timeouts, with go-redis in both protocols: nil, after at least the timeout.
	e2eProtos(t, func(t *testing.T, proto int) {
		c := e.Client(t, proto)
		start := time.Now()
		if err := c.BLMove(ctx, "empty"+strconv.Itoa(proto), "d", "LEFT", "LEFT", 100*time.Millisecond).Err(); !errors.Is(err, redis.Nil) {
			t.Fatalf("BLMOVE timeout: %v, want redis.Nil", err)
		}
		if el := time.Since(start); el < 100*time.Millisecond || el > 5*time.Second {
			t.Fatalf("BLMOVE 0.1 returned after %s", el)
		}
		start = time.Now()
		if _, _, err := c.BLMPop(ctx, 100*time.Millisecond, "left", 2, "empty"+strconv.Itoa(proto)).Result(); !errors.Is(err, redis.Nil) {
			t.Fatalf("BLMPOP timeout: %v, want redis.Nil", err)
		}
		if el := time.Since(start); el < 100*time.Millisecond || el > 5*time.Second {
			t.Fatalf("BLMPOP 0.1 returned after %s", el)
		}
	})
}

// TestReliable_KilledWorkersLoseNothing is Redis's reliable-queue pattern behind qgate: workers
// BLMOVE jobs processing RIGHT LEFT 0, do the task, then LREM processing 1 item (here straight on
// Redis). Some workers are killed (socket closed) after receiving a job and before the LREM, some
// while blocked. With concurrent producers, every job ends up done or in processing: none lost,
// none twice. The queues store values as they are (README "Moving items": the LREM needs the stored
// value, which a payload-mode client of an enveloped queue does not get).
func TestReliable_KilledWorkersLoseNothing(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) { c.Queues = moveRawRules })
	ctx := e2eCtx(t)
	via := e.Client(t, 2)

	// One worker killed mid-task: the job is in the processing list.
	w, _ := moveBlock(t, e.Qgate.Addr, 0, "BLMOVE", "jobs", "processing", "RIGHT", "LEFT", "0")
	e2eWaitBlocked(t, via, 1)
	if err := via.LPush(ctx, "jobs", "first").Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := e2eRecv(t, "the first job", w).reply, "$5\r\nfirst\r\n"; got != want {
		t.Fatalf("worker got %q, want %q", got, want)
	}
	// (the worker's socket is closed when the test ends; the job is there already)
	if got := e.Direct.LLen(ctx, "processing").Val(); got != 1 {
		t.Fatalf("processing holds %d items, want the killed worker's job", got)
	}
	if err := e.Direct.Del(ctx, "processing").Err(); err != nil {
		t.Fatal(err)
	}

	const producers, perProducer, workers = 4, 150, 6
	const total = producers * perProducer
	var (
		mu   sync.Mutex
		done = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := net.Dial("tcp", e.Qgate.Addr)
				if err != nil {
					t.Error(err)
					return
				}
				c := &moveConn{t: t, nc: nc, br: bufio.NewReader(nc)}
				// Each worker connection serves a few jobs, then is killed: mid-task (after a
				// job arrived, before its LREM) or while blocked, in turn.
				for k := 0; k < 5; k++ {
					if k == 4 && n%2 == 1 {
						// Killed while blocked: the take may run at that instant; the item is then in
						// processing.
						c.Send("BLMOVE", "jobs", "processing", "RIGHT", "LEFT", "0.05")
						break
					}
					c.Send("BLMOVE", "jobs", "processing", "RIGHT", "LEFT", "0.2")
					_ = nc.SetReadDeadline(time.Now().Add(e2eWaitBound))
					s, err := moveReadReply(c.br)
					if err != nil {
						t.Errorf("worker %d: %v", i, err)
						_ = nc.Close()
						return
					}
					if s == "*-1\r\n" {
						continue // timeout: no job right now
					}
					job := s[strings.Index(s, "\r\n")+2 : len(s)-2]
					if k == 3 && n%2 == 0 {
						break // killed mid-task: the job stays in processing
					}
					if err := e.Direct.LRem(ctx, "processing", 1, job).Err(); err != nil {
						t.Error(err)
					}
					mu.Lock()
					done[job]++
					mu.Unlock()
				}
				_ = nc.Close()
			}
		}(i)
	}
	var pwg sync.WaitGroup
	for p := 0; p < producers; p++ {
		pwg.Add(1)
		go func(p int) {
			defer pwg.Done()
			c := e.Client(t, 2)
			for i := 0; i < perProducer; i++ {
				if err := c.LPush(ctx, "jobs", fmt.Sprintf("job-%d-%d", p, i)).Err(); err != nil {
					t.Error(err)
					return
				}
			}
		}(p)
	}
	pwg.Wait()
	e2eEventually(t, "the jobs list drained", func() bool { return e.Direct.LLen(ctx, "jobs").Val() == 0 })
	close(stop)
	wg.Wait()
	// Every connection is closed: whatever a take moved meanwhile is in processing by now.
	e2eWaitBlocked(t, via, 0)

	processing := e.Direct.LRange(ctx, "processing", 0, -1).Val()
	seen := map[string]int{}
	for job, n := range done {
		seen[job] += n
	}
	for _, job := range processing {
		seen[job]++
	}
	for _, job := range e.Direct.LRange(ctx, "jobs", 0, -1).Val() {
		seen[job]++
	}
	for p := 0; p < producers; p++ {
		for i := 0; i < perProducer; i++ {
			job := fmt.Sprintf("job-%d-%d", p, i)
			if seen[job] != 1 {
				t.Errorf("%s accounted for %d times, want once", job, seen[job])
			}
			delete(seen, job)
		}
	}
	if len(seen) > 0 {
		t.Errorf("unexpected items: %v", seen)
	}
	if len(processing) == 0 {
		t.Errorf("no job left in processing: the test killed no worker mid-task")
	}
	t.Logf("%d jobs: %d done, %d left in processing by killed workers", total, len(done), len(processing))
}

// TestBLMove_ManyBlockedClientsFewBackendConns: 500 clients blocked in BLMOVE and BLMPOP on 50 queues
// wait on at most 16 backend connections, and each gets one item.
func TestBLMove_ManyBlockedClientsFewBackendConns(t *testing.T) {
	const clients, queues = 500, 50
	e := e2eStart(t, func(c *proxy.Config) { c.Queues = moveRawRules })
	ctx := e2eCtx(t)
	via := e.Client(t, 2)
	got := make([]<-chan moveResult, clients)
	for i := range got {
		q := "mq" + strconv.Itoa(i%queues)
		if i%2 == 0 {
			got[i], _ = moveBlock(t, e.Qgate.Addr, i, "BLMOVE", q, q+":processing", "LEFT", "LEFT", "0")
		} else {
			got[i], _ = moveBlock(t, e.Qgate.Addr, i, "BLMPOP", "0", "2", "mqnone", q, "LEFT")
		}
	}
	e2eWaitBlocked(t, via, clients)
	n, limit := backendConns(t, e.Redis), 16
	if n > limit {
		t.Errorf("backend has %d connections for %d blocked clients on %d queues, want at most %d", n, clients, queues, limit)
	}
	t.Logf("%d clients blocked on %d queues: %d backend connections", clients, queues, n)
	for i := 0; i < clients; i++ {
		if err := via.RPush(ctx, "mq"+strconv.Itoa(i%queues), "item"+strconv.Itoa(i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	items := map[string]bool{}
	deadline := time.After(60 * time.Second)
	for i, ch := range got {
		select {
		case r := <-ch:
			if strings.HasPrefix(r.reply, "*2\r\n") { // BLMPOP: [key, [item]]
				r.reply = r.reply[strings.LastIndex(r.reply[:len(r.reply)-2], "\r\n")+2:]
			} else {
				r.reply = r.reply[strings.Index(r.reply, "\r\n")+2:]
			}
			item := strings.TrimSuffix(r.reply, "\r\n")
			if !strings.HasPrefix(item, "item") || items[item] {
				t.Fatalf("client %d got %q (duplicate or not an item)", i, item)
			}
			items[item] = true
		case <-deadline:
			t.Fatalf("client %d (and maybe more) not served within 60 s", i)
		}
	}
	if n, limit := backendConns(t, e.Redis), 16; n > limit {
		t.Errorf("backend has %d connections after serving, want at most %d", n, limit)
	}
}

// TestMove_ClusterCrossSlot: on Redis Cluster, LMOVE between queues in different slots is refused
// with Redis's own CROSSSLOT error; queues in one slot move; multi-pops span slots.
func TestMove_ClusterCrossSlot(t *testing.T) {
	addrs := proxytest.StartCluster(t, 3)
	cfg := proxytest.ClusterConfig(addrs)
	cfg.Queues = moveRawRules
	q := proxytest.StartQgate(t, cfg)
	ctx := e2eCtx(t)
	c := q.Client(t)
	direct := redis.NewClient(&redis.Options{Addr: addrs[0]})
	t.Cleanup(func() { _ = direct.Close() })
	// Two names in one slot, and one in another slot on the same node as the first.
	bySlot := map[uint16]string{}
	var a, b string
	for i := 0; a == ""; i++ {
		name := "cq" + strconv.Itoa(i)
		if other, ok := bySlot[rdb.Slot(name)]; ok {
			a, b = other, name
		}
		bySlot[rdb.Slot(name)] = name
	}
	other := "cqother"
	if err := c.RPush(ctx, a, "x").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.LMove(ctx, a, b, "LEFT", "RIGHT").Result(); err != nil || got != "x" {
		t.Fatalf("LMOVE %s %s (one slot) = %q, %v", a, b, got, err)
	}
	_, err := c.LMove(ctx, b, other, "LEFT", "RIGHT").Result()
	if got, want := e2eErrText(err), "CROSSSLOT Keys in request don't hash to the same slot"; got != want {
		t.Fatalf("LMOVE across slots: %q, want %q", got, want)
	}
	if n := c.LLen(ctx, b).Val(); n != 1 {
		t.Fatalf("%s holds %d items after the refused move, want 1", b, n)
	}
	_, err = c.BLMove(ctx, b, other, "LEFT", "RIGHT", 0).Result()
	if got, want := e2eErrText(err), "CROSSSLOT Keys in request don't hash to the same slot"; got != want {
		t.Fatalf("BLMOVE across slots: %q, want %q", got, want)
	}
	// LMPOP and BLMPOP pop key by key, so their keys may be in different slots (README "Commands").
	if err := c.RPush(ctx, other, "y").Err(); err != nil {
		t.Fatal(err)
	}
	if key, items, err := c.LMPop(ctx, "left", 5, a, other).Result(); err != nil || key != other || !slices.Equal(items, []string{"y"}) {
		t.Fatalf("LMPOP across slots = %q %q, %v; want %s [y]", key, items, err, other)
	}
	if key, items, err := c.BLMPop(ctx, time.Second, "left", 5, other, b).Result(); err != nil || key != b || !slices.Equal(items, []string{"x"}) {
		t.Fatalf("BLMPOP across slots = %q %q, %v; want %s [x]", key, items, err, b)
	}
}

// TestBLMove_ChainOfWaiters: a client blocked on the destination of a blocked move is served when
// the move's take lands (the move's push wakes it), and BLMPOP on an at-least-once queue leases.
func TestBLMove_ChainOfWaiters(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) {
		c.Queues = []policy.Rule{{Match: "alo*", Delivery: "at-least-once", Envelope: new(bool)}, {Match: "*", Envelope: new(bool)}}
	})
	ctx := e2eCtx(t)
	via := e.Client(t, 2)
	second, _ := moveBlock(t, e.Qgate.Addr, 2, "BLMPOP", "0", "1", "alostage2", "LEFT", "COUNT", "10")
	e2eWaitBlocked(t, via, 1)
	first, _ := moveBlock(t, e.Qgate.Addr, 1, "BLMOVE", "stage1", "alostage2", "LEFT", "RIGHT", "0")
	e2eWaitBlocked(t, via, 2)
	if err := via.RPush(ctx, "stage1", "job").Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := e2eRecv(t, "BLMOVE", first).reply, "$3\r\njob\r\n"; got != want {
		t.Fatalf("BLMOVE = %q, want %q", got, want)
	}
	if got, want := e2eRecv(t, "BLMPOP", second).reply, "*2\r\n$9\r\nalostage2\r\n*1\r\n$3\r\njob\r\n"; got != want {
		t.Fatalf("BLMPOP = %q, want %q", got, want)
	}
	// The at-least-once BLMPOP leased the job.
	if got := e.Direct.ZCard(ctx, rdb.InflightKey("alostage2")).Val(); got != 1 {
		t.Fatalf("%d leases on alostage2, want 1", got)
	}
}

// TestMove_OutOfMemoryAsRedis: at maxmemory with noeviction a move is refused with Redis's own OOM
// reply (LMOVE is denyoom), the item stays in its source; an LMOVE from an empty source is still nil.
func TestMove_OutOfMemoryAsRedis(t *testing.T) {
	e := e2eStart(t, func(c *proxy.Config) { c.Queues = moveRawRules })
	ctx := e2eCtx(t)
	e.Direct.RPush(ctx, "oomsrc", "a")
	faultFill(t, e.Direct)
	// Well below what Redis uses now, so that no client buffer's ups and downs decide the check.
	if err := e.Direct.ConfigSet(ctx, "maxmemory", "1mb").Err(); err != nil {
		t.Fatal(err)
	}
	via := e.Client(t, 3)
	direct := e.DirectClient(t, 3)
	e2eSame(t, ctx, via, direct, "LMOVE", "oomsrc", "oomdst", "LEFT", "LEFT")
	e2eSame(t, ctx, via, direct, "RPOPLPUSH", "oomsrc", "oomdst")
	if _, errText := e2eDo(ctx, via, "BLMOVE", "oomsrc", "oomdst", "LEFT", "LEFT", "0"); !strings.HasPrefix(errText, "OOM ") {
		t.Fatalf("BLMOVE at maxmemory: %q, want Redis's OOM reply", errText)
	}
	e2eSame(t, ctx, via, direct, "LMOVE", "oomnone", "oomdst", "LEFT", "LEFT")
	if got := e.Direct.LRange(ctx, "oomsrc", 0, -1).Val(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("source %q after refused moves, want [a]", got)
	}
}
