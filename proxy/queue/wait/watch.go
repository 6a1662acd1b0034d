package wait

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// NotifyFlags are the notify-keyspace-events flags the watcher needs: K (keyspace channels), l (list
	// events: lpush, rpush, linsert, the pushing half of lmove/rpoplpush, sortstore) and g (generic
	// events: rename_to, restore, copy_to, move_to). "A" stands for "g$lshzxet" and covers l and g.
	NotifyFlags = "Kgl"

	pingInterval = 30 * time.Second // an idle pub/sub connection is pinged (a dead one is then noticed)
	subChunk     = 1000             // channels per SUBSCRIBE/UNSUBSCRIBE, keys per EXISTS pipeline
	opTimeout    = 5 * time.Second  // CONFIG, EXISTS polls, slot look-ups
)

// wakeEvents are the keyspace events that can add items to a list; pops and trims are ignored.
var wakeEvents = map[string]bool{
	"lpush": true, "rpush": true, "linsert": true, "sortstore": true,
	"rename_to": true, "restore": true, "copy_to": true, "move_to": true,
}

// node is one master: its pub/sub connection and the keys subscribed there (fields under Hub.mu).
type node struct {
	h      *Hub
	addr   string
	client *redis.Client
	op     *redis.Client // client with opTimeout as its read and write timeouts: the CONFIG checks and
	// the polls must not wait for a frozen node (the pool's own timeouts may be none)
	ps        *redis.PubSub
	prefix    string              // __keyspace@<db>__:
	want      map[string]struct{} // keys with waiters whose owner is this node
	sent      map[string]struct{} // keys with SUBSCRIBE sent (go-redis resubscribes them on reconnect)
	confirmed map[string]struct{} // keys whose subscription Redis confirmed (since the last reconnect)
	keyspace  bool                // notifications are on here; else the fast poll serves its keys
	unchecked bool                // the last flags check got no answer: checked again every PollInterval
	connected atomic.Bool
	polling   atomic.Bool // a poll of its keys runs (poller)
	serving   int         // workers serving its keys (under Hub.mu)
	kick      chan struct{}
	stop      chan struct{}
	once      sync.Once
}

// startNodes creates the nodes of every master known at start and checks their configuration.
func (h *Hub) startNodes(ctx context.Context) error {
	if h.cluster == nil {
		c := h.client.(*redis.Client)
		h.mu.Lock()
		n := h.newNodeLocked(c.Options().Addr, c)
		h.mu.Unlock()
		n.checkConfig(ctx)
		return nil
	}
	return h.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		h.mu.Lock()
		n := h.newNodeLocked(c.Options().Addr, c)
		h.mu.Unlock()
		n.checkConfig(ctx)
		return nil
	})
}

// nodeFor returns the node that owns key (the master of its slot on Cluster).
func (h *Hub) nodeFor(key string) (*node, error) {
	if h.cluster == nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, n := range h.nodes {
			return n, nil
		}
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(h.ctx, opTimeout)
	defer cancel()
	c, err := h.cluster.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	n := h.nodes[c.Options().Addr]
	if n == nil {
		n = h.newNodeLocked(c.Options().Addr, c)
		// Until its configuration is checked, its keys are polled.
		select {
		case h.pollKick <- struct{}{}:
		default:
		}
	}
	return n, nil
}

