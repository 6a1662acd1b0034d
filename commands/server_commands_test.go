package commands_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/commands/commandstest"
)

// sections lists the "# Name" headers of an INFO reply, comma-separated.
func sections(reply string) string {
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^# (\w+)\r$`).FindAllStringSubmatch(reply, -1) {
		out = append(out, m[1])
	}
	return strings.Join(out, ",")
}

func TestServer_CommandCountAndList(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	n := len(commands.All())
	expect(t, send(t, c, "COMMAND", "COUNT"), ":"+itoa(n)+"\r\n")
	want := "*" + itoa(n) + "\r\n"
	for _, spec := range commands.All() {
		want += bulk(spec.Name)
	}
	expect(t, send(t, c, "COMMAND", "LIST"), want)
	expect(t, send(t, c, "COMMAND", "LIST", "FILTERBY", "x"), errR("ERR qgate does not support COMMAND LIST FILTERBY"))
	expect(t, send(t, c, "COMMAND", "COUNT", "x"), errR("ERR wrong number of arguments for 'command|count' command"))
	// COMMAND alone is COMMAND INFO of everything.
	expect(t, send(t, c, "COMMAND"), send(t, c, "COMMAND", "INFO"))
	if got := send(t, c, "COMMAND"); !strings.HasPrefix(got, want[:len("*"+itoa(n)+"\r\n")]+"*10\r\n") {
		t.Fatalf("COMMAND starts %q", got[:40])
	}
}

// COMMAND INFO entries have Redis 7.0's ten fields; with RESP3, flags, categories, and empty tips,
// key specifications and subcommand lists are sets, as Redis 7.0.15 sends them (the order inside a
// set is qgate's).
func TestServer_CommandInfoShape(t *testing.T) {
	echo2 := "*10\r\n" + bulk("echo") + ":2\r\n*3\r\n+fast\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n" +
		"*2\r\n+@connection\r\n+@fast\r\n*0\r\n*0\r\n*0\r\n"
	echo3 := "*10\r\n" + bulk("echo") + ":2\r\n~3\r\n+fast\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n" +
		"~2\r\n+@connection\r\n+@fast\r\n~0\r\n~0\r\n~0\r\n"
	lpush3 := "*10\r\n" + bulk("lpush") + ":-3\r\n~3\r\n+write\r\n+denyoom\r\n+fast\r\n:1\r\n:1\r\n:1\r\n" +
		"~3\r\n+@list\r\n+@write\r\n+@fast\r\n~0\r\n~0\r\n~0\r\n"
	numpat3 := "*10\r\n" + bulk("pubsub|numpat") + ":2\r\n~3\r\n+pubsub\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n" +
		"~1\r\n+@pubsub\r\n~0\r\n~0\r\n~0\r\n"

	s := newServer(t, commandstest.Options{})
	c2, c3 := s.Conn(t), s.Conn3(t)
	run(t, c2, cases{
		{[]string{"COMMAND", "INFO", "echo", "nosuch"}, "*2\r\n" + echo2 + "*-1\r\n"},
		{[]string{"COMMAND", "INFO", "ECHO"}, "*1\r\n" + echo2},
	})
	run(t, c3, cases{
		{[]string{"COMMAND", "INFO", "echo", "nosuch"}, "*2\r\n" + echo3 + "_\r\n"},
		{[]string{"COMMAND", "INFO", "lpush"}, "*1\r\n" + lpush3},
	})
	// A container lists its subcommands as an array of entries.
	got := send(t, c3, "COMMAND", "INFO", "pubsub")
	head := "*1\r\n*10\r\n" + bulk("pubsub") + ":-2\r\n~0\r\n:0\r\n:0\r\n:0\r\n~1\r\n+@pubsub\r\n~0\r\n~0\r\n*6\r\n"
	if !strings.HasPrefix(got, head) || !strings.Contains(got, numpat3) {
		t.Fatalf("COMMAND INFO pubsub = %q", got)
	}
}

