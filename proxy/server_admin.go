package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/admin"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/queue"
)

// The HTTP listener's side of the server (proxy/admin; README "Operations"): it is started by
// Listen when cfg.HTTP is set and stopped by Shutdown, and reads the server through admin.Source.

// startHTTP binds and serves the HTTP listener (no-op without cfg.HTTP).
func (s *Server) startHTTP() error {
	if s.cfg.HTTP == "" {
		return nil
	}
	s.engine.SetMetricsMaxQueues(s.cfg.metricsMaxQueues())
	m := admin.NewMetrics()
	a := admin.New(admin.Options{Source: adminSource{s}, Log: s.log.With("component", "http"),
		TLS: func() *tls.Config { return s.tlsConf.Load() }, AuthMode: s.cfg.HTTPAuth,
		MaxQueues: s.cfg.metricsMaxQueues(), SampleInterval: s.cfg.metricsSampleInterval(), Metrics: m})
	if err := a.Listen(s.cfg.HTTP); err != nil {
		return fmt.Errorf("listen http %s: %w", s.cfg.HTTP, err)
	}
	s.cmds.useMetrics(m.Commands)
	s.admin = a
	a.Serve()
	s.log.Info("http listening", "addr", a.Addr().String(), "tls", s.tlsConf.Load() != nil, "auth", s.cfg.HTTPAuth)
	return nil
}

