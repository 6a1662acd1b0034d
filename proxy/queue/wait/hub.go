package wait

import (
	"container/list"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config's zero values.
const (
	DefaultWorkers        = 8
	DefaultPollInterval   = 100 * time.Millisecond
	DefaultSafetyInterval = 5 * time.Second
	DefaultBudget         = 64
	DefaultCloseTimeout   = 5 * time.Second

	retryMin = 10 * time.Millisecond // backoff of a key whose take failed with a transient error
	retryMax = time.Second
)

var (
	// ErrClosed ends the waits still registered when the Hub is closed, and is returned by Add after.
	ErrClosed = errors.New("wait: hub closed")
	// ErrNoKeys is returned by Add for a request without keys or without a Take function.
	ErrNoKeys = errors.New("wait: request has no keys or no take function")
	// ErrUnsupportedClient is returned by New for a client that is neither a *redis.Client nor a
	// *redis.ClusterClient (a Ring has no single owner per key).
	ErrUnsupportedClient = errors.New("wait: unsupported client type (want *redis.Client or *redis.ClusterClient)")
)

// TakeFunc pops one result of key for a waiter, in a recoverable way (the caller's transit_pop or
// lease_pop script through the ordinary pooled client), never with a blocking command. ok is false
// when key had nothing to take. ctx is never cancelled by the waiter leaving: a pop must finish for its
// outcome to be known; bound it with the client's own timeouts.
type TakeFunc func(ctx context.Context, key string) (result any, ok bool, err error)

// Last wraps a take's result (returned with ok true) when the take also saw key empty right after it
// (e.g. an LLEN in the same round trip): the Hub then ends the key's pass instead of making a take for
// the next waiter that would find nothing. A push after that take wakes the key again, as any push does.
type Last struct{ Value any }

// Later is a take's result, returned with ok false, when key has items that are not the waiter's yet
// (a global FIFO across instances: waiters of other instances are ahead of it). The Hub ends the key's
// pass and serves it again after After, or at its next wake if that comes first.
type Later struct{ After time.Duration }

// GiveBackFunc returns a result that was taken for a waiter whose client left while the take was in
// flight (or before it collected the result). It runs on a dispatcher goroutine or in Abandon.
type GiveBackFunc func(key string, result any)

// Request is one blocked client's wait.
type Request struct {
	Keys []string // in priority order (Redis serves the first key with items at call time; a wait
	// is served by whichever key gets an item first after that)
	Take     TakeFunc     // required
	GiveBack GiveBackFunc // required unless results never need giving back
	// Notify is optional: called once when Done closes, with the Hub's lock held, so it must neither
	// block nor call the Hub (conn.wake: SetReadDeadline in the past).
	Notify func()
	// Order, when not 0, places the wait in each key's FIFO before the waits with a greater Order
	// (a shared order across instances, such as the engine's global FIFO places); 0 is the back.
	Order int64
}

// Result is what a served wait got: the key the take succeeded on and the take's result.
type Result struct {
	Key   string
	Value any
}

// Config configures a Hub. Only Client is required.
type Config struct {
	// Client is the ordinary pooled client (standalone, Sentinel or Cluster). Takes are the caller's;
	// the Hub itself uses the pool only for CONFIG and the polls' pipelined EXISTS, plus one pub/sub
	// connection per master node it watches keys on.
	Client redis.UniversalClient
	// Workers bounds how many keys are served (takes in flight) at once. Default 8.
	Workers int
	// PollInterval is the poll of keys with waiters on nodes without keyspace notifications (CONFIG
	// refused and the flags not pre-set). Default 100 ms.
	PollInterval time.Duration
	// SafetyInterval is the slow poll of every watched key in keyspace mode, for missed notifications
	// (flags removed by someone, failover to a node without them, events we do not listen to such as
	// a key overwritten with another type). Default 5 s; negative disables it.
	SafetyInterval time.Duration
	// NoConfigSet: never CONFIG SET notify-keyspace-events (use the flags as they are).
	NoConfigSet bool
	// AssumeKeyspaceEvents: do not read the flags (CONFIG is disabled, e.g. managed Redis whose
	// notify-keyspace-events the operator set to include K, l and g); subscribe and trust them.
	AssumeKeyspaceEvents bool
	// PollOnly: no keyspace notifications and no pub/sub connection; serve by polling and Wake.
	PollOnly bool
	// Budget is how many takes one key may make in a row before yielding its worker to other keys.
	// Default 64.
	Budget int
	// Retryable reports whether a take's error is transient (the waiter stays, the key is retried
	// with backoff) or ends the waiter's wait with that error. Default: DefaultRetryable.
	Retryable func(error) bool
	// CloseTimeout bounds Close. Default 5 s.
	CloseTimeout time.Duration
	// Logger gets warnings (mode changes, backend errors). Default: slog.Default().
	Logger *slog.Logger
}

// DefaultRetryable: transport errors (the take's outcome is unknown to the caller, which recovers it
// its own way; the waiter stays) and Redis's transient replies (LOADING, BUSY, MASTERDOWN, TRYAGAIN,
// CLUSTERDOWN, READONLY, NOREPLICAS, MOVED, ASK, OOM) are retried; any other error reply (WRONGTYPE,
// NOSCRIPT, ERR …) ends the wait with it.
func DefaultRetryable(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return true
	}
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY",
		"NOREPLICAS", "MOVED", "ASK", "OOM"} {
		if strings.HasPrefix(re.Error(), p+" ") || re.Error() == p {
			return true
		}
	}
	return false
}

