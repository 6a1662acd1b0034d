package proxy

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/admin"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/queue"
)

// Version is qgate's version, reported by INFO and `qgate version`.
var Version = "0.1.0-dev"

// Server is a qgate proxy: a RESP listener in front of a backend Redis.
type Server struct {
	cfg     Config
	log     *slog.Logger
	backend *Backend
	// mux merges the commands of all clients into pipelines on a few backend connections.
	mux      *queue.Mux
	engine   *queue.Engine
	maxBulk  int64                      // the backend's proto-max-bulk-len
	policies atomic.Pointer[policy.Set] // swapped by Reload
	auth     *auth.Authenticator        // users swapped by Reload
	tlsConf  atomic.Pointer[tls.Config] // the listener's TLS settings (nil: plain TCP); swapped by Reload
	ln       net.Listener
	started  time.Time

	// The HTTP listener (nil: off); the command counters and metrics, recorded by the connections (server_admin.go).
	admin *admin.Server
	cmds  cmdCounters

	// ctx is cancelled when shutdown begins; bgctx only when the backend closes, so items taken from
	// Redis can still be handed back while draining.
	ctx      context.Context
	cancel   context.CancelFunc
	bgctx    context.Context
	bgcancel context.CancelFunc
	closing  atomic.Bool
	// drainUntil is when draining connections stop waiting for their clients and close (Unix ns; set
	// before closing).
	drainUntil atomic.Int64

	instance string // random id of this process, in lease owner tokens and transit records

	mu     sync.Mutex
	conns  map[*conn]struct{}
	nextID atomic.Int64
	connWG sync.WaitGroup

	stats struct {
		commands, connections, rejected atomic.Int64
		deniedQueue, deniedChannel      atomic.Int64
	}
}

// New connects to the configured backend (or starts the embedded one) and returns a server ready to Listen.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, conns: map[*conn]struct{}{}, started: time.Now(), cmds: cmdCounters{stats: commands.NewCommandStats()}}
	policies, err := policy.NewSet(cfg.Queues, cfg.Channels, cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	s.policies.Store(policies)
	users, err := auth.NewStore(cfg.Users)
	if err != nil {
		return nil, fmt.Errorf("load users: %w", err)
	}
	s.auth = auth.NewAuthenticator(users)
	s.auth.BaseDelay, s.auth.MaxDelay = cfg.AuthFailureDelay, cfg.AuthFailureMaxDelay
	if users.Required() {
		log.Info("authentication required", "users", users.Len())
	} else {
		log.Warn("no users configured: qgate is open, any client may run every command (configure users: to require AUTH)")
	}
	if cfg.TLS.Enabled() {
		tc, err := cfg.TLS.serverTLS(cfg.Dir)
		if err != nil {
			return nil, err
		}
		s.tlsConf.Store(tc)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.bgctx, s.bgcancel = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(s.bgctx, 10*time.Second)
	defer cancel()
	b, err := openBackend(ctx, cfg.Backend, cfg.PoolSize, cfg.BackendTLS, cfg.Dir,
		timeouts{read: cfg.BackendReadTimeout, write: cfg.BackendWriteTimeout, dial: cfg.BackendDialTimeout,
			clusterRefresh: cmp.Or(cfg.ClusterRefreshInterval, DefaultClusterRefresh)})
	if err != nil {
		return nil, err
	}
	s.backend = b
	b.WatchHealth(log)
	if b.Kind == BackendEmbedded {
		log.Warn("no backend configured: using an embedded in-memory Redis; data is lost when qgate stops", "backend", b.Addr)
	} else {
		log.Info("backend connected", "kind", b.Kind, "backend", b.Addr)
	}
	if cfg.BlockingConns != 0 {
		log.Warn("blocking_conns is ignored: blocked pops no longer hold backend connections of their own (README, Blocking pops)",
			"blocking_conns", cfg.BlockingConns)
	}
	s.mux = b.Mux(queue.MuxLeaders(cfg.PoolSize))
	var id [6]byte
	_, _ = rand.Read(id[:])
	s.instance = hex.EncodeToString(id[:])
	s.maxBulk = backendMaxBulk(ctx, b)
	s.engine, err = queue.New(queue.Options{Ctx: s.bgctx, Client: b.Client, Mux: s.mux,
		Blocking: queue.BlockingOptions{PollInterval: cfg.BlockingPollInterval, SafetyInterval: cfg.BlockingSafetyInterval,
			KeyspaceEvents: cfg.KeyspaceEvents},
		Policies: s.Policies, Log: log,
		Instance: s.instance, InstanceTTL: cfg.InstanceTTL, MaxBulk: s.maxBulk})
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	return s, nil
}

// Listen binds the configured listen address; Addr is valid afterwards.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	if err := s.startHTTP(); err != nil {
		_ = ln.Close()
		return err
	}
	s.checkFileLimit()
	s.log.Info("listening", "addr", ln.Addr().String(), "max_clients", s.cfg.MaxClients, "tls", s.tlsConf.Load() != nil)
	return nil
}

