package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// delivery is one "C" line of a consumer log.
type delivery struct {
	attempts int
	pid      int
	t        int64 // unix µs, when the consumer wrote it (after the pop, before the ack)
	slot     int
}

// ackMiss is one "M" line: an explicit ack that did not end a lease.
type ackMiss struct {
	pid int
	t   int64
	why string
}

// ledger reads the consumer logs incrementally and keeps every delivery of every message.
type ledger struct {
	paths   []string
	offsets []int64
	del     [][]delivery // by message number
	misses  map[int][]ackMiss
	unique  int      // messages delivered at least once
	total   int      // deliveries
	foreign []string // lines that are not deliveries of m-<n> with n < messages
}

func newLedger(paths []string, messages int) *ledger {
	return &ledger{paths: paths, offsets: make([]int64, len(paths)), del: make([][]delivery, messages),
		misses: map[int][]ackMiss{}}
}

// read consumes the complete lines appended to the logs since the last call.
func (l *ledger) read() error {
	for i, p := range l.paths {
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := f.Seek(l.offsets[i], io.SeekStart); err != nil {
			f.Close()
			return err
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return err
		}
		end := bytes.LastIndexByte(b, '\n')
		if end < 0 {
			continue
		}
		b = b[:end+1]
		l.offsets[i] += int64(len(b))
		for len(b) > 0 {
			j := bytes.IndexByte(b, '\n')
			l.line(i, string(b[:j]))
			b = b[j+1:]
		}
	}
	return nil
}

func (l *ledger) line(slot int, s string) {
	f := strings.Fields(s)
	bad := func() {
		if len(l.foreign) < 1000 {
			l.foreign = append(l.foreign, fmt.Sprintf("consumer %d: %q", slot, s))
		}
	}
	if len(f) < 4 {
		bad()
		return
	}
	n, ok := msgNum(f[1], len(l.del))
	if !ok {
		bad()
		return
	}
	switch {
	case f[0] == "C" && len(f) == 5:
		att, err1 := strconv.Atoi(f[2])
		pid, err2 := strconv.Atoi(f[3])
		t, err3 := strconv.ParseInt(f[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			bad()
			return
		}
		if len(l.del[n]) == 0 {
			l.unique++
		}
		l.total++
		l.del[n] = append(l.del[n], delivery{attempts: att, pid: pid, t: t, slot: slot})
	case f[0] == "M" && len(f) >= 4:
		pid, err1 := strconv.Atoi(f[2])
		t, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			bad()
			return
		}
		why := ""
		if len(f) > 4 {
			why = f[4]
		}
		l.misses[n] = append(l.misses[n], ackMiss{pid: pid, t: t, why: why})
	default:
		bad()
	}
}

// msgNum parses "m-<n>".
func msgNum(s string, limit int) (int, bool) {
	if !strings.HasPrefix(s, "m-") {
		return 0, false
	}
	n, err := strconv.Atoi(s[2:])
	if err != nil || n < 0 || n >= limit {
		return 0, false
	}
	return n, true
}

// event is one thing the driver did.
type event struct {
	kind string // "qgate", "consumer", "redis"
	pid  int    // the killed process
	t    int64  // unix µs just before the kill
}

// Duplicate causes, in the order they are tried for each extra delivery.
const (
	causeConsumer = "the consumer that had it was killed before acking"
	causeQgate    = "qgate was killed before the ack took effect"
	causeRedis    = "Redis was killed before the ack took effect"
	causeFreeze   = "Redis froze (SIGSTOP) past the visibility timeout before the ack took effect"
	causeAckMiss  = "its ack found no lease (expired first)"
	causeNone     = "no failure in between (lease expired during the work?)"
)

var causeOrder = []string{causeConsumer, causeQgate, causeRedis, causeFreeze, causeAckMiss, causeNone}

// dupReport explains every delivery after a message's first one.
type dupReport struct {
	messages    int            // messages delivered more than once
	extra       int            // deliveries beyond the first
	byCause     map[string]int // extra deliveries by cause
	byQueue     map[string]int // messages delivered more than once, by queue
	sameAttempt []string       // examples: a redelivery whose attempts did not grow (not a lease retry)
	unexplained []string       // examples of causeNone
	maxCopies   int
	maxExample  string // the deliveries of a message with maxCopies copies

	sameAttemptMsgs, unexplainedMsgs int // messages with such deliveries
}