// Hub serves blocked waits; see the package comment.
type Hub struct {
	cfg     Config
	client  redis.UniversalClient
	cluster *redis.ClusterClient
	db      int
	log     *slog.Logger
	ctx     context.Context // never cancelled before Close; takes get context.WithoutCancel of it
	cancel  context.CancelFunc

	mu      sync.Mutex
	cond    *sync.Cond // workers wait for runq
	keys    map[string]*keyState
	runq    list.List // *keyState ready to be served
	nodes   map[string]*node
	closed  bool
	busy    int // workers serving a key
	waiters int

	wg       sync.WaitGroup // workers, poller, node goroutines
	pollKick chan struct{}

	stats counters
}

// keyState is one key with waiters: its FIFO and its serving state (under Hub.mu).
type keyState struct {
	key      string
	q        list.List // *Waiter, oldest first
	node     *node
	running  bool // a worker is serving it
	queued   bool // in runq
	again    bool // woken while running: run another pass
	retry    *time.Timer
	later    *time.Timer // a take's Later: the key is served again when it fires
	failures int
}

type wstate int

const (
	queued wstate = iota
	taking        // a take for it is in flight
	finished
)

// Waiter is one registered wait. Its fields change under Hub.mu.
type Waiter struct {
	h         *Hub
	req       Request
	elems     []*list.Element // per req.Keys (nil for a duplicate key)
	kss       []*keyState
	state     wstate
	stopping  bool // Stop was called while a take was in flight
	abandoned bool // the client left: a result goes to GiveBack
	collected bool
	deferred  []*keyState // keys whose pass stopped at this waiter while it was taking
	done      chan struct{}
	res       Result
	ok        bool
	err       error
}

