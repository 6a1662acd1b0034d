package queue

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// Sharded pub/sub (proxy/DESIGN.md "Sharded pub/sub"): one backend SSUBSCRIBE per shard channel, shared
// by every local subscriber, as the hub of pubsub.go does for channels, with the same fan-out
// (topics.go). On a Cluster a shard channel lives in its slot's node, so there is one backend pub/sub
// connection per slot in use (go-redis routes it, and its reconnects, to the slot's owner); on a
// standalone backend one connection holds them all.

// shardHub is the engine's sharded pub/sub fan-out.
type shardHub struct {
	e        *Engine
	cluster  bool
	mu       sync.RWMutex
	conns    map[uint16]*shardConn // by slot (always 0 on a standalone backend)
	channels *topics
}

// shardConn is one backend pub/sub connection and the shard channels on it.
type shardConn struct {
	slot  uint16
	ps    *redis.PubSub
	n     int        // topics on it, leaving ones included
	pings *syncPings // SyncShardMessages's
}

func newShardHub(e *Engine) *shardHub {
	_, cluster := e.client.(*redis.ClusterClient)
	h := &shardHub{e: e, cluster: cluster, conns: map[uint16]*shardConn{}}
	h.channels = newTopics(&h.mu, h.start, h.stop, h.release)
	return h
}

// start sends the backend SSUBSCRIBE of a new topic on its slot's connection; the caller holds mu.
func (h *shardHub) start(name string) error {
	sc := h.conn(name)
	sc.n++
	return sc.ps.SSubscribe(h.e.ctx, name)
}

// stop sends the backend SUNSUBSCRIBE of a topic's last subscriber; the caller holds mu.
func (h *shardHub) stop(name string) error {
	sc := h.conns[h.slot(name)]
	if sc == nil {
		return errNoConn
	}
	err := sc.ps.SUnsubscribe(h.e.ctx, name)
	if err != nil {
		h.e.log.Warn("backend sunsubscribe", "err", err)
	}
	return err
}

func (h *shardHub) slot(channel string) uint16 {
	if !h.cluster {
		return 0
	}
	return rdb.Slot(channel)
}

// inSlot returns whether a channel is in slot.
func (h *shardHub) inSlot(slot uint16) func(channel string) bool {
	return func(channel string) bool { return h.slot(channel) == slot }
}

// conn returns the backend connection of channel's slot, opening it; the caller holds mu.
func (h *shardHub) conn(channel string) *shardConn {
	slot := h.slot(channel)
	sc := h.conns[slot]
	if sc == nil {
		sc = &shardConn{slot: slot, ps: h.e.client.SSubscribe(h.e.ctx), pings: newSyncPings("qgate-ssync-")}
		h.conns[slot] = sc
		go h.receive(sc, sc.ps)
	}
	return sc
}

// release drops a topic of channel's connection, closing the connection with its last; the caller
// holds mu.
func (h *shardHub) release(channel string) {
	slot := h.slot(channel)
	sc := h.conns[slot]
	if sc == nil {
		return
	}
	if sc.n--; sc.n <= 0 {
		delete(h.conns, slot)
		sc.pings.releaseAll()
		go func(ps *redis.PubSub) { _ = ps.Close() }(sc.ps)
	}
}