// checkFileLimit warns when the process may not open enough descriptors for max_clients (Go already
// raises the soft limit to the hard limit at start-up).
func (s *Server) checkFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if need := uint64(s.cfg.MaxClients) + 64; lim.Cur < need {
		s.log.Warn("open-file limit is below max_clients; raise it (ulimit -n) or lower max_clients",
			"limit", lim.Cur, "max_clients", s.cfg.MaxClients)
	}
}

// Serve accepts clients until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	if s.ln == nil {
		return errors.New("serve: Listen was not called")
	}
	var delay time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors or a transient error: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		s.accept(nc)
	}
}

func (s *Server) accept(nc net.Conn) {
	s.stats.connections.Add(1)
	s.mu.Lock()
	if len(s.conns) >= s.cfg.MaxClients || s.closing.Load() {
		s.mu.Unlock()
		s.stats.rejected.Add(1)
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write([]byte("-ERR max number of clients reached\r\n"))
		_ = nc.Close()
		return
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	if s.tlsConf.Load() != nil {
		// The handshake runs on the connection's goroutine (conn.serve), never in the accept loop.
		nc = tls.Server(nc, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.tlsConf.Load(), nil
		}})
	}
	c := newConn(s, nc, s.nextID.Add(1))
	c.openMode.Store(!s.auth.Store().Required())
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	go c.serve()
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connWG.Done()
}

// ListenAndServe is Listen followed by Serve.
func (s *Server) ListenAndServe() error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve()
}

// Addr returns the bound listen address.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// The last deletes of delivered pops' records at a shutdown that timed out wait for their replies
// at most lastDeletesWait, and get lastDeletesFloor even past shutdown_timeout (to be written).
const (
	lastDeletesWait  = 250 * time.Millisecond
	lastDeletesFloor = 50 * time.Millisecond
)

