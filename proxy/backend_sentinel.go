package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel switch-over (proxy/DESIGN.md "Sentinel switch-over", README "What survives which
// failure"). go-redis's failover client moves to the new master when a Sentinel announces
// +switch-master, about a second after the replica was promoted; every write acknowledged by the old
// master in between is lost when it is resynced as a replica. The fence stops those writes: when any
// Sentinel starts a failover of our master (+selected-slave, published before the replica is told
// REPLICAOF NO ONE), qgate closes its connections to the old master and refuses to dial it until the
// switch (+switch-master), the failover's end or abort, or sentinelFenceMax. A READONLY reply (a
// write that reached a replica: not applied) closes the connections to every replica Sentinel lists.

// sentinelFenceMax bounds a fence whose end qgate did not see (a lost Sentinel connection).
const sentinelFenceMax = 10 * time.Second

// errFenced is the dial error while the master is being failed over: the command was not sent.
var errFenced = errors.New("the master is being failed over by Sentinel")

// sentinelGuard is the fence and the connection registry of a Sentinel backend.
type sentinelGuard struct {
	master    string // the master name
	sentinels []string
	sopts     *redis.Options // for the Sentinel clients (login, TLS, timeouts)
	log       atomic.Pointer[slog.Logger]
	dialer    net.Dialer
	tls       *tls.Config

	mu     sync.Mutex
	conns  map[string]map[*guardedConn]struct{} // open data and Sentinel connections by address
	fenced string                               // the old master's address while fenced
	until  time.Time

	closed   bool        // under mu: no new goroutines
	readonly atomic.Bool // a READONLY check is running
	ctx      context.Context
	stop     context.CancelFunc
	done     sync.WaitGroup
}

// newSentinelGuard sets up o (a Sentinel backend's options) to dial through the guard.
func newSentinelGuard(o *redis.UniversalOptions) *sentinelGuard {
	g := &sentinelGuard{
		master:    o.MasterName,
		sentinels: append([]string(nil), o.Addrs...),
		sopts: &redis.Options{Username: o.SentinelUsername, Password: o.SentinelPassword, TLSConfig: o.TLSConfig,
			DialTimeout: o.DialTimeout, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: noRetries,
			MaintNotificationsConfig: noMaintNotifications()},
		tls:   o.TLSConfig,
		conns: map[string]map[*guardedConn]struct{}{},
	}
	g.log.Store(slog.Default())
	g.ctx, g.stop = context.WithCancel(context.Background())
	g.dialer.Timeout = o.DialTimeout
	if g.dialer.Timeout <= 0 {
		g.dialer.Timeout = 5 * time.Second // go-redis's default
	}
	g.dialer.KeepAlive = 5 * time.Minute
	o.Dialer = g.dial
	return g
}

// dial is the options' Dialer: it refuses the fenced address and registers every connection.
func (g *sentinelGuard) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	g.mu.Lock()
	fenced := g.fenced == addr && time.Now().Before(g.until)
	g.mu.Unlock()
	if fenced {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: tcpAddr(addr), Err: errFenced}
	}
	var c net.Conn
	var err error
	if g.tls != nil {
		td := tls.Dialer{NetDialer: &g.dialer, Config: g.tls}
		c, err = td.DialContext(ctx, network, addr)
	} else {
		c, err = g.dialer.DialContext(ctx, network, addr)
	}
	if err != nil {
		return nil, err
	}
	gc := &guardedConn{Conn: c, g: g, addr: addr}
	g.mu.Lock()
	if g.conns[addr] == nil {
		g.conns[addr] = map[*guardedConn]struct{}{}
	}
	g.conns[addr][gc] = struct{}{}
	g.mu.Unlock()
	if sc, ok := c.(syscall.Conn); ok {
		return &guardedSysConn{guardedConn: gc, sys: sc}, nil
	}
	return gc, nil
}

// guardedSysConn is a guardedConn over a plain socket: go-redis's pool checks an idle connection's
// health through syscall.Conn (it deliberately skips TLS connections), so the wrapper must keep it.
type guardedSysConn struct {
	*guardedConn
	sys syscall.Conn
}

func (c *guardedSysConn) SyscallConn() (syscall.RawConn, error) { return c.sys.SyscallConn() }

type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }

func tcpAddr(addr string) net.Addr { return addrString(addr) }

// guardedConn is a connection the guard can close.
type guardedConn struct {
	net.Conn
	g    *sentinelGuard
	addr string
	once sync.Once
}

func (c *guardedConn) Close() error {
	c.once.Do(func() {
		c.g.mu.Lock()
		delete(c.g.conns[c.addr], c)
		if len(c.g.conns[c.addr]) == 0 {
			delete(c.g.conns, c.addr)
		}
		c.g.mu.Unlock()
	})
	return c.Conn.Close()
}

