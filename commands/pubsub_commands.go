package commands

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/qgate/qgate/proxy/glob"
	"github.com/qgate/qgate/proxy/queue"
	"github.com/qgate/qgate/proxy/resp"
)

func init() {
	chans := []Arg{{Name: "channel", Type: "string", Multiple: true}}
	optChans := []Arg{{Name: "channel", Type: "string", Optional: true, Multiple: true}}
	pats := []Arg{{Name: "pattern", Type: "pattern", Multiple: true}}
	optPats := []Arg{{Name: "pattern", Type: "pattern", Optional: true, Multiple: true}}
	sub := PubSub | Loading | Stale | SubscribedOK
	register(
		&Spec{Name: "publish", Arity: 3, Flags: PubSub | Loading | Stale | Fast | Pipelined, Verb: VerbPublish, Targets: argAt(1),
			Group: "pubsub", Since: "2.0.0", Summary: "Posts a message to a channel.",
			Args: []Arg{{Name: "channel", Type: "string"}, {Name: "message", Type: "string"}}, Run: publish},
		&Spec{Name: "subscribe", Arity: -2, Flags: sub, Verb: VerbSubscribe, Targets: argsFrom(1), Group: "pubsub", Since: "2.0.0",
			Summary: "Listens for messages published to channels.", Args: chans,
			Run: func(c Conn, args [][]byte) { subscribe(c, false, args[1:]) }},
		&Spec{Name: "psubscribe", Arity: -2, Flags: sub, Verb: VerbSubscribe, Targets: argsFrom(1), PatternArgs: true, Group: "pubsub", Since: "2.0.0",
			Summary: "Listens for messages published to channels that match one or more patterns.", Args: pats,
			Run: func(c Conn, args [][]byte) { subscribe(c, true, args[1:]) }},
		&Spec{Name: "unsubscribe", Arity: -1, Flags: sub, Group: "pubsub", Since: "2.0.0",
			Summary: "Stops listening to messages posted to channels.", Args: optChans,
			Run: func(c Conn, args [][]byte) { unsubscribe(c, false, args[1:]) }},
		&Spec{Name: "punsubscribe", Arity: -1, Flags: sub, Group: "pubsub", Since: "2.0.0",
			Summary: "Stops listening to messages published to channels that match one or more patterns.", Args: optPats,
			Run: func(c Conn, args [][]byte) { unsubscribe(c, true, args[1:]) }},
		&Spec{Name: "pubsub", Arity: -2, Group: "pubsub", Since: "2.8.0", Summary: "A container for Pub/Sub commands.",
			Subs: []*Spec{
				{Name: "pubsub|channels", Arity: -2, Flags: PubSub | Loading | Stale | Pipelined, Since: "2.8.0",
					Summary: "Returns the active channels.", Args: []Arg{{Name: "pattern", Type: "pattern", Optional: true}},
					Run: func(c Conn, args [][]byte) { pubsubChannels(c, args, false) }},
				{Name: "pubsub|numsub", Arity: -2, Flags: PubSub | Loading | Stale | Pipelined, Since: "2.8.0",
					Summary: "Returns a count of subscribers to channels.", Args: optChans, Run: pubsubNumsub},
				{Name: "pubsub|numpat", Arity: 2, Flags: PubSub | Loading | Stale | Pipelined, Since: "2.8.0",
					Summary: "Returns a count of unique pattern subscriptions.", Run: pubsubNumpat},
				{Name: "pubsub|shardchannels", Arity: -2, Flags: PubSub | Loading | Stale | Pipelined, Since: "7.0.0",
					Summary: "Returns the active shard channels.", Args: []Arg{{Name: "pattern", Type: "pattern", Optional: true}},
					Run: func(c Conn, args [][]byte) { pubsubChannels(c, args, true) }},
				{Name: "pubsub|shardnumsub", Arity: -2, Flags: PubSub | Loading | Stale | Pipelined, Since: "7.0.0",
					Summary: "Returns the count of subscribers of shard channels.",
					Args:    []Arg{{Name: "shardchannel", Type: "string", Optional: true, Multiple: true}}, Run: pubsubShardNumsub},
				{Name: "pubsub|help", Arity: 2, Flags: Loading | Stale, Since: "6.2.0",
					Summary: "Returns helpful text about the different subcommands.", Run: pubsubHelp},
			}},
	)
}

