// Package admin is qgate's HTTP listener (README "Operations"): Prometheus metrics on /metrics,
// liveness and readiness probes on /healthz and /readyz, and the JSON API under /api/v1 for
// queues, dead letters and clients. It runs on goroutines of its own and reads the RESP side only
// through atomic counters, the engine's Go API and a Source the proxy package implements; queue
// gauges come from a sampler that reads Redis every few seconds, never from a scrape.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/queue"
)

// Source is what the HTTP listener reads from the proxy.
type Source interface {
	Queues() *queue.Engine
	Policies() *policy.Set
	Users() *auth.Store
	// Login checks credentials exactly as AUTH does (cache of verified credentials, failure delays).
	Login(ctx context.Context, user, password, addr string) (*auth.User, auth.Result)
	Stats() commands.Stats
	Clients() []Client
	// ShuttingDown reports a shutdown in progress (/readyz answers 503).
	ShuttingDown() bool
}

// Client is one connection, as GET /api/v1/clients lists it.
type Client struct {
	ID            int64   `json:"id"`
	Addr          string  `json:"addr"`
	User          string  `json:"user"`
	Name          string  `json:"name"`
	Protocol      int     `json:"protocol"`
	Blocked       bool    `json:"blocked"`
	Leases        int     `json:"leases"`
	Subscriptions int     `json:"subscriptions"`
	AgeSeconds    float64 `json:"age_seconds"`
}

// Auth modes (proxy.Config.HTTPAuth).
const (
	AuthAPI = "api"
	AuthAll = "all"
)

// Options configure a Server.
type Options struct {
	Source         Source
	Log            *slog.Logger
	TLS            func() *tls.Config // nil, or returning nil: plain HTTP
	AuthMode       string             // AuthAPI (default) or AuthAll
	MaxQueues      int                // queues with series of their own
	SampleInterval time.Duration      // queue gauges' period
	Metrics        *Metrics           // the registry (NewMetrics); the proxy shares its command metrics
}

// Server is the HTTP listener.
type Server struct {
	o       Options
	srv     *http.Server
	ln      net.Listener
	sampler *sampler
	ready   *pinger
	done    chan struct{}
	stop    sync.Once
}

// New builds the listener's handlers; Serve starts it.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	s := &Server{o: o, done: make(chan struct{})}
	s.sampler = newSampler(o.Source.Queues(), o.MaxQueues, o.SampleInterval, o.Log)
	s.ready = &pinger{e: o.Source.Queues()}
	o.Metrics.register(o.Source, s.sampler, o.MaxQueues)
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug)}
	return s
}

// Listen binds addr; Addr is valid afterwards.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if s.o.TLS != nil && s.o.TLS() != nil {
		get := s.o.TLS
		ln = tls.NewListener(ln, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return get(), nil
		}})
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve starts the sampler and serves requests on goroutines of their own.
func (s *Server) Serve() {
	go s.sampler.run(s.done)
	go func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.o.Log.Error("http listener", "err", err)
		}
	}()
}

// Shutdown stops the sampler and the listener, letting requests in progress finish until ctx ends;
// then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) {
	s.stop.Do(func() {
		close(s.done)
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		// A sample stuck on a hung backend is left behind (its context is cancelled) rather than
		// holding the shutdown past its deadline.
		select {
		case <-s.sampler.fin:
		case <-ctx.Done():
		}
	})
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	open := s.o.AuthMode != AuthAll
	mux.Handle("GET /metrics", s.anyUser(open, s.o.Metrics.handler()))
	mux.Handle("GET /healthz", s.anyUser(open, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})))
	mux.Handle("GET /readyz", s.anyUser(open, http.HandlerFunc(s.readyz)))
	s.apiRoutes(mux)
	s.dashboardRoutes(mux)
	return mux
}

// readyz answers 200 when the backend answers PING within readyTimeout and qgate is not shutting
// down, else 503 with the reason.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.o.Source.ShuttingDown() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("shutting down\n"))
		return
	}
	if err := s.ready.ping(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("backend: " + err.Error() + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// readyTimeout bounds the backend's PING of /readyz.
const readyTimeout = time.Second

// pinger runs at most one backend PING at a time: while Redis hangs, probes wait on the PING in
// progress (each for readyTimeout at most) rather than pile up connections.
type pinger struct {
	e    *queue.Engine
	mu   sync.Mutex
	cur  chan struct{} // closed when the PING in progress ends; nil: none
	last error
}

var errPingTimeout = errors.New("no reply to PING within 1s")

func (p *pinger) ping(ctx context.Context) error {
	p.mu.Lock()
	done := p.cur
	if done == nil {
		done = make(chan struct{})
		p.cur = done
		go func() {
			pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := p.e.Ping(pctx)
			cancel()
			p.mu.Lock()
			p.last, p.cur = err, nil
			p.mu.Unlock()
			close(done)
		}()
	}
	p.mu.Unlock()
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.last
	case <-t.C:
		return errPingTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}
