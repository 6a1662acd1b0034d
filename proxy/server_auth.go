package proxy

import (
	"fmt"
	"slices"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
)

// Users implements commands.Server.
func (s *Server) Users() *auth.Store { return s.auth.Store() }

// Login implements commands.Server. A failure is logged with the user name (only when such a user
// exists: a password typed into the user field must not reach the log) and the client address,
// never with the password.
func (s *Server) Login(cc commands.Conn, user, password []byte) *auth.User {
	c := cc.(*conn)
	name := string(user)
	u, res := s.auth.Login(c.ctx, name, string(password), c.sess.Addr)
	switch res {
	case auth.OK:
		c.setAuthUser(u.Name)
		s.log.Debug("authenticated", "client", c.sess.ID, "user", u.Name, "addr", c.sess.Addr)
		return u
	case auth.Failed:
		logged := "(unknown user)"
		if s.auth.Store().Lookup(name) != nil {
			logged = name
		}
		s.log.Warn("authentication failed", "user", logged, "addr", c.sess.Addr, "client", c.sess.ID)
	}
	return nil
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
	if c.subs.Load() > 0 {
		if ou := old.Lookup(name); ou == nil || !slices.Equal(ou.Globs(auth.RightSubscribe), u.Globs(auth.RightSubscribe)) {
			return "subscribe rights changed"
		}
	}
	return ""
}