// publish forwards to the backend. Redis replies with the number of clients that received the message;
// the backend counts each of qgate's shared subscriptions once, so qgate replaces those with its local
// subscriber count.
func publish(c Conn, args [][]byte) {
	channel := string(args[1])
	if _, ok := channelPolicy(c, channel, false); !ok {
		return
	}
	q := c.Server().Queues()
	publishTo(c, channel, args[2], receives(c.Session(), channel), q.Publish, c.AwaitOwnMessages, func() (int, int) {
		return q.LocalSubscribers(channel)
	})
}

// publishTo is PUBLISH and SPUBLISH once the channel was checked: it publishes msg with pub and
// replies with the backend's receiver count, qgate's shared subscriptions (local's second result)
// replaced by its local subscribers (the first).
//
// A RESP3 client subscribed to the channel (own) gets its own message before the reply, as from
// Redis, which delivers it while running PUBLISH: awaitOwn waits for it. Its PUBLISH runs at once,
// not at the end of the batch, so that each message also comes before the replies of the commands
// after it.
func publishTo(c Conn, channel string, msg []byte, own bool, pub func(channel, producer string, msg []byte) (*queue.Result[int64], error),
	awaitOwn func(), local func() (clients, backendSubs int)) {
	op, err := pub(channel, producer(c), msg)
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
			awaitOwn()
		}
		clients, subs := local()
		n = n - int64(subs) + int64(clients)
		if n < 0 {
			n = 0
		}
		w.Int(n)
	})
	if own {
		c.RunQueued()
	}
}

// receives reports whether the session is subscribed to channel or to a pattern matching it.
func receives(s *Session, channel string) bool {
	if _, ok := s.Channels[channel]; ok {
		return true
	}
	for p := range s.Patterns {
		if glob.Match(p, channel) {
			return true
		}
	}
	return false
}

func subscribe(c Conn, pattern bool, names [][]byte) {
	s := c.Session()
	kind, set := "subscribe", &s.Channels
	if pattern {
		kind, set = "psubscribe", &s.Patterns
	}
	subscribeNames(c, kind, pattern, names, set, func(name string) error { return c.Subscribe(pattern, name) }, s.Subscriptions)
}

func unsubscribe(c Conn, pattern bool, names [][]byte) {
	s := c.Session()
	kind, set := "unsubscribe", s.Channels
	if pattern {
		kind, set = "punsubscribe", s.Patterns
	}
	unsubscribeNames(c, kind, names, set, func(name string) { c.Unsubscribe(pattern, name) }, s.Subscriptions)
}

// subscribeNames is SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE: it adds names to the session's set of the
// kind, subscribing with sub, and confirms each with the session's count of the kind's subscriptions.
func subscribeNames(c Conn, kind string, pattern bool, names [][]byte, set *map[string]struct{}, sub func(string) error, count func() int) {
	for _, nb := range names { // a bad name refuses the whole command
		if _, ok := channelPolicy(c, string(nb), pattern); !ok {
			return
		}
	}
	for _, nb := range names {
		name := string(nb)
		if _, ok := (*set)[name]; !ok {
			if err := sub(name); err != nil {
				c.Reply().Error(backendError(err))
				continue
			}
			if *set == nil {
				*set = map[string]struct{}{}
			}
			(*set)[name] = struct{}{}
		}
		subscription(c.Reply(), kind, &name, count())
	}
}

// unsubscribeNames is UNSUBSCRIBE, PUNSUBSCRIBE and SUNSUBSCRIBE: it removes names (none: every name
// of set, in order) from the session's set of the kind, unsubscribing with unsub, and confirms each.
func unsubscribeNames(c Conn, kind string, names [][]byte, set map[string]struct{}, unsub func(string), count func() int) {
	var list []string
	if len(names) == 0 {
		for name := range set {
			list = append(list, name)
		}
		sort.Strings(list)
		if len(list) == 0 {
			subscription(c.Reply(), kind, nil, count())
			return
		}
	} else {
		list = make([]string, len(names))
		for i, nb := range names {
			list[i] = string(nb)
		}
	}
	for _, name := range list {
		if _, ok := set[name]; ok {
			delete(set, name)
			unsub(name)
		}
		subscription(c.Reply(), kind, &name, count())
	}
}

