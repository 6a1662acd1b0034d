package commands_test

import (
	"strings"
	"testing"
	"time"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/policy"
)

// pushWait bounds the wait for a message that another connection's PUBLISH sends through the backend.
const pushWait = 5 * time.Second

// subReply is a (p)(un)subscribe confirmation: a push in RESP3, an array in RESP2.
func subReply(proto int, kind, name string, n int) string {
	h := "*3\r\n"
	if proto == 3 {
		h = ">3\r\n"
	}
	nameR := bulk(name)
	if name == "" {
		nameR = "$-1\r\n"
		if proto == 3 {
			nameR = "_\r\n"
		}
	}
	return h + bulk(kind) + nameR + ":" + itoa(n) + "\r\n"
}

func itoa(n int) string {
	if n < 0 {
		return "-" + itoa(-n)
	}
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestPubSub_SubscribeReplies(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{})
		c := s.Conn(t)
		if proto == 3 {
			c = s.Conn3(t)
		}
		r := func(kind, name string, n int) string { return subReply(proto, kind, name, n) }
		run(t, c, cases{
			{[]string{"SUBSCRIBE", "ch1", "ch2"}, r("subscribe", "ch1", 1) + r("subscribe", "ch2", 2)},
			{[]string{"SUBSCRIBE", "ch1"}, r("subscribe", "ch1", 2)}, // again: confirmed, not counted twice
			{[]string{"PSUBSCRIBE", "p*"}, r("psubscribe", "p*", 3)},
			{[]string{"UNSUBSCRIBE", "ch1", "ch9"}, r("unsubscribe", "ch1", 2) + r("unsubscribe", "ch9", 2)},
			{[]string{"PUNSUBSCRIBE", "p*", "q*"}, r("punsubscribe", "p*", 1) + r("punsubscribe", "q*", 1)},
			{[]string{"UNSUBSCRIBE"}, r("unsubscribe", "ch2", 0)},
			// Nothing left: one reply with a nil name.
			{[]string{"UNSUBSCRIBE"}, r("unsubscribe", "", 0)},
			{[]string{"PUNSUBSCRIBE"}, r("punsubscribe", "", 0)},
			{[]string{"UNSUBSCRIBE", "a"}, r("unsubscribe", "a", 0)},
		})
		// Without a name, every channel goes, in name order.
		send(t, c, "SUBSCRIBE", "b", "a", "c")
		expect(t, send(t, c, "UNSUBSCRIBE"), r("unsubscribe", "a", 2)+r("unsubscribe", "b", 1)+r("unsubscribe", "c", 0))
	}
}

func TestPubSub_SubscribeBadNameRefusesAll(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	expect(t, send(t, c, "SUBSCRIBE", "ok", "a b"),
		errR(`ERR invalid channel name "a b": use printable ASCII without spaces, quotes, backslashes or * ? [ ]`))
	expect(t, send(t, c, "SUBSCRIBE", "ch*"),
		errR(`ERR invalid channel name "ch*": use printable ASCII without spaces, quotes, backslashes or * ? [ ]`))
	expect(t, send(t, c, "PSUBSCRIBE", "a\"b"),
		errR(`ERR invalid pattern name "a\"b": use printable ASCII without spaces, quotes, backslashes or * ? [ ]`))
	if c.Session().Subscribed() {
		t.Fatal("subscribed after a refused SUBSCRIBE")
	}
}

func TestPubSub_PublishDelivers(t *testing.T) {
	s := newServer(t, commandstest.Options{Channels: rawRules})
	pub, sub2, sub3 := s.Conn(t), s.Conn(t), s.Conn3(t)
	expect(t, send(t, pub, "PUBLISH", "rawch", "nobody"), ":0\r\n")
	send(t, sub2, "SUBSCRIBE", "rawch")
	send(t, sub3, "PSUBSCRIBE", "raw*")
	expect(t, send(t, pub, "PUBLISH", "rawch", "hello"), ":2\r\n")
	expect(t, sub2.Pushed(pushWait), "*3\r\n"+bulk("message")+bulk("rawch")+bulk("hello"))
	expect(t, sub3.Pushed(pushWait), ">4\r\n"+bulk("pmessage")+bulk("raw*")+bulk("rawch")+bulk("hello"))
	expect(t, send(t, pub, "PUBLISH", "other", "x"), ":0\r\n")
}

// A client publishing to a channel it is subscribed to (RESP3) gets its own message, and only on
// that channel. The order (the message before PUBLISH's reply, as from Redis) is asserted against a
// real redis-server in proxy/e2e_pubsub_order_test.go (TestRaw_PublishToOwnChannelRESP3): miniredis
// writes a message from a goroutine of its own, so its PONG can overtake it and the order here is
// not Redis's to promise.
func TestPubSub_OwnMessageDelivered(t *testing.T) {
	s := newServer(t, commandstest.Options{Channels: rawRules})
	ownMessage := func(t *testing.T, c *commandstest.Conn, reply, msg, rest string) {
		t.Helper()
		got := reply
		if !strings.HasPrefix(got, msg) {
			got = c.Pushed(pushWait) + got
			if !strings.HasPrefix(reply, rest) {
				t.Fatalf("reply %q, want %q after the message", reply, rest)
			}
		}
		expect(t, got, msg+rest)
	}
	c := s.Conn3(t)
	send(t, c, "SUBSCRIBE", "rawch")
	ownMessage(t, c, c.Batch([]string{"PUBLISH", "rawch", "me"}, []string{"PING"}),
		">3\r\n"+bulk("message")+bulk("rawch")+bulk("me"), ":1\r\n+PONG\r\n")

	p := s.Conn3(t)
	send(t, p, "PSUBSCRIBE", "raw*")
	ownMessage(t, p, send(t, p, "PUBLISH", "rawx", "pm"),
		">4\r\n"+bulk("pmessage")+bulk("raw*")+bulk("rawx")+bulk("pm"), ":1\r\n")
	if got := c.Pushed(0); got != "" {
		t.Fatalf("a subscriber of another channel got %q", got)
	}
}

