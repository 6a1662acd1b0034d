package commands_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
)

// At-least-once queues (README "Retry rules"): pops lease, QACK/QNACK/QEXTEND end or change leases
// by receipt, ack: next-pop acks with the connection's next pop, QSTATS/QDEAD/QREDRIVE.

func one() *int { n := 1; return &n }

var leaseRules = []policy.Rule{
	{Match: "alo*", Delivery: "at-least-once"},
	{Match: "np*", Delivery: "at-least-once", Ack: "next-pop"},
	{Match: "dl*", Delivery: "at-least-once", MaxAttempts: one()},
	{Match: "rawalo*", Delivery: "at-least-once", Envelope: new(bool)},
}

// stats is QSTATS's RESP2 reply (a flat array) with the oldest ready item's age as given (the queue
// not paused, nothing dropped).
func stats(ready, inFlight, delayed, dead, handoff int, age string) string {
	out := "*16\r\n"
	for _, f := range []struct {
		k string
		v int
	}{{"ready", ready}, {"in_flight", inFlight}, {"delayed", delayed}, {"dead", dead}, {"handoff", handoff}} {
		out += bulk(f.k) + ":" + itoa(f.v) + "\r\n"
	}
	return out + bulk("oldest_ready_age_ms") + ":" + age + "\r\n" + bulk("paused") + ":0\r\n" + bulk("dropped") + ":0\r\n"
}

var ageValue = regexp.MustCompile(`(oldest_ready_age_ms\r\n:)\d+`)

// qstats sends QSTATS and shows a non-negative age as "age" (it is a clock reading).
func qstats(t *testing.T, c *commandstest.Conn, queue string) string {
	t.Helper()
	return ageValue.ReplaceAllString(send(t, c, "QSTATS", queue), "${1}age")
}

// receipt returns the receipt of an envelope delivered as a bulk string reply.
func receipt(t *testing.T, reply string) (payload, receipt string) {
	t.Helper()
	i := strings.Index(reply, "\r\n")
	if !strings.HasPrefix(reply, "$") || i < 0 {
		t.Fatalf("not a bulk string: %q", reply)
	}
	body := reply[i+2 : len(reply)-2]
	env, ok := envelope.Decode([]byte(body))
	if !ok || env.Receipt == "" {
		t.Fatalf("not an envelope with a receipt: %q", body)
	}
	return string(env.Payload), env.Receipt
}

func TestLease_PopAckNackExtend(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: leaseRules})
	c := s.Conn(t)
	expect(t, send(t, c, "QDELIVERY", "envelope"), "+OK\r\n")
	expect(t, send(t, c, "RPUSH", "aloq", "a", "b"), ":2\r\n")
	expect(t, qstats(t, c, "aloq"), stats(2, 0, 0, 0, 0, "age"))

	pa, ra := receipt(t, send(t, c, "LPOP", "aloq"))
	if pa != "a" {
		t.Fatalf("first pop delivered %q, want a", pa)
	}
	expect(t, qstats(t, c, "aloq"), stats(1, 1, 0, 0, 0, "age"))
	run(t, c, cases{
		{[]string{"QEXTEND", "aloq", ra, "60000"}, ":1\r\n"},
		{[]string{"QEXTEND", "aloq", "nosuch", "60000"}, ":0\r\n"},
		{[]string{"QEXTEND", "aloq", ra, "0"}, errR("ERR QEXTEND ms must be a positive integer")},
		{[]string{"QEXTEND", "aloq", ra, "x"}, errR("ERR QEXTEND ms must be a positive integer")},
		{[]string{"QACK", "aloq", ra, "nosuch"}, ":1\r\n"},
		{[]string{"QACK", "aloq", ra}, ":0\r\n"}, // a receipt ends its lease once
		{[]string{"QEXTEND", "aloq", ra, "1000"}, ":0\r\n"},
	})
	expect(t, qstats(t, c, "aloq"), stats(1, 0, 0, 0, 0, "age"))

	pb, rb := receipt(t, send(t, c, "LPOP", "aloq"))
	if pb != "b" {
		t.Fatalf("second pop delivered %q, want b", pb)
	}
	run(t, c, cases{
		{[]string{"QNACK", "aloq", rb, "x"}, errR("ERR QNACK delay-ms must be an integer >= 0")},
		{[]string{"QNACK", "aloq", rb, "-1"}, errR("ERR QNACK delay-ms must be an integer >= 0")},
		{[]string{"QNACK", "aloq", rb, "0"}, ":1\r\n"}, // back to the ready list at once
		{[]string{"QNACK", "aloq", rb, "0"}, ":0\r\n"},
	})
	expect(t, qstats(t, c, "aloq"), stats(1, 0, 0, 0, 0, "age"))
	// The redelivered item counts its attempt and has a new receipt.
	reply := send(t, c, "LPOP", "aloq")
	env, _ := envelope.Decode([]byte(reply[strings.Index(reply, "\r\n")+2 : len(reply)-2]))
	if string(env.Payload) != "b" || env.Attempts != 1 || env.Receipt == rb {
		t.Fatalf("redelivery: payload %q, attempts %d, receipt changed %v", env.Payload, env.Attempts, env.Receipt != rb)
	}
	st := s.Stats()
	if st.Leased != 3 || st.Acked != 1 || st.Retried != 1 {
		t.Fatalf("lease counters: leased %d, acked %d, retried %d; want 3, 1, 1", st.Leased, st.Acked, st.Retried)
	}
}

