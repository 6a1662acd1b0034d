package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterReloadEvery bounds how often errors make the Cluster client reload its map (proxy/DESIGN.md
// "Cluster failover").
const clusterReloadEvery = 200 * time.Millisecond

// newBackendClient builds go-redis's client for opts. A Cluster client refreshes its slot map every
// refresh (cluster_refresh_interval) and, at most every clusterReloadEvery, as soon as a command
// fails in a way that says the map may be stale: a node that cannot be reached, CLUSTERDOWN, MOVED.
// Without this, commands for the slots of a dead master keep dialing it until the periodic refresh,
// long after its replica took over.
func newBackendClient(opts *redis.UniversalOptions, refresh time.Duration) redis.UniversalClient {
	if opts.MasterName != "" || !(opts.IsClusterMode || len(opts.Addrs) > 1) {
		return redis.NewUniversalClient(opts)
	}
	co := opts.Cluster()
	if refresh > 0 {
		co.ClusterStateReloadInterval = refresh
	}
	loader := &slotsLoader{seed: opts.Simple(), seeds: co.Addrs, nodes: map[string]*redis.Client{}}
	co.ClusterSlots = loader.load
	cc := redis.NewClusterClient(co)
	h := &clusterReloader{reload: cc.ReloadState}
	cc.AddHook(h)
	cc.OnNewNode(func(n *redis.Client) {
		n.AddHook(h) // the node clients: their dials bypass the cluster-level hooks
		loader.add(n)
	})
	return cc
}

// clusterSlotsTimeout bounds one node's answer to a map reload's CLUSTER SLOTS.
const clusterSlotsTimeout = 2 * time.Second

// slotsLoader loads the Cluster map for go-redis (ClusterOptions.ClusterSlots) with a timeout per node.
// go-redis's own loader asks the known nodes one after another with the pool's timeouts — none unless
// backend_read_timeout is set — so a reload that asks a frozen node first waits for the thaw, and no
// other reload runs meanwhile (go-redis runs one at a time): the frozen master's replica is promoted,
// and qgate keeps sending to the frozen node (proxy/DESIGN.md "Cluster failover").
type slotsLoader struct {
	seed  *redis.Options // the seeds' connection options (UniversalOptions.Simple)
	seeds []string

	mu    sync.Mutex
	nodes map[string]*redis.Client // go-redis's node clients, by address (OnNewNode)
}

func (l *slotsLoader) add(n *redis.Client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[n.Options().Addr] = n
}

// load asks the nodes go-redis knows, in random order, then the seed addresses (on connections of
// their own: at the first load no node is known), for CLUSTER SLOTS, each within clusterSlotsTimeout.
func (l *slotsLoader) load(ctx context.Context) ([]redis.ClusterSlot, error) {
	l.mu.Lock()
	known := make([]*redis.Client, 0, len(l.nodes))
	for _, n := range l.nodes {
		known = append(known, n)
	}
	l.mu.Unlock()
	rand.Shuffle(len(known), func(i, j int) { known[i], known[j] = known[j], known[i] })
	var firstErr error
	ask := func(c *redis.Client) ([]redis.ClusterSlot, bool) {
		slots, err := c.WithTimeout(clusterSlotsTimeout).ClusterSlots(ctx).Result()
		if err != nil {
			if errors.Is(err, redis.ErrClosed) { // a node go-redis dropped from the map
				l.mu.Lock()
				if l.nodes[c.Options().Addr] == c {
					delete(l.nodes, c.Options().Addr)
				}
				l.mu.Unlock()
			}
			firstErr = cmp.Or(firstErr, err)
			return nil, false
		}
		fixLoopback(slots, c.Options().Addr)
		return slots, true
	}
	for _, n := range known {
		if slots, ok := ask(n); ok {
			return slots, nil
		}
	}
	for _, i := range rand.Perm(len(l.seeds)) {
		o := *l.seed
		o.Addr, o.PoolSize, o.MinIdleConns, o.MaxRetries = l.seeds[i], 1, 0, -1
		c := redis.NewClient(&o)
		slots, ok := ask(c)
		_ = c.Close()
		if ok {
			return slots, nil
		}
	}
	if firstErr == nil {
		firstErr = errors.New("no Cluster node to ask for the slot map")
	}
	return nil, fmt.Errorf("load cluster slots: %w", firstErr)
}

// fixLoopback does what go-redis's own loader does with a map read from origin: nodes announced on a
// loopback address are reached on origin's host, unless origin is a loopback address itself, and a
// port 0 is origin's port.
func fixLoopback(slots []redis.ClusterSlot, origin string) {
	host, port, err := net.SplitHostPort(origin)
	if err != nil {
		return
	}
	for i := range slots {
		for j := range slots[i].Nodes {
			h, p, err := net.SplitHostPort(slots[i].Nodes[j].Addr)
			if err != nil {
				continue
			}
			if isLoopbackHost(h) && !isLoopbackHost(host) {
				h = host
			}
			if p == "0" {
				p = port
			}
			slots[i].Nodes[j].Addr = net.JoinHostPort(h, p)
		}
	}
}

func isLoopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "localhost" || ip != nil && ip.IsLoopback()
}

// clusterReloader is a go-redis hook that reloads the Cluster map on errors that mean it may be stale.
type clusterReloader struct {
	reload func(context.Context)
	last   atomic.Int64 // Unix ns of the last reload it asked for
}

func (h *clusterReloader) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.maybeReload()
		}
		return c, err
	}
}

func (h *clusterReloader) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if staleClusterMap(err) {
			h.maybeReload()
		}
		return err
	}
}

func (h *clusterReloader) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		stale := staleClusterMap(err)
		for _, c := range cmds {
			if stale {
				break
			}
			stale = staleClusterMap(c.Err())
		}
		if stale {
			h.maybeReload()
		}
		return err
	}
}

// maybeReload asks for a reload unless one was asked for less than clusterReloadEvery ago (go-redis
// runs it in the background and merges requests that arrive while it runs).
func (h *clusterReloader) maybeReload() {
	now, last := time.Now().UnixNano(), h.last.Load()
	if now-last < int64(clusterReloadEvery) || !h.last.CompareAndSwap(last, now) {
		return
	}
	h.reload(context.Background())
}

// staleClusterMap reports errors after which the Cluster map may be out of date: the node could not be
// reached or the connection broke (a dead master), or Redis answered MOVED or CLUSTERDOWN.
func staleClusterMap(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "CLUSTERDOWN")
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
