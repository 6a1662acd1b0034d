package queue

import (
	"container/list"
	"errors"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/rdb"
)

// Blocked pops wait inside qgate. Waiters queue FIFO per (key, direction). A few listener connections
// per direction (cfg.BlockingConns; one per hash slot on Cluster) each run one backend
// "BLPOP <keys with waiters> <wake key> <timeout>"; an item popped there goes to the longest-waiting
// client on that key, or straight back to the head of its list if nobody is waiting any more. When its
// key set must change, a listener is woken by pushing a token onto its own wake key, so every wake-up is
// event-driven and items pushed straight into Redis by other programs wake waiters too.

const (
	listenerTimeout = 30 * time.Second // backend BLPOP timeout: a liveness bound, not a polling tick
	listenerIdle    = 30 * time.Second // a listener without waiters releases its connection after this
)

type bkey struct {
	key  string
	left bool
}

type lkey struct {
	group int
	left  bool
	key   string // an at-least-once queue's own listener (group -1)
}

// aloListenerTimeout bounds the BLMOVE of an at-least-once queue's listener, which no wake key can
// interrupt: it is how long such a listener may go on after its last waiter left, or delay shutdown.
const aloListenerTimeout = 250 * time.Millisecond

var errUnsupportedClient = errors.New("unsupported backend client type")

// Waiter is one blocked client. Its state changes under blocker.mu; done is set once it was served.
type Waiter struct {
	wake     func() // interrupts the client's wait (called once it is done)
	keys     []string
	left     bool
	elems    []*list.Element
	finished bool // served or cancelled (under blocker.mu)
	done     atomic.Bool
	key, val string
	handoff  bool  // the item is in key's handoff list (an at-least-once queue's listener)
	err      error // set instead of key/val when the wait failed (a key it waits on is not a list)
	ready    chan struct{}
}

// Done reports whether the wait ended (served, or failed).
func (w *Waiter) Done() bool { return w.done.Load() }

// Ready is closed once the wait ended.
func (w *Waiter) Ready() <-chan struct{} { return w.ready }

type listener struct {
	b        *blocker
	id       lkey
	wakeKey  string
	keys     map[string]struct{} // keys with waiters assigned to this listener
	active   map[string]struct{} // keys of the BLPOP in flight
	blocking bool
	wakeSent bool
	running  bool
	kick     chan struct{}
}

type blocker struct {
	e         *Engine
	client    redis.UniversalClient // dedicated to listener connections
	cluster   bool
	groups    int
	instance  string
	mu        sync.Mutex
	queues    map[bkey]*list.List
	alo       map[bkey]bool // keys with waiters that are at-least-once queues (decided at the first waiter)
	listeners map[lkey]*listener
	stopping  bool
	stopCh    chan struct{}
	wg        sync.WaitGroup
	conns     atomic.Int64
	seq       atomic.Int64
	wakes     sync.WaitGroup // wake-token pushes in flight
}

func newBlocker(e *Engine, client redis.UniversalClient, cluster bool, groups int, instance string) *blocker {
	if groups <= 0 {
		groups = 1
	}
	return &blocker{e: e, client: client, cluster: cluster, groups: groups, instance: instance,
		queues: map[bkey]*list.List{}, alo: map[bkey]bool{}, listeners: map[lkey]*listener{}, stopCh: make(chan struct{})}
}

// tryPop pops from the first non-empty key without blocking (into the transit record). Keys that
// already have waiters count as empty: an item arriving there belongs to the clients blocked first
// (Redis's FIFO rule).
func (b *blocker) tryPop(keys []string, left bool) (*Pop, error) {
	for _, key := range keys {
		if b.hasWaiters(key, left) {
			continue
		}
		p, err := b.e.transit.popOne(b.e.ctx, key, left)
		if err != nil || p != nil {
			return p, err
		}
	}
	return nil, nil
}