// explain attributes each redelivery (a delivery of a message already delivered) to the first
// failure that happened between the previous delivery and this one. slack covers the gap between
// the driver's timestamp and the kill itself.
func (l *ledger) explain(events []event, queueOf func(int) string, slack int64) dupReport {
	r := dupReport{byCause: map[string]int{}, byQueue: map[string]int{}}
	sort.Slice(events, func(i, j int) bool { return events[i].t < events[j].t })
	// firstFailure is the first event after a delivery (from) and before the redelivery (to) that
	// could have broken it: a kill of the consumer that had it, a qgate kill, a Redis restart.
	firstFailure := func(pid int, from, to int64) string {
		i := sort.Search(len(events), func(i int) bool { return events[i].t >= from-slack })
		for ; i < len(events) && events[i].t <= to; i++ {
			switch e := events[i]; {
			case e.kind == "consumer" && e.pid == pid:
				return causeConsumer
			case e.kind == "qgate":
				return causeQgate
			case e.kind == "redis":
				return causeRedis
			case e.kind == "freeze":
				return causeFreeze
			}
		}
		return ""
	}
	for n, ds := range l.del {
		if len(ds) < 2 {
			continue
		}
		r.messages++
		r.byQueue[queueOf(n)]++
		sort.Slice(ds, func(i, j int) bool { return ds[i].t < ds[j].t })
		if len(ds) > r.maxCopies {
			r.maxCopies = len(ds)
			r.maxExample = fmt.Sprintf("m-%d: %s", n, fmtDeliveries(ds))
		}
		sameNoted, noneNoted := false, false
		for k := 1; k < len(ds); k++ {
			a, b := ds[k-1], ds[k]
			r.extra++
			if b.attempts <= a.attempts && !sameNoted {
				sameNoted = true
				r.sameAttemptMsgs++
				if len(r.sameAttempt) < 10 {
					r.sameAttempt = append(r.sameAttempt, fmt.Sprintf("m-%d: %s", n, fmtDeliveries(ds)))
				}
			}
			cause := firstFailure(a.pid, a.t, b.t)
			if cause == "" {
				cause = causeNone
				if l.missed(n, a.pid, a.t, b.t) {
					cause = causeAckMiss
				}
			}
			r.byCause[cause]++
			if cause == causeNone && !noneNoted {
				noneNoted = true
				r.unexplainedMsgs++
				if len(r.unexplained) < 10 {
					r.unexplained = append(r.unexplained, fmt.Sprintf("m-%d: %s", n, fmtDeliveries(ds)))
				}
			}
		}
	}
	return r
}

func (l *ledger) missed(n, pid int, from, to int64) bool {
	for _, m := range l.misses[n] {
		if m.pid == pid && m.t >= from && m.t <= to {
			return true
		}
	}
	return false
}

// fmtDeliveries shows a message's deliveries (the first 4 and the last 2 of long lists).
func fmtDeliveries(ds []delivery) string {
	var parts []string
	for i, d := range ds {
		if len(ds) > 6 && i == 4 {
			parts = append(parts, fmt.Sprintf("… %d more …", len(ds)-6))
		}
		if len(ds) > 6 && i >= 4 && i < len(ds)-2 {
			continue
		}
		parts = append(parts, fmt.Sprintf("[consumer %d pid %d attempts %d at %s]", d.slot, d.pid, d.attempts, fmtMicro(d.t)))
	}
	return fmt.Sprintf("%d deliveries: %s", len(ds), strings.Join(parts, " "))
}

// lateRedeliveries lists messages delivered again after since, when no failure could cause it
// any more.
func (l *ledger) lateRedeliveries(since int64) (msgs int, examples []string) {
	for n, ds := range l.del {
		late := false
		for k, d := range ds {
			if k > 0 && d.t > since {
				late = true
			}
		}
		if late {
			msgs++
			if len(examples) < 10 {
				examples = append(examples, fmt.Sprintf("m-%d: %s", n, fmtDeliveries(ds)))
			}
		}
	}
	return msgs, examples
}