func (h *Hub) newNodeLocked(addr string, c *redis.Client) *node {
	n := &node{h: h, addr: addr, client: c, op: c.WithTimeout(opTimeout), prefix: "__keyspace@" + strconv.Itoa(h.db) + "__:",
		want: map[string]struct{}{}, sent: map[string]struct{}{}, confirmed: map[string]struct{}{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	h.nodes[addr] = n
	if !h.cfg.PollOnly {
		n.ps = c.Subscribe(h.ctx) // no channels yet: no connection until the first SUBSCRIBE
		h.wg.Add(2)
		go n.manage()
		go n.receive()
	}
	return n
}

// watchLocked asks for key's subscription (the manager sends it).
func (n *node) watchLocked(key string) {
	n.want[key] = struct{}{}
	if _, ok := n.sent[key]; !ok && n.ps != nil {
		n.kickManager()
	}
}

// unwatchLocked drops key's subscription.
func (n *node) unwatchLocked(key string) {
	delete(n.want, key)
	if _, ok := n.sent[key]; ok {
		n.kickManager()
	}
}

// liveLocked reports whether a push to key now would reach the Hub without a new SUBSCRIBE: its
// subscription is confirmed, or the node is polled. A key's first waiter wakes it at once then.
func (n *node) liveLocked(key string) bool {
	if !n.keyspace {
		return true
	}
	_, ok := n.confirmed[key]
	return ok
}

func (n *node) kickManager() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *node) close() {
	n.once.Do(func() {
		close(n.stop)
		if n.ps != nil {
			_ = n.ps.Close()
		}
	})
}

// manage sends SUBSCRIBE/UNSUBSCRIBE for the difference between want and sent, in batches.
func (n *node) manage() {
	h := n.h
	defer h.wg.Done()
	for {
		select {
		case <-n.kick:
		case <-n.stop:
			return
		}
		h.mu.Lock()
		var sub, unsub []string
		for k := range n.want {
			if _, ok := n.sent[k]; !ok {
				sub = append(sub, k)
				n.sent[k] = struct{}{}
			}
		}
		for k := range n.sent {
			if _, ok := n.want[k]; !ok {
				unsub = append(unsub, k)
				delete(n.sent, k)
				delete(n.confirmed, k)
			}
		}
		h.mu.Unlock()
		for len(sub) > 0 || len(unsub) > 0 {
			var err error
			if len(sub) > 0 {
				c := sub[:min(len(sub), subChunk)]
				sub = sub[len(c):]
				err = n.ps.Subscribe(h.ctx, n.channels(c)...)
			} else {
				c := unsub[:min(len(unsub), subChunk)]
				unsub = unsub[len(c):]
				err = n.ps.Unsubscribe(h.ctx, n.channels(c)...)
			}
			// go-redis has recorded the channel set either way and resubscribes it on reconnect; the
			// receiver sees the connection error and the confirmations that follow.
			if err != nil {
				select {
				case <-n.stop:
					return
				default:
				}
			}
		}
	}
}

func (n *node) channels(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = n.prefix + k
	}
	return out
}

// receive reads the pub/sub connection: a SUBSCRIBE confirmation wakes its key (an item may have come
// before the subscription was live: at the first SUBSCRIBE and after every reconnect, when go-redis
// resubscribes every channel), a push event wakes its key.
func (n *node) receive() {
	h := n.h
	defer h.wg.Done()
	failures := 0
	for {
		msg, err := n.ps.ReceiveTimeout(h.ctx, pingInterval)
		select {
		case <-n.stop:
			return
		default:
		}
		if err != nil {
			var re redis.Error
			switch {
			case isTimeout(err):
				_ = n.ps.Ping(h.ctx)
			case errors.As(err, &re):
				// A refused SUBSCRIBE (NOPERM: the ACL user may not use these channels): poll.
				h.log.Warn("blocked waits: keyspace subscription refused, polling this node's keys",
					"node", n.addr, "err", err, "poll_interval", h.cfg.PollInterval)
				n.setKeyspace(false)
			default:
				// The connection broke; go-redis reconnects (now or at the next receive) and
				// resubscribes every channel, whose confirmations wake the keys again.
				n.connected.Store(false)
				h.stats.reconnects.Add(1)
				h.mu.Lock()
				clear(n.confirmed)
				h.mu.Unlock()
				failures++
				if failures == 1 || failures%50 == 0 {
					h.log.Warn("blocked waits: pub/sub connection error, reconnecting", "node", n.addr, "err", err, "failures", failures)
				}
				select {
				case h.pollKick <- struct{}{}: // re-check the node's flags (a restarted Redis lost them)
				default:
				}
				t := time.NewTimer(min(retryMin<<min(failures-1, 10), retryMax))
				select {
				case <-t.C:
				case <-n.stop:
					t.Stop()
					return
				}
			}
			continue
		}
		if failures > 0 {
			// Reconnected, maybe to another server (a Sentinel switch-over, a restarted Redis): its
			// notify-keyspace-events may lack the flags. The poller re-checks them at once, then polls
			// every key for what came before they were set (proxy/DESIGN.md "Blocked pops").
			select {
			case h.pollKick <- struct{}{}:
			default:
			}
		}
		failures = 0
		n.connected.Store(true)
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" || !strings.HasPrefix(m.Channel, n.prefix) {
				continue
			}
			key := m.Channel[len(n.prefix):]
			h.stats.subscribeConfirms.Add(1)
			h.mu.Lock()
			if _, ok := n.want[key]; ok {
				n.confirmed[key] = struct{}{}
				if ks := h.keys[key]; ks != nil {
					h.wakeLocked(ks)
				}
			}
			h.mu.Unlock()
		case *redis.Message:
			if !wakeEvents[m.Payload] || !strings.HasPrefix(m.Channel, n.prefix) {
				continue
			}
			h.stats.notifications.Add(1)
			h.Wake(m.Channel[len(n.prefix):])
		}
	}
}

