package commands_test

import (
	"context"
	"strings"
	"testing"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
)

// The list edits (commands/list_edit_commands.go) and key commands (key_commands.go). Expected
// replies were recorded from Redis 7.0.15; proxy/e2e_listedit_test.go compares them with a real
// redis-server byte for byte.

const wrongTypeR = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"

func TestListEdit_RawReplies(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{Queues: rawRules})
		c, null, _ := protoConn(t, s, proto)
		run(t, c, cases{
			{[]string{"RPUSHX", "rawq", "a"}, ":0\r\n"},
			{[]string{"LPUSHX", "rawq", "a"}, ":0\r\n"},
			{[]string{"LINDEX", "rawq", "0"}, null},
			{[]string{"LPOS", "rawq", "a"}, null},
			{[]string{"LPOS", "rawq", "a", "COUNT", "0"}, "*0\r\n"},
			{[]string{"LINSERT", "rawq", "BEFORE", "a", "b"}, ":0\r\n"},
			{[]string{"LREM", "rawq", "0", "a"}, ":0\r\n"},
			{[]string{"LTRIM", "rawq", "0", "1"}, "+OK\r\n"},
			{[]string{"LSET", "rawq", "0", "a"}, errR("ERR no such key")},
			{[]string{"RPUSH", "rawq", "a", "b", "a", "c", "a"}, ":5\r\n"},
			{[]string{"RPUSHX", "rawq", "d", "e"}, ":7\r\n"},
			{[]string{"LPUSHX", "rawq", "z"}, ":8\r\n"},
			{[]string{"LINDEX", "rawq", "0"}, bulk("z")},
			{[]string{"LINDEX", "rawq", "-1"}, bulk("e")},
			{[]string{"LINDEX", "rawq", "100"}, null},
			{[]string{"LPOS", "rawq", "a"}, ":1\r\n"},
			{[]string{"LPOS", "rawq", "a", "RANK", "2"}, ":3\r\n"},
			{[]string{"LPOS", "rawq", "a", "RANK", "-1"}, ":5\r\n"},
			{[]string{"LPOS", "rawq", "a", "COUNT", "0"}, "*3\r\n:1\r\n:3\r\n:5\r\n"},
			{[]string{"LPOS", "rawq", "a", "COUNT", "2", "RANK", "-1"}, "*2\r\n:5\r\n:3\r\n"},
			{[]string{"LPOS", "rawq", "a", "MAXLEN", "2", "COUNT", "0"}, "*1\r\n:1\r\n"},
			{[]string{"LPOS", "rawq", "a", "rank", "-9223372036854775808", "count", "1"}, "*3\r\n:5\r\n:3\r\n:1\r\n"},
			{[]string{"LPOS", "rawq", "nope"}, null},
			{[]string{"LSET", "rawq", "0", "y"}, "+OK\r\n"},
			{[]string{"LSET", "rawq", "8", "y"}, errR("ERR index out of range")},
			{[]string{"LINSERT", "rawq", "before", "b", "B"}, ":9\r\n"},
			{[]string{"LINSERT", "rawq", "AFTER", "b", "b2"}, ":10\r\n"},
			{[]string{"LINSERT", "rawq", "AFTER", "nope", "x"}, ":-1\r\n"},
			{[]string{"LRANGE", "rawq", "0", "-1"}, "*10\r\n" + bulk("y") + bulk("a") + bulk("B") + bulk("b") + bulk("b2") +
				bulk("a") + bulk("c") + bulk("a") + bulk("d") + bulk("e")},
			{[]string{"LREM", "rawq", "-1", "a"}, ":1\r\n"},
			{[]string{"LREM", "rawq", "0", "a"}, ":2\r\n"},
			{[]string{"LTRIM", "rawq", "1", "-2"}, "+OK\r\n"},
			{[]string{"LRANGE", "rawq", "0", "-1"}, "*5\r\n" + bulk("B") + bulk("b") + bulk("b2") + bulk("c") + bulk("d")},
			{[]string{"LTRIM", "rawq", "5", "1"}, "+OK\r\n"},
			{[]string{"EXISTS", "rawq"}, ":0\r\n"},
		})
	}
}

