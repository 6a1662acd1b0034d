package commands_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/commands/commandstest"
)

// helloReply is HELLO's seven-field map (a flat array in RESP2), as Redis 7.0.15 sends it.
func helloReply(proto, id int) string {
	h := "*14\r\n"
	if proto == 3 {
		h = "%7\r\n"
	}
	return h + bulk("server") + bulk("redis") + bulk("version") + bulk(commands.RedisVersion) +
		bulk("proto") + ":" + itoa(proto) + "\r\n" + bulk("id") + ":" + itoa(id) + "\r\n" +
		bulk("mode") + bulk("standalone") + bulk("role") + bulk("master") + bulk("modules") + "*0\r\n"
}

func TestConnection_Hello(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"HELLO"}, helloReply(2, 1)},
		{[]string{"HELLO", "4"}, errR("NOPROTO unsupported protocol version")},
		{[]string{"HELLO", "1"}, errR("NOPROTO unsupported protocol version")},
		{[]string{"HELLO", "x"}, errR("ERR Protocol version is not an integer or out of range")},
		{[]string{"HELLO", "3", "FOO"}, errR("ERR Syntax error in HELLO option 'FOO'")},
		{[]string{"HELLO", "2", "AUTH", "u"}, errR("ERR Syntax error in HELLO option 'AUTH'")},
		{[]string{"HELLO", "3", "SETNAME"}, errR("ERR Syntax error in HELLO option 'SETNAME'")},
		{[]string{"HELLO", "2", "SETNAME", "a b"}, errR("ERR Client names cannot contain spaces, newlines or special characters.")},
		{[]string{"HELLO", "2", "SETNAME", "nm"}, helloReply(2, 1)},
		{[]string{"CLIENT", "GETNAME"}, bulk("nm")},
		// Switching to RESP3: the reply to HELLO is already in RESP3, and so is everything after it.
		{[]string{"HELLO", "3"}, helloReply(3, 1)},
		{[]string{"CLIENT", "GETNAME"}, bulk("nm")},
		{[]string{"LPOP", "nothing"}, "_\r\n"},
		{[]string{"HELLO"}, helloReply(3, 1)}, // no version: the protocol stays
		{[]string{"HELLO", "2"}, helloReply(2, 1)},
		{[]string{"LPOP", "nothing"}, "$-1\r\n"},
	})
	// Without users, HELLO AUTH accepts any password and names the producer of envelopes.
	expect(t, send(t, c, "HELLO", "2", "AUTH", "alice", "whatever"), helloReply(2, 1))
	if got, want := c.Session().User, "alice"; got != want {
		t.Fatalf("user %q, want %q", got, want)
	}
}

func TestConnection_PingEchoSelect(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{})
		c := s.Conn(t)
		if proto == 3 {
			c = s.Conn3(t)
		}
		run(t, c, cases{
			{[]string{"PING"}, "+PONG\r\n"},
			{[]string{"PING", "x"}, bulk("x")},
			{[]string{"ping", ""}, bulk("")},
			{[]string{"ECHO", "hi"}, bulk("hi")},
			{[]string{"ECHO", "a\r\nb"}, bulk("a\r\nb")},
			{[]string{"SELECT", "0"}, "+OK\r\n"},
			{[]string{"SELECT", "1"}, errR("ERR DB index is out of range")},
			{[]string{"SELECT", "-1"}, errR("ERR DB index is out of range")},
			{[]string{"SELECT", "99999"}, errR("ERR DB index is out of range")},
			{[]string{"SELECT", "x"}, errR("ERR value is not an integer or out of range")},
		})
	}
}

