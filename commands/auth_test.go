package commands_test

import (
	"testing"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/auth"
)

// Authentication and rights (commands/auth.go): Redis's texts for AUTH, HELLO AUTH and NOAUTH, qgate's
// NOPERM for a user lacking the right on a queue, channel or pattern.

func authServer(t *testing.T) *commandstest.Server {
	t.Helper()
	off := false
	return newServer(t, commandstest.Options{Queues: rawRules, Users: []auth.UserConfig{
		{Name: "default", PasswordHash: commandstest.Hash(t, "defpw"), Push: []string{"*"}},
		{Name: "producer", PasswordHash: commandstest.Hash(t, "pw1"), Push: []string{"raw*"}, Publish: []string{"ev.*"}},
		{Name: "worker", PasswordHash: commandstest.Hash(t, "pw2"), Pop: []string{"raw*"}, Subscribe: []string{"ev.*"}},
		{Name: "admin", PasswordHash: commandstest.Hash(t, "pw3"), Admin: []string{"*"}, Pop: []string{"*"}},
		{Name: "off", PasswordHash: commandstest.Hash(t, "pw4"), Enabled: &off, Push: []string{"*"}},
	}})
}

func TestAuth_WithoutUsersEveryLoginIsAccepted(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"AUTH", "anything"}, "+OK\r\n"},
		{[]string{"AUTH", "bob", "pw"}, "+OK\r\n"},
		{[]string{"AUTH", "a", "b", "c"}, errR("ERR syntax error")},
		{[]string{"AUTH"}, errR("ERR wrong number of arguments for 'auth' command")},
	})
	if got, want := c.Session().User, "bob"; got != want {
		t.Fatalf("user %q, want %q (the producer named in envelopes)", got, want)
	}
}

func TestAuth_NoAuthBeforeLogin(t *testing.T) {
	s := authServer(t)
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"LLEN", "rawq"}, errR(commands.ErrNoAuth)},
		{[]string{"CLIENT", "ID"}, errR(commands.ErrNoAuth)},
		{[]string{"SUBSCRIBE", "ev.a"}, errR(commands.ErrNoAuth)},
		{[]string{"INFO"}, errR(commands.ErrNoAuth)},
		// Lookup, subcommand and arity errors come first, as in Redis.
		{[]string{"FOO"}, errR("ERR unknown command 'FOO', with args beginning with: ")},
		{[]string{"CLIENT", "FOO"}, errR("ERR unknown subcommand 'FOO'. Try CLIENT HELP.")},
		{[]string{"LLEN"}, errR("ERR wrong number of arguments for 'llen' command")},
		// PING runs before login on qgate (for health checks; Redis 7.0 refuses it).
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"HELLO", "3"}, errR(commands.ErrHelloAuth)},
		{[]string{"HELLO"}, errR(commands.ErrHelloAuth)},
		{[]string{"HELLO", "3", "AUTH", "worker", "bad"}, errR(commands.ErrWrongPass)},
		{[]string{"AUTH", "bad"}, errR(commands.ErrWrongPass)},
		{[]string{"AUTH", "worker", "bad"}, errR(commands.ErrWrongPass)},
		{[]string{"AUTH", "nobody", "pw2"}, errR(commands.ErrWrongPass)},
		{[]string{"AUTH", "off", "pw4"}, errR(commands.ErrWrongPass)}, // disabled
		{[]string{"AUTH", "a", "b", "c"}, errR("ERR syntax error")},
		{[]string{"LLEN", "rawq"}, errR(commands.ErrNoAuth)},
		{[]string{"QUIT"}, "+OK\r\n"},
	})
	if got, want := s.Stats().AuthFailures, int64(5); got != want {
		t.Fatalf("auth failures %d, want %d", got, want)
	}
}

