package commands_test

import (
	"strings"
	"testing"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/commands/commandstest"
)

// Exec's checks before any handler: the unknown-command and unknown-subcommand texts of Redis 7
// (with its 128-byte clipping, NUL cut and CR/LF sanitising), arity errors naming "parent|sub", and
// the RESP2 subscribed-state rule. Every expected text was recorded from Redis 7.0.15.

func TestExec_UnknownCommand(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	unknown := func(name, args string) string {
		return errR("ERR unknown command '" + name + "', with args beginning with: " + args)
	}
	tests := []struct {
		name string
		args [][]byte
		want string
	}{
		{"no args", b("FOO"), unknown("FOO", "")},
		{"args quoted", b("FOO", "a", "b"), unknown("FOO", "'a' 'b' ")},
		{"case kept", b("fOo", "a"), unknown("fOo", "'a' ")},
		{"CR LF become spaces", b("foo", "a\r\nb", "c"), unknown("foo", "'a  b' 'c' ")},
		{"name clipped to 128, arg to 128",
			b("F"+strings.Repeat("N", 140), strings.Repeat("x", 130), strings.Repeat("y", 100)),
			unknown("F"+strings.Repeat("N", 127), "'"+strings.Repeat("x", 128)+"' ")},
		{"args added while the list is under 128 bytes, the last clipped to what is left",
			b("foo", strings.Repeat("y", 100), strings.Repeat("z", 50), strings.Repeat("w", 50)),
			unknown("foo", "'"+strings.Repeat("y", 100)+"' '"+strings.Repeat("z", 25)+"' ")},
		{"list past 128 after one arg", b("foo", strings.Repeat("y", 126), "z", "w"),
			unknown("foo", "'"+strings.Repeat("y", 126)+"' ")},
		{"arg cut at NUL", b("foo", "a\x00b", "c"), unknown("foo", "'a' 'c' ")},
		{"name cut at NUL", b("f\x00oo", "a"), unknown("f", "'a' ")},
		{"clipped CR LF", b("foo", strings.Repeat("\r\n", 70)), unknown("foo", "'"+strings.Repeat(" ", 128)+"' ")},
		{"name longer than any command", b(strings.Repeat("a", 33)), unknown(strings.Repeat("a", 33), "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := c.DoBytes(tt.args...), tt.want; got != want {
				t.Errorf("\n got %q\nwant %q", got, want)
			}
		})
	}
}

