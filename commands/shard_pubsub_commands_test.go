package commands_test

import (
	"testing"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/commands/commandstest"
)

// The handlers' replies that need no backend (the fake's miniredis has no sharded pub/sub): argument
// errors, name validation and SUNSUBSCRIBE of channels the client does not have.

func TestShardPubSub_ArgumentErrors(t *testing.T) {
	s := newServer(t, commandstest.Options{})
	wrong := func(name string) string { return errR(commands.WrongArgs(name)) }
	const invalid = `-ERR invalid channel name "a*": use printable ASCII without spaces, quotes, backslashes or * ? [ ]` + "\r\n"
	run(t, s.Conn(t), cases{
		{[]string{"SSUBSCRIBE"}, wrong("ssubscribe")},
		{[]string{"SPUBLISH"}, wrong("spublish")},
		{[]string{"SPUBLISH", "ch"}, wrong("spublish")},
		{[]string{"SPUBLISH", "ch", "a", "b"}, wrong("spublish")},
		{[]string{"PUBSUB", "SHARDCHANNELS", "a", "b"}, errR("ERR unknown subcommand or wrong number of arguments for 'SHARDCHANNELS'. Try PUBSUB HELP.")},
		// A bad name refuses the whole SSUBSCRIBE, and the connection stays out of subscribed state.
		{[]string{"SSUBSCRIBE", "ok", "a*"}, invalid},
		{[]string{"SPUBLISH", "a*", "x"}, invalid},
		{[]string{"SPUBLISH", "", "x"}, "-ERR invalid channel name: use 1 to 200 characters\r\n"},
		{[]string{"PUBSUB", "SHARDNUMSUB"}, "*0\r\n"},
	})
}

func TestShardPubSub_SUnsubscribeWithoutChannels(t *testing.T) {
	for _, proto := range []int{2, 3} {
		s := newServer(t, commandstest.Options{})
		c := s.Conn(t)
		if proto == 3 {
			c = s.Conn3(t)
		}
		r := func(name string, n int) string { return subReply(proto, "sunsubscribe", name, n) }
		run(t, c, cases{
			{[]string{"SUNSUBSCRIBE"}, r("", 0)},
			{[]string{"SUNSUBSCRIBE", "a", "b"}, r("a", 0) + r("b", 0)},
			{[]string{"LPOP", "q"}, map[int]string{2: "$-1\r\n", 3: "_\r\n"}[proto]}, // not in subscribed state
		})
	}
}