func TestServer_CommandDocsShape(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c2, c3 := s.Conn(t), s.Conn3(t)
	echoDoc := func(m func(int) string) string {
		return m(1) + bulk("echo") + m(4) + bulk("summary") + bulk("Returns the given string.") + bulk("since") + bulk("1.0.0") +
			bulk("group") + bulk("connection") + bulk("arguments") + "*1\r\n" + m(2) + bulk("name") + bulk("message") + bulk("type") + bulk("string")
	}
	arr := func(n int) string { return "*" + itoa(2*n) + "\r\n" }
	mp := func(n int) string { return "%" + itoa(n) + "\r\n" }
	run(t, c2, cases{
		{[]string{"COMMAND", "DOCS", "echo"}, echoDoc(arr)},
		{[]string{"COMMAND", "DOCS", "nosuch"}, "*0\r\n"},
	})
	run(t, c3, cases{
		{[]string{"COMMAND", "DOCS", "echo", "nosuch"}, echoDoc(mp)},
		{[]string{"COMMAND", "DOCS", "nosuch"}, "%0\r\n"},
	})
	// A key argument carries key_spec_index; an optional one its flags; subcommands are documented.
	lpop := send(t, c3, "COMMAND", "DOCS", "lpop")
	for _, want := range []string{
		"%3\r\n" + bulk("name") + bulk("key") + bulk("type") + bulk("key") + bulk("key_spec_index") + ":0\r\n",
		"%3\r\n" + bulk("name") + bulk("count") + bulk("type") + bulk("integer") + bulk("flags") + "~1\r\n+optional\r\n",
	} {
		if !strings.Contains(lpop, want) {
			t.Errorf("COMMAND DOCS lpop = %q, lacks %q", lpop, want)
		}
	}
	if client := send(t, c3, "COMMAND", "DOCS", "client"); !strings.Contains(client, bulk("subcommands")+"%") ||
		!strings.Contains(client, bulk("client|setname")) {
		t.Errorf("COMMAND DOCS client = %q", client)
	}
	// Every command is documented.
	all := send(t, c2, "COMMAND", "DOCS")
	if !strings.HasPrefix(all, "*"+itoa(2*len(commands.All()))+"\r\n") {
		t.Fatalf("COMMAND DOCS starts %q", all[:20])
	}
}

func TestServer_Info(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c2, c3 := s.Conn(t), s.Conn3(t)
	got := send(t, c2, "INFO")
	if got, want := sections(got), "Server,Clients,Persistence,Stats,Replication,Errorstats,Qgate"; got != want {
		t.Fatalf("INFO sections %s, want %s", got, want)
	}
	for _, line := range []string{"redis_version:" + commands.RedisVersion, "redis_mode:standalone", "loading:0", "role:master",
		"backend_kind:standalone", "backend_addr:" + s.MR.Addr(), "instance_id:test", "lost_items:0", "users:0"} {
		if !strings.Contains(got, "\r\n"+line+"\r\n") {
			t.Errorf("INFO lacks %q", line)
		}
	}
	// A bulk string in RESP2, a verbatim text in RESP3.
	body := strings.TrimPrefix(got, "$")
	body = body[strings.Index(body, "\r\n")+2 : len(body)-2]
	expect(t, got, bulk(body))
	if !strings.HasPrefix(body, "# Server\r\nredis_version:") || !strings.HasSuffix(body, "\r\n") {
		t.Fatalf("INFO body %q", body)
	}
	got3 := send(t, c3, "INFO", "persistence")
	expect(t, got3, "=30\r\ntxt:# Persistence\r\nloading:0\r\n\r\n")

	for _, tt := range []struct{ args, want string }{
		{"server", "Server"},
		{"SERVER clients", "Server,Clients"},
		{"qgate", "Qgate"},
		{"all", "Server,Clients,Persistence,Stats,Replication,Commandstats,Errorstats,Qgate"},
		{"everything", "Server,Clients,Persistence,Stats,Replication,Commandstats,Errorstats,Qgate"},
		{"default", "Server,Clients,Persistence,Stats,Replication,Errorstats,Qgate"},
		{"commandstats", "Commandstats"},
		{"errorstats", "Errorstats"},
		{"nosuch", ""},
	} {
		args := append([]string{"INFO"}, strings.Fields(tt.args)...)
		if got := sections(send(t, c2, args...)); got != tt.want {
			t.Errorf("INFO %s: sections %q, want %q", tt.args, got, tt.want)
		}
	}
	expect(t, send(t, c2, "INFO", "nosuch"), bulk(""))
}
