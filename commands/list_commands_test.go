package commands_test

import (
	"context"
	"strings"
	"testing"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/policy"
)

func TestList_PushPopReplies(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{Queues: rawRules})
		c, null, nullArr := protoConn(t, s, proto)
		run(t, c, cases{
			{[]string{"RPUSH", "rawq", "a", "b"}, ":2\r\n"},
			{[]string{"LPUSH", "rawq", "z"}, ":3\r\n"},
			{[]string{"rpush", "rawq", "c", "d", "e"}, ":6\r\n"},
			{[]string{"LLEN", "rawq"}, ":6\r\n"},
			{[]string{"LRANGE", "rawq", "0", "-1"}, "*6\r\n" + bulk("z") + bulk("a") + bulk("b") + bulk("c") + bulk("d") + bulk("e")},
			{[]string{"LRANGE", "rawq", "5", "10"}, "*1\r\n" + bulk("e")},
			{[]string{"LRANGE", "rawq", "7", "10"}, "*0\r\n"},
			{[]string{"LPOP", "rawq"}, bulk("z")},
			{[]string{"RPOP", "rawq"}, bulk("e")},
			{[]string{"LPOP", "rawq", "2"}, "*2\r\n" + bulk("a") + bulk("b")},
			{[]string{"RPOP", "rawq", "1"}, "*1\r\n" + bulk("d")},
			{[]string{"LPOP", "rawq", "0"}, "*0\r\n"}, // an existing list: an empty array
			{[]string{"LPOP", "rawq", "10"}, "*1\r\n" + bulk("c")},
			// The list is gone: nil, nil array with COUNT (also COUNT 0), as Redis 7.0.
			{[]string{"LPOP", "rawq"}, null},
			{[]string{"RPOP", "rawq"}, null},
			{[]string{"LPOP", "rawq", "2"}, nullArr},
			{[]string{"LPOP", "rawq", "0"}, nullArr},
			{[]string{"LLEN", "rawq"}, ":0\r\n"},
			{[]string{"LRANGE", "rawq", "0", "-1"}, "*0\r\n"},
		})
	}
}

