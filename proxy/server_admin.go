package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
	s.cmdMetrics = m.Commands
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
		if p := c.obs.name.Load(); p != nil {
			cl.Name = *p
		}
		out = append(out, cl)
	}
	s.mu.Unlock()
	return out
}

// connObs is the connection's state for the HTTP listener and its command metrics.
type connObs struct {
	name     atomic.Pointer[string] // CLIENT SETNAME
	leases   atomic.Int32           // leases held
	blocked  atomic.Bool            // in a blocked pop
	lastName string                 // the value last stored in name (connection goroutine only)

	// The series of the connection's last command, by its name as sent: pipelines repeat one
	// command, and this spares each the table lookup and the series map (connection goroutine only).
	cmdName   []byte
	cmdSeries *admin.CommandSeries
}

// cmdMark is a command being measured.
type cmdMark struct {
	series *admin.CommandSeries // nil: not measured
	start  time.Time
	out    int // len(c.w.B) when it started
	queued int // len(c.pending) when it started
}

// maxCachedCmdName bounds the name beginCmd keeps (the longest command name is far shorter).
const maxCachedCmdName = 32

// beginCmd starts measuring a command (only while the HTTP listener runs).
func (c *conn) beginCmd(name []byte) cmdMark {
	m := c.srv.cmdMetrics
	if m == nil {
		return cmdMark{}
	}
	if c.obs.cmdSeries == nil || !bytes.Equal(name, c.obs.cmdName) {
		label := "unknown"
		if spec := commands.Lookup(name); spec != nil {
			label = spec.Name
		}
		series := m.Series(label)
		if len(name) > maxCachedCmdName { // not a command name: not worth keeping
			return cmdMark{series: series, start: time.Now(), out: len(c.w.B), queued: len(c.pending)}
		}
		c.obs.cmdSeries, c.obs.cmdName = series, append(c.obs.cmdName[:0], name...)
	}
	return cmdMark{series: c.obs.cmdSeries, start: time.Now(), out: len(c.w.B), queued: len(c.pending)}
}

// endCmd records a command once Exec returned: at once if it wrote its reply, else when its queued
// operation's reply is written (runPending). It also refreshes the copies of session state.
func (c *conn) endCmd(m cmdMark) {
	if m.series != nil {
		if len(c.pending) > m.queued {
			m.out = -1
			c.pending[len(c.pending)-1].m = m
		} else {
			c.observe(m.series, m.start, m.out)
		}
	}
	if c.sess.Name != c.obs.lastName {
		name := c.sess.Name
		c.obs.lastName = name
		c.obs.name.Store(&name)
	}
	n := 0
	for _, h := range c.sess.Held {
		n += len(h)
	}
	if int32(n) != c.obs.leases.Load() {
		c.obs.leases.Store(int32(n))
	}
}

// doneQueued writes a queued operation's reply and records its command.
func (c *conn) doneQueued(q *queued) {
	if q.m.series == nil {
		q.done(&c.w)
		return
	}
	out := len(c.w.B)
	q.done(&c.w)
	c.observe(q.m.series, q.m.start, out)
}

// observe records a command whose reply was written to c.w.B from off on (-1: unknown, taken for ok).
func (c *conn) observe(s *admin.CommandSeries, start time.Time, off int) {
	b := c.w.B
	failed := off >= 0 && len(b) > off && (b[off] == '-' || b[off] == '!')
	s.Observe(time.Since(start), failed)
	if failed && bytes.HasPrefix(b[off+1:], backendUnavailable) {
		c.srv.cmdMetrics.NoteBackendError()
	}
}

// backendUnavailable starts the error replies of backend transport failures (commands.backendError).
var backendUnavailable = []byte("ERR backend unavailable")