func TestLease_PopReplies(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{Queues: leaseRules})
		c, null, nullArr := protoConn(t, s, proto)
		run(t, c, cases{
			{[]string{"LPOP", "aloq"}, null},
			{[]string{"LPOP", "aloq", "2"}, nullArr},
			{[]string{"RPUSH", "aloq", "a", "b", "c", "d"}, ":4\r\n"},
			// Payload delivery (the default): no receipt.
			{[]string{"LPOP", "aloq"}, bulk("a")},
			{[]string{"RPOP", "aloq"}, bulk("d")},
			{[]string{"LPOP", "aloq", "0"}, "*0\r\n"},
			{[]string{"LPOP", "aloq", "5"}, "*2\r\n" + bulk("b") + bulk("c")},
			{[]string{"LPOP", "aloq", "5"}, nullArr},
			{[]string{"LPOP", "aloq", "-1"}, errR("ERR value is out of range, must be positive")},
			{[]string{"LPOP", "aloq", "x"}, errR("ERR value is out of range, must be positive")},
			{[]string{"RPUSH", "aloq", "e"}, ":1\r\n"},
			{[]string{"BLPOP", "aloq", "0"}, "*2\r\n" + bulk("aloq") + bulk("e")},
			{[]string{"BLPOP", "aloq", "alo2", "0.01"}, nullArr},
			// A raw (envelope-less) at-least-once queue delivers the item as stored.
			{[]string{"RPUSH", "rawaloq", "r"}, ":1\r\n"},
			{[]string{"LPOP", "rawaloq", "1"}, "*1\r\n" + bulk("r")},
		})
		expect(t, qstats(t, c, "aloq"), strings.Replace(stats(0, 5, 0, 0, 0, "-1"), "*16\r\n", map[int]string{2: "*16\r\n", 3: "%8\r\n"}[proto], 1))
	}
}

// COUNT of a leased pop is parsed as Redis parses LPOP's: no '+', no leading zeros.
func TestLease_PopCountParsedAsRedis(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: leaseRules})
	c := s.Conn(t)
	send(t, c, "RPUSH", "aloq", "a", "b")
	run(t, c, cases{
		{[]string{"LPOP", "aloq", "+1"}, errR("ERR value is out of range, must be positive")},
		{[]string{"LPOP", "aloq", "01"}, errR("ERR value is out of range, must be positive")},
		{[]string{"LPOP", "aloq", " 1"}, errR("ERR value is out of range, must be positive")},
		{[]string{"LLEN", "aloq"}, ":2\r\n"},
	})
}

