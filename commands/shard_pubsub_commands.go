package commands

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
	q := c.Server().Queues()
	publishTo(c, channel, args[2], own, q.SPublish, func() { c.AwaitOwnShardMessages(channel) }, func() (int, int) {
		local, subscribed := q.LocalShardNumSub(channel)
		if subscribed {
			return local, 1
		}
		return local, 0
	})
}

func ssubscribe(c Conn, args [][]byte) {
	s := c.Session()
	subscribeNames(c, "ssubscribe", false, args[1:], &s.ShardChannels, c.SSubscribe, s.ShardSubscriptions)
}

// sunsubscribe replies with the number of shard channels left, as Redis 7.0 does (channels and
// patterns are not counted).
func sunsubscribe(c Conn, args [][]byte) {
	s := c.Session()
	unsubscribeNames(c, "sunsubscribe", args[1:], s.ShardChannels, c.SUnsubscribe, s.ShardSubscriptions)
}

// unsubscribeAllShard drops every shard channel of c without replying (RESET, disconnect).
func unsubscribeAllShard(c Conn) {
	s := c.Session()
	for name := range s.ShardChannels {
		c.SUnsubscribe(name)
	}
	s.ShardChannels = nil
}

// pubsubShardNumsub corrects the backend's counts as pubsubNumsub does.
func pubsubShardNumsub(c Conn, args [][]byte) {
	q := c.Server().Queues()
	numsub(c, args, q.PubSubShardNumSub(args[2:]), func(counts []int64, i int, _ string) int64 { return counts[i] },
		q.LocalShardNumSub)
}