// stopHTTP stops the HTTP listener by deadline (requests in progress are cut then).
func (s *Server) stopHTTP(deadline time.Time) {
	if s.admin == nil {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	s.admin.Shutdown(ctx)
}

// HTTPAddr is the HTTP listener's bound address (nil when off).
func (s *Server) HTTPAddr() net.Addr {
	if s.admin == nil {
		return nil
	}
	return s.admin.Addr()
}

// adminSource is the server as admin.Source sees it.
type adminSource struct{ s *Server }

func (a adminSource) Queues() *queue.Engine { return a.s.engine }
func (a adminSource) Policies() *policy.Set { return a.s.Policies() }
func (a adminSource) Users() *auth.Store    { return a.s.auth.Store() }
func (a adminSource) Stats() commands.Stats { return a.s.Stats() }
func (a adminSource) ShuttingDown() bool    { return a.s.closing.Load() }

// Login checks HTTP Basic credentials with AUTH's authenticator (its cache, limits and delays).
func (a adminSource) Login(ctx context.Context, user, password, addr string) (*auth.User, auth.Result) {
	u, res := a.s.auth.Login(ctx, user, password, addr)
	if res == auth.Failed {
		name := "(unknown user)"
		if a.s.auth.Store().Lookup(user) != nil {
			name = user
		}
		a.s.log.Warn("http authentication failed", "user", name, "addr", addr)
	}
	return u, res
}

// Clients lists the connections from the copies of their state each keeps for other goroutines.
func (a adminSource) Clients() []admin.Client {
	s := a.s
	now := time.Now()
	s.mu.Lock()
	out := make([]admin.Client, 0, len(s.conns))
	for c := range s.conns {
		cl := admin.Client{ID: c.id, Addr: c.sess.Addr, User: c.authUserName(), Protocol: int(c.proto.Load()),
			Blocked: c.obs.blocked.Load(), Leases: int(c.obs.leases.Load()), Subscriptions: int(c.subs.Load()),
			AgeSeconds: now.Sub(c.sess.Created).Seconds()}
		if m := c.obs.meta.Load(); m != nil {
			cl.Name = m.name
		}
		out = append(out, cl)
	}
	s.mu.Unlock()
	return out
}

// Clients implements commands.Server (CLIENT LIST, CLIENT KILL) from the same copies.
func (s *Server) Clients() []commands.ClientInfo {
	s.mu.Lock()
	out := make([]commands.ClientInfo, 0, len(s.conns))
	for c := range s.conns {
		ci := commands.ClientInfo{ID: c.id, Addr: c.sess.Addr, LocalAddr: c.sess.LocalAddr, Created: c.sess.Created,
			LastActive: time.Unix(0, c.obs.lastActive.Load()), Blocked: c.obs.blocked.Load(), Proto: int(c.proto.Load())}
		psubs := int(c.obs.psubs.Load())
		ci.Channels, ci.Patterns, ci.ShardChannels = int(c.subs.Load())-psubs, psubs, int(c.ssubs.Load())
		if m := c.obs.meta.Load(); m != nil {
			ci.Name, ci.User, ci.LibName, ci.LibVer = m.name, m.user, m.libName, m.libVer
		}
		if spec := c.obs.lastCmd.Load(); spec != nil {
			ci.LastCmd = spec.Name
		}
		out = append(out, ci)
	}
	s.mu.Unlock()
	return out
}

// Kill implements commands.Server: each connection is closed at its socket, and its goroutine
// cleans up as after a client disconnect (conn.close: leases requeued, popped items given back).
func (s *Server) Kill(ids []int64) int {
	want := make(map[int64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	n := 0
	s.mu.Lock()
	for c := range s.conns {
		if want[c.id] && c.killed.CompareAndSwap(false, true) {
			c.kill()
			n++
		}
	}
	s.mu.Unlock()
	return n
}

// Unblock implements commands.Server (CLIENT UNBLOCK): it marks the blocked connection and
// interrupts its Park, which then ends the wait as on timeout; the engine's give-back path for a wait
// that ends while a take is in flight (queue.Engine.park) keeps every item delivered or in its list.
func (s *Server) Unblock(id int64, asError bool, may func(user string) bool) bool {
	mode := int32(unblockTimeout)
	if asError {
		mode = unblockError
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.id != id {
			continue
		}
		if !c.obs.blocked.Load() || !may(c.authUserName()) || !c.unblock.CompareAndSwap(0, mode) {
			return false
		}
		c.Wake()
		select {
		case c.unblockCh <- struct{}{}:
		default:
		}
		return true
	}
	return false
}

// CommandStats implements commands.Server.
func (s *Server) CommandStats() *commands.CommandStats { return s.cmds.stats }

// connObs is the connection's state for other goroutines (HTTP API, CLIENT LIST), published by
// endCmd, and its command measures.
type connObs struct {
	meta       atomic.Pointer[clientMeta]    // name, user, library
	lastCmd    atomic.Pointer[commands.Spec] // the last command run (CLIENT LIST cmd=)
	lastActive atomic.Int64                  // end of the last command, Unix ns (CLIENT LIST idle=)
	psubs      atomic.Int32                  // patterns subscribed (conn.subs counts channels too)
	leases     atomic.Int32                  // leases held
	blocked    atomic.Bool                   // in a blocked pop
	last       clientMeta                    // the value last stored in meta (connection goroutine only)
	blockedFor time.Duration                 // time the current command waited in a blocked pop
	blockStart time.Time
}

// clientMeta is the session state that changes rarely.
type clientMeta struct{ name, user, libName, libVer string }

// cmdMark is a command being measured (INFO commandstats, qgate_commands_total and, while the HTTP
// listener runs, qgate_command_duration_seconds).
type cmdMark struct {
	spec    *commands.Spec // nil: an unknown command
	outcome commands.Outcome
	start   time.Time
	blocked time.Duration // its wait in a blocked pop, which commandstats leaves out as Redis does
	out     int           // where its reply starts in c.w.B (conn.cmdOut; -1: unknown, taken for ok)
	queued  int           // len(c.pending) when it started
}

// beginCmd starts measuring a command.
func (c *conn) beginCmd() cmdMark {
	c.obs.blockedFor = 0
	c.cmdOut = len(c.w.B)
	return cmdMark{start: time.Now(), queued: len(c.pending)}
}

// endCmd records a command once Exec returned: at once if it wrote its reply, else when its queued
// operation's reply is written (runPending). It also refreshes the copies of session state.
func (c *conn) endCmd(m cmdMark, spec *commands.Spec, out commands.Outcome) {
	m.spec, m.outcome, m.blocked, m.out = spec, out, c.obs.blockedFor, c.cmdOut
	now := time.Now()
	if len(c.pending) > m.queued {
		m.out = -1
		c.pending[len(c.pending)-1].m = m
	} else {
		c.record(m, now)
	}
	if spec != nil && out == commands.Ran && c.obs.lastCmd.Load() != spec {
		c.obs.lastCmd.Store(spec)
	}
	c.obs.lastActive.Store(now.UnixNano())
	s := &c.sess
	if s.Name != c.obs.last.name || s.User != c.obs.last.user || s.LibName != c.obs.last.libName || s.LibVer != c.obs.last.libVer {
		c.obs.last = clientMeta{name: s.Name, user: s.User, libName: s.LibName, libVer: s.LibVer}
		m := c.obs.last
		c.obs.meta.Store(&m)
	}
	if p := int32(len(s.Patterns)); p != c.obs.psubs.Load() {
		c.obs.psubs.Store(p)
	}
	n := 0
	for _, h := range s.Held {
		n += len(h)
	}
	if int32(n) != c.obs.leases.Load() {
		c.obs.leases.Store(int32(n))
	}
}

// doneQueued writes a queued operation's reply and records its command.
func (c *conn) doneQueued(q *queued) {
	if q.mute {
		m := c.beginMute()
		defer c.endMute(m, true)
	}
	if q.m.start.IsZero() { // not its command's last operation: the last one records the command
		q.done(&c.w)
		return
	}
	q.m.out = len(c.w.B)
	q.done(&c.w)
	c.record(q.m, time.Now())
}

// maxErrorPrefix is how much of an error reply CommandStats needs to read its code.
const maxErrorPrefix = 64

// record counts a command whose reply was written to c.w.B from m.out on.
func (c *conn) record(m cmdMark, now time.Time) {
	var reply []byte
	if b := c.w.B; m.out >= 0 && len(b) > m.out {
		reply = b[m.out:min(len(b), m.out+maxErrorPrefix)]
	}
	d := now.Sub(m.start)
	cc := &c.srv.cmds
	cc.stats.Record(m.spec, m.outcome, (d - m.blocked).Microseconds(), reply)
	if cc.metrics == nil {
		return
	}
	series := cc.unknown
	if m.spec != nil {
		series = cc.series[m.spec.Index()]
	}
	series.Observe(d)
	if len(reply) > 0 && reply[0] == '-' && bytes.HasPrefix(reply[1:], backendUnavailable) {
		cc.metrics.NoteBackendError()
	}
}

// cmdCounters are the server's command counters (INFO commandstats, the source of
// qgate_commands_total) and, while the HTTP listener runs, the latency series of each command,
// resolved once by spec index.
type cmdCounters struct {
	stats   *commands.CommandStats
	metrics *admin.CommandMetrics  // nil: no HTTP listener
	series  []*admin.CommandSeries // by commands.Spec.Index; subcommands share their container's
	unknown *admin.CommandSeries
}

// useMetrics resolves every command's series (before the connections run: startHTTP).
func (cc *cmdCounters) useMetrics(m *admin.CommandMetrics) {
	specs := commands.Specs()
	cc.series = make([]*admin.CommandSeries, len(specs))
	for i, sp := range specs {
		name, _, _ := strings.Cut(sp.Name, "|")
		cc.series[i] = m.Series(name)
	}
	cc.unknown = m.Series("unknown")
	m.Totals = cc.totals
	cc.metrics = m
}

// totals converts the command counters for qgate_commands_total.
func (cc *cmdCounters) totals() []admin.CommandTotal {
	ts := cc.stats.Totals()
	out := make([]admin.CommandTotal, len(ts))
	for i, t := range ts {
		out[i] = admin.CommandTotal{Command: t.Command, OK: t.OK, Error: t.Error}
	}
	return out
}

// backendUnavailable starts the error replies of backend transport failures (commands.backendError).
var backendUnavailable = []byte("ERR backend unavailable")