func TestListEdit_Errors(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c := s.Conn(t)
	send(t, c, "RPUSH", "rawq", "a")
	if err := s.Client.Set(context.Background(), "rawstr", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	run(t, c, cases{
		{[]string{"LINDEX", "rawq"}, errR("ERR wrong number of arguments for 'lindex' command")},
		{[]string{"LPOS", "rawq"}, errR("ERR wrong number of arguments for 'lpos' command")},
		{[]string{"LSET", "rawq", "0"}, errR("ERR wrong number of arguments for 'lset' command")},
		{[]string{"LINSERT", "rawq", "BEFORE", "a"}, errR("ERR wrong number of arguments for 'linsert' command")},
		{[]string{"LREM", "rawq", "1"}, errR("ERR wrong number of arguments for 'lrem' command")},
		{[]string{"LTRIM", "rawq", "1"}, errR("ERR wrong number of arguments for 'ltrim' command")},
		{[]string{"LPUSHX", "rawq"}, errR("ERR wrong number of arguments for 'lpushx' command")},
		{[]string{"RPUSHX", "rawq"}, errR("ERR wrong number of arguments for 'rpushx' command")},
		{[]string{"LINDEX", "rawq", "x"}, errR("ERR value is not an integer or out of range")},
		{[]string{"LSET", "rawq", "x", "v"}, errR("ERR value is not an integer or out of range")},
		{[]string{"LTRIM", "rawq", "0", "x"}, errR("ERR value is not an integer or out of range")},
		{[]string{"LREM", "rawq", "x", "a"}, errR("ERR value is not an integer or out of range")},
		{[]string{"LREM", "rawstr", "01", "a"}, errR("ERR value is not an integer or out of range")},
		{[]string{"LINSERT", "rawq", "middle", "a", "b"}, errR("ERR syntax error")},
		{[]string{"LINSERT", "rawstr", "middle", "a", "b"}, errR("ERR syntax error")},
		{[]string{"LPOS", "rawq", "a", "RANK", "0"}, errR("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")},
		{[]string{"LPOS", "rawq", "a", "RANK", "x"}, errR("ERR value is not an integer or out of range")},
		{[]string{"LPOS", "rawq", "a", "COUNT", "-1"}, errR("ERR COUNT can't be negative")},
		{[]string{"LPOS", "rawq", "a", "COUNT", "x"}, errR("ERR COUNT can't be negative")},
		{[]string{"LPOS", "rawq", "a", "MAXLEN", "-1"}, errR("ERR MAXLEN can't be negative")},
		{[]string{"LPOS", "rawq", "a", "MAXLEN", "9223372036854775808"}, errR("ERR MAXLEN can't be negative")},
		{[]string{"LPOS", "rawq", "a", "FOO"}, errR("ERR syntax error")},
		{[]string{"LPOS", "rawq", "a", "RANK"}, errR("ERR syntax error")},
		{[]string{"LPOS", "rawstr", "a", "RANK", "0"}, errR("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")},
		{[]string{"LINDEX", "rawstr", "0"}, wrongTypeR},
		{[]string{"LPOS", "rawstr", "a"}, wrongTypeR},
		{[]string{"LSET", "rawstr", "0", "a"}, wrongTypeR},
		{[]string{"LINSERT", "rawstr", "AFTER", "a", "b"}, wrongTypeR},
		{[]string{"LREM", "rawstr", "0", "a"}, wrongTypeR},
		{[]string{"LTRIM", "rawstr", "0", "1"}, wrongTypeR},
		{[]string{"LPUSHX", "rawstr", "a"}, wrongTypeR},
		{[]string{"RPUSHX", "rawstr", "a"}, wrongTypeR},
		{[]string{"LPOS", "a b", "x"}, errR("ERR invalid queue name \"a b\": use printable ASCII without spaces, quotes, backslashes or * ? [ ]")},
		{[]string{"LRANGE", "rawq", "0", "-1"}, "*1\r\n" + bulk("a")},
	})
}

// On an enveloped queue an element argument matches an item's payload (or its stored bytes), and
// LINDEX shows what the connection's delivery mode shows.
func TestListEdit_EnvelopeMatchesPayload(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{})
		c, null, _ := protoConn(t, s, proto)
		run(t, c, cases{
			{[]string{"RPUSH", "q", "a", `{"job":1}`, "a", "bin\xff", "a"}, ":5\r\n"},
			{[]string{"LINDEX", "q", "1"}, bulk(`{"job":1}`)},
			{[]string{"LPOS", "q", "a", "COUNT", "0"}, "*3\r\n:0\r\n:2\r\n:4\r\n"},
			{[]string{"LPOS", "q", `{"job":1}`}, ":1\r\n"},
			{[]string{"LPOS", "q", `{"job": 1}`}, null},
			{[]string{"LPOS", "q", "bin\xff"}, ":3\r\n"},
			{[]string{"LINSERT", "q", "AFTER", `{"job":1}`, "new"}, ":6\r\n"},
			{[]string{"LINDEX", "q", "2"}, bulk("new")},
			{[]string{"LSET", "q", "0", "first"}, "+OK\r\n"},
			{[]string{"LREM", "q", "0", "a"}, ":2\r\n"},
			{[]string{"LRANGE", "q", "0", "-1"}, "*4\r\n" + bulk("first") + bulk(`{"job":1}`) + bulk("new") + bulk("bin\xff")},
			{[]string{"LPUSHX", "q", "x", "y"}, ":6\r\n"},
		})
		// Everything stored is an envelope, and an envelope-mode client sees them (and may match one).
		items, err := s.Client.LRange(context.Background(), "q", 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if _, ok := envelope.Decode([]byte(it)); !ok {
				t.Fatalf("stored item %q is not an envelope", it)
			}
		}
		run(t, c, cases{
			{[]string{"QDELIVERY", "envelope"}, "+OK\r\n"},
			{[]string{"LINDEX", "q", "0"}, bulk(items[0])},
			{[]string{"LPOS", "q", items[3]}, ":3\r\n"},
			{[]string{"LPOS", "q", "first"}, ":2\r\n"},
			{[]string{"LREM", "q", "1", items[5]}, ":1\r\n"},
			{[]string{"LLEN", "q"}, ":5\r\n"},
		})
	}
}

