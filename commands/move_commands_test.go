package commands_test

import (
	"context"
	"strings"
	"testing"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/auth"
)

// Moves and multi-pops (commands/move_commands.go): argument errors with Redis 7.0's texts and check
// order (recorded from redis-server 7.0), replies in both protocols, rights.

func TestMove_ArgumentErrors(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"LMOVE", "rawa", "rawb", "LEFT"}, errR("ERR wrong number of arguments for 'lmove' command")},
		{[]string{"LMOVE", "rawa", "rawb", "up", "down"}, errR("ERR syntax error")},
		{[]string{"LMOVE", "rawa", "rawb", "left", "down"}, errR("ERR syntax error")},
		{[]string{"RPOPLPUSH", "rawa"}, errR("ERR wrong number of arguments for 'rpoplpush' command")},
		{[]string{"BLMOVE", "rawa", "rawb", "LEFT", "LEFT"}, errR("ERR wrong number of arguments for 'blmove' command")},
		{[]string{"BLMOVE", "rawa", "rawb", "left", "middle", "0"}, errR("ERR syntax error")},
		// The ends are checked before the timeout.
		{[]string{"BLMOVE", "rawa", "rawb", "middle", "left", "abc"}, errR("ERR syntax error")},
		{[]string{"BLMOVE", "rawa", "rawb", "left", "left", "abc"}, errR("ERR timeout is not a float or out of range")},
		{[]string{"BLMOVE", "rawa", "rawb", "left", "left", "-1"}, errR("ERR timeout is negative")},
		{[]string{"BRPOPLPUSH", "rawa", "rawb", "abc"}, errR("ERR timeout is not a float or out of range")},
		{[]string{"BRPOPLPUSH", "rawa", "rawb", "-1"}, errR("ERR timeout is negative")},
		{[]string{"BRPOPLPUSH", "rawa", "rawb"}, errR("ERR wrong number of arguments for 'brpoplpush' command")},
		{[]string{"LMOVE", "rawa", "a b", "LEFT", "LEFT"}, errR("ERR invalid queue name \"a b\": use printable ASCII without spaces, quotes, backslashes or * ? [ ]")},
	})
}

func TestLMPop_ArgumentErrors(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"LMPOP", "1", "rawa"}, errR("ERR wrong number of arguments for 'lmpop' command")},
		{[]string{"LMPOP", "0", "rawa", "left"}, errR("ERR numkeys should be greater than 0")},
		{[]string{"LMPOP", "abc", "rawa", "left"}, errR("ERR numkeys should be greater than 0")},
		{[]string{"LMPOP", "-1", "rawa", "left"}, errR("ERR numkeys should be greater than 0")},
		{[]string{"LMPOP", "2", "rawa", "left"}, errR("ERR syntax error")},
		{[]string{"LMPOP", "9223372036854775807", "rawa", "left"}, errR("ERR syntax error")},
		{[]string{"LMPOP", "1", "rawa", "middle"}, errR("ERR syntax error")},
		{[]string{"LMPOP", "1", "rawa", "left", "count", "0"}, errR("ERR count should be greater than 0")},
		{[]string{"LMPOP", "1", "rawa", "left", "count", "abc"}, errR("ERR count should be greater than 0")},
		{[]string{"LMPOP", "1", "rawa", "left", "count", "-5"}, errR("ERR count should be greater than 0")},
		{[]string{"LMPOP", "1", "rawa", "left", "count", "99999999999999999999"}, errR("ERR count should be greater than 0")},
		{[]string{"LMPOP", "1", "rawa", "left", "count"}, errR("ERR syntax error")},
		{[]string{"LMPOP", "1", "rawa", "left", "count", "1", "count", "2"}, errR("ERR syntax error")},
		{[]string{"LMPOP", "1", "rawa", "left", "foo"}, errR("ERR syntax error")},
	})
}