func TestAuth_LoginAndRights(t *testing.T) {
	s := authServer(t)
	w := s.Conn(t)
	noperm := func(user, right, kind, name string) string {
		return errR("NOPERM user '" + user + "' has no '" + right + "' right on " + kind + " '" + name + "'")
	}
	run(t, w, cases{
		{[]string{"AUTH", "worker", "pw2"}, "+OK\r\n"},
		{[]string{"LLEN", "rawq"}, ":0\r\n"},
		{[]string{"LPOP", "rawq"}, "$-1\r\n"},
		{[]string{"LRANGE", "rawq", "0", "-1"}, "*0\r\n"}, // peeking is part of pop
		{[]string{"BLPOP", "rawq", "other", "0.01"}, noperm("worker", "pop", "queue", "other")},
		{[]string{"RPUSH", "rawq", "x"}, noperm("worker", "push", "queue", "rawq")},
		{[]string{"QSTATS", "rawq"}, noperm("worker", "admin", "queue", "rawq")},
		{[]string{"PUBLISH", "ev.a", "x"}, noperm("worker", "publish", "channel", "ev.a")},
		{[]string{"SUBSCRIBE", "ev.a", "sms"}, noperm("worker", "subscribe", "channel", "sms")},
		{[]string{"PSUBSCRIBE", "ev.*"}, subReply(2, "psubscribe", "ev.*", 1)},
		{[]string{"PSUBSCRIBE", "*"}, noperm("worker", "subscribe", "pattern", "*")},
		{[]string{"RESET"}, "+RESET\r\n"},
		{[]string{"LLEN", "rawq"}, errR(commands.ErrNoAuth)}, // RESET logs out
	})
	if q, ch := s.Denied(); q != 3 || ch != 3 {
		t.Fatalf("denied on queues %d, on channels %d; want 3 and 3", q, ch)
	}

	p := s.Conn(t)
	run(t, p, cases{
		{[]string{"HELLO", "3", "AUTH", "producer", "pw1", "SETNAME", "p1"}, helloReply(3, 2)},
		{[]string{"RPUSH", "rawq", "a", "b"}, ":2\r\n"},
		{[]string{"LPUSH", "jobs", "a"}, noperm("producer", "push", "queue", "jobs")},
		{[]string{"LPOP", "rawq"}, noperm("producer", "pop", "queue", "rawq")},
		{[]string{"PUBLISH", "ev.x", "m"}, ":0\r\n"},
		{[]string{"CLIENT", "GETNAME"}, bulk("p1")},
	})
	if got, want := p.Session().User, "producer"; got != want {
		t.Fatalf("user %q, want %q", got, want)
	}

	// AUTH password logs in as "default".
	d := s.Conn(t)
	run(t, d, cases{
		{[]string{"AUTH", "defpw"}, "+OK\r\n"},
		{[]string{"RPUSH", "rawz", "x"}, ":1\r\n"},
		{[]string{"LLEN", "rawz"}, noperm("default", "pop", "queue", "rawz")},
	})
}

// The NOPERM text clips the name to 128 bytes and sanitises CR/LF (names with them are refused by the
// handler later, but the rights check comes first).
func TestAuth_NoPermClipsName(t *testing.T) {
	s := authServer(t)
	c := s.Conn(t)
	send(t, c, "AUTH", "producer", "pw1")
	long := "raw"
	for len(long) < 140 {
		long += "x"
	}
	expect(t, send(t, c, "LPOP", long), errR("NOPERM user 'producer' has no 'pop' right on queue '"+long[:128]+"'"))
	expect(t, send(t, c, "LPOP", "a\r\nb"), errR("NOPERM user 'producer' has no 'pop' right on queue 'a  b'"))
}

// Without an admin right, INFO shows only the Server, Clients and Persistence sections.
func TestAuth_InfoSectionsByRight(t *testing.T) {
	s := authServer(t)
	w, a := s.Conn(t), s.Conn(t)
	send(t, w, "AUTH", "worker", "pw2")
	send(t, a, "AUTH", "admin", "pw3")
	if got := sections(send(t, w, "INFO")); got != "Server,Clients,Persistence" {
		t.Fatalf("worker's INFO sections: %s", got)
	}
	if got := sections(send(t, w, "INFO", "qgate")); got != "" {
		t.Fatalf("worker's INFO qgate sections: %q", got)
	}
	if got := sections(send(t, a, "INFO")); got != "Server,Clients,Persistence,Stats,Replication,Errorstats,Qgate" {
		t.Fatalf("admin's INFO sections: %s", got)
	}
}
