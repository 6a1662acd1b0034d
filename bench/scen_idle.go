package main

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Targets for idle blocked clients through qgate (README "Benchmarks").
const (
	idleTargetKiB   = 16.0
	idleTargetConns = 16
)

// idleResult is what the idle-blocked scenario found on one target.
type idleResult struct {
	Target       string
	Conns        int
	Queues       int
	RSSBefore    int64
	RSSAfter     int64
	BackendConns int // backend connections (CLIENT LIST on the backend, less the bench's own)
	BackendInfo  string
	ConnectTime  time.Duration // to open all connections and send BLPOP
	BlockTime    time.Duration // until INFO blocked_clients showed them all
	IdleCPU      time.Duration // CPU of the measured process during a 1 s idle pause
	Delivered    int           // items received after pushing one per blocked client
	Duplicates   int
	Leftover     int64  // items still in the lists after delivery
	Mode         string // BLPOP or SUBSCRIBE
	BackendSubs  int64  // PUBSUB NUMSUB on the backend (subscribers)
	Err          string
}

func (r idleResult) perClientKiB() float64 {
	return float64(r.RSSAfter-r.RSSBefore) / 1024 / float64(r.Conns)
}

// runIdle opens many connections that each block in BLPOP (timeout 0) on one of a few queues
// and leaves them idle; it measures the process memory and the backend connections used. Then the
// same with subscribers of one channel. Each run gets a fresh redis-server (and qgate), so nothing
// else shares the backend's client list or the process's memory.
func (b *bench) runIdle() {
	for _, subscribe := range []bool{false, true} {
		for _, viaQgate := range []bool{true, false} {
			name := tDirect
			if viaQgate {
				name = tQgate
			}
			if subscribe {
				name += " (subscribers)"
			}
			b.prog.step(fmt.Sprintf("idle-blocked %d connections → %s", b.cfg.IdleConns, name))
			res := b.idleRun(viaQgate, subscribe)
			res.Target = name
			b.idle = append(b.idle, res)
			if res.Err != "" && viaQgate {
				b.warn("idle-blocked through qgate: %s", res.Err)
			}
		}
	}
}