func TestConnection_Client(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	s.Conn(t) // the connection under test is the second: id 2
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"CLIENT", "ID"}, ":2\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
		{[]string{"CLIENT", "SETNAME", "a b"}, errR("ERR Client names cannot contain spaces, newlines or special characters.")},
		{[]string{"CLIENT", "SETNAME", "a\nb"}, errR("ERR Client names cannot contain spaces, newlines or special characters.")},
		{[]string{"CLIENT", "SETNAME", "worker-1"}, "+OK\r\n"},
		{[]string{"client", "getname"}, bulk("worker-1")},
		{[]string{"CLIENT", "SETNAME", ""}, "+OK\r\n"}, // clears the name
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
		{[]string{"CLIENT", "NO-EVICT", "on"}, "+OK\r\n"},
		{[]string{"CLIENT", "NO-EVICT", "maybe"}, errR("ERR syntax error")},
		{[]string{"CLIENT", "NO-TOUCH", "OFF"}, "+OK\r\n"},
		{[]string{"CLIENT", "GETREDIR"}, ":-1\r\n"},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETINFO", "lib-ver", "9.0"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "a b"}, errR("ERR lib-name cannot contain spaces, newlines or special characters.")},
		{[]string{"CLIENT", "SETINFO", "foo", "x"}, errR("ERR Unrecognized option 'foo'")},
		{[]string{"CLIENT", "TRACKING", "off"}, "+OK\r\n"},
		{[]string{"CLIENT", "TRACKING", "on", "optin"}, "+OK\r\n"},
		{[]string{"CLIENT", "TRACKING", "on", "noloop", "OPTIN"}, "+OK\r\n"},
		{[]string{"CLIENT", "TRACKING", "on"}, errR("ERR client-side caching (CLIENT TRACKING) is not supported by qgate; only ON OPTIN is accepted")},
		{[]string{"CLIENT", "TRACKING", "on", "bcast"}, errR("ERR client-side caching (CLIENT TRACKING) is not supported by qgate; only ON OPTIN is accepted")},
		{[]string{"CLIENT", "TRACKING", "off", "x"}, errR("ERR client-side caching (CLIENT TRACKING) is not supported by qgate; only ON OPTIN is accepted")},
		{[]string{"CLIENT", "TRACKING", "maybe"}, errR("ERR syntax error")},
		{[]string{"CLIENT", "CACHING", "yes"}, errR("ERR client-side caching (CLIENT CACHING) is not supported by qgate")},
	})
	got := send(t, c, "CLIENT", "HELP")
	if !strings.HasPrefix(got, "*39\r\n+CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+GETNAME\r\n") ||
		!strings.HasSuffix(got, "+HELP\r\n+    Prints this help.\r\n") {
		t.Fatalf("CLIENT HELP = %q", got)
	}
}

var age = regexp.MustCompile(`age=\d+ `)

func TestConnection_ClientInfo(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	send(t, c, "CLIENT", "SETNAME", "w1")
	send(t, c, "CLIENT", "SETINFO", "LIB-NAME", "redis-py")
	line := "id=1 addr=127.0.0.1:40001 laddr=127.0.0.1:6379 fd=-1 name=w1 age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 " +
		"multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r " +
		"cmd=client|info user=default redir=-1 resp=2 lib-name=redis-py lib-ver=\n"
	expect(t, age.ReplaceAllString(send(t, c, "CLIENT", "INFO"), "age=0 "), bulk(line))

	// RESP3: a verbatim string; a subscribed connection has flag P and its counts.
	c3 := s.Conn3(t)
	send(t, c3, "SUBSCRIBE", "a", "b")
	send(t, c3, "PSUBSCRIBE", "p*")
	line = "id=2 addr=127.0.0.1:40002 laddr=127.0.0.1:6379 fd=-1 name= age=0 idle=0 flags=P db=0 sub=2 psub=1 ssub=0 " +
		"multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r " +
		"cmd=client|info user=default redir=-1 resp=3 lib-name= lib-ver=\n"
	expect(t, age.ReplaceAllString(send(t, c3, "CLIENT", "INFO"), "age=0 "), "="+itoa(len(line)+4)+"\r\ntxt:"+line+"\r\n")
}

func TestConnection_QuitEndsTheBatch(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	got := c.Batch([]string{"PING"}, []string{"QUIT"}, []string{"PING"})
	expect(t, got, "+PONG\r\n+OK\r\n")
	if !c.Session().CloseAfter {
		t.Fatal("QUIT did not ask to close")
	}
}

func TestConnection_Reset(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn3(t)
	send(t, c, "CLIENT", "SETNAME", "x")
	send(t, c, "CLIENT", "NO-EVICT", "on")
	send(t, c, "SUBSCRIBE", "a")
	send(t, c, "PSUBSCRIBE", "b*")
	expect(t, send(t, c, "RESET"), "+RESET\r\n")
	sess := c.Session()
	if sess.Proto != 2 || sess.Name != "" || sess.Subscribed() || sess.NoEvict || !sess.Authed {
		t.Fatalf("after RESET: proto %d, name %q, subscribed %v, no-evict %v, authed %v", sess.Proto, sess.Name, sess.Subscribed(), sess.NoEvict, sess.Authed)
	}
	run(t, c, cases{
		{[]string{"LPOP", "q"}, "$-1\r\n"}, // RESP2 again
		{[]string{"PUBSUB", "NUMSUB", "a"}, "*2\r\n" + bulk("a") + ":0\r\n"},
		{[]string{"PUBSUB", "NUMPAT"}, ":0\r\n"},
	})
}

func TestConnection_QDelivery(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"QDELIVERY"}, bulk("default")},
		{[]string{"QDELIVERY", "ENVELOPE"}, "+OK\r\n"},
		{[]string{"QDELIVERY"}, bulk("envelope")},
		{[]string{"QDELIVERY", "payload"}, "+OK\r\n"},
		{[]string{"QDELIVERY"}, bulk("payload")},
		{[]string{"QDELIVERY", "Default"}, "+OK\r\n"},
		{[]string{"QDELIVERY"}, bulk("default")},
		{[]string{"QDELIVERY", "raw"}, errR("ERR QDELIVERY mode must be payload, envelope or default")},
	})
}
