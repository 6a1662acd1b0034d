package queue

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/glob"
	"github.com/qgate/qgate/proxy/policy"
)

// Pub/sub (README "How it works"): the hub fans messages out to local subscribers, with one backend
// subscription per channel or pattern shared by every client subscribed to it, on one backend
// connection; the fan-out itself, shared with the sharded hub, is in topics.go. Publishing is in
// push.go. A lost backend connection is replaced at once and the time without a subscription counted
// (proxy/DESIGN.md "Pub/sub across a lost connection").

// Subscriber is a client subscribed to channels or patterns (a connection).
type Subscriber interface {
	// Push queues a message frame on the client's output without blocking; the frame may be shared
	// by every subscriber and must not be changed.
	Push(frame []byte)
	// Proto is the client's RESP version (2 or 3) and DeliverMode its QDELIVERY mode ("" = each
	// rule's); both are read from the hub's goroutine.
	Proto() int
	DeliverMode() string
	// Live reports whether the client is still connected (not closing).
	Live() bool
	// Splice moves the messages that arrived during the client's current batch into its replies at
	// this point; called on the client's own goroutine (from Subscribe, Unsubscribe, SyncMessages).
	Splice()
}

// hub is the engine's pub/sub fan-out over one backend connection.
type hub struct {
	e        *Engine
	mu       sync.RWMutex
	ps       *redis.PubSub
	channels *topics
	patterns *topics
	pings    *syncPings // AwaitOwnMessages's, and the sequence of resubscription PINGs

	down      atomic.Int64 // UnixNano when the backend subscription was lost; 0 while it is up (set under mu)
	resub     string       // payload of the PING whose reply ends the current gap
	missedNow atomic.Int64 // the current gap's messages published here to channels with local subscribers
	gaps      gapCounters
}

// gapCounters are the hub's totals of backend subscription losses (PubSubGaps).
type gapCounters struct {
	resubscribes atomic.Int64
	gapNanos     atomic.Int64 // closed gaps only
	missed       atomic.Int64
}

func newHub(e *Engine) *hub {
	h := &hub{e: e, pings: newSyncPings("qgate-sync-")}
	h.channels = newTopics(&h.mu, h.start(false), h.stop(false), nil)
	h.patterns = newTopics(&h.mu, h.start(true), h.stop(true), nil)
	return h
}

// kind returns the channels or the patterns.
func (h *hub) kind(pattern bool) *topics {
	if pattern {
		return h.patterns
	}
	return h.channels
}

// start returns the backend SUBSCRIBE or PSUBSCRIBE of a new topic, which opens the connection if
// need be; it runs with mu held.
func (h *hub) start(pattern bool) func(name string) error {
	return func(name string) error {
		if h.ps == nil {
			h.ps = h.e.client.Subscribe(h.e.ctx)
			go h.receive(h.ps)
		}
		if pattern {
			return h.ps.PSubscribe(h.e.ctx, name)
		}
		return h.ps.Subscribe(h.e.ctx, name)
	}
}

// stop returns the backend UNSUBSCRIBE or PUNSUBSCRIBE of a topic's last subscriber; it runs with mu
// held.
func (h *hub) stop(pattern bool) func(name string) error {
	return func(name string) error {
		if h.ps == nil {
			return errNoConn
		}
		var err error
		if pattern {
			err = h.ps.PUnsubscribe(h.e.ctx, name)
		} else {
			err = h.ps.Unsubscribe(h.e.ctx, name)
		}
		if err != nil {
			h.e.log.Warn("backend unsubscribe", "err", err)
		}
		return err
	}
}

// connLost drops every leaving topic: the backend connection broke, so their subscriptions ended with
// it (go-redis resubscribes only the others) and no confirmation will come.
func (h *hub) connLost() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.channels.dropAllLeaving(nil)
	h.patterns.dropAllLeaving(nil)
	h.pings.releaseAll()
}

// sync returns once every message the backend sent on the pub/sub connection before now was delivered
// to the local subscribers: it sends a PING there and waits for its reply, which comes after them. (On
// a Cluster a message published on another node reaches the subscription's node over the cluster bus,
// possibly after the PING: there the order is best effort.)
func (h *hub) sync() {
	h.mu.Lock()
	if h.ps == nil {
		h.mu.Unlock()
		return
	}
	h.pings.await(&h.mu, h.e.ctx, h.ps)
}

// pong releases the waiter of a sync PING, or ends a gap.
func (h *hub) pong(payload string) {
	if h.restored(payload) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pings.reply(payload)
}

