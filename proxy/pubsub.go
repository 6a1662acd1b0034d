package proxy

import (
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/envelope"
	"github.com/qgate/qgate/proxy/glob"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/resp"
)

// hub fans pub/sub messages out to local subscribers: one backend subscription per channel or pattern,
// shared by every client subscribed to it, on one backend connection.
type hub struct {
	srv      *Server
	mu       sync.RWMutex
	ps       *redis.PubSub
	channels map[string]*topic
	patterns map[string]*topic
	// unsubscribing holds, per "c:"/"p:" name, the clients waiting for the backend to confirm an
	// UNSUBSCRIBE, so that after their reply no message arrives and PUBLISH counts are exact.
	unsubscribing map[string][]chan struct{}
}

// topic is one channel or pattern and its local subscribers.
type topic struct {
	subs      map[*conn]struct{}
	confirmed chan struct{} // closed when the backend confirmed the subscription
	ok        bool
}

const subscribeTimeout = 5 * time.Second

var errSubscribeTimeout = errors.New("backend did not confirm the subscription in time")

func newHub(srv *Server) *hub {
	return &hub{srv: srv, channels: map[string]*topic{}, patterns: map[string]*topic{}, unsubscribing: map[string][]chan struct{}{}}
}

// Subscribe adds c to a channel or pattern and returns once the backend subscription is active.
func (h *hub) Subscribe(c *conn, pattern bool, name string) error {
	h.mu.Lock()
	m := h.channels
	if pattern {
		m = h.patterns
	}
	t := m[name]
	if t == nil {
		t = &topic{subs: map[*conn]struct{}{}, confirmed: make(chan struct{})}
		m[name] = t
		if h.ps == nil {
			h.ps = h.srv.backend.Client.Subscribe(h.srv.bgctx)
			go h.receive(h.ps)
		}
		var err error
		if pattern {
			err = h.ps.PSubscribe(h.srv.bgctx, name)
		} else {
			err = h.ps.Subscribe(h.srv.bgctx, name)
		}
		if err != nil {
			delete(m, name)
			h.mu.Unlock()
			return err
		}
	}
	t.subs[c] = struct{}{}
	h.mu.Unlock()
	select {
	case <-t.confirmed:
		return nil
	case <-time.After(subscribeTimeout):
		h.Unsubscribe(c, pattern, name)
		return errSubscribeTimeout
	}
}

// Unsubscribe removes c; the backend subscription ends with its last local subscriber.
func (h *hub) Unsubscribe(c *conn, pattern bool, name string) {
	h.mu.Lock()
	m := h.channels
	if pattern {
		m = h.patterns
	}
	t := m[name]
	if t == nil {
		h.mu.Unlock()
		return
	}
	delete(t.subs, c)
	if len(t.subs) > 0 || h.ps == nil {
		if len(t.subs) == 0 {
			delete(m, name)
		}
		h.mu.Unlock()
		return
	}
	delete(m, name)
	var err error
	if pattern {
		err = h.ps.PUnsubscribe(h.srv.bgctx, name)
	} else {
		err = h.ps.Unsubscribe(h.srv.bgctx, name)
	}
	var confirmed chan struct{}
	if err != nil {
		h.srv.log.Warn("backend unsubscribe", "err", err)
	} else if c.ctx.Err() == nil { // a live client asked (UNSUBSCRIBE, RESET): reply once it took effect
		confirmed = make(chan struct{})
		key := topicKey(pattern, name)
		h.unsubscribing[key] = append(h.unsubscribing[key], confirmed)
	}
	h.mu.Unlock()
	if confirmed != nil {
		select {
		case <-confirmed:
		case <-time.After(subscribeTimeout):
		}
	}
}

// unsubscribed releases the clients waiting for the backend to confirm an unsubscribe.
func (h *hub) unsubscribed(pattern bool, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := topicKey(pattern, name)
	for _, ch := range h.unsubscribing[key] {
		close(ch)
	}
	delete(h.unsubscribing, key)
}

