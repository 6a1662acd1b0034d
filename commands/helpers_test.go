package commands_test

import (
	"strings"
	"testing"

	"github.com/qgate/qgate/commands/commandstest"
	"github.com/qgate/qgate/proxy/policy"
)

// Handler tests without sockets: commandstest runs commands.Exec on a fake connection over a real
// engine on miniredis and returns the exact bytes written. Expected replies were recorded from Redis
// 7.0.15 where Redis has the command.

var (
	send   = commandstest.Send
	expect = commandstest.Expect
	bulk   = commandstest.Bulk
	errR   = commandstest.Err
)

// tc is one command and the exact bytes it must write.
type tc struct {
	args []string
	want string
}

type cases = []tc

// run sends each case on c in order (one batch each) and checks its reply; a mismatch is reported
// with the command and the test goes on.
func run(t *testing.T, c *commandstest.Conn, cs cases) {
	t.Helper()
	for _, tc := range cs {
		if got := c.Do(tc.args...); got != tc.want {
			t.Errorf("%s\n got %q\nwant %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

// rawRules makes queues and channels named raw* store values as they are (no envelope), so that
// replies and backend contents can be compared byte for byte.
var rawRules = []policy.Rule{{Match: "raw*", Envelope: new(bool)}}

func newServer(t *testing.T, o commandstest.Options) *commandstest.Server {
	t.Helper()
	return commandstest.NewServer(t, o)
}

// protoConn returns a connection of s speaking proto (2 or 3) and that protocol's nil bulk and nil
// array replies.
func protoConn(t *testing.T, s *commandstest.Server, proto int) (c *commandstest.Conn, null, nullArr string) {
	t.Helper()
	if proto == 3 {
		return s.Conn3(t), "_\r\n", "_\r\n"
	}
	return s.Conn(t), "$-1\r\n", "*-1\r\n"
}
