package commands

import (
	"errors"
	"fmt"
	"sort"

	"github.com/qgate/qgate/proxy/queue"
	"github.com/qgate/qgate/proxy/resp"
)

// Sharded pub/sub (README "Pub/sub"): SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH and PUBSUB SHARDCHANNELS /
// SHARDNUMSUB, with the channel rules, rights and envelopes of PUBLISH and SUBSCRIBE. The PUBSUB
// subcommands are in the PUBSUB spec of pubsub_commands.go.

func init() {
	sub := PubSub | Loading | Stale | SubscribedOK
	register(
		&Spec{Name: "spublish", Arity: 3, Flags: PubSub | Loading | Stale | Fast | Pipelined, Verb: VerbPublish, Targets: argAt(1),
			FirstKey: 1, LastKey: 1, KeyStep: 1, Group: "pubsub", Since: "7.0.0", Summary: "Post a message to a shard channel",
			Args: []Arg{{Name: "shardchannel", Type: "string"}, {Name: "message", Type: "string"}}, Run: spublish},
		&Spec{Name: "ssubscribe", Arity: -2, Flags: sub, Verb: VerbSubscribe, Targets: argsFrom(1), FirstKey: 1, LastKey: -1, KeyStep: 1,
			Group: "pubsub", Since: "7.0.0", Summary: "Listens for messages published to shard channels.",
			Args: []Arg{{Name: "shardchannel", Type: "string", Multiple: true}}, Run: ssubscribe},
		&Spec{Name: "sunsubscribe", Arity: -1, Flags: sub, FirstKey: 1, LastKey: -1, KeyStep: 1, Group: "pubsub", Since: "7.0.0",
			Summary: "Stops listening to messages posted to shard channels.",
			Args:    []Arg{{Name: "shardchannel", Type: "string", Optional: true, Multiple: true}}, Run: sunsubscribe},
	)
}

// spublish is publish for a shard channel: the backend's receiver count is shard-local, with each of
// qgate's shared subscriptions counted once, which qgate replaces with its local subscriber count.
func spublish(c Conn, args [][]byte) {
	channel := string(args[1])
	if _, ok := channelPolicy(c, channel, false); !ok {
		return
	}
	// As publish: a client subscribed to the channel gets its message before the reply.
	_, own := c.Session().ShardChannels[channel]
	op, err := c.Server().Queues().SPublish(channel, producer(c), args[2])
	if err != nil {
		var rej *queue.RejectedError
		if errors.As(err, &rej) {
			c.Reply().Error(sanitize(fmt.Sprintf("ERR message rejected by %s: %v", rej.Rule, rej.Err)))
		} else {
			c.Reply().Error(backendError(err))
		}
		return
	}
	c.Queue(op, func(w *resp.Writer) {
		n, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		if own {
			c.AwaitOwnShardMessages(channel)
		}
		local, subscribed := c.Server().Queues().LocalShardNumSub(channel)
		if subscribed {
			n--
		}
		n += int64(local)
		if n < 0 {
			n = 0
		}
		w.Int(n)
	})
	if own {
		c.RunQueued()
	}
}

func ssubscribe(c Conn, args [][]byte) {
	for _, nb := range args[1:] { // a bad name refuses the whole command
		if _, ok := channelPolicy(c, string(nb), false); !ok {
			return
		}
	}
	s := c.Session()
	for _, nb := range args[1:] {
		name := string(nb)
		if _, ok := s.ShardChannels[name]; !ok {
			if err := c.SSubscribe(name); err != nil {
				c.Reply().Error(backendError(err))
				continue
			}
			if s.ShardChannels == nil {
				s.ShardChannels = map[string]struct{}{}
			}
			s.ShardChannels[name] = struct{}{}
		}
		shardSubscription(c.Reply(), "ssubscribe", &name, s)
	}
}

// sunsubscribe replies with the number of shard channels left, as Redis 7.0 does (channels and
// patterns are not counted).
func sunsubscribe(c Conn, args [][]byte) {
	s := c.Session()
	var list []string
	if len(args) == 1 {
		for name := range s.ShardChannels {
			list = append(list, name)
		}
		sort.Strings(list)
		if len(list) == 0 {
			shardSubscription(c.Reply(), "sunsubscribe", nil, s)
			return
		}
	} else {
		for _, nb := range args[1:] {
			list = append(list, string(nb))
		}
	}
	for _, name := range list {
		if _, ok := s.ShardChannels[name]; ok {
			delete(s.ShardChannels, name)
			c.SUnsubscribe(name)
		}
		shardSubscription(c.Reply(), "sunsubscribe", &name, s)
	}
}

// shardSubscription writes an ssubscribe or sunsubscribe frame (name nil: the null channel).
func shardSubscription(w *resp.Writer, kind string, name *string, s *Session) {
	w.Push(3)
	w.BulkString(kind)
	if name == nil {
		w.Null()
	} else {
		w.BulkString(*name)
	}
	w.Int(int64(s.ShardSubscriptions()))
}

// unsubscribeAllShard drops every shard channel of c without replying (RESET, disconnect).
func unsubscribeAllShard(c Conn) {
	s := c.Session()
	for name := range s.ShardChannels {
		c.SUnsubscribe(name)
	}
	s.ShardChannels = nil
}

func pubsubShardChannels(c Conn, args [][]byte) {
	if len(args) > 3 {
		c.Reply().Error(subcommandSyntaxError(args))
		return
	}
	var pattern []byte
	if len(args) == 3 {
		pattern = args[2]
	}
	op := c.Server().Queues().PubSubShardChannels(pattern)
	c.Queue(op, func(w *resp.Writer) {
		vals, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Array(len(vals))
		for _, v := range vals {
			w.BulkString(v)
		}
	})
}

// pubsubShardNumsub corrects the backend's counts as pubsubNumsub does.
func pubsubShardNumsub(c Conn, args [][]byte) {
	op := c.Server().Queues().PubSubShardNumSub(args[2:])
	names := make([]string, len(args)-2)
	for i, a := range args[2:] {
		names[i] = string(a)
	}
	c.Queue(op, func(w *resp.Writer) {
		counts, err := op.Result()
		if err != nil {
			w.Error(backendError(err))
			return
		}
		w.Array(2 * len(names))
		for i, name := range names {
			n := counts[i]
			local, subscribed := c.Server().Queues().LocalShardNumSub(name)
			if subscribed && n > 0 {
				n--
			}
			w.BulkString(name)
			w.Int(n + int64(local))
		}
	})
}