// Shutdown drains the server (proxy/DESIGN.md "Shutdown", README "Running several instances"): it
// stops accepting and fails /readyz at once; every command already read is answered; each connection
// is closed at a clean point (nothing half read, no lease it could still ack; a pop that arrives now
// acks the previous one under ack: next-pop, takes nothing and is not answered); blocked clients are
// disconnected without a reply. Then it hands items that could not be delivered back to their lists
// and closes the backend, all within cfg.ShutdownTimeout (or ctx, if sooner). Connections still open
// then are closed (their leases requeued); when the backend does not answer in time, the pops of the
// connections still waiting for it stay in this instance's transit records in Redis, which another
// instance (or the next start) gives back once this instance's heartbeat is older than InstanceTTL.
// It returns an error only when items were lost.
func (s *Server) Shutdown(ctx context.Context) error {
	start := time.Now()
	deadline := start.Add(s.cfg.ShutdownTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// Everything below ends by hard; what is left after it is only closing sockets.
	hard := deadline.Add(-min(500*time.Millisecond, time.Until(deadline)/10))
	// Connections that still wait for their clients (leases not acked) are closed by drainUntil,
	// leaving time before hard to requeue their leases and stop the engine cleanly.
	drainUntil := hard.Add(-min(time.Second, time.Until(hard)/4))
	s.drainUntil.CompareAndSwap(0, drainUntil.UnixNano())
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	hctx, cancel := context.WithDeadline(ctx, hard)
	defer cancel()
	s.log.Info("shutting down: draining connections", "timeout", time.Until(deadline).Round(time.Millisecond).String())
	if s.ln != nil {
		_ = s.ln.Close()
	}
	s.cancel()
	// Interrupt idle and blocked reads: each connection checks whether it is at a clean point (one in
	// the middle of a batch finishes it first).
	s.mu.Lock()
	for c := range s.conns {
		_ = c.nc.SetReadDeadline(aLongTimeAgo)
	}
	s.mu.Unlock()
	drained := make(chan struct{})
	go func() { s.connWG.Wait(); close(drained) }()
	clean := true
	select {
	case <-drained:
	case <-hctx.Done():
		clean = false
	}
	if clean {
		// Listeners, reaper, the last deletes of delivered records and a sweep of this instance's
		// records (nothing is in flight any more), each bounded by hard.
		clean = s.bounded(hctx, func() { s.engine.Stop(hctx, hard) })
	}
	s.engine.ClosePubSub()
	s.stopHTTP(hard)
	stuck := 0
	if !clean {
		s.engine.Abandon()
		s.mu.Lock()
		stuck = len(s.conns)
		for c := range s.conns {
			c.kill()
		}
		s.mu.Unlock()
		// Their goroutines requeue their leases as they close: give them until the deadline.
		select {
		case <-drained:
		case <-time.After(time.Until(deadline)):
		}
		// The last deletes of delivered pops' records are written even at the deadline: an item
		// delivered to its client must not be given back (and delivered again) when Redis resumes.
		wait := max(min(time.Until(deadline), lastDeletesWait), lastDeletesFloor)
		fctx, fcancel := context.WithTimeout(context.Background(), wait)
		s.engine.Forget(fctx)
		fcancel()
	}
	s.bgcancel()
	// Closing go-redis clients waits for replies still due; never past the deadline.
	s.bounded(context.Background(), func() {
		_ = s.backend.Close()
	}, deadline)
	es := s.engine.Stats()
	lost := es.Lost
	args := []any{"returned_items", es.Returned, "lost_items", lost, "took", time.Since(start).Round(time.Millisecond).String()}
	if !clean {
		s.log.Warn("shutdown timed out waiting for the backend; undelivered items stay in this instance's transit records in Redis and are given back by another instance or the next start",
			append(args, "connections_waiting", stuck, "instance", s.instance)...)
	} else {
		s.log.Info("shutdown complete", args...)
	}
	if lost > 0 {
		return fmt.Errorf("shutdown: %d popped items could not be given back to their queues (see the LOST log lines)", lost)
	}
	return nil
}

// drainDeadline is when draining connections stop waiting for their clients.
func (s *Server) drainDeadline() time.Time {
	if ns := s.drainUntil.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Now().Add(s.cfg.ShutdownTimeout)
}

// bounded runs f and waits for it until ctx ends (or until the optional deadline); false if it did not
// finish in time (f goes on in the background).
func (s *Server) bounded(ctx context.Context, f func(), deadline ...time.Time) bool {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	var timer <-chan time.Time
	if len(deadline) > 0 {
		t := time.NewTimer(time.Until(deadline[0]))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	case <-timer:
		return false
	}
}

// backendMaxBulk reads the backend's proto-max-bulk-len, or assumes Redis's default when CONFIG is
// not allowed (managed Redis) or not known (the embedded backend).
func backendMaxBulk(ctx context.Context, b *Backend) int64 {
	const redisDefault = 512 << 20
	res, err := b.Client.ConfigGet(ctx, "proto-max-bulk-len").Result()
	if err != nil {
		return redisDefault
	}
	n, err := strconv.ParseInt(res["proto-max-bulk-len"], 10, 64)
	if err != nil || n <= 0 {
		return redisDefault
	}
	return n
}

// Queues implements commands.Server.
func (s *Server) Queues() *queue.Engine { return s.engine }

// Reap runs one reaper pass over every registered queue (queue.Engine.Reap); it returns how many
// items it moved.
func (s *Server) Reap(ctx context.Context) (int, error) { return s.engine.Reap(ctx) }

// Policies implements commands.Server.
func (s *Server) Policies() *policy.Set { return s.policies.Load() }

// BackendInfo implements commands.Server.
func (s *Server) BackendInfo() (kind, addr string) { return s.backend.Kind, s.backend.Addr }

// Stats implements commands.Server.
func (s *Server) Stats() commands.Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	ch, pat, subscribers := s.engine.PubSubCounts()
	pubsub := 0 // all of qgate's backend subscriptions share one connection
	if ch+pat > 0 {
		pubsub = 1
	}
	port := 0
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	es := s.engine.Stats()
	return commands.Stats{
		Started:            s.started,
		ConnectedClients:   n,
		BlockedClients:     es.Blocked,
		TotalConnections:   s.stats.connections.Load(),
		TotalCommands:      s.stats.commands.Load(),
		RejectedConns:      s.stats.rejected.Load(),
		ReturnedItems:      es.Returned,
		LostItems:          es.Lost,
		RecoveredItems:     es.Recovered,
		RedeliveryRisk:     es.RedeliveryRisk,
		Instance:           s.instance,
		BackendConns:       int(s.backend.Client.PoolStats().TotalConns),
		BackendWaitConns:   int(es.Wait.PubSubConns),
		Wait:               es.Wait,
		FIFODropped:        es.FIFODropped,
		FIFOUnremoved:      es.FIFOUnremoved,
		BackendPubSubConns: pubsub,
		PubSubClients:      subscribers,
		MaxClients:         s.cfg.MaxClients,
		Version:            Version,
		TCPPort:            port,
		Users:              s.auth.Store().Len(),
		AuthFailures:       s.auth.Failures(),
		DeniedQueue:        s.stats.deniedQueue.Load(),
		DeniedChannel:      s.stats.deniedChannel.Load(),
		BcryptChecks:       s.auth.BcryptVerifications(),
		Leased:             es.Leases.Leased,
		Acked:              es.Leases.Acked,
		Retried:            es.Leases.Retried,
		Dead:               es.Leases.Dead,
		Redriven:           es.Leases.Redriven,
		KnownQueues:        s.engine.RegistrySize(),
	}
}
