package queue

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/resp"
)

// The fan-out shared by the pub/sub hubs (proxy/DESIGN.md "Sharded pub/sub"): a topics map holds the
// channels (or patterns) of one kind, each with its local subscribers and one backend subscription,
// and runs a topic's life cycle; the hubs (pubsub.go, shardpubsub.go) supply the backend connections.

// topic is one channel or pattern and its local subscribers.
//
// When its last subscriber leaves, the topic stays in the map, leaving, until the backend confirms the
// UNSUBSCRIBE. Messages the backend published before that still reach the subscriber, which waits for
// the confirmation before its reply (so nothing comes after it), and PUBLISH keeps counting it, as the
// backend's count still includes qgate's subscription: for it, a count and the deliveries agree.
// Whoever subscribes meanwhile waits until the topic is gone and starts a new one.
type topic struct {
	subs      map[Subscriber]struct{}
	confirmed chan struct{} // closed when the backend confirmed the subscription
	ok        bool
	err       error         // set before confirmed is closed when the backend refused the subscription
	leaving   bool          // the backend UNSUBSCRIBE was sent
	gone      chan struct{} // closed when a leaving topic was removed
}

const subscribeTimeout = 5 * time.Second

var errSubscribeTimeout = errors.New("backend did not confirm the subscription in time")

// errNoConn is what a topics' stop returns when there is no backend connection to unsubscribe on.
var errNoConn = errors.New("no backend pub/sub connection")

// topics is the channels or patterns of one kind, by name, and their life cycle. Its hub supplies the
// backend side; start, stop and released are called with mu held.
type topics struct {
	mu *sync.RWMutex // the hub's lock, which guards m
	m  map[string]*topic
	// start sends the backend SUBSCRIBE for a new topic, opening the connection if need be.
	start func(name string) error
	// stop sends the backend UNSUBSCRIBE for a topic's last subscriber (errNoConn: no connection).
	stop func(name string) error
	// released, if set, is told that a topic left m.
	released func(name string)
}

func newTopics(mu *sync.RWMutex, start, stop func(string) error, released func(string)) *topics {
	return &topics{mu: mu, m: map[string]*topic{}, start: start, stop: stop, released: released}
}

// remove deletes name from m; the caller holds mu.
func (ts *topics) remove(name string) {
	delete(ts.m, name)
	if ts.released != nil {
		ts.released(name)
	}
}

// subscribe adds c to a topic and returns once the backend subscription is active (or refused). After
// subscribeTimeout it gives up, unsubscribing c.
func (ts *topics) subscribe(c Subscriber, name string) error {
	ts.mu.Lock()
	t := ts.m[name]
	for t != nil && t.leaving {
		ts.mu.Unlock()
		ts.awaitGone(name, t)
		ts.mu.Lock()
		t = ts.m[name]
	}
	if t == nil {
		t = &topic{subs: map[Subscriber]struct{}{}, confirmed: make(chan struct{})}
		ts.m[name] = t
		if err := ts.start(name); err != nil {
			ts.remove(name)
			ts.mu.Unlock()
			return err
		}
	}
	t.subs[c] = struct{}{}
	ts.mu.Unlock()
	select {
	case <-t.confirmed:
		return t.err
	case <-time.After(subscribeTimeout):
		ts.unsubscribe(c, name)
		return errSubscribeTimeout
	}
}

// unsubscribe removes c; the backend subscription ends with its last local subscriber. A live client
// (UNSUBSCRIBE, RESET) returns once no message can reach it any more, with the messages that did moved
// into its reply stream, so they come before its reply.
func (ts *topics) unsubscribe(c Subscriber, name string) {
	live := c.Live()
	ts.mu.Lock()
	t := ts.m[name]
	if t == nil {
		ts.mu.Unlock()
		return
	}
	if _, ok := t.subs[c]; !ok || t.leaving {
		ts.mu.Unlock()
		return
	}
	err := errNoConn // as good as: others stay subscribed, so no UNSUBSCRIBE
	if len(t.subs) == 1 {
		err = ts.stop(name)
	}
	if err != nil { // c leaves at once (without a Splice after a failed UNSUBSCRIBE)
		delete(t.subs, c)
		if len(t.subs) == 0 {
			ts.remove(name)
		}
		ts.mu.Unlock()
		if live && errors.Is(err, errNoConn) {
			c.Splice()
		}
		return
	}
	t.leaving, t.gone = true, make(chan struct{})
	if !live {
		delete(t.subs, c) // a closed client gets nothing more; the topic still waits for the backend
	}
	ts.mu.Unlock()
	if live {
		ts.awaitGone(name, t)
		c.Splice()
	}
}

// awaitGone waits until the leaving topic t is removed: the backend confirmed its UNSUBSCRIBE, or the
// pub/sub connection broke (which ended the subscription too). After subscribeTimeout t is dropped.
func (ts *topics) awaitGone(name string, t *topic) {
	select {
	case <-t.gone:
	case <-time.After(subscribeTimeout):
		ts.mu.Lock()
		ts.dropLeaving(name, t)
		ts.mu.Unlock()
	}
}