// unsubscribed handles a backend sunsubscribe: the confirmation of qgate's SUNSUBSCRIBE, or, for a
// channel qgate still wants, the node giving up the channel's slot (a Cluster slot migration), after
// which the slot's connection is opened again on the slot's new owner.
func (h *shardHub) unsubscribed(sc *shardConn, ps *redis.PubSub, name string) {
	h.mu.Lock()
	t := h.channels.m[name]
	if t == nil || t.leaving {
		if t != nil {
			h.channels.dropLeaving(name, t)
		}
		h.mu.Unlock()
		return
	}
	if sc.ps != ps { // the connection was replaced already (the slot's other channels)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	h.e.log.Warn("backend dropped the shard channels of a slot (slot moved?), subscribing on its owner", "slot", sc.slot)
	h.reopen(sc, ps)
}

// reopen replaces sc's backend connection with a new one, subscribed to the slot's channels, after
// the cluster map was reloaded: the slot's owner may have changed. Messages published between the
// two connections are lost (pub/sub is at most once).
func (h *shardHub) reopen(sc *shardConn, ps *redis.PubSub) {
	if cc, ok := h.e.client.(*redis.ClusterClient); ok {
		cc.ReloadState(h.e.ctx)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conns[sc.slot] != sc || sc.ps != ps || h.e.ctx.Err() != nil {
		return
	}
	// The leaving topics' subscriptions ended with the old connection.
	names := h.channels.dropAllLeaving(h.inSlot(sc.slot))
	if h.conns[sc.slot] != sc { // dropLeaving released the last topic
		return
	}
	old := sc.ps
	sc.ps = h.e.client.SSubscribe(h.e.ctx)
	go h.receive(sc, sc.ps)
	if len(names) > 0 {
		if err := sc.ps.SSubscribe(h.e.ctx, names...); err != nil {
			h.e.log.Warn("backend ssubscribe", "err", err)
		}
	}
	go func() { _ = old.Close() }()
}

// receive reads one backend connection until it is closed or replaced.
func (h *shardHub) receive(sc *shardConn, ps *redis.PubSub) {
	var failures int
	for {
		msg, err := ps.Receive(h.e.ctx)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) || h.e.ctx.Err() != nil {
				return
			}
			if re := redis.Error(nil); errors.As(err, &re) && !isTopologyError(err) {
				// An error reply (a backend without sharded pub/sub, ...): the connection is fine.
				h.refused(sc, ps, err)
				continue
			}
			failures++
			h.connLost(sc, ps)
			if failures == 1 || failures%50 == 0 {
				h.e.log.Warn("sharded pub/sub backend connection error, resubscribing", "err", err, "failures", failures)
			}
			select {
			case <-time.After(time.Duration(1<<min(failures, 7)) * 10 * time.Millisecond):
			case <-h.e.ctx.Done():
				return
			}
			if isTopologyError(err) {
				// The node refused the SSUBSCRIBE (MOVED, ...): the connection stays up, so go-redis will
				// not move it; open one on the slot's current owner.
				h.reopen(sc, ps)
				return
			}
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "ssubscribe":
				h.channels.confirm(m.Channel)
			case "sunsubscribe":
				h.unsubscribed(sc, ps, m.Channel)
			}
		case *redis.Message:
			h.deliver(m)
		case *redis.Pong:
			h.pong(sc, m.Payload)
		}
	}
}

// refused fails the subscriptions of sc that the backend has not confirmed: it answered an error
// instead (Redis gives no channel with it).
func (h *shardHub) refused(sc *shardConn, ps *redis.PubSub, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.current(sc, ps) {
		return
	}
	for name, t := range h.channels.m {
		if h.slot(name) == sc.slot && !t.ok && !t.leaving {
			t.err = fmt.Errorf("backend ssubscribe: %w", err)
			h.channels.remove(name)
			close(t.confirmed)
		}
	}
}