func (n *node) setKeyspace(on bool) {
	h := n.h
	h.mu.Lock()
	changed := n.keyspace != on
	n.keyspace = on
	h.mu.Unlock()
	if changed {
		select {
		case h.pollKick <- struct{}{}:
		default:
		}
	}
}

// checkConfig reads notify-keyspace-events on the node and, unless NoConfigSet, adds the missing flags
// to the current ones (never dropping flags others set). The node is in keyspace mode when K and l
// (or A) are on; g is wanted for rename_to/restore/copy_to, whose arrivals otherwise wait for the
// safety poll. A transport error leaves the mode as it was, marks the node unchecked (the poller checks
// it again every PollInterval) and returns false.
func (n *node) checkConfig(ctx context.Context) (answered bool) {
	defer func() {
		n.h.mu.Lock()
		n.unchecked = !answered
		n.h.mu.Unlock()
	}()
	h := n.h
	if h.cfg.PollOnly {
		n.setKeyspace(false)
		return true
	}
	if h.cfg.AssumeKeyspaceEvents {
		n.setKeyspace(true)
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	vals, err := n.op.ConfigGet(ctx, "notify-keyspace-events").Result()
	var re redis.Error
	if err != nil {
		if errors.As(err, &re) {
			n.logMode(false, "CONFIG GET refused", err)
			n.setKeyspace(false)
			return true
		}
		return false
	}
	cur := vals["notify-keyspace-events"]
	missing := MissingFlags(cur)
	if missing != "" && !h.cfg.NoConfigSet {
		if err = n.op.ConfigSet(ctx, "notify-keyspace-events", cur+missing).Err(); err == nil {
			h.log.Info("blocked waits: enabled keyspace notifications", "node", n.addr,
				"notify-keyspace-events", cur+missing, "was", cur)
			cur += missing
			missing = ""
		} else if !errors.As(err, &re) {
			return false
		}
	}
	on := strings.Contains(cur, "K") && (strings.Contains(cur, "l") || strings.Contains(cur, "A"))
	if !on {
		n.logMode(false, "notify-keyspace-events lacks K or l and cannot be set", err)
	} else if missing != "" {
		n.logMode(true, "notify-keyspace-events lacks g: renamed/restored/copied lists wake at the safety poll", err)
	}
	n.setKeyspace(on)
	return true
}

func (n *node) logMode(on bool, why string, err error) {
	h := n.h
	h.mu.Lock()
	was := n.keyspace
	h.mu.Unlock()
	if was == on && !on {
		return // already polling: said once
	}
	h.log.Warn("blocked waits: "+why, "node", n.addr, "err", err, "poll_interval", h.cfg.PollInterval,
		"fix", "set notify-keyspace-events to include "+NotifyFlags)
}

// MissingFlags returns the flags of NotifyFlags that cur (a notify-keyspace-events value) lacks.
func MissingFlags(cur string) string {
	var out string
	all := strings.Contains(cur, "A")
	for _, f := range NotifyFlags {
		if strings.ContainsRune(cur, f) || (all && f != 'K') {
			continue
		}
		out += string(f)
	}
	return out
}

// poller polls keys of polled nodes every PollInterval and every watched key every SafetyInterval
// (pipelined EXISTS, one round trip per node and 1000 keys), re-checks each node's flags at the safety
// poll and, on Cluster, moves subscriptions of keys whose slot changed owner.
func (h *Hub) poller() {
	defer h.wg.Done()
	nextSafety := time.Now().Add(h.cfg.SafetyInterval)
	t := time.NewTimer(h.cfg.PollInterval)
	defer t.Stop()
	for {
		kicked := false
		select {
		case <-t.C:
		case <-h.pollKick:
			kicked = true
		case <-h.ctx.Done():
			return
		}
		now := time.Now()
		safety := kicked || (h.cfg.SafetyInterval > 0 && !now.Before(nextSafety))
		answered := map[*node]bool{}
		if safety {
			nextSafety = now.Add(h.cfg.SafetyInterval)
			h.recheck()
		} else {
			// Nodes whose flags check got no answer (down, or just switched over) are checked again
			// every PollInterval; once one answers, its keys are polled for what came before.
			for _, n := range h.uncheckedNodes() {
				answered[n] = n.checkConfig(h.ctx)
			}
		}
		h.mu.Lock()
		keys := map[*node][]string{}
		polled := false
		for k, ks := range h.keys {
			if safety || !ks.node.keyspace || answered[ks.node] {
				keys[ks.node] = append(keys[ks.node], k)
			}
		}
		for _, n := range h.nodes {
			polled = polled || !n.keyspace || n.unchecked
		}
		h.mu.Unlock()
		for n, ks := range keys {
			// Each node's poll on its own, not waited for: a frozen node holds only its own keys' polls
			// (up to opTimeout), and none starts for it while one runs.
			if n.polling.CompareAndSwap(false, true) {
				h.wg.Add(1)
				go func() {
					defer h.wg.Done()
					defer n.polling.Store(false)
					n.poll(ks)
				}()
			}
		}
		d := h.cfg.PollInterval
		if !polled {
			d = max(time.Until(nextSafety), time.Millisecond)
			if h.cfg.SafetyInterval < 0 {
				d = time.Hour
			}
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(d)
	}
}

// poll wakes every key of keys (owned by n) that exists: pipelined EXISTS on one connection of the
// node's ordinary pool (not go-redis's pipeline pool, so the Hub's connections stay within the pool).
func (n *node) poll(keys []string) {
	h := n.h
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), subChunk)]
		keys = keys[len(chunk):]
		ctx, cancel := context.WithTimeout(h.ctx, opTimeout)
		cn := n.op.Conn()
		cmds, _ := cn.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range chunk {
				p.Exists(ctx, k)
			}
			return nil
		})
		_ = cn.Close()
		cancel()
		h.stats.polled.Add(int64(len(chunk)))
		for i, c := range cmds {
			if v, err := c.(*redis.IntCmd).Result(); err == nil && v > 0 {
				h.Wake(chunk[i])
			}
		}
	}
}

// uncheckedNodes returns the nodes whose last flags check got no answer.
func (h *Hub) uncheckedNodes() []*node {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*node
	for _, n := range h.nodes {
		if n.unchecked {
			out = append(out, n)
		}
	}
	return out
}

// recheck re-reads every node's flags and, on Cluster, follows keys whose slot moved to another master.
func (h *Hub) recheck() {
	h.mu.Lock()
	nodes := make([]*node, 0, len(h.nodes))
	for _, n := range h.nodes {
		nodes = append(nodes, n)
	}
	var keys []string
	if h.cluster != nil {
		for k := range h.keys {
			keys = append(keys, k)
		}
	}
	h.mu.Unlock()
	for _, n := range nodes {
		n.checkConfig(h.ctx)
	}
	for _, k := range keys {
		n, err := h.nodeFor(k)
		if err != nil {
			continue
		}
		h.mu.Lock()
		if ks := h.keys[k]; ks != nil && ks.node != n {
			ks.node.unwatchLocked(k)
			ks.node = n
			n.watchLocked(k)
		}
		h.mu.Unlock()
	}
}