func TestBLMPop_ArgumentErrors(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"BLMPOP", "0", "1", "rawa"}, errR("ERR wrong number of arguments for 'blmpop' command")},
		{[]string{"BLMPOP", "0", "0", "rawa", "left"}, errR("ERR numkeys should be greater than 0")},
		// numkeys, the end and COUNT are checked before the timeout.
		{[]string{"BLMPOP", "-1", "0", "rawa", "left"}, errR("ERR numkeys should be greater than 0")},
		{[]string{"BLMPOP", "abc", "1", "rawa", "middle"}, errR("ERR syntax error")},
		{[]string{"BLMPOP", "abc", "1", "rawa", "left", "count", "0"}, errR("ERR count should be greater than 0")},
		{[]string{"BLMPOP", "-1", "1", "rawa", "left"}, errR("ERR timeout is negative")},
		{[]string{"BLMPOP", "abc", "1", "rawa", "left"}, errR("ERR timeout is not a float or out of range")},
		{[]string{"BLMPOP", "inf", "1", "rawa", "left"}, errR("ERR timeout is negative")},
	})
}

func TestMove_Replies(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{Queues: rawRules})
		c, null, nullArr := protoConn(t, s, proto)
		if err := s.Client.Set(context.Background(), "rawstr", "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		const wrongType = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
		run(t, c, cases{
			{[]string{"LMOVE", "rawa", "rawb", "LEFT", "LEFT"}, null},
			{[]string{"RPOPLPUSH", "rawa", "rawb"}, null},
			{[]string{"RPUSH", "rawa", "1", "2", "3"}, ":3\r\n"},
			{[]string{"LMOVE", "rawa", "rawb", "LEFT", "RIGHT"}, bulk("1")},
			{[]string{"RPOPLPUSH", "rawa", "rawb"}, bulk("3")},
			{[]string{"LRANGE", "rawb", "0", "-1"}, "*2\r\n" + bulk("3") + bulk("1")},
			// Rotation: source = destination.
			{[]string{"RPUSH", "rawr", "a", "b", "c"}, ":3\r\n"},
			{[]string{"LMOVE", "rawr", "rawr", "LEFT", "RIGHT"}, bulk("a")},
			{[]string{"RPOPLPUSH", "rawr", "rawr"}, bulk("a")},
			{[]string{"LRANGE", "rawr", "0", "-1"}, "*3\r\n" + bulk("a") + bulk("b") + bulk("c")},
			// Redis checks the source first: an empty source with a wrong-type destination is nil.
			{[]string{"LMOVE", "rawnone", "rawstr", "LEFT", "LEFT"}, null},
			{[]string{"LMOVE", "rawa", "rawstr", "LEFT", "LEFT"}, wrongType},
			{[]string{"LMOVE", "rawstr", "rawa", "LEFT", "LEFT"}, wrongType},
			{[]string{"LRANGE", "rawa", "0", "-1"}, "*1\r\n" + bulk("2")},
			// BLMOVE with an item: at once; on timeout, a nil array (Redis 7.0).
			{[]string{"BLMOVE", "rawa", "rawb", "RIGHT", "LEFT", "0"}, bulk("2")},
			{[]string{"BLMOVE", "rawa", "rawb", "RIGHT", "LEFT", "0.01"}, nullArr},
			{[]string{"BRPOPLPUSH", "rawa", "rawb", "0.01"}, nullArr},
		})
	}
}

func TestLMPop_Replies(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{Queues: rawRules})
		c, _, nullArr := protoConn(t, s, proto)
		run(t, c, cases{
			{[]string{"LMPOP", "2", "rawa", "rawb", "LEFT"}, nullArr},
			{[]string{"RPUSH", "rawb", "x", "y", "z"}, ":3\r\n"},
			{[]string{"LMPOP", "2", "rawa", "rawb", "RIGHT", "COUNT", "2"}, "*2\r\n" + bulk("rawb") + "*2\r\n" + bulk("z") + bulk("y")},
			{[]string{"LMPOP", "2", "rawa", "rawb", "left", "count", "5"}, "*2\r\n" + bulk("rawb") + "*1\r\n" + bulk("x")},
			{[]string{"RPUSH", "rawa", "1", "2"}, ":2\r\n"},
			{[]string{"LMPOP", "1", "rawa", "LEFT"}, "*2\r\n" + bulk("rawa") + "*1\r\n" + bulk("1")},
			{[]string{"BLMPOP", "0", "2", "rawb", "rawa", "LEFT", "COUNT", "3"}, "*2\r\n" + bulk("rawa") + "*1\r\n" + bulk("2")},
			{[]string{"BLMPOP", "0.01", "2", "rawb", "rawa", "LEFT"}, nullArr},
		})
		// Nothing stays in a transit record once the replies are written.
		keys, err := s.Client.Keys(context.Background(), "*transit:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if n := s.Client.HLen(context.Background(), k).Val(); n != 0 {
				t.Fatalf("transit record %s holds %d items after delivery", k, n)
			}
		}
	}
}