// hasWaiters reports whether clients are blocked popping key from that end.
func (b *blocker) hasWaiters(key string, left bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[bkey{key, left}]
	return q != nil && q.Len() > 0
}

// wait registers a client blocked on keys; wake interrupts its wait once it is served.
func (b *blocker) wait(wake func(), keys []string, left bool) *Waiter {
	w := &Waiter{wake: wake, keys: keys, left: left, ready: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, key := range keys {
		k := bkey{key, left}
		q := b.queues[k]
		if q == nil {
			q = list.New()
			b.queues[k] = q
		}
		w.elems = append(w.elems, q.PushBack(w))
		if q.Len() == 1 {
			b.keyAdded(key, left)
		}
	}
	return w
}

// cancel removes a waiter that timed out or whose client left; false if it was served already.
func (b *blocker) cancel(w *Waiter) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.finished {
		return false
	}
	b.removeLocked(w)
	return true
}

func (b *blocker) removeLocked(w *Waiter) {
	w.finished = true
	for i, key := range w.keys {
		k := bkey{key, w.left}
		q := b.queues[k]
		if q == nil {
			continue
		}
		q.Remove(w.elems[i])
		if q.Len() == 0 {
			delete(b.queues, k)
			b.keyEmptied(key, w.left)
		}
	}
	w.elems = nil
}

// take hands val (popped from key) to the longest-waiting client on key; false if there is none.
func (b *blocker) take(key string, left bool, val string) (served bool, more int) {
	return b.give(key, left, val, false)
}

// give is take; handoff marks a wake-up for an item moved to key's handoff list (val is empty).
func (b *blocker) give(key string, left bool, val string, handoff bool) (served bool, more int) {
	b.mu.Lock()
	q := b.queues[bkey{key, left}]
	if q == nil || q.Len() == 0 {
		b.mu.Unlock()
		return false, 0
	}
	w := q.Front().Value.(*Waiter)
	b.removeLocked(w)
	w.key, w.val, w.handoff = key, val, handoff
	w.done.Store(true)
	close(w.ready)
	if q = b.queues[bkey{key, left}]; q != nil {
		more = q.Len()
	}
	b.mu.Unlock()
	w.wake()
	return true, more
}

// failKey ends the wait of every client blocked on key with err (the key holds another type, so the
// listener's BLPOP would fail on every attempt and starve the other keys it waits on).
func (b *blocker) failKey(key string, left bool, err error) {
	b.mu.Lock()
	var woken []*Waiter
	for q := b.queues[bkey{key, left}]; q != nil && q.Len() > 0; q = b.queues[bkey{key, left}] {
		w := q.Front().Value.(*Waiter)
		b.removeLocked(w)
		w.err = err
		w.done.Store(true)
		close(w.ready)
		woken = append(woken, w)
	}
	b.mu.Unlock()
	for _, w := range woken {
		w.wake()
	}
}

func (b *blocker) group(key string) int {
	if b.cluster {
		return int(rdb.Slot(key))
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(b.groups))
}

// lid names the listener that serves key's waiters. An at-least-once queue has a listener of its own:
// it waits with BLMOVE, which takes one source key (the others share multi-key BLPOPs).
func (b *blocker) lid(key string, left bool) lkey {
	if b.alo[bkey{key, left}] {
		return lkey{group: -1, left: left, key: key}
	}
	return lkey{group: b.group(key), left: left}
}

func (b *blocker) listenerFor(key string, left bool) *listener {
	id := b.lid(key, left)
	l := b.listeners[id]
	if l == nil {
		dir := "r"
		if left {
			dir = "l"
		}
		// Unique per listener lifetime, so a listener can delete its own key when it goes idle.
		suffix := b.instance + ":" + dir + ":" + strconv.FormatInt(b.seq.Add(1), 10)
		wake := "qgate:wake:" + suffix
		if id.key != "" {
			wake = "qgate:wake:{" + id.key + "}:" + suffix
		} else if b.cluster {
			wake = "qgate:wake:{" + rdb.SlotTag(uint16(id.group)) + "}:" + suffix
		}
		l = &listener{b: b, id: id, wakeKey: wake, keys: map[string]struct{}{}, kick: make(chan struct{}, 1)}
		b.listeners[id] = l
	}
	return l
}