// Values added by LSET, LINSERT, LPUSHX and RPUSHX pass the queue's rule like RPUSH's; LPUSHX and
// RPUSHX are all or nothing.
func TestListEdit_ValuesCheckedLikePushes(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: []policy.Rule{{Match: "j*", Format: "json", MaxBytes: 20}}})
	c := s.Conn(t)
	send(t, c, "RPUSH", "jq", `{"a":1}`)
	notJSON := "ERR value 1 of 1 rejected by queues[0] \"j*\": not JSON"
	got := send(t, c, "LSET", "jq", "0", "nope")
	if !strings.HasPrefix(got, "-"+notJSON) {
		t.Fatalf("LSET of a bad value: %q", got)
	}
	got = send(t, c, "LINSERT", "jq", "BEFORE", `{"a":1}`, "nope")
	if !strings.HasPrefix(got, "-"+notJSON) {
		t.Fatalf("LINSERT of a bad value: %q", got)
	}
	got = send(t, c, "RPUSHX", "jq", `{"b":2}`, "nope")
	if !strings.HasPrefix(got, "-ERR value 2 of 2 rejected by queues[0] \"j*\": not JSON") {
		t.Fatalf("RPUSHX with a bad value: %q", got)
	}
	got = send(t, c, "LPUSHX", "jq", `{"big":"xxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	if !strings.HasPrefix(got, "-ERR value 1 of 1 rejected by queues[0] \"j*\": value is") {
		t.Fatalf("LPUSHX with a large value: %q", got)
	}
	run(t, c, cases{
		{[]string{"LRANGE", "jq", "0", "-1"}, "*1\r\n" + bulk(`{"a":1}`)},
		{[]string{"RPUSHX", "jq", `{"b":2}`, `[3]`}, ":3\r\n"},
	})
}

// LPUSHX and RPUSHX deduplicate like pushes on a dedup queue, and set no dedup key on a missing list.
func TestListEdit_PushXDedup(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: []policy.Rule{{Match: "d*", Dedup: policy.Dedup{Key: "body"}}}})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"RPUSHX", "dq", "a"}, ":0\r\n"},
		{[]string{"RPUSH", "dq", "a"}, ":1\r\n"}, // "a" was not remembered by the RPUSHX above
		{[]string{"RPUSHX", "dq", "a", "b"}, ":2\r\n"},
		{[]string{"LPUSHX", "dq", "b", "c"}, ":3\r\n"},
		{[]string{"LPOS", "dq", "c"}, ":0\r\n"},
	})
}

// Rights: LINDEX, LPOS, EXISTS and TYPE peek (the pop right); LSET, LINSERT, LPUSHX, RPUSHX push;
// LREM and LTRIM pop; DEL, UNLINK and QPURGE need admin.
func TestListEdit_Rights(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules, Users: []auth.UserConfig{
		{Name: "producer", PasswordHash: commandstest.Hash(t, "pw1"), Push: []string{"raw*"}},
		{Name: "worker", PasswordHash: commandstest.Hash(t, "pw2"), Pop: []string{"raw*"}},
		{Name: "admin", PasswordHash: commandstest.Hash(t, "pw3"), Admin: []string{"raw*"}},
	}})
	noperm := func(user, right, name string) string {
		return errR("NOPERM user '" + user + "' has no '" + right + "' right on queue '" + name + "'")
	}
	p := s.Conn(t)
	run(t, p, cases{
		{[]string{"AUTH", "producer", "pw1"}, "+OK\r\n"},
		{[]string{"RPUSH", "rawq", "a", "b"}, ":2\r\n"},
		{[]string{"RPUSHX", "rawq", "c"}, ":3\r\n"},
		{[]string{"LPUSHX", "rawq", "z"}, ":4\r\n"},
		{[]string{"LSET", "rawq", "0", "y"}, "+OK\r\n"},
		{[]string{"LINSERT", "rawq", "AFTER", "y", "x"}, ":5\r\n"},
		{[]string{"LINDEX", "rawq", "0"}, noperm("producer", "pop", "rawq")},
		{[]string{"LPOS", "rawq", "a"}, noperm("producer", "pop", "rawq")},
		{[]string{"EXISTS", "rawq"}, noperm("producer", "pop", "rawq")},
		{[]string{"TYPE", "rawq"}, noperm("producer", "pop", "rawq")},
		{[]string{"LREM", "rawq", "0", "a"}, noperm("producer", "pop", "rawq")},
		{[]string{"LTRIM", "rawq", "0", "1"}, noperm("producer", "pop", "rawq")},
		{[]string{"DEL", "rawq"}, noperm("producer", "admin", "rawq")},
	})
	w := s.Conn(t)
	run(t, w, cases{
		{[]string{"AUTH", "worker", "pw2"}, "+OK\r\n"},
		{[]string{"LINDEX", "rawq", "0"}, bulk("y")},
		{[]string{"LPOS", "rawq", "a"}, ":2\r\n"},
		{[]string{"EXISTS", "rawq", "rawq"}, ":2\r\n"},
		{[]string{"TYPE", "rawq"}, "+list\r\n"},
		{[]string{"LREM", "rawq", "0", "a"}, ":1\r\n"},
		{[]string{"LTRIM", "rawq", "0", "2"}, "+OK\r\n"},
		{[]string{"LSET", "rawq", "0", "v"}, noperm("worker", "push", "rawq")},
		{[]string{"LINSERT", "rawq", "AFTER", "y", "x"}, noperm("worker", "push", "rawq")},
		{[]string{"RPUSHX", "rawq", "v"}, noperm("worker", "push", "rawq")},
		{[]string{"LPUSHX", "rawq", "v"}, noperm("worker", "push", "rawq")},
		{[]string{"UNLINK", "rawq"}, noperm("worker", "admin", "rawq")},
		{[]string{"QPURGE", "rawq"}, noperm("worker", "admin", "rawq")},
	})
	a := s.Conn(t)
	run(t, a, cases{
		{[]string{"AUTH", "admin", "pw3"}, "+OK\r\n"},
		{[]string{"DEL", "rawq", "other"}, noperm("admin", "admin", "other")},
		{[]string{"DEL", "rawq", "rawq"}, ":1\r\n"},
		{[]string{"QPURGE", "rawq"}, ":0\r\n"},
	})
}