func TestLease_AckNextPop(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: leaseRules})
	c := s.Conn(t)
	send(t, c, "RPUSH", "npq", "a", "b")
	expect(t, send(t, c, "LPOP", "npq"), bulk("a"))
	expect(t, qstats(t, c, "npq"), stats(1, 1, 0, 0, 0, "age"))
	expect(t, send(t, c, "LPOP", "npq"), bulk("b")) // acks a
	expect(t, qstats(t, c, "npq"), stats(0, 1, 0, 0, 0, "-1"))
	expect(t, send(t, c, "LPOP", "npq"), "$-1\r\n") // finds nothing, still acks b
	expect(t, qstats(t, c, "npq"), stats(0, 0, 0, 0, 0, "-1"))
	if got, want := s.Stats().Acked, int64(2); got != want {
		t.Fatalf("acked %d, want %d", got, want)
	}
}

// A connection that closes gives its leases back at once (a failed attempt).
func TestLease_CloseRequeues(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: leaseRules})
	c, other := s.Conn(t), s.Conn(t)
	send(t, c, "RPUSH", "aloq", "a")
	expect(t, send(t, c, "LPOP", "aloq"), bulk("a"))
	expect(t, qstats(t, other, "aloq"), stats(0, 1, 0, 0, 0, "-1"))
	c.Close()
	expect(t, qstats(t, other, "aloq"), stats(1, 0, 0, 0, 0, "age"))
	expect(t, send(t, other, "LPOP", "aloq"), bulk("a"))
}

func TestLease_DeadAndRedrive(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: leaseRules})
	c := s.Conn(t)
	send(t, c, "QDELIVERY", "envelope")
	send(t, c, "RPUSH", "dlq", "x", "y")
	_, r := receipt(t, send(t, c, "LPOP", "dlq"))
	expect(t, send(t, c, "QNACK", "dlq", r), ":1\r\n") // max_attempts 1: dead
	expect(t, qstats(t, c, "dlq"), stats(1, 0, 0, 1, 0, "age"))

	got := send(t, c, "QDEAD", "dlq")
	if !strings.HasPrefix(got, "*1\r\n$") {
		t.Fatalf("QDEAD = %q", got)
	}
	var rec struct {
		Reason   string `json:"reason"`
		Attempts int    `json:"attempts"`
		Item     string `json:"item"`
	}
	body := got[strings.Index(got[4:], "\r\n")+6 : len(got)-2]
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatalf("QDEAD record %q: %v", body, err)
	}
	if env, ok := envelope.Decode([]byte(rec.Item)); !ok || string(env.Payload) != "x" || rec.Attempts != 1 || rec.Reason == "" {
		t.Fatalf("dead record %+v", rec)
	}
	run(t, c, cases{
		{[]string{"QDEAD", "dlq", "0"}, errR("ERR QDEAD count must be a positive integer")},
		{[]string{"QDEAD", "dlq", "x"}, errR("ERR QDEAD count must be a positive integer")},
		{[]string{"QDEAD", "nothing"}, "*0\r\n"},
		{[]string{"QREDRIVE", "dlq", "-1"}, errR("ERR QREDRIVE count must be a positive integer")},
		{[]string{"QREDRIVE", "dlq"}, ":1\r\n"},
		{[]string{"QREDRIVE", "dlq", "5"}, ":0\r\n"},
		{[]string{"QDEAD", "dlq", "3"}, "*0\r\n"},
	})
	expect(t, qstats(t, c, "dlq"), stats(2, 0, 0, 0, 0, "age"))
	// Redriven at the tail with attempts reset.
	reply := send(t, c, "RPOP", "dlq")
	env, _ := envelope.Decode([]byte(reply[strings.Index(reply, "\r\n")+2 : len(reply)-2]))
	if string(env.Payload) != "x" || env.Attempts != 0 {
		t.Fatalf("redriven item: payload %q, attempts %d", env.Payload, env.Attempts)
	}
}

func TestQueue_QStatsShapes(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c2, c3 := s.Conn(t), s.Conn3(t)
	expect(t, send(t, c2, "QSTATS", "rawq"), stats(0, 0, 0, 0, 0, "-1"))
	send(t, c2, "RPUSH", "rawq", "x")
	// A raw item has no enqueue time: the age is -1.
	want := "%8\r\n" + strings.TrimPrefix(stats(1, 0, 0, 0, 0, "-1"), "*16\r\n")
	expect(t, send(t, c3, "QSTATS", "rawq"), want)
	expect(t, send(t, c2, "QSTATS", "a b"), errR(`ERR invalid queue name "a b": use printable ASCII without spaces, quotes, backslashes or * ? [ ]`))
}