// New starts a Hub on cfg.Client: it checks (and, unless NoConfigSet, sets) notify-keyspace-events on
// every master and starts the workers and the poller. The context only bounds the start.
func New(ctx context.Context, cfg Config) (*Hub, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.SafetyInterval == 0 {
		cfg.SafetyInterval = DefaultSafetyInterval
	}
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.Retryable == nil {
		cfg.Retryable = DefaultRetryable
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = DefaultCloseTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Hub{cfg: cfg, client: cfg.Client, log: cfg.Logger, keys: map[string]*keyState{},
		nodes: map[string]*node{}, pollKick: make(chan struct{}, 1)}
	switch c := cfg.Client.(type) {
	case *redis.Client:
		h.db = c.Options().DB
	case *redis.ClusterClient:
		h.cluster = c
	default:
		return nil, ErrUnsupportedClient
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.cond = sync.NewCond(&h.mu)
	if err := h.startNodes(ctx); err != nil {
		h.cancel()
		return nil, err
	}
	for range cfg.Workers {
		h.wg.Add(1)
		go h.worker()
	}
	h.wg.Add(1)
	go h.poller()
	return h, nil
}

// Add registers a wait. It does not try first: the caller pops without blocking (in key order)
// before, and calls Add only when every key was empty; Add makes sure that an item arriving after that
// try is not missed (the key is woken once its subscription is live, or at once if it already is).
func (h *Hub) Add(req Request) (*Waiter, error) {
	if len(req.Keys) == 0 || req.Take == nil {
		return nil, ErrNoKeys
	}
	nodes := make([]*node, len(req.Keys))
	for i, k := range req.Keys {
		n, err := h.nodeFor(k)
		if err != nil {
			return nil, err
		}
		nodes[i] = n
	}
	w := &Waiter{h: h, req: req, done: make(chan struct{}),
		elems: make([]*list.Element, len(req.Keys)), kss: make([]*keyState, len(req.Keys))}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	h.waiters++
	h.stats.waiters.Store(int64(h.waiters))
	for i, k := range req.Keys {
		ks := h.keys[k]
		if ks == nil {
			ks = &keyState{key: k, node: nodes[i]}
			h.keys[k] = ks
			h.stats.keys.Store(int64(len(h.keys)))
			ks.node.watchLocked(k)
		}
		dup := false
		for _, o := range w.kss[:i] {
			dup = dup || o == ks
		}
		if dup {
			continue
		}
		w.kss[i] = ks
		w.elems[i] = insertLocked(&ks.q, w)
		if ks.q.Len() == 1 && ks.node.liveLocked(k) {
			// Subscribed and confirmed already (or polled): an item may have come between the
			// caller's try and now, and its notification found nobody waiting.
			h.wakeLocked(ks)
		}
	}
	return w, nil
}

// insertLocked adds w to a key's FIFO: at the back, or before the waits of a greater Order.
func insertLocked(q *list.List, w *Waiter) *list.Element {
	e := q.Back()
	for w.req.Order != 0 && e != nil && e.Value.(*Waiter).req.Order > w.req.Order {
		e = e.Prev()
	}
	if e == nil {
		return q.PushFront(w)
	}
	return q.InsertAfter(w, e)
}

// Wait is Add, then waiting for the result, the timeout (0: none) or ctx (the client left: Abandon).
// It returns (result, true, nil) when served, (Result{}, false, nil) on timeout, and an error when the
// wait failed (a take's non-transient error, ErrClosed, ctx.Err()). A take in flight when the timeout
// passes still decides: its result is returned (Redis would have served the client at that instant).
func (h *Hub) Wait(ctx context.Context, timeout time.Duration, req Request) (Result, bool, error) {
	w, err := h.Add(req)
	if err != nil {
		return Result{}, false, err
	}
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-w.done:
		select {
		case <-ctx.Done():
			w.Abandon()
			return Result{}, false, ctx.Err()
		default:
		}
		return w.Result()
	case <-tc:
		return w.Stop()
	case <-ctx.Done():
		w.Abandon()
		return Result{}, false, ctx.Err()
	}
}

// Done is closed when the wait ended (served, failed, ended by Stop, Abandon or Close).
func (w *Waiter) Done() <-chan struct{} { return w.done }

// Result returns the outcome once Done is closed; the result then belongs to the caller.
func (w *Waiter) Result() (Result, bool, error) {
	<-w.done
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	w.collected = true
	return w.res, w.ok, w.err
}

// Stop ends the wait (its timeout passed). A take in flight for it still decides: Stop waits for it
// and returns its result. Not served: (Result{}, false, nil).
func (w *Waiter) Stop() (Result, bool, error) {
	h := w.h
	h.mu.Lock()
	switch w.state {
	case queued:
		h.finishLocked(w, Result{}, false, nil)
	case taking:
		w.stopping = true
	}
	h.mu.Unlock()
	return w.Result()
}

// Abandon ends the wait of a client that left. Whatever was or will be taken for it goes to
// GiveBack: a take in flight gives back when it ends (after Abandon returned), a result not collected
// with Result is given back now. Do not call it after using the result.
func (w *Waiter) Abandon() {
	h := w.h
	h.mu.Lock()
	var give bool
	switch w.state {
	case queued:
		h.finishLocked(w, Result{}, false, nil)
	case taking:
		w.abandoned = true
	case finished:
		give = w.ok && !w.collected && !w.abandoned
		w.abandoned = true
	}
	res := w.res
	h.mu.Unlock()
	if give {
		h.giveBack(w, res)
	}
}

func (h *Hub) giveBack(w *Waiter, res Result) {
	h.stats.givenBack.Add(1)
	if w.req.GiveBack != nil {
		w.req.GiveBack(res.Key, res.Value)
	}
}

// HasWaiters reports whether clients wait on key: a new client's non-blocking try must treat the key as
// empty, an item arriving there belongs to the clients blocked first (Redis's FIFO rule).
func (h *Hub) HasWaiters(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ks := h.keys[key]
	return ks != nil && ks.q.Len() > 0
}

// Wake tells the Hub that key may have items (the engine calls it after each push it makes; the poll
// and notifications call it too). It never blocks on Redis.
func (h *Hub) Wake(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ks := h.keys[key]; ks != nil {
		h.wakeLocked(ks)
	}
}

func (h *Hub) wakeLocked(ks *keyState) {
	h.stats.wakes.Add(1)
	switch {
	case h.closed, ks.q.Len() == 0:
	case ks.running:
		ks.again = true
	case ks.queued, ks.retry != nil: // a backoff timer wakes it
	default:
		ks.queued = true
		h.runq.PushBack(ks)
		h.cond.Signal()
	}
}

// finishLocked ends w's wait: out of every FIFO, outcome set, done closed. The caller runs the
// returned callbacks after unlocking (finishLocked collects them in h.after).
func (h *Hub) finishLocked(w *Waiter, res Result, ok bool, err error) {
	w.state = finished
	w.res, w.ok, w.err = res, ok, err
	for i, ks := range w.kss {
		if ks == nil {
			continue
		}
		ks.q.Remove(w.elems[i])
		h.maybeDropLocked(ks)
	}
	w.kss, w.elems = nil, nil
	h.wakeDeferredLocked(w)
	h.waiters--
	h.stats.waiters.Store(int64(h.waiters))
	close(w.done)
	if w.req.Notify != nil {
		w.req.Notify()
	}
}

func (h *Hub) wakeDeferredLocked(w *Waiter) {
	for _, ks := range w.deferred {
		h.wakeLocked(ks)
	}
	w.deferred = nil
}

// maybeDropLocked forgets a key nobody waits on and nothing serves.
func (h *Hub) maybeDropLocked(ks *keyState) {
	if ks.q.Len() > 0 || ks.running || ks.queued || h.keys[ks.key] != ks {
		return
	}
	if ks.retry != nil {
		ks.retry.Stop()
		ks.retry = nil
	}
	if ks.later != nil {
		ks.later.Stop()
		ks.later = nil
	}
	delete(h.keys, ks.key)
	h.stats.keys.Store(int64(len(h.keys)))
	ks.node.unwatchLocked(ks.key)
}

// worker serves keys from runq until Close.
func (h *Hub) worker() {
	defer h.wg.Done()
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		var e *list.Element
		for e = h.nextLocked(); e == nil && !h.closed; e = h.nextLocked() {
			h.cond.Wait()
		}
		if h.closed {
			return
		}
		ks := h.runq.Remove(e).(*keyState)
		ks.queued = false
		ks.running = true
		h.busy++
		ks.node.serving++
		h.serveLocked(ks)
		ks.node.serving--
		h.busy--
		ks.running = false
		if len(h.nodes) > 1 {
			h.cond.Broadcast() // a key of this node that waited for a worker may go now
		}
		if ks.again && !h.closed {
			ks.again = false
			h.wakeLocked(ks)
		}
		h.maybeDropLocked(ks)
	}
}

