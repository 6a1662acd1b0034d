// Package commandstest runs qgate's command handlers without sockets: a fake commands.Conn and
// commands.Server backed by a real queue.Engine on miniredis (the embedded in-memory Redis). A test
// sends commands with Conn.Do (one batch) or Conn.Batch (a pipelined batch) and gets the exact RESP
// bytes qgate would write, in RESP2 or RESP3, with the batch's queued engine operations run and their
// pops settled as the real connection (proxy/conn.go) does at the end of a batch.
//
//	s := commandstest.NewServer(t, commandstest.Options{})
//	c := s.Conn(t)
//	commandstest.Expect(t, commandstest.Send(t, c, "RPUSH", "q", "a"), ":1\r\n")
package commandstest

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/qgate/qgate/commands"
	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/queue"
	"github.com/qgate/qgate/proxy/rdb"
	"github.com/qgate/qgate/proxy/resp"
)

// Options configure a Server.
type Options struct {
	Queues, Channels []policy.Rule     // the rules (nil: the built-in defaults only)
	SchemaDir        string            // where relative schema paths of the rules are resolved
	Users            []auth.UserConfig // nil: qgate is open (no authentication); see Hash
	MaxBulk          int64             // the backend's proto-max-bulk-len (0: 512 MB)
}

// Server is a commands.Server over a queue.Engine on miniredis.
type Server struct {
	MR     *miniredis.Miniredis
	Client *redis.Client // a client of MR, for setting up or inspecting keys behind qgate's back

	engine   *queue.Engine
	policies *policy.Set
	authn    *auth.Authenticator
	started  time.Time
	nextID   atomic.Int64

	deniedQueue, deniedChannel atomic.Int64

	stats   *commands.CommandStats
	connsMu sync.Mutex
	conns   map[int64]*Conn // open connections (CLIENT LIST, CLIENT KILL)
}

var _ commands.Server = (*Server)(nil)

// NewServer starts miniredis and an engine on it; both stop when the test ends.
func NewServer(t testing.TB, o Options) *Server {
	t.Helper()
	mr := miniredis.RunT(t)
	// One dial attempt: a stopped backend fails at once. miniredis does not understand script flags.
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialerRetries: 1})
	rdb.UsePlainScripts(client)
	set, err := policy.NewSet(o.Queues, o.Channels, o.SchemaDir)
	if err != nil {
		t.Fatal(err)
	}
	var store *auth.Store
	if o.Users != nil {
		if store, err = auth.NewStore(o.Users); err != nil {
			t.Fatal(err)
		}
	}
	authn := auth.NewAuthenticator(store)
	authn.BaseDelay, authn.MaxDelay = 0, 0 // failed logins answer at once in tests
	maxBulk := o.MaxBulk
	if maxBulk == 0 {
		maxBulk = 512 << 20
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := queue.New(queue.Options{Ctx: ctx, Client: client,
		Policies: func() *policy.Set { return set }, Log: slog.New(slog.DiscardHandler),
		Instance: "test", InstanceTTL: 10 * time.Second, MaxBulk: maxBulk})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.ClosePubSub()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		e.Stop(sctx, time.Now().Add(time.Second))
		cancel()
		_ = client.Close()
		rdb.ForgetClient(client)
	})
	return &Server{MR: mr, Client: client, engine: e, policies: set, authn: authn, started: time.Now(),
		stats: commands.NewCommandStats(), conns: map[int64]*Conn{}}
}

// Queues implements commands.Server.
func (s *Server) Queues() *queue.Engine { return s.engine }

// Policies implements commands.Server.
func (s *Server) Policies() *policy.Set { return s.policies }

// BackendInfo implements commands.Server.
func (s *Server) BackendInfo() (kind, addr string) { return "standalone", s.MR.Addr() }

// Users implements commands.Server.
func (s *Server) Users() *auth.Store { return s.authn.Store() }

// NoteDenied implements commands.Server.
func (s *Server) NoteDenied(channel bool) {
	if channel {
		s.deniedChannel.Add(1)
	} else {
		s.deniedQueue.Add(1)
	}
}

// Denied returns the NOPERM replies counted so far on queues and on channels or patterns.
func (s *Server) Denied() (queues, channels int64) {
	return s.deniedQueue.Load(), s.deniedChannel.Load()
}