// Health of the backend subscription: a node that stops answering without closing the connection (a
// frozen process, a partition) is noticed by PINGs on an idle subscription.
const (
	healthEvery   = time.Second     // an idle subscription is PINGed after this long
	healthTimeout = 3 * time.Second // without an answer by then, the connection is taken for dead
	healthPayload = "qgate-health"
)

// receive reads the shared backend subscription until it is closed or replaced.
func (h *hub) receive(ps *redis.PubSub) {
	var failures int
	unconfirmed := false // a gap is open and no PING to end it was sent on a working connection
	var healthSent time.Time
	for {
		msg, err := ps.ReceiveTimeout(h.e.ctx, healthEvery)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) || h.e.ctx.Err() != nil {
				return
			}
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				switch {
				case healthSent.IsZero():
					if ps.Ping(h.e.ctx, healthPayload) == nil {
						healthSent = time.Now()
					}
				case time.Since(healthSent) > healthTimeout:
					h.e.log.Warn("pub/sub backend connection stalled, resubscribing", "silent", time.Since(healthSent).Round(time.Millisecond).String())
					healthSent = time.Time{}
					h.connLost()
					h.lost(ps)
					replaced, pinged := h.restore(ps, true)
					if replaced {
						return
					}
					unconfirmed = !pinged // should ps come back, its first message ends the gap
				}
				continue
			}
			healthSent = time.Time{}
			failures++
			h.connLost()
			if failures == 1 || failures%50 == 0 {
				h.e.log.Warn("pub/sub backend connection error, resubscribing", "err", err, "failures", failures)
			}
			if re := redis.Error(nil); !errors.As(err, &re) { // not an error reply: the connection broke
				h.lost(ps)
				replaced, pinged := h.restore(ps, false)
				if replaced {
					return // the new connection has its own receive
				}
				if unconfirmed = !pinged; pinged && failures == 1 {
					continue // resubscribed: read the confirmations now, not after a back-off
				}
			}
			select {
			case <-time.After(resubscribeBackoff(failures)):
			case <-h.e.ctx.Done():
				return
			}
			continue
		}
		failures, healthSent = 0, time.Time{}
		if unconfirmed { // go-redis redialed and resubscribed on its own, after restore failed
			unconfirmed = !h.pingResub(ps)
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "psubscribe":
				h.kind(m.Kind == "psubscribe").confirm(m.Channel)
			case "unsubscribe", "punsubscribe":
				h.kind(m.Kind == "punsubscribe").unsubscribed(m.Channel)
			}
		case *redis.Message:
			h.deliver(m)
		case *redis.Pong:
			h.pong(m.Payload)
		}
	}
}

// resubscribeBackoff is the wait after the failures-th failure in a row to get the subscription back:
// 20 ms doubling up to 160 ms, so that a backend back after a failover (Sentinel's switch, a restart)
// is subscribed to within 160 ms, for at most ~6 dials a second meanwhile.
func resubscribeBackoff(failures int) time.Duration {
	return time.Duration(1<<min(failures, 4)) * 10 * time.Millisecond
}

// lost starts a gap: ps, the hub's backend connection, broke, and with it every subscription.
func (h *hub) lost(ps *redis.PubSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ps == ps && h.down.Load() == 0 {
		h.down.Store(time.Now().UnixNano())
	}
}

// probeTimeout bounds the search for a live Cluster node to subscribe through.
const probeTimeout = 2 * time.Second