// closeAddr closes every connection to addr; a command in flight on one fails (its outcome unknown).
func (g *sentinelGuard) closeAddr(addr string) int {
	g.mu.Lock()
	var cs []*guardedConn
	for c := range g.conns[addr] {
		cs = append(cs, c)
	}
	g.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	return len(cs)
}

// fence stops writes to the old master addr.
func (g *sentinelGuard) fence(addr string) {
	g.mu.Lock()
	g.fenced, g.until = addr, time.Now().Add(sentinelFenceMax)
	g.mu.Unlock()
	n := g.closeAddr(addr)
	g.log.Load().Warn("sentinel failover started: writes to the old master stopped", "master", g.master, "addr", addr, "closed_connections", n)
}

// unfence ends the fence.
func (g *sentinelGuard) unfence(why string) {
	g.mu.Lock()
	was := g.fenced
	g.fenced = ""
	g.mu.Unlock()
	if was != "" {
		g.log.Load().Info("sentinel failover over: fence lifted", "master", g.master, "old", was, "event", why)
	}
}

// watch subscribes to every configured Sentinel's failover events until Close.
func (g *sentinelGuard) watch() {
	ctx := g.ctx
	for _, addr := range g.sentinels {
		o := *g.sopts
		o.Addr = addr
		c := redis.NewSentinelClient(&o)
		ps := c.PSubscribe(ctx, "+selected-slave", "+switch-master", "+failover-end", "-failover-abort-*")
		g.done.Add(1)
		go func() {
			defer g.done.Done()
			defer c.Close()
			defer ps.Close()
			ch := ps.Channel()
			for {
				select {
				case <-ctx.Done():
					return
				case m, ok := <-ch:
					if !ok {
						return
					}
					g.event(m.Channel, m.Payload)
				}
			}
		}()
	}
}

// event handles one Sentinel event. +selected-slave: "slave <ip:port> <ip> <port> @ <master> <ip>
// <port>"; +switch-master: "<master> <old ip> <old port> <new ip> <new port>"; +failover-end and
// -failover-abort-*: "master <master> <ip> <port>".
func (g *sentinelGuard) event(channel, payload string) {
	f := strings.Fields(payload)
	switch {
	case channel == "+selected-slave":
		if len(f) == 8 && f[4] == "@" && f[5] == g.master {
			g.fence(net.JoinHostPort(f[6], f[7]))
		}
	case channel == "+switch-master":
		if len(f) == 5 && f[0] == g.master {
			g.closeAddr(net.JoinHostPort(f[1], f[2])) // go-redis does too, for its pools
			g.unfence(channel)
		}
	default: // +failover-end, -failover-abort-*
		if len(f) >= 2 && f[0] == "master" && f[1] == g.master {
			g.unfence(channel)
		}
	}
}

// readonlyReply handles a READONLY reply: a connection reached a replica (a demoted master qgate still
// holds). Every connection to a data node other than the master Sentinel reports now is closed (the
// Sentinels' own connections stay), one check at a time.
func (g *sentinelGuard) readonlyReply() {
	if !g.readonly.CompareAndSwap(false, true) {
		return
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.done.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.done.Done()
		defer g.readonly.Store(false)
		ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
		defer cancel()
		for _, addr := range g.sentinels {
			o := *g.sopts
			o.Addr = addr
			c := redis.NewSentinelClient(&o)
			m, err := c.GetMasterAddrByName(ctx, g.master).Result()
			var others []map[string]string
			if err == nil {
				others, err = c.Sentinels(ctx, g.master).Result()
			}
			_ = c.Close()
			if err != nil || len(m) != 2 {
				continue
			}
			keep := map[string]bool{net.JoinHostPort(m[0], m[1]): true}
			for _, s := range g.sentinels {
				keep[s] = true
			}
			for _, s := range others {
				keep[net.JoinHostPort(s["ip"], s["port"])] = true
			}
			g.mu.Lock()
			var addrs []string
			for a := range g.conns {
				if !keep[a] {
					addrs = append(addrs, a)
				}
			}
			g.mu.Unlock()
			n := 0
			for _, a := range addrs {
				n += g.closeAddr(a)
			}
			g.log.Load().Warn("READONLY from the backend: connections to nodes other than the master closed", "master", g.master, "closed_connections", n)
			return
		}
	}()
}

// open reports the guard's open connections to addr.
func (g *sentinelGuard) open(addr string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns[addr])
}

// Close stops the event subscriptions and the READONLY check.
func (g *sentinelGuard) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.stop()
	g.done.Wait()
}

// readonlyHook is the redis.Hook that reports READONLY replies to the guard.
type readonlyHook struct{ g *sentinelGuard }

func isReadonly(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "READONLY ")
}

func (h readonlyHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h readonlyHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if isReadonly(cmd.Err()) {
			h.g.readonlyReply()
		}
		return err
	}
}

func (h readonlyHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if isReadonly(cmd.Err()) {
				h.g.readonlyReply()
				break
			}
		}
		return err
	}
}
