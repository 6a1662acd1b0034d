package commands_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/auth"
)

// Handler-level tests of CLIENT LIST, CLIENT KILL and INFO commandstats on the fake server; the
// byte-for-byte comparisons with redis-server are in proxy/e2e_obs_test.go.

var idle = regexp.MustCompile(`age=\d+ idle=\d+ `)

func TestClient_ListKillOnTheFake(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	a, b, sub := s.Conn(t), s.Conn(t), s.Conn3(t)
	send(t, sub, "SUBSCRIBE", "ch")
	send(t, b, "CLIENT", "SETNAME", "worker")

	list := idle.ReplaceAllString(send(t, a, "CLIENT", "LIST"), "age=0 idle=0 ")
	for _, want := range []string{
		"id=1 addr=127.0.0.1:40001 laddr=127.0.0.1:6379 fd=-1 name= age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client|list user=default redir=-1 resp=2 lib-name= lib-ver=\n",
		"id=2 addr=127.0.0.1:40002 laddr=127.0.0.1:6379 fd=-1 name=worker age=0 idle=0 flags=N ",
		"id=3 addr=127.0.0.1:40003 laddr=127.0.0.1:6379 fd=-1 name= age=0 idle=0 flags=P db=0 sub=1 psub=0 ",
	} {
		if !strings.Contains(list, want) {
			t.Errorf("CLIENT LIST lacks %q:\n%s", want, list)
		}
	}
	if got := send(t, a, "CLIENT", "LIST", "TYPE", "pubsub"); !strings.Contains(got, "id=3 ") || strings.Contains(got, "id=1 ") {
		t.Errorf("CLIENT LIST TYPE pubsub = %q", got)
	}
	if got := send(t, a, "CLIENT", "LIST", "ID", "3", "2"); strings.Index(got, "id=3 ") > strings.Index(got, "id=2 ") {
		t.Errorf("CLIENT LIST ID 3 2 not in the order asked: %q", got)
	}

	// Killing another connection closes it (it leaves the list); the old form answers OK.
	expect(t, send(t, a, "CLIENT", "KILL", "ID", "2"), ":1\r\n")
	expect(t, send(t, a, "CLIENT", "KILL", "ID", "2"), ":0\r\n")
	expect(t, send(t, a, "CLIENT", "KILL", "127.0.0.1:40003"), "+OK\r\n")
	if got := send(t, a, "CLIENT", "LIST"); strings.Contains(got, "id=2 ") || strings.Contains(got, "id=3 ") {
		t.Errorf("killed clients still listed: %q", got)
	}
	// Killing itself: the reply, then the connection asks to close.
	expect(t, send(t, a, "CLIENT", "KILL", "USER", "default", "SKIPME", "no"), ":1\r\n")
	if !a.Session().CloseAfter {
		t.Fatal("a client that killed itself does not close after its reply")
	}
}

func TestClient_NeedAdminOnEveryQueue(t *testing.T) {
	s := newServer(t, commandstest.Options{Users: []auth.UserConfig{
		{Name: "w", PasswordHash: commandstest.Hash(t, "pw-w-1"), Pop: []string{"*"}},
		{Name: "ops", PasswordHash: commandstest.Hash(t, "pw-ops-1"), Admin: []string{"*"}},
	}})
	c := s.Conn(t)
	expect(t, send(t, c, "AUTH", "w", "pw-w-1"), "+OK\r\n")
	expect(t, send(t, c, "CLIENT", "LIST"), errR("NOPERM user 'w' has no 'admin' right on queue '*'"))
	expect(t, send(t, c, "CLIENT", "KILL", "ID", "9"), errR("NOPERM user 'w' has no 'admin' right on queue '*'"))
	expect(t, send(t, c, "AUTH", "ops", "pw-ops-1"), "+OK\r\n")
	expect(t, send(t, c, "CLIENT", "KILL", "ID", "9"), ":0\r\n")
	expect(t, send(t, c, "CLIENT", "KILL", "USER", "nobody"), errR("ERR No such user 'nobody'"))
}

func TestInfo_CommandstatsOnTheFake(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	c.Batch([]string{"PING"}, []string{"PING"}, []string{"ECHO"}, []string{"CLIENT", "ID"}, []string{"CLIENT", "NOSUCH"}, []string{"NOSUCH"})
	got := usec.ReplaceAllString(send(t, c, "INFO", "commandstats"), "usec=U,usec_per_call=P,")
	want := "# Commandstats\r\n" +
		"cmdstat_client|id:calls=1,usec=U,usec_per_call=P,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_echo:calls=0,usec=U,usec_per_call=P,rejected_calls=1,failed_calls=0\r\n" +
		"cmdstat_ping:calls=2,usec=U,usec_per_call=P,rejected_calls=0,failed_calls=0\r\n"
	if got, want := got[strings.Index(got, "\r\n")+2:], want+"\r\n"; got != want {
		t.Errorf("INFO commandstats:\n got %q\nwant %q", got, want)
	}
	expect(t, send(t, c, "INFO", "errorstats"), bulk("# Errorstats\r\nerrorstat_ERR:count=3\r\n"))
	if got := send(t, c, "INFO"); strings.Contains(got, "cmdstat_") || !strings.Contains(got, "total_error_replies:3\r\n") {
		t.Errorf("plain INFO: %q", got)
	}
}

var usec = regexp.MustCompile(`usec=\d+,usec_per_call=\d+\.\d\d,`)

// BenchmarkCommandStats_Record is the per-command cost of the counters on the RESP path.
func BenchmarkCommandStats_Record(b *testing.B) {
	cs := commands.NewCommandStats()
	spec := commands.Lookup([]byte("lpop"))
	reply := []byte("$1\r\na\r\n")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cs.Record(spec, commands.Ran, 3, reply)
		}
	})
}