func b(args ...string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

func TestExec_UnknownSubcommand(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	run(t, c, cases{
		{[]string{"CLIENT", "FOO"}, errR("ERR unknown subcommand 'FOO'. Try CLIENT HELP.")},
		{[]string{"client", "foo\nbar"}, errR("ERR unknown subcommand 'foo bar'. Try CLIENT HELP.")},
		{[]string{"COMMAND", "FOO", "x"}, errR("ERR unknown subcommand 'FOO'. Try COMMAND HELP.")},
		{[]string{"PUBSUB", "x"}, errR("ERR unknown subcommand 'x'. Try PUBSUB HELP.")},
		{[]string{"CLIENT", strings.Repeat("s", 200)}, errR("ERR unknown subcommand '" + strings.Repeat("s", 128) + "'. Try CLIENT HELP.")},
	})
	expect(t, c.DoBytes(b("CLIENT", "a\x00b")...), errR("ERR unknown subcommand 'a'. Try CLIENT HELP."))
}

func TestExec_Arity(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	wrong := func(name string) string { return errR(commands.WrongArgs(name)) }
	run(t, c, cases{
		{[]string{"CLIENT"}, wrong("client")},
		{[]string{"PUBSUB"}, wrong("pubsub")},
		{[]string{"CLIENT", "GETNAME", "x"}, wrong("client|getname")},
		{[]string{"client", "setname"}, wrong("client|setname")},
		{[]string{"PUBSUB", "NUMPAT", "x"}, wrong("pubsub|numpat")},
		{[]string{"PUBSUB", "CHANNELS", "a", "b"}, errR("ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP.")},
		{[]string{"ECHO"}, wrong("echo")},
		{[]string{"ECHO", "a", "b"}, wrong("echo")},
		{[]string{"SELECT"}, wrong("select")},
		{[]string{"PING", "a", "b"}, wrong("ping")},
		{[]string{"PUBLISH", "ch"}, wrong("publish")},
		{[]string{"SUBSCRIBE"}, wrong("subscribe")},
		{[]string{"RESET", "x"}, wrong("reset")},
		{[]string{"QACK", "q"}, wrong("qack")},
		{[]string{"QNACK", "q", "r", "1", "2"}, wrong("qnack")},
		{[]string{"QEXTEND", "q", "r"}, wrong("qextend")},
		{[]string{"QSTATS"}, wrong("qstats")},
		{[]string{"QDEAD", "q", "1", "2"}, wrong("qdead")},
		{[]string{"QREDRIVE", "q", "1", "2"}, wrong("qredrive")},
		{[]string{"QDELIVERY", "payload", "x"}, wrong("qdelivery")},
	})
}

// In RESP2 a subscribed connection may only run the pub/sub commands, PING, QUIT and RESET; arity is
// checked first. RESP3 has no such rule.
func TestExec_SubscribedStateRESP2(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	cant := func(name string) string {
		return errR("ERR Can't execute '" + name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
	}
	send(t, c, "SUBSCRIBE", "ch1")
	run(t, c, cases{
		{[]string{"LPUSH", "q", "a"}, cant("lpush")},
		{[]string{"CLIENT", "ID"}, cant("client|id")},
		{[]string{"PUBLISH", "ch1", "x"}, cant("publish")},
		{[]string{"ECHO", "x"}, cant("echo")},
		{[]string{"CLIENT", "GETNAME", "x"}, errR("ERR wrong number of arguments for 'client|getname' command")},
		{[]string{"FOO"}, errR("ERR unknown command 'FOO', with args beginning with: ")},
		{[]string{"PING"}, "*2\r\n" + bulk("pong") + bulk("")},
		{[]string{"PING", "hi"}, "*2\r\n" + bulk("pong") + bulk("hi")},
		{[]string{"QDELIVERY"}, bulk("default")}, // qgate's own: allowed
		{[]string{"RESET"}, "+RESET\r\n"},
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"LLEN", "q"}, ":0\r\n"},
	})
	c3 := s.Conn3(t)
	send(t, c3, "SUBSCRIBE", "ch1")
	run(t, c3, cases{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"LLEN", "q"}, ":0\r\n"},
		{[]string{"CLIENT", "ID"}, ":2\r\n"},
	})
}

func TestExec_EmptyCommandWritesNothing(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	if got := c.DoBytes(); got != "" {
		t.Fatalf("got %q, want nothing", got)
	}
}

func TestExec_LookupIsCaseInsensitive(t *testing.T) {
	for _, name := range []string{"lpush", "LPUSH", "LpUsH"} {
		if s := commands.Lookup([]byte(name)); s == nil || s.Name != "lpush" {
			t.Errorf("Lookup(%q) = %v", name, s)
		}
	}
	if s := commands.Lookup([]byte(strings.Repeat("a", 40))); s != nil {
		t.Errorf("Lookup of a long name = %v, want nil", s)
	}
}

// Every command in the table has a handler or subcommands, a lower-case name, and subcommands named
// "parent|sub"; COMMAND COUNT counts the table.
func TestSpecs_Table(t *testing.T) {
	all := commands.All()
	if len(all) == 0 {
		t.Fatal("no commands")
	}
	for i, s := range all {
		if i > 0 && all[i-1].Name >= s.Name {
			t.Errorf("All not sorted at %q", s.Name)
		}
		if s.Name != strings.ToLower(s.Name) {
			t.Errorf("%q is not lower case", s.Name)
		}
		if s.Run == nil && len(s.Subs) == 0 {
			t.Errorf("%q has neither a handler nor subcommands", s.Name)
		}
		if s.Arity == 0 {
			t.Errorf("%q has arity 0", s.Name)
		}
		for _, sub := range s.Subs {
			if !strings.HasPrefix(sub.Name, s.Name+"|") || sub.Run == nil {
				t.Errorf("subcommand %q of %q", sub.Name, s.Name)
			}
		}
	}
}