// restore subscribes again to every channel and pattern after ps broke, then sends a PING whose reply
// ends the gap (the subscriptions are active once the backend answers it). On a Cluster it replaces ps
// with a connection to any node that answers (a classic PUBLISH reaches every node), since go-redis
// would redial the node of the subscription's first channel, possibly dead until the slot map
// changes; elsewhere go-redis redials the backend (Sentinel: its current master) and resubscribes.
// A stalled connection (no answer to a health PING) is replaced on every backend: go-redis would
// keep it. It reports whether ps was replaced (its receive must stop) and whether the PING was sent.
func (h *hub) restore(ps *redis.PubSub, stalled bool) (replaced, pinged bool) {
	var client redis.UniversalClient = h.e.client
	if cc, ok := h.e.client.(*redis.ClusterClient); ok {
		node, err := liveNode(h.e.ctx, cc)
		if err != nil {
			h.e.log.Debug("pub/sub: no live Cluster node yet", "err", err)
			return false, false
		}
		client = node
	} else if !stalled {
		return false, h.pingResub(ps)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ps != ps || h.e.ctx.Err() != nil {
		return h.ps != ps, false
	}
	nps := client.Subscribe(h.e.ctx)
	// The leaving topics' subscriptions ended with the old connection.
	channels, patterns := h.channels.dropAllLeaving(nil), h.patterns.dropAllLeaving(nil)
	var err error
	if len(channels) > 0 {
		err = nps.Subscribe(h.e.ctx, channels...)
	}
	if err == nil && len(patterns) > 0 {
		err = nps.PSubscribe(h.e.ctx, patterns...)
	}
	if err == nil {
		err = nps.Ping(h.e.ctx, h.resubToken())
	}
	if err != nil {
		_ = nps.Close()
		h.e.log.Debug("pub/sub: subscribe again", "err", err)
		return false, false
	}
	h.ps = nps
	go h.receive(nps)
	go func() { _ = ps.Close() }()
	return true, true
}

// pingResub sends, on ps, the PING whose reply ends the current gap (go-redis redials and resubscribes
// first if its connection is down); it reports whether it was sent. The reply is read by ps's receive,
// the caller's goroutine, so it cannot come before the token is set.
func (h *hub) pingResub(ps *redis.PubSub) bool {
	h.mu.Lock()
	if h.ps != ps {
		h.mu.Unlock()
		return true
	}
	token := h.resubToken()
	h.mu.Unlock()
	return ps.Ping(h.e.ctx, token) == nil
}

// resubToken returns a new payload for the PING that ends the current gap; the caller holds mu.
func (h *hub) resubToken() string {
	h.resub = h.pings.next("qgate-resub-")
	return h.resub
}

// liveNode returns the client of the first Cluster master that answers a PING within probeTimeout.
// It reads the masters from the cached slot map (MasterForKey of keys spread over the slots) and never
// reloads it: a reload asks one node after another and, with no read timeout configured, would hang on
// the very node that froze.
func liveNode(ctx context.Context, cc *redis.ClusterClient) (*redis.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var masters []*redis.Client
	for i := range liveNodeProbeKeys {
		c, err := cc.MasterForKey(ctx, "qgate-probe-"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		if !slices.Contains(masters, c) {
			masters = append(masters, c)
		}
	}
	found := make(chan *redis.Client, len(masters))
	for _, c := range masters {
		go func() {
			// The probe's own timeout: the pool's may be none, and a frozen node never answers.
			if c.WithTimeout(probeTimeout).Ping(ctx).Err() == nil {
				found <- c
			}
		}()
	}
	select {
	case c := <-found:
		return c, nil
	case <-ctx.Done():
		return nil, errors.New("no Cluster master answered a PING within " + probeTimeout.String())
	}
}

// liveNodeProbeKeys is how many keys liveNode spreads over the slots to find the masters: enough to
// hit every master of a Cluster of up to a few dozen with near certainty, and one live one is enough.
const liveNodeProbeKeys = 256

// restored ends the current gap: the backend answered the PING sent after the resubscription.
func (h *hub) restored(payload string) bool {
	h.mu.Lock()
	if payload != h.resub || h.resub == "" {
		h.mu.Unlock()
		return false
	}
	h.resub = ""
	down := h.down.Load()
	if down == 0 {
		h.mu.Unlock()
		return true
	}
	gap := time.Since(time.Unix(0, down))
	h.gaps.gapNanos.Add(int64(gap)) // with down cleared under mu, so PubSubGaps never counts it twice
	h.gaps.resubscribes.Add(1)
	h.down.Store(0)
	missed := h.missedNow.Swap(0)
	channels, patterns := len(h.channels.m), len(h.patterns.m)
	h.mu.Unlock()
	h.e.events.Log(slog.LevelWarn, "pub/sub backend subscription restored", "gap", gap.Round(time.Millisecond).String(),
		"channels", channels, "patterns", patterns, "missed_publishes", missed)
	return true
}

// deliver queues a backend message on every subscriber of its channel or pattern.
func (h *hub) deliver(m *redis.Message) {
	msg := h.e.newMessage("message", m)
	h.mu.RLock()
	defer h.mu.RUnlock()
	if m.Pattern != "" {
		h.patterns.deliver(m.Pattern, msg)
	} else {
		h.channels.deliver(m.Channel, msg)
	}
}

// localSubscribers counts local clients a message on channel reaches and qgate's matching backend
// subscriptions. It is called once a PUBLISH through this instance was answered: during a gap the
// message reaches none of them, and counts as missed when it would have reached some.
func (h *hub) localSubscribers(channel string) (clients, backendSubs int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	defer func() {
		if h.down.Load() != 0 {
			if clients > 0 {
				h.missedNow.Add(1)
				h.gaps.missed.Add(1)
			}
			clients, backendSubs = 0, 0
		}
	}()
	if t := h.channels.m[channel]; t != nil {
		clients += len(t.subs)
		backendSubs++
	}
	for p, t := range h.patterns.m {
		if glob.Match(p, channel) {
			clients += len(t.subs)
			backendSubs++
		}
	}
	return clients, backendSubs
}

// counts returns the number of channels and patterns qgate subscribes to on the backend, and the
// number of distinct local clients subscribed to any of them or to a shard channel (INFO
// pubsub_clients counts every client in pub/sub state, as Redis 7.2's does).
func (h *hub) counts() (channels, patterns, clients int) {
	seen := map[Subscriber]struct{}{}
	h.mu.RLock()
	h.channels.addSubscribers(seen)
	h.patterns.addSubscribers(seen)
	channels, patterns = len(h.channels.m), len(h.patterns.m)
	h.mu.RUnlock()
	if sh := h.e.shub; sh != nil {
		sh.mu.Lock()
		sh.channels.addSubscribers(seen)
		sh.mu.Unlock()
	}
	return channels, patterns, len(seen)
}

func (h *hub) close() {
	h.mu.Lock()
	ps := h.ps
	h.ps = nil
	h.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
	h.connLost() // release clients waiting for an unsubscribe or a sync
}

// WantsEnvelope reports whether a client in delivery mode mode ("" = the rule's) receives envelopes
// from a queue or channel whose rule is p.
func WantsEnvelope(mode string, p *policy.Policy) bool {
	if mode == "" {
		return p.DeliverEnvelope
	}
	return mode == "envelope"
}

// Subscribe adds s to a channel or pattern and returns once the backend subscription is active, so a
// message published after it is delivered.
func (e *Engine) Subscribe(s Subscriber, pattern bool, name string) error {
	return e.hub.kind(pattern).subscribe(s, name)
}

// Unsubscribe removes s from a channel or pattern; the backend subscription ends with its last local
// subscriber. A live client returns once no message can reach it any more, with the messages that
// did spliced into its replies (Subscriber.Splice), so they come before its reply.
func (e *Engine) Unsubscribe(s Subscriber, pattern bool, name string) {
	e.hub.kind(pattern).unsubscribe(s, name)
}

// SyncMessages waits until every message the backend published before the call has reached the
// local subscribers, then splices s's into its replies: a client publishing to a channel it is
// subscribed to gets the message before PUBLISH's reply, as from Redis.
func (e *Engine) SyncMessages(s Subscriber) {
	e.hub.sync()
	s.Splice()
}

// LocalSubscribers returns how many local clients a message on channel reaches, and how many of
// qgate's own backend subscriptions (channel and patterns) match it.
func (e *Engine) LocalSubscribers(channel string) (clients, backendSubs int) {
	return e.hub.localSubscribers(channel)
}

// LocalNumSub returns the local subscriber count of a channel and whether qgate subscribes to it.
func (e *Engine) LocalNumSub(channel string) (clients int, subscribed bool) {
	return e.hub.channels.numSub(channel)
}

// PubSubGaps is this instance's record of the pub/sub hub's lost backend subscriptions (README
// "Pub/sub across failures").
type PubSubGaps struct {
	Resubscribes int64         // backend subscriptions restored after a lost connection
	Gap          time.Duration // total time without a backend subscription, the current gap included
	Missed       int64         // messages published through this instance, during a gap, to channels with local subscribers
	Down         bool          // a gap is open now
}

// PubSubGaps returns the pub/sub hub's gap counters.
func (e *Engine) PubSubGaps() PubSubGaps {
	h := e.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	g := PubSubGaps{Resubscribes: h.gaps.resubscribes.Load(), Gap: time.Duration(h.gaps.gapNanos.Load()), Missed: h.gaps.missed.Load()}
	if down := h.down.Load(); down != 0 {
		g.Down = true
		g.Gap += time.Since(time.Unix(0, down))
	}
	return g
}

// PubSubCounts returns the channels and patterns qgate subscribes to on the backend and the distinct
// local clients subscribed to any of them.
func (e *Engine) PubSubCounts() (channels, patterns, clients int) { return e.hub.counts() }

// ClosePubSub ends the backend subscription and releases clients waiting for an unsubscribe or a
// sync (at shutdown).
func (e *Engine) ClosePubSub() {
	e.hub.close()
	e.shub.close()
}