// nextLocked returns the first key of runq whose node has fewer than nodeWorkers keys served: on a
// Cluster a master that stops answering (frozen, partitioned) holds at most that many workers with its
// takes, and the others serve the other masters' keys (proxy/DESIGN.md "Bounds").
func (h *Hub) nextLocked() *list.Element {
	if len(h.nodes) <= 1 {
		return h.runq.Front()
	}
	limit := max(h.cfg.Workers/2, 1)
	for e := h.runq.Front(); e != nil; e = e.Next() {
		if e.Value.(*keyState).node.serving < limit {
			return e
		}
	}
	return nil
}

// serveLocked serves ks's waiters in FIFO order, one take at a time, until a take finds nothing, the
// front waiter is busy on another key, or the budget is spent (then ks goes to the back of runq).
func (h *Hub) serveLocked(ks *keyState) {
	for n := 0; ; n++ {
		if h.closed {
			return
		}
		if n == h.cfg.Budget {
			ks.again = true // requeued behind the other keys by the worker
			return
		}
		e := ks.q.Front()
		if e == nil {
			ks.again = false
			return
		}
		w := e.Value.(*Waiter)
		if w.state == taking {
			// Its take on another key decides; this key is served again when that ends.
			w.deferred = append(w.deferred, ks)
			ks.again = false
			return
		}
		ks.again = false
		w.state = taking
		h.mu.Unlock()
		h.stats.takes.Add(1)
		v, ok, err := w.req.Take(context.WithoutCancel(h.ctx), ks.key)
		last := false
		if l, isLast := v.(Last); isLast {
			v, last = l.Value, ok
		}
		var later time.Duration
		if l, isLater := v.(Later); isLater && !ok {
			v, later = nil, max(l.After, time.Millisecond)
		}
		h.mu.Lock()
		retry := err != nil && h.cfg.Retryable(err)
		switch {
		case err != nil:
			h.stats.takeErrors.Add(1)
		case later > 0:
			h.stats.later.Add(1)
		case !ok:
			h.stats.emptyTakes.Add(1)
		}
		if retry {
			ks.failures++
			if ks.failures == 1 || ks.failures%50 == 0 {
				h.log.Warn("blocked wait: take failed, retrying", "key", ks.key, "err", err, "failures", ks.failures)
			}
		} else if err == nil {
			ks.failures = 0
		}
		switch {
		case ok:
			res := Result{Key: ks.key, Value: v}
			give := w.abandoned
			h.finishLocked(w, res, true, nil)
			if give {
				h.mu.Unlock()
				h.giveBack(w, res)
				h.mu.Lock()
			}
			if last {
				// The key was empty after the take: a wake since the take was sent (ks.again) brings
				// the next pass; without one, a take for the next waiter would find nothing.
				return
			}
			continue
		case err != nil && !retry:
			h.finishLocked(w, Result{}, false, err) // the next waiter tries (and likely gets it too)
			continue
		}
		// Not served: the key was empty, or a transient error (outcome recovered by the caller).
		switch {
		case w.abandoned || w.stopping:
			h.finishLocked(w, Result{}, false, nil)
		case h.closed:
			h.finishLocked(w, Result{}, false, ErrClosed)
		default:
			w.state = queued
			h.wakeDeferredLocked(w)
		}
		if later > 0 && !h.closed {
			h.laterLocked(ks, later)
		}
		if retry && !h.closed {
			d := min(retryMin<<min(ks.failures-1, 10), retryMax)
			ks.retry = time.AfterFunc(d, func() {
				h.mu.Lock()
				defer h.mu.Unlock()
				if ks.retry != nil {
					ks.retry = nil
					h.wakeLocked(ks)
				}
			})
		}
		return
	}
}