func (b *bench) idleRun(viaQgate, subscribe bool) (res idleResult) {
	n, nq := b.cfg.IdleConns, b.cfg.IdleQueues
	res.Conns, res.Queues = n, nq
	fail := func(format string, a ...any) idleResult {
		res.Err = fmt.Sprintf(format, a...)
		return res
	}
	r2, err := launchRedis(filepath.Join(b.dir, fmt.Sprintf("idle-%d", b.seq.Add(1))))
	if err != nil {
		return fail("start redis: %v", err)
	}
	defer r2.Close()
	adm, err := dial(r2.Addr)
	if err != nil {
		return fail("%v", err)
	}
	defer adm.Close()
	pid64, err := infoInt(adm, "server", "process_id")
	if err != nil {
		return fail("%v", err)
	}
	addr, pid := r2.Addr, int(pid64)
	var q *proc
	if viaQgate {
		if q, err = startQgate(b.qgateBin, r2.URL(), b.qgateArgs()...); err != nil {
			return fail("start qgate: %v", err)
		}
		defer func() {
			q.Stop()
			b.scanQgateLog(q)
		}()
		addr, pid = q.Addr, q.PID
	}
	time.Sleep(300 * time.Millisecond)
	if res.RSSBefore, err = procRSS(pid); err != nil {
		return fail("RSS: %v", err)
	}

	// Open the connections with plain sockets and no reader goroutine: the bench stays light.
	queues := make([]string, nq)
	cmds := make([][]byte, nq)
	const channel = "bench:idle:chan"
	for i := range queues {
		queues[i] = fmt.Sprintf("bench:idle:%d", i)
		cmds[i] = appendCmd(nil, "BLPOP", queues[i], "0")
		if subscribe {
			cmds[i] = appendCmd(nil, "SUBSCRIBE", channel)
		}
	}
	conns := make([]net.Conn, n)
	readers := make([]*rconn, n)
	reader := func(i int) *rconn {
		if readers[i] == nil {
			readers[i] = &rconn{nc: conns[i], r: bufio.NewReaderSize(conns[i], 256)}
		}
		return readers[i]
	}
	res.Mode = "BLPOP"
	if subscribe {
		res.Mode = "SUBSCRIBE"
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	t0 := time.Now()
	if err := parallel(n, 32, func(i int) error {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return err
		}
		conns[i] = c
		_, err = c.Write(cmds[i%nq])
		return err
	}); err != nil {
		return fail("open %d connections: %v", n, err)
	}
	res.ConnectTime = time.Since(t0)
	if subscribe {
		if err := parallel(n, 64, func(i int) error {
			c := reader(i)
			_ = c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
			v, err := c.read()
			if arr, ok := v.([]any); err == nil && (!ok || len(arr) != 3 || arr[0] != "subscribe") {
				err = fmt.Errorf("SUBSCRIBE reply %#v", v)
			}
			return err
		}); err != nil {
			return fail("subscribe: %v", err)
		}
	} else if err := waitBlocked(addr, n, 60*time.Second); err != nil {
		return fail("%v", err)
	}
	res.BlockTime = time.Since(t0)

	settle := time.Second
	if b.cfg.Quick {
		settle = 300 * time.Millisecond
	}
	cpu0, _ := procCPU(pid)
	time.Sleep(settle)
	cpu1, _ := procCPU(pid)
	res.IdleCPU = cpu1 - cpu0
	if res.RSSAfter, err = procRSS(pid); err != nil {
		return fail("RSS: %v", err)
	}
	if viaQgate {
		v, err := adm.do("CLIENT", "LIST")
		if err != nil {
			return fail("CLIENT LIST: %v", err)
		}
		list, _ := v.(string)
		lines := strings.Count(strings.TrimSpace(list), "\n") + 1
		res.BackendConns = lines - 1 // less the bench's own admin connection
		if mon, err := dial(addr); err == nil {
			if v, err := mon.do("INFO", "qgate"); err == nil {
				s, _ := v.(string)
				var parts []string
				for _, f := range []string{"backend_pool_conns", "backend_wait_conns", "backend_pubsub_conns"} {
					if x, ok := infoField(s, f); ok {
						parts = append(parts, f+"="+x)
					}
				}
				res.BackendInfo = strings.Join(parts, " ")
			}
			_ = mon.Close()
		}
	} else {
		res.BackendConns = n
	}

	if subscribe {
		// Every subscriber must get the one message published straight on the backend.
		if k, err := adm.do("PUBSUB", "NUMSUB", channel); err == nil {
			if arr, ok := k.([]any); ok && len(arr) == 2 {
				res.BackendSubs, _ = arr[1].(int64)
			}
		}
		if _, err := adm.do("PUBLISH", channel, "0:hello"); err != nil {
			return fail("PUBLISH: %v", err)
		}
	} else {
		// Every blocked client must get exactly one item once one per client is pushed (straight
		// into Redis, as a legacy producer would).
		per := make([]int, nq)
		for i := range n {
			per[i%nq]++
		}
		for qi, cnt := range per {
			for off := 0; off < cnt; off += 1000 {
				args := []string{"RPUSH", queues[qi]}
				for j := off; j < min(cnt, off+1000); j++ {
					args = append(args, fmt.Sprintf("%d:%d", qi, j))
				}
				if _, err := adm.do(args...); err != nil {
					return fail("RPUSH: %v", err)
				}
			}
		}
	}
	var (
		mu        sync.Mutex
		seen      = make(map[string]bool, n)
		delivered atomic.Int64
		dups      atomic.Int64
		readErrs  atomic.Int64
		firstErr  atomic.Value
	)
	_ = parallel(n, 64, func(i int) error {
		rc := reader(i)
		_ = rc.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		v, err := rc.read()
		arr, ok := v.([]any)
		if subscribe && err == nil && ok && len(arr) == 3 && arr[0] == "message" {
			delivered.Add(1)
			return nil
		}
		if subscribe || err != nil || !ok || len(arr) != 2 {
			if readErrs.Add(1) == 1 {
				firstErr.Store(fmt.Sprintf("client %d: reply %#v, err %v", i, v, err))
			}
			return nil
		}
		val, _ := arr[1].(string)
		mu.Lock()
		if seen[val] {
			dups.Add(1)
		}
		seen[val] = true
		mu.Unlock()
		delivered.Add(1)
		return nil
	})
	res.Delivered, res.Duplicates = int(delivered.Load()), int(dups.Load())
	for _, qn := range queues {
		if v, err := adm.do("LLEN", qn); err == nil {
			k, _ := v.(int64)
			res.Leftover += k
		}
	}
	if subscribe && (readErrs.Load() > 0 || res.Delivered != n) {
		fe, _ := firstErr.Load().(string)
		return fail("after one PUBLISH on the backend: %d of %d subscribers got it (%s)", res.Delivered, n, fe)
	}
	if readErrs.Load() > 0 || res.Delivered != n || res.Duplicates > 0 || res.Leftover > 0 {
		fe, _ := firstErr.Load().(string)
		return fail("after pushing one item per blocked client: %d of %d delivered, %d duplicates, %d left in the lists, %d clients got no item (%s)",
			res.Delivered, n, res.Duplicates, res.Leftover, readErrs.Load(), fe)
	}
	return res
}

// parallel runs fn(0..n-1) on `workers` goroutines and returns the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = fmt.Errorf("item %d: %w", i, err) })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
