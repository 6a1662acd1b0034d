package commands_test

import (
	"testing"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/policy"
)

// Handler tests of QPUSH, QPAUSE and QRESUME (README "Queue controls"); end to end against
// redis-server in proxy/e2e_controls_test.go.

func TestControl_CommandReplies(t *testing.T) {
	s := newServer(t, commandstest.Options{Queues: []policy.Rule{
		{Match: "rawcap", MaxLength: 2, Envelope: new(bool)},
		{Match: "raw*", Envelope: new(bool)},
	}})
	for _, proto := range []int{2, 3} {
		c, null, _ := protoConn(t, s, proto)
		run(t, c, cases{
			{[]string{"QPUSH", "rawq", "0", "a", "b"}, ":2\r\n"},
			{[]string{"LRANGE", "rawq", "0", "-1"}, "*2\r\n" + bulk("a") + bulk("b")},
			{[]string{"QPUSH", "rawq", "-1", "a"}, errR("ERR QPUSH delay-ms must be an integer between 0 and 31536000000")},
			{[]string{"QPUSH", "rawq", "+5", "a"}, errR("ERR QPUSH delay-ms must be an integer between 0 and 31536000000")},
			{[]string{"QPUSH", "rawq", "5"}, errR("ERR wrong number of arguments for 'qpush' command")},
			{[]string{"QPUSH", "a b", "5", "x"}, errR(`ERR invalid queue name "a b": use printable ASCII without spaces, quotes, backslashes or * ? [ ]`)},
			{[]string{"QPUSH", "rawcap", "0", "a", "b", "c"}, errR("ERR queue 'rawcap' is full (max_length 2)")},
			{[]string{"QPAUSE", "rawq"}, "+OK\r\n"},
			{[]string{"LPOP", "rawq"}, null},
			{[]string{"RPUSH", "rawq", "c"}, ":3\r\n"},
			{[]string{"QRESUME", "rawq"}, ":1\r\n"},
			{[]string{"QRESUME", "rawq"}, ":0\r\n"},
			{[]string{"LPOP", "rawq"}, bulk("a")},
			{[]string{"QPAUSE"}, errR("ERR wrong number of arguments for 'qpause' command")},
			{[]string{"DEL", "rawq"}, ":1\r\n"},
		})
	}
}