// laterLocked serves ks again after d (a take's Later), unless a wake does it first; one timer per key.
func (h *Hub) laterLocked(ks *keyState, d time.Duration) {
	if ks.later != nil {
		ks.later.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if ks.later == t {
			ks.later = nil
			h.wakeLocked(ks)
		}
	})
	ks.later = t
}

// Close ends every wait (ErrClosed; a take in flight still decides its waiter's outcome), closes the
// pub/sub connections and stops the goroutines, waiting at most CloseTimeout. Takes still in flight
// after that finish on their own (their results go to their waiters, or to GiveBack).
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	for _, ks := range h.keys {
		if ks.retry != nil {
			ks.retry.Stop()
			ks.retry = nil
		}
		if ks.later != nil {
			ks.later.Stop()
			ks.later = nil
		}
		for e := ks.q.Front(); e != nil; {
			next := e.Next()
			if w := e.Value.(*Waiter); w.state == queued {
				h.finishLocked(w, Result{}, false, ErrClosed)
			}
			e = next
		}
	}
	h.runq.Init()
	h.cond.Broadcast()
	nodes := make([]*node, 0, len(h.nodes))
	for _, n := range h.nodes {
		nodes = append(nodes, n)
	}
	h.mu.Unlock()
	h.cancel()
	for _, n := range nodes {
		n.close()
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	t := time.NewTimer(h.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return errors.New("wait: close timed out with takes in flight")
	}
}