// isTopologyError reports a Redis Cluster redirection or state error.
func isTopologyError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	for _, p := range []string{"MOVED ", "ASK ", "CLUSTERDOWN ", "TRYAGAIN "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// current reports whether ps is still the connection of sc's slot: a connection closed with its
// slot's last topic (release) ends with an error in its receive goroutine, which must not touch the
// topics of the slot's next connection; the caller holds mu.
func (h *shardHub) current(sc *shardConn, ps *redis.PubSub) bool {
	return h.conns[sc.slot] == sc && sc.ps == ps
}

// connLost drops the leaving topics of sc and releases its sync waiters: the connection broke.
func (h *shardHub) connLost(sc *shardConn, ps *redis.PubSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.current(sc, ps) {
		return
	}
	sc.pings.releaseAll()
	h.channels.dropAllLeaving(h.inSlot(sc.slot))
}

func (h *shardHub) pong(sc *shardConn, payload string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sc.pings.reply(payload)
}

// sync returns once every message the backend sent on channel's connection before now was delivered,
// as hub.sync does.
func (h *shardHub) sync(channel string) {
	h.mu.Lock()
	sc := h.conns[h.slot(channel)]
	if sc == nil {
		h.mu.Unlock()
		return
	}
	sc.pings.await(&h.mu, h.e.ctx, sc.ps)
}

// deliver queues an smessage on every subscriber of its channel.
func (h *shardHub) deliver(m *redis.Message) {
	msg := h.e.newMessage("smessage", m)
	h.mu.Lock() // not RLock: the slots' receive goroutines deliver one at a time
	defer h.mu.Unlock()
	h.channels.deliver(m.Channel, msg)
}

func (h *shardHub) close() {
	h.mu.Lock()
	conns := h.conns
	h.conns = map[uint16]*shardConn{}
	h.channels.dropAllLeaving(nil) // release finds no connection now
	for _, sc := range conns {
		sc.pings.releaseAll()
	}
	h.mu.Unlock()
	for _, sc := range conns {
		_ = sc.ps.Close()
	}
}

// SSubscribe adds s to a shard channel and returns once the backend subscription is active, so a
// message published after it is delivered.
func (e *Engine) SSubscribe(s Subscriber, channel string) error {
	return e.shub.channels.subscribe(s, channel)
}

// SUnsubscribe removes s from a shard channel, as Unsubscribe does from a channel.
func (e *Engine) SUnsubscribe(s Subscriber, channel string) { e.shub.channels.unsubscribe(s, channel) }

// SyncShardMessages waits until every message the backend published on channel's shard before the
// call has reached the local subscribers, then splices s's into its replies (as SyncMessages).
func (e *Engine) SyncShardMessages(s Subscriber, channel string) {
	e.shub.sync(channel)
	s.Splice()
}

// LocalShardNumSub returns the local subscriber count of a shard channel and whether qgate subscribes
// to it on the backend.
func (e *Engine) LocalShardNumSub(channel string) (clients int, subscribed bool) {
	return e.shub.channels.numSub(channel)
}

// SPublish checks a message against its channel's rule, wraps it in an envelope when the rule says
// so, and SPUBLISHes it (routed to the channel's slot on a Cluster); the result is the backend's
// receiver count. A refused message is a *RejectedError.
func (e *Engine) SPublish(channel, producer string, msg []byte) (*Result[int64], error) {
	cmd, err := e.publishCmd("spublish", channel, producer, msg)
	if err != nil {
		return nil, err
	}
	cmd.SetFirstKeyPos(1)
	return newResult([]redis.Cmder{cmd}, cmd.Result), nil
}

// PubSubShardChannels is PUBSUB SHARDCHANNELS [pattern] on the backend (pattern nil: none); on a
// Cluster, the answer of the node it reaches, as for PUBSUB CHANNELS.
func (e *Engine) PubSubShardChannels(pattern []byte) *Result[[]string] {
	return e.pubsubList("shardchannels", pattern)
}

// PubSubShardNumSub is PUBSUB SHARDNUMSUB on the backend, one command per channel so that on a
// Cluster each goes to its channel's slot: the counts in the order of channels.
func (e *Engine) PubSubShardNumSub(channels [][]byte) *Result[[]int64] {
	cmds := make([]redis.Cmder, len(channels))
	for i, ch := range channels {
		cmd := redis.NewSliceCmd(e.ctx, "pubsub", "shardnumsub", ch)
		cmd.SetFirstKeyPos(2)
		cmds[i] = cmd
	}
	return newResult(cmds, func() ([]int64, error) {
		out := make([]int64, len(cmds))
		for i, c := range cmds {
			vals, err := c.(*redis.SliceCmd).Result()
			if err != nil {
				return nil, err
			}
			if len(vals) == 2 {
				out[i], _ = vals[1].(int64)
			}
		}
		return out, nil
	})
}
