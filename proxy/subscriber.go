package proxy

// A connection's side of pub/sub: it is a queue.Subscriber of the engine's hub (proxy/queue/pubsub.go).

// Subscribe implements commands.Conn.
func (c *conn) Subscribe(pattern bool, name string) error {
	return c.srv.engine.Subscribe(c, pattern, name)
}

// Unsubscribe implements commands.Conn.
func (c *conn) Unsubscribe(pattern bool, name string) { c.srv.engine.Unsubscribe(c, pattern, name) }

// SSubscribe implements commands.Conn.
func (c *conn) SSubscribe(channel string) error { return c.srv.engine.SSubscribe(c, channel) }

// SUnsubscribe implements commands.Conn.
func (c *conn) SUnsubscribe(channel string) { c.srv.engine.SUnsubscribe(c, channel) }

// AwaitOwnShardMessages implements commands.Conn.
func (c *conn) AwaitOwnShardMessages(channel string) { c.srv.engine.SyncShardMessages(c, channel) }

// subscribed reports whether the connection is subscribed to channels, patterns or shard channels.
func (c *conn) subscribed() bool { return c.subs.Load()+c.ssubs.Load() > 0 }

// AwaitOwnMessages implements commands.Conn.
func (c *conn) AwaitOwnMessages() { c.srv.engine.SyncMessages(c) }

// Push implements queue.Subscriber.
func (c *conn) Push(frame []byte) { c.push(frame) }

// Proto implements queue.Subscriber.
func (c *conn) Proto() int { return int(c.proto.Load()) }

// DeliverMode implements queue.Subscriber: the session's QDELIVERY mode ("" = each rule's).
func (c *conn) DeliverMode() string {
	if m := c.deliver.Load(); m != nil {
		return *m
	}
	return ""
}

// Live implements queue.Subscriber.
func (c *conn) Live() bool { return c.ctx.Err() == nil }

// Splice implements queue.Subscriber: the pub/sub messages that arrived during the batch go into the
// batch's replies at this point, so that they come before the replies written next; on the
// connection's goroutine.
func (c *conn) Splice() {
	c.omu.Lock()
	if c.deferred.len() > 0 {
		for _, b := range c.deferred.bufs[c.deferred.head:] {
			c.w.B = append(c.w.B, b...)
		}
		c.deferred.reset()
	}
	c.omu.Unlock()
}
