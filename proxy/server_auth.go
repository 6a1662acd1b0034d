package proxy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
)

// Users implements commands.Server.
func (s *Server) Users() *auth.Store { return s.auth.Store() }

// Login implements commands.Conn (through conn.Login). A failure is logged with the user name (only when such a user
// exists: a password typed into the user field must not reach the log) and the client address,
// never with the password. The login's waits (for a bcrypt slot, the delay of a failure) end at
// shutdown and when the client disconnects.
func (s *Server) login(c *conn, user, password []byte) (*auth.User, auth.Result) {
	name := string(user)
	ctx := c.loginContext()
	defer ctx.end()
	u, res := s.auth.Login(ctx, name, string(password), c.sess.Addr)
	logged := func() string {
		if s.auth.Store().Lookup(name) != nil {
			return name
		}
		return "(unknown user)"
	}
	switch res {
	case auth.OK:
		c.setAuthUser(u.Name)
		s.log.Debug("authenticated", "client", c.sess.ID, "user", u.Name, "addr", c.sess.Addr)
	case auth.Failed:
		s.log.Warn("authentication failed", "user", logged(), "addr", c.sess.Addr, "client", c.sess.ID)
	case auth.Busy:
		s.log.Warn("login refused unchecked: too many logins waiting for bcrypt", "user", logged(), "addr", c.sess.Addr, "client", c.sess.ID)
	case auth.Cancelled:
		s.log.Debug("login interrupted", "addr", c.sess.Addr, "client", c.sess.ID, "err", context.Cause(ctx))
	}
	return u, res
}

// Login implements commands.Conn (Server.login).
func (c *conn) Login(user, password []byte) (*auth.User, auth.Result) {
	return c.srv.login(c, user, password)
}

// loginCtx is the context of one login: it ends with the connection's (at shutdown) and, once
// something waits on it, when the client disconnects. The socket is watched only from the first
// call of Done, so a login answered from the cache of verified credentials starts no goroutine.
type loginCtx struct {
	context.Context
	cancel  context.CancelCauseFunc
	c       *conn
	once    sync.Once
	watched chan struct{} // closed when the watcher ends; nil if none started
}

func (c *conn) loginContext() *loginCtx {
	ctx, cancel := context.WithCancelCause(c.ctx)
	return &loginCtx{Context: ctx, cancel: cancel, c: c}
}

// Done starts the watch of the socket on its first call. The connection's goroutine is busy with the
// login, so the watcher is the only reader; it peeks and consumes nothing.
func (l *loginCtx) Done() <-chan struct{} {
	l.once.Do(func() {
		l.watched = make(chan struct{})
		go func() {
			defer close(l.watched)
			if waitPeerGone(l.c.nc) {
				l.cancel(errClientGone)
			}
		}()
	})
	return l.Context.Done()
}

// end stops the watcher (a read deadline in the past wakes it) and restores the deadline, unless
// shutdown set its own meanwhile.
func (l *loginCtx) end() {
	l.once.Do(func() {}) // no watcher starts after this
	if l.watched != nil {
		_ = l.c.nc.SetReadDeadline(aLongTimeAgo)
		<-l.watched
		if !l.c.srv.closing.Load() {
			_ = l.c.nc.SetReadDeadline(time.Time{})
		}
	}
	l.cancel(nil)
}

// NoteDenied implements commands.Server.
func (s *Server) NoteDenied(channel bool) {
	if channel {
		s.stats.deniedChannel.Add(1)
	} else {
		s.stats.deniedQueue.Add(1)
	}
}

// BcryptVerifications is how many bcrypt comparisons this server ran (the rest of the logins were
// answered from the cache of verified credentials).
func (s *Server) BcryptVerifications() int64 { return s.auth.BcryptVerifications() }

// Reload applies the users, rights, queue and channel rules and TLS certificates of cfg without
// dropping connections (SIGHUP). Connections whose user was removed or disabled are closed, and so
// are subscribed connections whose user's subscribe rights changed (as Redis does on an ACL change),
// and connections accepted while qgate was open when users are now required. Other settings
// (listen address, backend, limits) need a restart; a change to them is logged and ignored.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	policies, err := policy.NewSet(cfg.Queues, cfg.Channels, cfg.Dir)
	if err != nil {
		return fmt.Errorf("load policies: %w", err)
	}
	users, err := auth.NewStore(cfg.Users)
	if err != nil {
		return fmt.Errorf("load users: %w", err)
	}
	if cfg.TLS.Enabled() != (s.tlsConf.Load() != nil) {
		s.log.Warn("reload: turning TLS on or off needs a restart; keeping the listener as it is")
	} else if cfg.TLS.Enabled() {
		tc, err := cfg.TLS.serverTLS(cfg.Dir)
		if err != nil {
			return err
		}
		s.tlsConf.Store(tc)
	}
	if cfg.Listen != s.cfg.Listen || cfg.Backend != s.cfg.Backend || cfg.BackendTLS != s.cfg.BackendTLS {
		s.log.Warn("reload: listen, backend and backend_tls changes need a restart; ignored")
	}
	old := s.auth.Store()
	s.policies.Store(policies)
	s.auth.SetStore(users)

	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	closed := 0
	for _, c := range conns {
		if reason := reloadVerdict(c, old, users); reason != "" {
			s.log.Info("closing connection after reload", "client", c.id, "user", c.authUserName(), "reason", reason)
			c.kill()
			closed++
		}
	}
	s.log.Info("configuration reloaded", "users", users.Len(), "queue_rules", len(cfg.Queues),
		"channel_rules", len(cfg.Channels), "closed_connections", closed)
	return nil
}

// reloadVerdict says why c must be closed under the new users, or "".
func reloadVerdict(c *conn, old, users *auth.Store) string {
	if !users.Required() {
		return ""
	}
	name := c.authUserName()
	if name == "" {
		if c.openMode.Load() {
			return "authentication is now required"
		}
		return "" // not logged in yet: it may still AUTH
	}
	u := users.Lookup(name)
	switch {
	case u == nil:
		return "user removed"
	case !u.Enabled:
		return "user disabled"
	}
	if c.subscribed() {
		if ou := old.Lookup(name); ou == nil || !slices.Equal(ou.Globs(auth.RightSubscribe), u.Globs(auth.RightSubscribe)) {
			return "subscribe rights changed"
		}
	}
	return ""
}