// dropLeaving removes the leaving topic t if it is still there; the caller holds mu.
func (ts *topics) dropLeaving(name string, t *topic) {
	if ts.m[name] == t && t.leaving {
		ts.remove(name)
		close(t.gone)
	}
}

// dropAllLeaving drops the leaving topics whose name in accepts (nil: all), as their subscriptions
// ended with a broken connection, and returns the names of the others, to subscribe again; the caller
// holds mu.
func (ts *topics) dropAllLeaving(in func(name string) bool) (others []string) {
	for name, t := range ts.m {
		if in != nil && !in(name) {
			continue
		}
		if t.leaving {
			ts.dropLeaving(name, t)
		} else {
			others = append(others, name)
		}
	}
	return others
}

// confirm marks a topic's backend subscription active, releasing its subscribers.
func (ts *topics) confirm(name string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.m[name]; t != nil && !t.ok {
		t.ok = true
		close(t.confirmed)
	}
}

// unsubscribed removes a leaving topic once the backend confirmed its UNSUBSCRIBE.
func (ts *topics) unsubscribed(name string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.m[name]; t != nil {
		ts.dropLeaving(name, t)
	}
}

// numSub returns the local subscriber count of name and whether qgate subscribes to it.
func (ts *topics) numSub(name string) (int, bool) {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	if t := ts.m[name]; t != nil {
		return len(t.subs), true
	}
	return 0, false
}

// addSubscribers adds every subscriber of the topics to seen; the caller holds mu.
func (ts *topics) addSubscribers(seen map[Subscriber]struct{}) {
	for _, t := range ts.m {
		for c := range t.subs {
			seen[c] = struct{}{}
		}
	}
}

// message is a backend message to deliver, encoded once per protocol version and form (payload or
// envelope) on first use. Messages that are not envelopes (published straight into Redis) go out as
// they are.
type message struct {
	m      *redis.Message
	kind   string // "message" (or "pmessage" with a pattern), "smessage"
	isEnv  bool
	rule   *policy.Policy
	frames [4][2][]byte
}

func (e *Engine) newMessage(kind string, m *redis.Message) *message {
	msg := &message{m: m, kind: kind, isEnv: envelope.Is([]byte(m.Payload))}
	if m.Pattern != "" {
		msg.kind = "p" + kind
	}
	if msg.isEnv {
		msg.rule = e.policies().Channel(m.Channel)
	}
	return msg
}

// frame returns the message's frame for proto, with the envelope or the payload.
func (msg *message) frame(proto int, wantEnv bool) []byte {
	form := 0
	if wantEnv {
		form = 1
	}
	if msg.frames[proto][form] == nil {
		m := msg.m
		body := m.Payload
		if !wantEnv {
			body = envelope.Payload(m.Payload)
		}
		w := resp.Writer{Proto: proto}
		if m.Pattern != "" {
			w.Push(4)
			w.BulkString(msg.kind)
			w.BulkString(m.Pattern)
		} else {
			w.Push(3)
			w.BulkString(msg.kind)
		}
		w.BulkString(m.Channel)
		w.BulkString(body)
		msg.frames[proto][form] = w.B
	}
	return msg.frames[proto][form]
}

// deliver queues msg on every subscriber of topic name; the caller holds mu (read-locked at least).
func (ts *topics) deliver(name string, msg *message) {
	t := ts.m[name]
	if t == nil {
		return
	}
	for c := range t.subs {
		wantEnv := !msg.isEnv || WantsEnvelope(c.DeliverMode(), msg.rule)
		c.Push(msg.frame(c.Proto(), wantEnv))
	}
}

// syncPings are the sync PINGs sent on a backend pub/sub connection, each released by its reply; they
// are guarded by the hub's lock.
type syncPings struct {
	prefix string // of the payloads
	seq    uint64
	m      map[string]chan struct{}
}

func newSyncPings(prefix string) *syncPings {
	return &syncPings{prefix: prefix, m: map[string]chan struct{}{}}
}

// next returns a new payload with prefix (the sequence is shared by every prefix); the caller holds mu.
func (p *syncPings) next(prefix string) string {
	p.seq++
	return prefix + strconv.FormatUint(p.seq, 10)
}

// await sends a sync PING on ps and returns once its reply came (or the connection broke, or after
// subscribeTimeout); mu is held on entry and released.
func (p *syncPings) await(mu sync.Locker, ctx context.Context, ps *redis.PubSub) {
	token := p.next(p.prefix)
	done := make(chan struct{})
	p.m[token] = done
	if err := ps.Ping(ctx, token); err != nil {
		delete(p.m, token)
		mu.Unlock()
		return
	}
	mu.Unlock()
	select {
	case <-done:
	case <-time.After(subscribeTimeout):
		mu.Lock()
		delete(p.m, token)
		mu.Unlock()
	}
}

// reply releases the waiter of a sync PING whose reply is payload; the caller holds mu.
func (p *syncPings) reply(payload string) {
	if ch := p.m[payload]; ch != nil {
		close(ch)
		delete(p.m, payload)
	}
}

// releaseAll releases every waiter: the connection broke or closed; the caller holds mu.
func (p *syncPings) releaseAll() {
	for token, ch := range p.m {
		close(ch)
		delete(p.m, token)
	}
}