// Clients implements commands.Server from the open connections' sessions (the fake runs commands on
// the test's goroutine, so reading them is safe as long as the test does not run connections at once).
func (s *Server) Clients() []commands.ClientInfo {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	out := make([]commands.ClientInfo, 0, len(s.conns))
	for _, c := range s.conns {
		ss := &c.sess
		out = append(out, commands.ClientInfo{ID: ss.ID, Addr: ss.Addr, LocalAddr: ss.LocalAddr, Name: ss.Name, User: ss.User,
			LibName: ss.LibName, LibVer: ss.LibVer, LastCmd: ss.LastCmd, Created: ss.Created, LastActive: c.lastActive,
			Channels: len(ss.Channels), Patterns: len(ss.Patterns), ShardChannels: len(ss.ShardChannels), Proto: ss.Proto})
	}
	return out
}

// Unblock implements commands.Server: the fake runs one command at a time on the test's goroutine,
// so no connection is ever blocked while another runs CLIENT UNBLOCK.
func (s *Server) Unblock(int64, bool, func(string) bool) bool { return false }

// Kill implements commands.Server: the connections are closed as by their client (Conn.Close).
func (s *Server) Kill(ids []int64) int {
	var kill []*Conn
	s.connsMu.Lock()
	for _, id := range ids {
		if c := s.conns[id]; c != nil {
			kill = append(kill, c)
		}
	}
	s.connsMu.Unlock()
	for _, c := range kill {
		c.Close()
	}
	return len(kill)
}

// CommandStats implements commands.Server.
func (s *Server) CommandStats() *commands.CommandStats { return s.stats }

// Stats implements commands.Server: the engine's counters and fixed values for the rest.
func (s *Server) Stats() commands.Stats {
	es := s.engine.Stats()
	return commands.Stats{Started: s.started, Version: "test", Instance: s.engine.Instance(), TCPPort: 6379,
		MaxClients: 10000, BlockedClients: es.Blocked, BackendWaitConns: int(es.Wait.PubSubConns), Wait: es.Wait, Users: s.Users().Len(),
		ReturnedItems: es.Returned, LostItems: es.Lost, RecoveredItems: es.Recovered, RedeliveryRisk: es.RedeliveryRisk,
		AuthFailures: s.authn.Failures(), BcryptChecks: s.authn.BcryptVerifications(),
		DeniedQueue: s.deniedQueue.Load(), DeniedChannel: s.deniedChannel.Load(),
		Leased: es.Leases.Leased, Acked: es.Leases.Acked, Retried: es.Leases.Retried, Dead: es.Leases.Dead, Redriven: es.Leases.Redriven}
}

// Conn returns a new RESP2 client connection; it is closed when the test ends.
func (s *Server) Conn(t testing.TB) *Conn {
	id := s.nextID.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{srv: s, ctx: ctx, cancel: cancel, pushed: make(chan struct{}, 1), proto: 2}
	c.sess = commands.Session{ID: id, Addr: "127.0.0.1:" + strconv.FormatInt(40000+id, 10), LocalAddr: "127.0.0.1:6379",
		Created: time.Now(), Proto: 2, Consumer: queue.Consumer{LeaseOwner: s.engine.Instance() + ":" + strconv.FormatInt(id, 10)}}
	c.w.Proto = 2
	c.lastActive = c.sess.Created
	s.connsMu.Lock()
	s.conns[id] = c
	s.connsMu.Unlock()
	t.Cleanup(c.Close)
	return c
}

// Conn3 returns a new connection switched to RESP3 (as after HELLO 3, without its reply).
func (s *Server) Conn3(t testing.TB) *Conn {
	c := s.Conn(t)
	c.sess.Proto, c.w.Proto, c.proto = 3, 3, 3
	return c
}

// Conn is a fake commands.Conn (and queue.Subscriber): commands run on the caller's goroutine, their
// replies go to a buffer that Do and Batch return at the end of the batch.
type Conn struct {
	srv    *Server
	sess   commands.Session
	ctx    context.Context
	cancel context.CancelFunc

	w       resp.Writer
	pending []pendingOp
	popped  []*queue.Pop
	out     []byte // the batch's replies already written (before a blocking pop)

	// Undeliverable makes the end of each batch act as if its replies could not be written: the
	// items popped in it go back to their queues (queue.Engine.Settle with delivered false).
	Undeliverable bool

	mu         sync.Mutex
	inBatch    bool
	deferred   []byte        // pub/sub frames that arrived during the batch (Splice moves them into w)
	async      []byte        // pub/sub frames that arrived between batches
	pushed     chan struct{} // signalled when async grows
	closed     bool
	lastActive time.Time // end of its last command (CLIENT LIST idle)
	proto      int       // copies of the session's protocol and QDELIVERY mode for the hub's goroutine
	deliver    string
}

var (
	_ commands.Conn    = (*Conn)(nil)
	_ queue.Subscriber = (*Conn)(nil)
)

