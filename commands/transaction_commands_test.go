package commands_test

import (
	"testing"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/auth"
)

// Handler-level tests of MULTI/EXEC/DISCARD on the fake server; the byte-for-byte comparisons with
// redis-server 7.0 are in proxy/e2e_txn_test.go.

func TestMulti_QueuesAndExecRunsInOrder(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	got := c.Batch([]string{"MULTI"}, []string{"RPUSH", "mq", "a", "b"}, []string{"LPOP", "mq"}, []string{"LLEN", "mq"}, []string{"EXEC"})
	expect(t, got, "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n:2\r\n$1\r\na\r\n:1\r\n")
	if c.Session().Multi != nil || c.Session().InExec {
		t.Fatal("the transaction is still open after EXEC")
	}
}

func TestMulti_QueuedArgumentsAreCopies(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	arg := []byte("value-1")
	c.DoBytes([]byte("MULTI"))
	c.DoBytes([]byte("RPUSH"), []byte("cq"), arg)
	copy(arg, "XXXXXXX") // the connection reuses its read buffer
	expect(t, send(t, c, "EXEC"), "*1\r\n:1\r\n")
	expect(t, send(t, c, "LPOP", "cq"), "$7\r\nvalue-1\r\n")
}

func TestExec_AbortsAfterNoPermAtQueueTime(t *testing.T) {
	s := newServer(t, commandstest.Options{Users: []auth.UserConfig{
		{Name: "p", PasswordHash: commandstest.Hash(t, "pw-p-1"), Push: []string{"jobs"}},
	}})
	c := s.Conn(t)
	expect(t, send(t, c, "AUTH", "p", "pw-p-1"), "+OK\r\n")
	got := c.Batch([]string{"MULTI"}, []string{"RPUSH", "jobs", "a"}, []string{"LPOP", "jobs"}, []string{"EXEC"}, []string{"LLEN", "jobs"})
	expect(t, got, "+OK\r\n+QUEUED\r\n"+errR("NOPERM user 'p' has no 'pop' right on queue 'jobs'")+
		errR("EXECABORT Transaction discarded because of previous errors.")+errR("NOPERM user 'p' has no 'pop' right on queue 'jobs'"))
	if got, want := s.MR.Exists("jobs"), false; got != want {
		t.Fatalf("jobs exists = %v after the aborted transaction, want %v", got, want)
	}
}

func TestExec_BlockingCommandDoesNotWait(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	c := s.Conn(t)
	got := c.Batch([]string{"MULTI"}, []string{"BLPOP", "bq", "0"}, []string{"EXEC"})
	expect(t, got, "+OK\r\n+QUEUED\r\n*1\r\n*-1\r\n")
}