// keyAdded is called under mu when key gets its first waiter.
func (b *blocker) keyAdded(key string, left bool) {
	if b.e.policies().Queue(key).AtLeastOnce {
		b.alo[bkey{key, left}] = true
	}
	l := b.listenerFor(key, left)
	l.keys[key] = struct{}{}
	switch {
	case b.stopping:
	case !l.running:
		l.running = true
		b.wg.Add(1)
		go l.run()
	case l.blocking:
		if _, ok := l.active[key]; !ok {
			l.wakeLocked()
		}
	default:
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// keyEmptied is called under mu when key lost its last waiter.
func (b *blocker) keyEmptied(key string, left bool) {
	l := b.listeners[b.lid(key, left)]
	delete(b.alo, bkey{key, left})
	if l == nil {
		return
	}
	delete(l.keys, key)
	if l.blocking && l.id.key == "" {
		// Stop holding a BLPOP on a key nobody waits for: it would take items other consumers want.
		l.wakeLocked()
	}
}

// wakeLocked interrupts the listener's BLPOP by pushing a token onto its wake key (under mu).
func (l *listener) wakeLocked() {
	if l.wakeSent {
		return
	}
	l.wakeSent = true
	l.b.wakes.Add(1)
	go func() {
		defer l.b.wakes.Done()
		if err := l.b.e.client.RPush(l.b.e.ctx, l.wakeKey, "1").Err(); err != nil {
			l.b.e.log.Warn("wake blocked-pop listener", "err", err)
		}
	}()
}

func (l *listener) run() {
	b := l.b
	defer b.wg.Done()
	var cn *redis.Conn
	defer func() {
		if cn != nil {
			_ = cn.Close()
			b.conns.Add(-1)
		}
	}()
	failures := 0
	for {
		b.mu.Lock()
		if b.stopping {
			l.running = false
			b.mu.Unlock()
			return
		}
		if len(l.keys) == 0 {
			l.blocking = false
			b.mu.Unlock()
			select {
			case <-l.kick:
				continue
			case <-b.stopCh:
				continue
			case <-time.After(listenerIdle):
			}
			b.mu.Lock()
			if len(l.keys) == 0 {
				l.running = false
				delete(b.listeners, l.id)
				b.mu.Unlock()
				_ = b.e.client.Del(b.e.ctx, l.wakeKey).Err() // a token nobody consumed
				return
			}
			b.mu.Unlock()
			continue
		}
		keys := make([]string, 0, len(l.keys)+1)
		l.active = make(map[string]struct{}, len(l.keys))
		for k := range l.keys {
			keys = append(keys, k)
			l.active[k] = struct{}{}
		}
		sort.Strings(keys)
		keys = append(keys, l.wakeKey)
		l.blocking = true
		l.wakeSent = false
		b.mu.Unlock()

		if cn == nil {
			var err error
			if cn, err = b.conn(l.wakeKey); err != nil {
				l.fail(&failures, err)
				continue
			}
			b.conns.Add(1)
		}
		var res []string
		var err error
		if l.id.key != "" {
			// Move one item to the handoff list; it never leaves Redis before it is leased.
			src := "RIGHT"
			if l.id.left {
				src = "LEFT"
			}
			// Do, not BLMove: go-redis rounds timeouts below 1s up to 1s.
			err = cn.Do(b.e.ctx, "blmove", l.id.key, rdb.HandoffKey(l.id.key), src, "RIGHT",
				strconv.FormatFloat(aloListenerTimeout.Seconds(), 'f', -1, 64)).Err()
			res = []string{l.id.key, ""}
		} else {
			// Do, not BLPop: go-redis would put a read deadline on it (see NewWaitClient).
			verb := "brpop"
			if l.id.left {
				verb = "blpop"
			}
			args := make([]interface{}, 0, len(keys)+2)
			args = append(args, verb)
			for _, k := range keys {
				args = append(args, k)
			}
			args = append(args, int(listenerTimeout/time.Second))
			res, err = cn.Do(b.e.ctx, args...).StringSlice()
		}
		b.mu.Lock()
		l.blocking = false
		b.mu.Unlock()
		switch {
		case err == redis.Nil:
			failures = 0
		case isWrongType(err):
			// One of the keys is no longer a list: fail its waiters and go on with the others.
			failures = 0
			l.failWrongType(cn, keys[:len(keys)-1], err)
		case err != nil:
			_ = cn.Close()
			cn = nil
			b.conns.Add(-1)
			l.fail(&failures, err)
		case res[0] == l.wakeKey:
			failures = 0
		default:
			failures = 0
			l.deliver(cn, res[0], res[1])
		}
	}
}

func isWrongType(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "WRONGTYPE ")
}

// failWrongType finds the keys of the failed BLPOP that hold another type and fails their waiters.
func (l *listener) failWrongType(cn *redis.Conn, keys []string, err error) {
	b := l.b
	cmds, _ := cn.Pipelined(b.e.ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Type(b.e.ctx, k)
		}
		return nil
	})
	for i, c := range cmds {
		if t, terr := c.(*redis.StatusCmd).Result(); terr == nil && t != "list" && t != "none" {
			b.failKey(keys[i], l.id.left, err)
		}
	}
}