// subscription writes a subscribe or unsubscribe confirmation of any kind (name nil: the null
// channel) with the session's count of subscriptions.
func subscription(w *resp.Writer, kind string, name *string, count int) {
	w.Push(3)
	w.BulkString(kind)
	if name == nil {
		w.Null()
	} else {
		w.BulkString(*name)
	}
	w.Int(int64(count))
}

// UnsubscribeAll drops every subscription of c without replying (RESET, disconnect).
func UnsubscribeAll(c Conn) {
	s := c.Session()
	for name := range s.Channels {
		c.Unsubscribe(false, name)
	}
	for name := range s.Patterns {
		c.Unsubscribe(true, name)
	}
	s.Channels, s.Patterns = nil, nil
	unsubscribeAllShard(c)
}

// pubsubChannels is PUBSUB CHANNELS and SHARDCHANNELS: the backend's answer.
func pubsubChannels(c Conn, args [][]byte, shard bool) {
	if len(args) > 3 {
		c.Reply().Error(subcommandSyntaxError(args))
		return
	}
	var pattern []byte
	if len(args) == 3 {
		pattern = args[2]
	}
	list := c.Server().Queues().PubSubChannels
	if shard {
		list = c.Server().Queues().PubSubShardChannels
	}
	op := list(pattern)
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

// pubsubNumsub corrects the backend's counts, which see each of qgate's shared subscriptions as one
// subscriber, with qgate's local subscriber counts.
func pubsubNumsub(c Conn, args [][]byte) {
	q := c.Server().Queues()
	numsub(c, args, q.PubSubNumSub(args[2:]), func(counts map[string]int64, _ int, name string) int64 { return counts[name] },
		q.LocalNumSub)
}

// numsub writes PUBSUB NUMSUB's or SHARDNUMSUB's reply: for each channel of args, the backend's count
// (backend, from op's result) with qgate's shared subscription replaced by its local subscribers
// (localNumSub).
func numsub[T any](c Conn, args [][]byte, op *queue.Result[T], backend func(counts T, i int, name string) int64,
	localNumSub func(channel string) (int, bool)) {
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
		w.Array(2 * len(names)) // a flat array in RESP3 too, as Redis 7.0 replies (not a map)
		for i, name := range names {
			n := backend(counts, i, name)
			local, subscribed := localNumSub(name)
			if subscribed && n > 0 {
				n--
			}
			w.BulkString(name)
			w.Int(n + int64(local))
		}
	})
}

// pubsubNumpat passes the backend's count through: Redis counts unique patterns, and qgate's shared
// pattern subscriptions keep that count exact.
func pubsubNumpat(c Conn, _ [][]byte) {
	writeInt(c, c.Server().Queues().PubSubNumPat())
}

func pubsubHelp(c Conn, _ [][]byte) {
	help(c.Reply(), "PUBSUB", []string{
		"CHANNELS [<pattern>]",
		"    Return the currently active channels matching a <pattern> (default: '*').",
		"NUMPAT",
		"    Return number of subscriptions to patterns.",
		"NUMSUB [<channel> ...]",
		"    Return the number of subscribers for the specified channels, excluding",
		"    pattern subscriptions(default: no channels).",
		"SHARDCHANNELS [<pattern>]",
		"    Return the currently active shard level channels matching a <pattern> (default: '*').",
		"SHARDNUMSUB [<shardchannel> ...]",
		"    Return the number of subscribers for the specified shard level channel(s)",
	})
}

// subcommandSyntaxError is Redis's reply to a subcommand whose arity allows the arguments but whose
// handler does not (PUBSUB CHANNELS a b): it names the subcommand as the client wrote it.
func subcommandSyntaxError(args [][]byte) string {
	return sanitize("ERR unknown subcommand or wrong number of arguments for '" + clip(args[1], 128) + "'. Try " +
		strings.ToUpper(string(args[0])) + " HELP.")
}

// help writes a Redis-style HELP reply.
func help(w *resp.Writer, cmd string, lines []string) {
	lines = append([]string{cmd + " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"}, lines...)
	lines = append(lines, "HELP", "    Prints this help.")
	w.Array(len(lines))
	for _, l := range lines {
		w.Simple(l)
	}
}