type pendingOp struct {
	op   queue.Queued
	done func(w *resp.Writer)
}

// Do runs one command as a batch of its own and returns the bytes written for it.
func (c *Conn) Do(args ...string) string {
	return c.Batch(args)
}

// DoBytes is Do with binary arguments.
func (c *Conn) DoBytes(args ...[]byte) string {
	c.begin()
	c.exec(args)
	return c.end()
}

// Batch runs the commands as one pipelined batch (as read from one socket read) and returns
// everything written for the batch, replies in order. Like the real connection, it stops after a
// command that asked to close (QUIT).
func (c *Conn) Batch(cmds ...[]string) string {
	c.begin()
	for _, cmd := range cmds {
		if c.sess.CloseAfter {
			break
		}
		args := make([][]byte, len(cmd))
		for i, a := range cmd {
			args[i] = []byte(a)
		}
		c.exec(args)
	}
	return c.end()
}

func (c *Conn) begin() {
	c.mu.Lock()
	c.inBatch = true
	c.mu.Unlock()
}

func (c *Conn) exec(args [][]byte) {
	start, off := time.Now(), len(c.w.B)
	spec, out := commands.Exec(c, args)
	// The reply of a queued operation is not written yet: the fake counts it as a success.
	var reply []byte
	if len(c.w.B) > off {
		reply = c.w.B[off:]
	}
	c.srv.stats.Record(spec, out, time.Since(start).Microseconds(), reply)
	c.lastActive = time.Now()
	c.w.Proto = c.sess.Proto
	c.mu.Lock()
	c.proto, c.deliver = c.sess.Proto, c.sess.Deliver
	c.mu.Unlock()
}

// end runs what is still queued, settles the batch's pops and returns its output: the replies, then
// the pub/sub frames that arrived during the batch.
func (c *Conn) end() string {
	c.flush()
	out := string(c.out)
	c.out = c.out[:0]
	return out
}

// flush ends the current batch (as proxy's endBatch): its output moves to c.out.
func (c *Conn) flush() {
	c.RunQueued()
	c.out = append(c.out, c.w.B...)
	c.w.B = c.w.B[:0]
	c.mu.Lock()
	c.out = append(c.out, c.deferred...)
	c.deferred = c.deferred[:0]
	c.inBatch = false
	c.mu.Unlock()
	if len(c.popped) > 0 {
		c.srv.engine.Settle(c.popped, !c.Undeliverable)
		clear(c.popped)
		c.popped = c.popped[:0]
	}
}

// Close ends the connection as the real one does: subscriptions dropped, leases given back.
func (c *Conn) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.srv.connsMu.Lock()
	delete(c.srv.conns, c.sess.ID)
	c.srv.connsMu.Unlock()
	c.cancel()
	commands.UnsubscribeAll(c)
	c.srv.engine.Requeue(&c.sess.Consumer)
}

// Pushed returns the pub/sub frames that arrived between batches, waiting up to timeout for at least
// one (nothing arrived: "").
func (c *Conn) Pushed(timeout time.Duration) string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.async) > 0 {
			out := string(c.async)
			c.async = c.async[:0]
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.pushed:
		case <-deadline.C:
			return ""
		}
	}
}

// Session implements commands.Conn.
func (c *Conn) Session() *commands.Session { return &c.sess }

// Reply implements commands.Conn: replies of queued operations come first.
func (c *Conn) Reply() *resp.Writer {
	c.RunQueued()
	return &c.w
}

// Queue implements commands.Conn.
func (c *Conn) Queue(op queue.Queued, done func(w *resp.Writer)) {
	if op.Sync() {
		c.RunQueued()
		done(&c.w)
		return
	}
	c.pending = append(c.pending, pendingOp{op, done})
}

// RunQueued implements commands.Conn: one engine round trip for the queued operations.
func (c *Conn) RunQueued() {
	if len(c.pending) == 0 {
		return
	}
	p := c.pending
	c.pending = nil
	ops := make([]queue.Queued, len(p))
	for i, q := range p {
		ops[i] = q.op
	}
	c.srv.engine.Run(ops)
	for _, q := range p {
		q.done(&c.w)
	}
}

// Popped implements commands.Conn.
func (c *Conn) Popped(p *queue.Pop) {
	if len(p.Items) > 0 {
		c.popped = append(c.popped, p)
	}
}