func TestList_Errors(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c := s.Conn(t)
	send(t, c, "RPUSH", "rawq", "a")
	if err := s.Client.Set(context.Background(), "rawstr", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	const wrongType = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
	run(t, c, cases{
		{[]string{"RPUSH", "rawq"}, errR("ERR wrong number of arguments for 'rpush' command")},
		{[]string{"LPUSH"}, errR("ERR wrong number of arguments for 'lpush' command")},
		{[]string{"LPOP"}, errR("ERR wrong number of arguments for 'lpop' command")},
		{[]string{"LPOP", "rawq", "1", "2"}, errR("ERR wrong number of arguments for 'lpop' command")},
		{[]string{"RPOP", "rawq", "1", "2"}, errR("ERR wrong number of arguments for 'rpop' command")},
		{[]string{"LLEN", "rawq", "x"}, errR("ERR wrong number of arguments for 'llen' command")},
		{[]string{"LRANGE", "rawq", "0"}, errR("ERR wrong number of arguments for 'lrange' command")},
		{[]string{"LPOP", "rawq", "x"}, errR("ERR value is out of range, must be positive")},
		{[]string{"LPOP", "rawq", "-1"}, errR("ERR value is out of range, must be positive")},
		{[]string{"LPOP", "rawq", "01"}, errR("ERR value is out of range, must be positive")},
		{[]string{"LPOP", "rawq", "+1"}, errR("ERR value is out of range, must be positive")},
		{[]string{"LPOP", "rawq", "99999999999999999999"}, errR("ERR value is out of range, must be positive")},
		{[]string{"RPOP", "rawq", ""}, errR("ERR value is out of range, must be positive")},
		{[]string{"LRANGE", "rawq", "0", "x"}, errR("ERR value is not an integer or out of range")},
		{[]string{"LPUSH", "rawstr", "a"}, wrongType},
		{[]string{"RPUSH", "rawstr", "a"}, wrongType},
		{[]string{"LPOP", "rawstr"}, wrongType},
		{[]string{"RPOP", "rawstr", "2"}, wrongType},
		{[]string{"LLEN", "rawstr"}, wrongType},
		{[]string{"LRANGE", "rawstr", "0", "1"}, wrongType},
		// The item is still there after all of that.
		{[]string{"LRANGE", "rawq", "0", "-1"}, "*1\r\n" + bulk("a")},
	})
}

func TestList_InvalidQueueName(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	bad := "ERR invalid queue name \"a b\": use printable ASCII without spaces, quotes, backslashes or * ? [ ]"
	run(t, c, cases{
		{[]string{"RPUSH", "a b", "x"}, errR(bad)},
		{[]string{"LPOP", "a b"}, errR(bad)},
		{[]string{"LLEN", "a b"}, errR(bad)},
		{[]string{"LRANGE", "a b", "0", "1"}, errR(bad)},
		{[]string{"RPUSH", "q*", "x"}, errR(strings.Replace(bad, `"a b"`, `"q*"`, 1))},
		{[]string{"RPUSH", "", "x"}, errR("ERR invalid queue name: use 1 to 200 characters")},
		{[]string{"RPUSH", strings.Repeat("q", 201), "x"}, errR("ERR invalid queue name: use 1 to 200 characters")},
	})
}

// A pipelined batch is answered in command order, each pop seeing the pushes before it.
func TestList_PipelinedBatchKeepsOrder(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c := s.Conn(t)
	got := c.Batch(
		[]string{"RPUSH", "rawq", "a", "b", "c"},
		[]string{"LPOP", "rawq"},
		[]string{"LPOP", "rawq"},
		[]string{"LLEN", "rawq"},
		[]string{"PING"}, // not pipelined: runs after the queued commands
		[]string{"RPOP", "rawq", "5"},
		[]string{"LPOP", "rawq"},
	)
	expect(t, got, ":3\r\n"+bulk("a")+bulk("b")+":1\r\n+PONG\r\n*1\r\n"+bulk("c")+"$-1\r\n")
}

// A pipelined pop's EVALSHA that failed with NOSCRIPT would be re-run with EVAL after the rest of its
// batch, out of order; the engine loads every script when it starts, so the first batch on a fresh
// backend keeps its order (rdb.LoadAll).
func TestList_PipelinedBatchKeepsOrderOnColdScriptCache(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c := s.Conn(t)
	got := c.Batch([]string{"LPOP", "rawq"}, []string{"RPUSH", "rawq", "x"}, []string{"LLEN", "rawq"})
	expect(t, got, "$-1\r\n:1\r\n:1\r\n")
}

// Items of a reply that could not be written go back to the head of their queue.
func TestList_UndeliveredPopGoesBack(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c := s.Conn(t)
	send(t, c, "RPUSH", "rawq", "a", "b", "c")
	c.Undeliverable = true
	expect(t, send(t, c, "LPOP", "rawq", "2"), "*2\r\n"+bulk("a")+bulk("b"))
	expect(t, send(t, c, "LPOP", "rawq"), bulk("a"))
	c.Undeliverable = false
	expect(t, send(t, c, "LRANGE", "rawq", "0", "-1"), "*3\r\n"+bulk("a")+bulk("b")+bulk("c"))
	if got, want := s.Stats().ReturnedItems, int64(3); got != want {
		t.Fatalf("returned items %d, want %d", got, want)
	}
}

func TestList_BlockingPopWithoutWaiting(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{Queues: rawRules})
		c := s.Conn(t)
		if proto == 3 {
			c = s.Conn3(t)
		}
		nullArr := "*-1\r\n"
		if proto == 3 {
			nullArr = "_\r\n"
		}
		run(t, c, cases{
			{[]string{"RPUSH", "rawb", "x", "y"}, ":2\r\n"},
			{[]string{"BLPOP", "rawa", "rawb", "0"}, "*2\r\n" + bulk("rawb") + bulk("x")},
			{[]string{"BRPOP", "rawb", "0.01"}, "*2\r\n" + bulk("rawb") + bulk("y")},
			{[]string{"BLPOP", "rawb", "0.01"}, nullArr},
			{[]string{"BLPOP", "rawb"}, errR("ERR wrong number of arguments for 'blpop' command")},
			{[]string{"BLPOP", "rawb", "x"}, errR("ERR timeout is not a float or out of range")},
			{[]string{"BRPOP", "rawb", "-1"}, errR("ERR timeout is negative")},
		})
		// Replies written before the blocking pop keep their place.
		got := c.Batch([]string{"RPUSH", "rawb", "z"}, []string{"BLPOP", "rawb", "1"}, []string{"LLEN", "rawb"})
		expect(t, got, ":1\r\n*2\r\n"+bulk("rawb")+bulk("z")+":0\r\n")
	}
}

func TestList_BlockingPopMixedDeliveryRefused(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: []policy.Rule{{Match: "alo*", Delivery: "at-least-once"}}})
	c := s.Conn(t)
	expect(t, send(t, c, "BLPOP", "alo", "amo", "0.01"),
		errR("ERR BLPOP cannot wait on at-least-once and at-most-once queues at once"))
}
