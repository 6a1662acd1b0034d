package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
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
	cc := redis.NewClusterClient(co)
	h := &clusterReloader{reload: cc.ReloadState}
	cc.AddHook(h)
	cc.OnNewNode(func(n *redis.Client) { n.AddHook(h) }) // the node clients: their dials bypass the cluster-level hooks
	return cc
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