// fail logs a backend error and waits before the next attempt (capped exponential backoff).
func (l *listener) fail(failures *int, err error) {
	*failures++
	if cc, ok := l.b.client.(*redis.ClusterClient); ok {
		cc.ReloadState(l.b.e.ctx)
	}
	if *failures == 1 || *failures%50 == 0 {
		l.b.e.log.Warn("blocked-pop listener: backend error, retrying", "err", err, "failures", *failures)
	}
	d := time.Duration(1<<min(*failures, 7)) * 10 * time.Millisecond
	select {
	case <-time.After(d):
	case <-l.b.stopCh:
	}
}

// deliver hands a popped item to a waiter, then pops more without blocking while waiters remain.
func (l *listener) deliver(cn *redis.Conn, key, val string) {
	b := l.b
	if l.id.key != "" {
		l.deliverHandoff(cn, key)
		return
	}
	served, more := b.take(key, l.id.left, val)
	if !served {
		b.e.returnItems([]*Pop{{Key: key, Left: l.id.left, Items: []string{val}}})
		return
	}
	for more > 0 {
		want := more
		var vals []string
		var err error
		if l.id.left {
			vals, err = cn.LPopCount(b.e.ctx, key, more).Result()
		} else {
			vals, err = cn.RPopCount(b.e.ctx, key, more).Result()
		}
		if err != nil || len(vals) == 0 {
			return
		}
		for i, v := range vals {
			if served, more = b.take(key, l.id.left, v); !served {
				b.e.returnItems([]*Pop{{Key: key, Left: l.id.left, Items: vals[i:]}})
				return
			}
		}
		if len(vals) < want {
			return
		}
	}
}