// isTimeout reports a network timeout (a pub/sub receive with nothing to read).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type counters struct {
	waiters, keys                        atomic.Int64
	wakes, takes, emptyTakes, takeErrors atomic.Int64
	later                                atomic.Int64
	givenBack, notifications, polled     atomic.Int64
	reconnects, subscribeConfirms        atomic.Int64
}

// Stats are plain counters for INFO.
type Stats struct {
	Waiters           int64  // registered waits
	WatchedKeys       int64  // keys with waiters
	PubSubConns       int64  // pub/sub connections (one per master node watched)
	Mode              string // "keyspace", "poll" or "mixed" (Cluster: per node), "poll" with PollOnly
	KeyspaceNodes     int64
	PollNodes         int64
	Wakes             int64 // wake signals (notifications, confirmations, polls, Wake, new waiters)
	Takes             int64 // take calls
	EmptyTakes        int64 // takes that found nothing
	LaterTakes        int64 // takes that found items other instances' waiters are entitled to (Later)
	TakeErrors        int64
	GivenBack         int64 // results passed to GiveBack
	Notifications     int64 // keyspace events received that wake (pushes)
	SubscribeConfirms int64 // SUBSCRIBE confirmations (each wakes its key)
	Polled            int64 // keys checked by a poll (EXISTS)
	Reconnects        int64 // pub/sub connection errors (go-redis reconnects and resubscribes)
}

// Stats returns the current counters.
func (h *Hub) Stats() Stats {
	s := Stats{
		Waiters: h.stats.waiters.Load(), WatchedKeys: h.stats.keys.Load(),
		Wakes: h.stats.wakes.Load(), Takes: h.stats.takes.Load(), EmptyTakes: h.stats.emptyTakes.Load(),
		LaterTakes: h.stats.later.Load(),
		TakeErrors: h.stats.takeErrors.Load(), GivenBack: h.stats.givenBack.Load(),
		Notifications: h.stats.notifications.Load(), SubscribeConfirms: h.stats.subscribeConfirms.Load(),
		Polled: h.stats.polled.Load(), Reconnects: h.stats.reconnects.Load(),
	}
	h.mu.Lock()
	for _, n := range h.nodes {
		if n.keyspace {
			s.KeyspaceNodes++
		} else {
			s.PollNodes++
		}
		if n.connected.Load() {
			s.PubSubConns++
		}
	}
	h.mu.Unlock()
	switch {
	case s.PollNodes == 0 && s.KeyspaceNodes > 0:
		s.Mode = "keyspace"
	case s.KeyspaceNodes == 0:
		s.Mode = "poll"
	default:
		s.Mode = "mixed"
	}
	return s
}