func topicKey(pattern bool, name string) string {
	if pattern {
		return "p:" + name
	}
	return "c:" + name
}

// receive reads the shared backend subscription until it is closed.
func (h *hub) receive(ps *redis.PubSub) {
	var failures int
	for {
		msg, err := ps.Receive(h.srv.bgctx)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) || h.srv.bgctx.Err() != nil {
				return
			}
			failures++
			if failures == 1 || failures%50 == 0 {
				h.srv.log.Warn("pub/sub backend connection error, resubscribing", "err", err, "failures", failures)
			}
			select {
			case <-time.After(time.Duration(1<<min(failures, 7)) * 10 * time.Millisecond):
			case <-h.srv.bgctx.Done():
				return
			}
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "psubscribe":
				h.confirm(m.Kind == "psubscribe", m.Channel)
			case "unsubscribe", "punsubscribe":
				h.unsubscribed(m.Kind == "punsubscribe", m.Channel)
			}
		case *redis.Message:
			h.deliver(m)
		}
	}
}

func (h *hub) confirm(pattern bool, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.channels
	if pattern {
		m = h.patterns
	}
	if t := m[name]; t != nil && !t.ok {
		t.ok = true
		close(t.confirmed)
	}
}

// deliver encodes a message once per protocol version and form (payload or envelope) and queues it
// on every subscriber. Messages that are not envelopes (published straight into Redis) go out as they are.
func (h *hub) deliver(m *redis.Message) {
	isEnv := envelope.Is([]byte(m.Payload))
	var rule *policy.Policy
	if isEnv {
		rule = h.srv.Policies().Channel(m.Channel)
	}
	var frames [4][2][]byte
	frame := func(proto int, wantEnv bool) []byte {
		form := 0
		if wantEnv {
			form = 1
		}
		if frames[proto][form] == nil {
			body := m.Payload
			if !wantEnv {
				body = envelope.Payload(m.Payload)
			}
			w := resp.Writer{Proto: proto}
			if m.Pattern != "" {
				w.Push(4)
				w.BulkString("pmessage")
				w.BulkString(m.Pattern)
			} else {
				w.Push(3)
				w.BulkString("message")
			}
			w.BulkString(m.Channel)
			w.BulkString(body)
			frames[proto][form] = w.B
		}
		return frames[proto][form]
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	t := h.channels[m.Channel]
	if m.Pattern != "" {
		t = h.patterns[m.Pattern]
	}
	if t == nil {
		return
	}
	for c := range t.subs {
		wantEnv := !isEnv || commands.WantsEnvelope(c.deliverMode(), rule)
		c.push(frame(int(c.proto.Load()), wantEnv))
	}
}

// localSubscribers counts local clients a message on channel reaches and qgate's matching backend subscriptions.
func (h *hub) localSubscribers(channel string) (clients, backendSubs int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if t := h.channels[channel]; t != nil {
		clients += len(t.subs)
		backendSubs++
	}
	for p, t := range h.patterns {
		if glob.Match(p, channel) {
			clients += len(t.subs)
			backendSubs++
		}
	}
	return clients, backendSubs
}

// numSub returns the local subscriber count of channel and whether qgate subscribes to it.
func (h *hub) numSub(channel string) (int, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if t := h.channels[channel]; t != nil {
		return len(t.subs), true
	}
	return 0, false
}

// counts returns the number of channels and patterns qgate subscribes to on the backend, and the
// number of distinct local clients subscribed to any of them (INFO pubsub_clients).
func (h *hub) counts() (channels, patterns, clients int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	seen := map[*conn]struct{}{}
	for _, m := range []map[string]*topic{h.channels, h.patterns} {
		for _, t := range m {
			for c := range t.subs {
				seen[c] = struct{}{}
			}
		}
	}
	return len(h.channels), len(h.patterns), len(seen)
}

func (h *hub) close() {
	h.mu.Lock()
	ps := h.ps
	h.ps = nil
	h.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}