// deliverHandoff wakes the longest waiter on an at-least-once queue for the item just moved to its
// handoff list (the waiter leases it with lease_pop), then moves one more item per remaining waiter
// without blocking. An item nobody waits for any more goes back to the ready list's head.
func (l *listener) deliverHandoff(cn *redis.Conn, key string) {
	b := l.b
	src := "RIGHT"
	if l.id.left {
		src = "LEFT"
	}
	served, more := b.give(key, l.id.left, "", true)
	for served && more > 0 {
		if err := cn.LMove(b.e.ctx, key, rdb.HandoffKey(key), src, "RIGHT").Err(); err != nil {
			return // redis.Nil: the ready list is empty; the remaining waiters go on waiting
		}
		served, more = b.give(key, l.id.left, "", true)
	}
	if !served {
		if err := cn.LMove(b.e.ctx, rdb.HandoffKey(key), key, "RIGHT", src).Err(); err != nil && err != redis.Nil {
			// Not lost: the next pop of the queue or the reaper takes it from the handoff list.
			b.e.log.Warn("return an item from the handoff list", "queue", key, "err", err)
		}
	}
}

// unhandoff moves an item from key's handoff list back to the end of the ready list it is popped
// from: a waiter that cannot lease was woken for it (the queue's rule changed on reload).
func (b *blocker) unhandoff(key string, left bool) {
	end := "RIGHT"
	if left {
		end = "LEFT"
	}
	if err := b.e.client.LMove(b.e.ctx, rdb.HandoffKey(key), key, "RIGHT", end).Err(); err != nil && err != redis.Nil {
		b.e.log.Warn("return an item from the handoff list", "queue", key, "err", err) // still in Redis
	}
}

// conn opens a dedicated backend connection for the listener (on the node that owns key on Cluster).
func (b *blocker) conn(key string) (*redis.Conn, error) {
	switch c := b.client.(type) {
	case *redis.ClusterClient:
		node, err := c.MasterForKey(b.e.ctx, key)
		if err != nil {
			return nil, err
		}
		return node.Conn(), nil
	case *redis.Client:
		return c.Conn(), nil
	default:
		return nil, errUnsupportedClient
	}
}

// stop wakes every listener, waits for them up to timeout and removes leftover wake tokens.
func (b *blocker) stop(timeout time.Duration) {
	b.mu.Lock()
	b.stopping = true
	close(b.stopCh)
	var wakes, all []string
	for _, l := range b.listeners {
		if l.id.key == "" {
			all = append(all, l.wakeKey)
			if l.blocking {
				wakes = append(wakes, l.wakeKey)
			}
		}
	}
	b.mu.Unlock()
	for _, k := range wakes {
		_ = b.e.client.RPush(b.e.ctx, k, "1").Err()
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		b.e.log.Warn("blocked-pop listeners did not stop in time")
	}
	b.wakes.Wait()          // wake tokens still on their way (from waiters cancelled during the drain)
	for _, k := range all { // tokens nobody consumed
		_ = b.e.client.Del(b.e.ctx, k).Err()
	}
}

// Parker is a blocked client's side of a wait: its connection watches the socket meanwhile, so a
// disconnect is noticed at once and no goroutine or timer is needed per blocked client.
type Parker interface {
	// Park returns true once w is Done, false when the deadline (zero: none) passed, the client left
	// or the server is shutting down (the wait is then cancelled, unless it was served at that instant).
	Park(w *Waiter, deadline time.Time) bool
	// Wake interrupts Park from another goroutine; called once the wait it parks for is done.
	Wake()
	// Gone reports whether the client left, or is disconnected without a reply at shutdown: what was
	// popped for it goes back.
	Gone() bool
}

// BlockPop is BLPOP/BRPOP on at-most-once queues: a pop through the transit record from the first
// non-empty key (keys other clients wait on count as empty: Redis's FIFO rule), else the client waits
// until a listener pops an item for it (only in memory until Settle). nil when the wait ended without
// an item (timeout, client gone, shutdown). Pass a non-nil Pop to Settle with its reply.
func (e *Engine) BlockPop(keys []string, left bool, timeout time.Duration, p Parker) (*Pop, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		if got, err := e.blocker.tryPop(keys, left); err != nil || got != nil {
			return got, err
		}
		w, err := e.park(keys, left, deadline, p)
		if w == nil {
			return nil, err
		}
		if !w.handoff {
			got := &Pop{Key: w.key, Left: left, Items: []string{w.val}}
			if p.Gone() {
				e.Settle([]*Pop{got}, false)
				return nil, nil
			}
			return got, nil
		}
		// Woken for an item in the handoff list (the key's rule changed on reload while this client
		// waited, so its listener works the at-least-once way): back to the ready list, and wait again
		// for the rest of the timeout.
		e.blocker.unhandoff(w.key, left)
		if p.Gone() || !deadline.IsZero() && !time.Now().Before(deadline) {
			return nil, nil
		}
	}
}