// With envelopes (the default channel rule) subscribers get the payload unless they ask for the
// envelope (QDELIVERY envelope, or the rule's deliver: envelope).
func TestPubSub_EnvelopeDelivery(t *testing.T) {
	s := newServer(t, commandstest.Options{Channels: []policy.Rule{{Match: "env*", Deliver: "envelope"}}})
	pub, payload, env, ruled := s.Conn(t), s.Conn(t), s.Conn(t), s.Conn(t)
	expect(t, send(t, env, "QDELIVERY", "envelope"), "+OK\r\n")
	send(t, payload, "SUBSCRIBE", "news")
	send(t, env, "SUBSCRIBE", "news")
	send(t, ruled, "SUBSCRIBE", "envnews")
	expect(t, send(t, pub, "PUBLISH", "news", `{"a":1}`), ":2\r\n")
	expect(t, payload.Pushed(pushWait), "*3\r\n"+bulk("message")+bulk("news")+bulk(`{"a":1}`))
	got := env.Pushed(pushWait)
	if !strings.Contains(got, `{"qgate":1,"id":"`) || !strings.Contains(got, `"queue":"news"`) ||
		!strings.Contains(got, `"producer":"default","json":{"a":1}}`) {
		t.Fatalf("envelope subscriber got %q", got)
	}
	expect(t, send(t, pub, "PUBLISH", "envnews", "x"), ":1\r\n")
	if got := ruled.Pushed(pushWait); !strings.Contains(got, `"text":"x"}`) {
		t.Fatalf("deliver: envelope subscriber got %q", got)
	}
}

func TestPubSub_PublishRejectedByRule(t *testing.T) {
	s := newServer(t, commandstest.Options{Channels: []policy.Rule{{Match: "j*", Format: "json", MaxBytes: 10}}})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"PUBLISH", "jch", "{"}, errR(`ERR message rejected by channels[0] "j*": not JSON at offset 1: unexpected end of input`)},
		{[]string{"PUBLISH", "jch", `"0123456789"`}, errR(`ERR message rejected by channels[0] "j*": value is 12 bytes, channel limit 10`)},
		{[]string{"PUBLISH", "jch", `{}`}, ":0\r\n"},
		{[]string{"PUBLISH", "a b", `{}`}, errR(`ERR invalid channel name "a b": use printable ASCII without spaces, quotes, backslashes or * ? [ ]`)},
	})
}

func TestPubSub_Introspection(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{})
		c, sub1, sub2 := s.Conn(t), s.Conn(t), s.Conn(t)
		if proto == 3 {
			c = s.Conn3(t)
		}
		run(t, c, cases{
			{[]string{"PUBSUB", "NUMSUB", "a", "b"}, "*4\r\n" + bulk("a") + ":0\r\n" + bulk("b") + ":0\r\n"},
			{[]string{"PUBSUB", "NUMSUB"}, "*0\r\n"},
			{[]string{"PUBSUB", "NUMPAT"}, ":0\r\n"},
			{[]string{"PUBSUB", "CHANNELS"}, "*0\r\n"},
		})
		send(t, sub1, "SUBSCRIBE", "news")
		send(t, sub2, "SUBSCRIBE", "news", "sport")
		send(t, sub2, "PSUBSCRIBE", "n*")
		run(t, c, cases{
			// qgate shares one backend subscription per channel but counts its local clients.
			{[]string{"PUBSUB", "NUMSUB", "news", "sport", "none"},
				"*6\r\n" + bulk("news") + ":2\r\n" + bulk("sport") + ":1\r\n" + bulk("none") + ":0\r\n"},
			{[]string{"PUBSUB", "NUMPAT"}, ":1\r\n"},
			{[]string{"PUBSUB", "CHANNELS", "n*"}, "*1\r\n" + bulk("news")},
		})
		expect(t, send(t, c, "PUBLISH", "news", "x"), ":3\r\n") // sub1, sub2, and sub2's pattern
	}
}

func TestPubSub_Help(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	got := send(t, s.Conn(t), "PUBSUB", "HELP")
	if !strings.HasPrefix(got, "*14\r\n+PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+CHANNELS [<pattern>]\r\n") {
		t.Fatalf("PUBSUB HELP starts %q", got)
	}
	// Redis 7.0's last two lines of every HELP.
	if want := "+HELP\r\n+    Prints this help.\r\n"; !strings.HasSuffix(got, want) {
		t.Fatalf("PUBSUB HELP ends %q, want %q", got[max(0, len(got)-40):], want)
	}
}