// BlockPop implements commands.Conn: the replies so far are written, then the engine pops or waits.
// Inside EXEC it does not wait (commands.NoWait).
func (c *Conn) BlockPop(keys []string, left bool, timeout time.Duration) (*queue.Pop, error) {
	if c.sess.InExec {
		return c.srv.engine.BlockPop(keys, left, timeout, commands.NoWait)
	}
	c.flush()
	defer c.begin()
	return c.srv.engine.BlockPop(keys, left, timeout, parker{c})
}

// BlockLeasePop implements commands.Conn.
func (c *Conn) BlockLeasePop(keys []string, left bool, timeout time.Duration) (*queue.Pop, error) {
	if c.sess.InExec {
		return c.srv.engine.BlockLeasePop(&c.sess.Consumer, keys, left, timeout, commands.NoWait)
	}
	c.flush()
	defer c.begin()
	return c.srv.engine.BlockLeasePop(&c.sess.Consumer, keys, left, timeout, parker{c})
}

// Block implements commands.Conn.
func (c *Conn) Block(wait func(p queue.Parker)) {
	if c.sess.InExec {
		wait(commands.NoWait)
		return
	}
	c.flush()
	defer c.begin()
	wait(parker{c})
}

// Unblocked implements commands.Conn: the fake's waits are never ended by CLIENT UNBLOCK.
func (c *Conn) Unblocked() bool { return false }

// parker is the connection's queue.Parker: it waits for the waiter, the deadline or the close.
type parker struct{ c *Conn }

func (p parker) Park(w *queue.Waiter, deadline time.Time) bool {
	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-w.Ready():
		return true
	case <-timer:
		return w.Done()
	case <-p.c.ctx.Done():
		return false
	}
}

func (p parker) Wake() {}

func (p parker) Gone() bool { return p.c.ctx.Err() != nil }

// Subscribe implements commands.Conn.
func (c *Conn) Subscribe(pattern bool, name string) error {
	return c.srv.engine.Subscribe(c, pattern, name)
}

// Unsubscribe implements commands.Conn.
func (c *Conn) Unsubscribe(pattern bool, name string) { c.srv.engine.Unsubscribe(c, pattern, name) }

// SSubscribe implements commands.Conn.
func (c *Conn) SSubscribe(channel string) error { return c.srv.engine.SSubscribe(c, channel) }

// SUnsubscribe implements commands.Conn.
func (c *Conn) SUnsubscribe(channel string) { c.srv.engine.SUnsubscribe(c, channel) }

// AwaitOwnShardMessages implements commands.Conn.
func (c *Conn) AwaitOwnShardMessages(channel string) { c.srv.engine.SyncShardMessages(c, channel) }

// AwaitOwnMessages implements commands.Conn.
func (c *Conn) AwaitOwnMessages() { c.srv.engine.SyncMessages(c) }

// Login implements commands.Conn.
func (c *Conn) Login(user, password []byte) (*auth.User, auth.Result) {
	return c.srv.authn.Login(c.ctx, string(user), string(password), c.sess.Addr)
}

// Context implements commands.Conn.
func (c *Conn) Context() context.Context { return c.ctx }

// Server implements commands.Conn.
func (c *Conn) Server() commands.Server { return c.srv }

// Push implements queue.Subscriber.
func (c *Conn) Push(frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.inBatch {
		c.deferred = append(c.deferred, frame...)
		return
	}
	c.async = append(c.async, frame...)
	select {
	case c.pushed <- struct{}{}:
	default:
	}
}

// Proto implements queue.Subscriber. The hub reads it on its own goroutine while the test's goroutine
// may change the session; like the real connection, this reads a copy taken under the lock.
func (c *Conn) Proto() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proto
}

// DeliverMode implements queue.Subscriber.
func (c *Conn) DeliverMode() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deliver
}

// Live implements queue.Subscriber.
func (c *Conn) Live() bool { return c.ctx.Err() == nil }

// Splice implements queue.Subscriber: frames that arrived during the batch go into the replies here.
func (c *Conn) Splice() {
	c.mu.Lock()
	c.w.B = append(c.w.B, c.deferred...)
	c.deferred = c.deferred[:0]
	c.mu.Unlock()
}

// Hash returns a bcrypt hash of password at the lowest cost (fast), for Options.Users.
func Hash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// Send runs one command on c as a batch of its own and returns the bytes written.
func Send(t testing.TB, c *Conn, args ...string) string {
	t.Helper()
	return c.Do(args...)
}

// Expect fails the test unless got is want, showing both quoted.
func Expect(t testing.TB, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("reply\n got %q\nwant %q", got, want)
	}
}

// Bulk encodes s as a RESP bulk string.
func Bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// Err encodes msg as a RESP error.
func Err(msg string) string { return "-" + msg + "\r\n" }