// BlockLeasePop is BLPOP/BRPOP on at-least-once queues. It tries to lease from each key in order,
// skipping keys other clients are blocked on (an item there is theirs first: Redis's FIFO rule); if
// none has an item it waits in the blocker, whose listener for such a key moves one item per waiter
// with BLMOVE from the ready list to the queue's handoff list (never out of Redis) and wakes the
// waiter, which then leases with lease_pop (handoff list first). If another client leased that item
// first, the waiter waits again. An item is in the ready list, the handoff list or leased at every
// instant, so no crash can lose it; items left in a handoff list are served first by the next pop
// and moved back to the ready list by the reaper. The result holds one item, or is nil when the wait
// ended without one.
func (e *Engine) BlockLeasePop(c *Consumer, keys []string, left bool, timeout time.Duration, p Parker) (*Pop, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	woken := "" // the key the blocker woke us for: its handoff list holds an item for us
	for {
		for _, key := range keys {
			pol := e.Policy(key)
			if key != woken && e.blocker.hasWaiters(key, left) {
				// Not our turn on this key, but this pop still acks the previous one (ack: next-pop).
				if err := e.ackPrevious(c, key, pol); err != nil {
					return nil, err
				}
				continue
			}
			if err := e.registerQueue(e.ctx, key); err != nil {
				return nil, err
			}
			acks, err := e.nextPopAcks(c, key, pol)
			if err != nil {
				return nil, err
			}
			k, args := leasePopArgs(c, key, left, "", pol, acks)
			res, err := rdb.LeasePop.Run(e.ctx, e.cmds(), k, args...).Slice()
			if err == nil && len(res) != 2 {
				err = errUnexpectedReply
			}
			if err != nil {
				return nil, err
			}
			if got := e.leasePopResult(c, key, left, pol, acks, res); got != nil && len(got.Items) == 1 {
				return got, nil
			}
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return nil, nil
		}
		w, err := e.park(keys, left, deadline, p)
		if w == nil {
			return nil, err
		}
		if !w.handoff {
			// The key's rule changed on reload while this client waited, so its listener popped the
			// item the at-most-once way: back to the head; this client leases it.
			e.Settle([]*Pop{{Key: w.key, Left: left, Items: []string{w.val}}}, false)
		}
		if p.Gone() {
			return nil, nil // the item stays in the handoff list for the next pop
		}
		// Try the key that has an item for us first.
		woken = w.key
		ordered := make([]string, 0, len(keys))
		ordered = append(ordered, w.key)
		for _, k := range keys {
			if k != w.key {
				ordered = append(ordered, k)
			}
		}
		keys = ordered
	}
}

// park registers the client as blocked on keys and waits (Parker.Park) until it is served: nil when
// the wait ended without (timeout, client gone, shutdown), or with the wait's error (a key it waited
// on holds another type).
func (e *Engine) park(keys []string, left bool, deadline time.Time, p Parker) (*Waiter, error) {
	w := e.blocker.wait(p.Wake, keys, left)
	e.blocked.Add(1)
	defer e.blocked.Add(-1)
	for !w.Done() {
		if !p.Park(w, deadline) {
			if e.blocker.cancel(w) {
				return nil, nil
			}
			break // served at the same instant: the item is ours to reply with or to give back
		}
	}
	if w.err != nil {
		return nil, w.err
	}
	return w, nil
}