func TestLMPop_LeasesOnAtLeastOnceQueues(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: leaseRules})
	c := s.Conn(t)
	send(t, c, "QDELIVERY", "envelope")
	send(t, c, "RPUSH", "aloq", "a", "b")
	got := send(t, c, "LMPOP", "2", "alonone", "aloq", "LEFT", "COUNT", "5")
	if !strings.HasPrefix(got, "*2\r\n"+bulk("aloq")+"*2\r\n") {
		t.Fatalf("LMPOP = %q", got)
	}
	if got, want := qstats(t, c, "aloq"), stats(0, 2, 0, 0, 0, "-1"); got != want {
		t.Fatalf("QSTATS after LMPOP\n got %q\nwant %q", got, want)
	}
	// BLMPOP may not mix delivery modes, as BLPOP.
	if got, want := send(t, c, "BLMPOP", "0", "2", "aloq", "rawq", "LEFT"),
		errR("ERR BLMPOP cannot wait on at-least-once and at-most-once queues at once"); got != want {
		t.Fatalf("mixed BLMPOP\n got %q\nwant %q", got, want)
	}
}

func TestMove_EnvelopeMovesAsStored(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	send(t, c, "RPUSH", "q1", "hello")
	stored := s.Client.LIndex(context.Background(), "q1", 0).Val()
	// Payload mode (the default rule): the reply is the payload, the stored envelope moves as it is.
	if got, want := send(t, c, "LMOVE", "q1", "q2", "LEFT", "LEFT"), bulk("hello"); got != want {
		t.Fatalf("LMOVE = %q, want %q", got, want)
	}
	if got := s.Client.LIndex(context.Background(), "q2", 0).Val(); got != stored {
		t.Fatalf("q2 holds %q, want the envelope as stored %q", got, stored)
	}
	send(t, c, "QDELIVERY", "envelope")
	if got, want := send(t, c, "RPOPLPUSH", "q2", "q3"), bulk(stored); got != want {
		t.Fatalf("RPOPLPUSH in envelope mode = %q, want %q", got, want)
	}
}

func TestMove_RightsOnSourceAndDestination(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: rawRules, Users: []auth.UserConfig{
		{Name: "worker", PasswordHash: commandstest.Hash(t, "pw"), Pop: []string{"rawsrc", "rawboth"}, Push: []string{"rawdst", "rawboth"}},
	}})
	c := s.Conn(t)
	send(t, c, "AUTH", "worker", "pw")
	run(t, c, cases{
		{[]string{"LMOVE", "rawdst", "rawdst", "LEFT", "LEFT"}, errR("NOPERM user 'worker' has no 'pop' right on queue 'rawdst'")},
		{[]string{"LMOVE", "rawsrc", "rawsrc", "LEFT", "LEFT"}, errR("NOPERM user 'worker' has no 'push' right on queue 'rawsrc'")},
		{[]string{"BRPOPLPUSH", "rawsrc", "rawother", "0"}, errR("NOPERM user 'worker' has no 'push' right on queue 'rawother'")},
		{[]string{"LMPOP", "2", "rawsrc", "rawdst", "LEFT"}, errR("NOPERM user 'worker' has no 'pop' right on queue 'rawdst'")},
		{[]string{"BLMPOP", "0", "2", "rawsrc", "rawdst", "LEFT"}, errR("NOPERM user 'worker' has no 'pop' right on queue 'rawdst'")},
		// A numkeys past the arguments names no key to check: Redis's syntax error.
		{[]string{"LMPOP", "3", "rawsrc", "LEFT"}, errR("ERR syntax error")},
		{[]string{"LMOVE", "rawsrc", "rawdst", "LEFT", "LEFT"}, "$-1\r\n"},
		{[]string{"LMOVE", "rawboth", "rawboth", "LEFT", "LEFT"}, "$-1\r\n"},
		{[]string{"LMPOP", "1", "rawsrc", "LEFT"}, "*-1\r\n"},
	})
}
