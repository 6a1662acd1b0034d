package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// Consumer mode: a separate OS process (this binary re-executed with -consumer) so the driver's
// kill -9 is real. It loops BLPOP queue 1 through qgate and "processes" each message by appending
// one line to its log file with a single write(2) on an O_APPEND descriptor, BEFORE acking:
//
//	C <payload> <attempts> <pid> <unix µs>    a delivery (written before the ack)
//	M <payload> <pid> <unix µs> <why>         explicit ack that did not end a lease (QACK returned 0,
//	                                          or gave up): the item may be delivered again
//
// With -ack explicit the queue delivers envelopes and the consumer sends QACK queue <receipt> after
// the write; an ack that fails because qgate or Redis is down is retried (on a new connection if need
// be: any connection may use a receipt) until the lease would have expired.
// With -ack next-pop the consumer just loops: the next BLPOP acks the previous item.
//
// -work d adds a random pause of up to d/2 before the log write and up to d/2 after it (the work
// around the effect), so kills land inside the window where an item is processed but not acked.

type envelopeMsg struct {
	ID       string          `json:"id"`
	Receipt  string          `json:"receipt"` // the lease receipt, for QACK
	Attempts int             `json:"attempts"`
	Text     *string         `json:"text"`
	JSON     json.RawMessage `json:"json"`
}

type pendingAck struct {
	receipt, payload string
	popped           time.Time
}

func runConsumer(addr, queue, ack, logPath string, visibility, work time.Duration) int {
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		return 1
	}
	pid := os.Getpid()
	ppid := os.Getppid()
	explicit := ack == "explicit"
	write := func(line string) {
		if _, err := f.Write([]byte(line)); err != nil { // one write(2): O_APPEND, whole line
			fmt.Fprintln(os.Stderr, "consumer: write log:", err)
			os.Exit(1)
		}
	}
	var pending *pendingAck
	for {
		if os.Getppid() != ppid { // the driver is gone (Pdeathsig normally gets us first)
			return 0
		}
		c, err := dial(addr, time.Second)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for {
			if os.Getppid() != ppid {
				return 0
			}
			if pending != nil {
				v, err := c.do(5*time.Second, "QACK", queue, pending.receipt)
				if err != nil {
					if time.Since(pending.popped) > visibility {
						write(fmt.Sprintf("M %s %d %d gave-up:%s\n", pending.payload, pid, time.Now().UnixMicro(), oneWord(err.Error())))
						pending = nil
					}
					if isRedisError(err) {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					break // reconnect; the ack is retried on the new connection
				}
				if n, _ := v.(int64); n != 1 {
					write(fmt.Sprintf("M %s %d %d qack=%v\n", pending.payload, pid, time.Now().UnixMicro(), v))
				}
				pending = nil
			}
			v, err := c.do(10*time.Second, "BLPOP", queue, "1")
			if err != nil {
				if isRedisError(err) {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				break
			}
			arr, ok := v.([]any)
			if !ok || len(arr) != 2 {
				continue // nil: timed out
			}
			item, _ := arr[1].(string)
			var env envelopeMsg
			if err := json.Unmarshal([]byte(item), &env); err != nil || env.ID == "" || (explicit && env.Receipt == "") {
				write(fmt.Sprintf("X %q %d %d\n", item, pid, time.Now().UnixMicro()))
				continue
			}
			payload := string(env.JSON)
			if env.Text != nil {
				payload = *env.Text
			}
			// "Work": a random pause, half before the effect (a kill there means a redelivery that
			// nobody saw) and half after it (a kill there means a duplicate).
			var before, after time.Duration
			if work > 0 {
				before = time.Duration(rand.Int64N(int64(work)/2 + 1))
				after = time.Duration(rand.Int64N(int64(work)/2 + 1))
			}
			time.Sleep(before)
			write(fmt.Sprintf("C %s %d %d %d\n", payload, env.Attempts, pid, time.Now().UnixMicro()))
			time.Sleep(after)
			if explicit {
				pending = &pendingAck{receipt: env.Receipt, payload: payload, popped: time.Now()}
			}
		}
		_ = c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

func oneWord(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t' {
			b[i] = '_'
		}
	}
	if len(b) > 60 {
		b = b[:60]
	}
	return string(b)
}
