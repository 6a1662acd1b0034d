// Package commands is qgate's command table: for each supported command its name, arity, flags, ACL
// verb and handler. Handlers see a client through the Conn interface and never touch the network;
// anything not in the table is refused and never reaches the backend.
package commands

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/resp"
)

// Flags describe how a command may be used (the names follow Redis's COMMAND INFO flags).
type Flags uint16

const (
	// Write commands change the backend.
	Write Flags = 1 << iota
	// ReadOnly commands only read.
	ReadOnly
	// Fast commands run in O(1) or close to it.
	Fast
	// Blocking commands may wait (BLPOP, BRPOP).
	Blocking
	// PubSub commands belong to the pub/sub family.
	PubSub
	// NoAuth commands run before authentication (AUTH, HELLO, PING, QUIT, RESET).
	NoAuth
	// Loading and Stale commands are answered while the backend loads or is stale.
	Loading
	Stale
	// SubscribedOK commands may run in a RESP2 connection that is in subscribed state.
	SubscribedOK
	// DenyOOM commands may grow memory.
	DenyOOM
	// Pipelined handlers do nothing but queue backend commands (Conn.Queue) and write replies (errors
	// at once, results from the queued commands' done functions); they read no state that an earlier
	// command's done function changes. Exec runs them without first running the batch's queued
	// commands, so a pipeline of them costs one backend round trip. Every other handler runs after the
	// queued commands of the commands before it: whatever it does outside the queue (subscriptions,
	// session state, waits, its own backend calls) follows them, as in Redis.
	Pipelined
)

var flagNames = []struct {
	f    Flags
	name string
}{
	{Write, "write"}, {ReadOnly, "readonly"}, {DenyOOM, "denyoom"}, {Fast, "fast"}, {Blocking, "blocking"},
	{PubSub, "pubsub"}, {NoAuth, "no_auth"}, {Loading, "loading"}, {Stale, "stale"},
}

// Names returns the COMMAND INFO flag names.
func (f Flags) Names() []string {
	var out []string
	for _, fn := range flagNames {
		if f&fn.f != 0 {
			out = append(out, fn.name)
		}
	}
	return out
}

// Verb is the right a command needs on the queue or channel it names (README "Authentication and TLS").
type Verb uint8

const (
	VerbNone Verb = iota
	VerbPush
	VerbPop
	VerbPeek
	VerbPublish
	VerbSubscribe
	VerbAdmin
)

// Spec describes one command.
type Spec struct {
	Name     string // lower case, as in Redis's COMMAND output
	Arity    int    // Redis convention: N exactly N arguments (name included), -N at least N
	Flags    Flags
	Verb     Verb
	FirstKey int // key positions for COMMAND INFO (0 = no keys)
	LastKey  int
	KeyStep  int
	Group    string // COMMAND DOCS group
	Summary  string // COMMAND DOCS summary
	Since    string // the Redis version that introduced the command
	Args     []Arg  // COMMAND DOCS arguments (redis-cli builds its hints from these)
	Subs     []*Spec
	Run      func(c Conn, args [][]byte)
	// Targets returns the queues or channels the command acts on, for the rights check of its Verb;
	// nil means the key positions (FirstKey, LastKey, KeyStep).
	Targets func(args [][]byte) [][]byte
	// PatternArgs: the targets are PSUBSCRIBE patterns (see auth.User.MaySubscribePattern).
	PatternArgs bool
}

// Arg documents one argument for COMMAND DOCS.
type Arg struct {
	Name     string
	Type     string // key, string, integer, double, pattern, pure-token, oneof, block
	Token    string
	Optional bool
	Multiple bool
	Sub      []Arg
}

// Session is the per-connection state that commands read and change.
type Session struct {
	ID         int64
	Addr       string
	LocalAddr  string
	Created    time.Time
	Proto      int // 2 or 3
	Name       string
	LibName    string
	LibVer     string
	User       string // the user named in envelopes and CLIENT INFO ("" = default)
	AuthUser   string // the user verified against the configured users ("" = not authenticated)
	CertUser   string // the user named by the client's verified TLS certificate, kept across RESET
	Channels   map[string]struct{}
	Patterns   map[string]struct{}
	LastCmd    string
	Deliver    string // QDELIVERY override: "" (the queue's rule), "payload" or "envelope"
	NoEvict    bool
	NoTouch    bool
	Authed     bool
	CloseAfter bool // QUIT: close once the reply is written

	// Leases (at-least-once queues). LeaseOwner is set by the connection: it marks the leases this
	// connection holds, so only they are acked by its next pop or requeued when it closes.
	LeaseOwner string
	Held       map[string]map[string]struct{} // queue → lease ids this connection holds
	LastPop    map[string][]string            // queue → lease ids of its last pop (ack: next-pop)
}

// MaxHeldLeases bounds the lease ids a connection remembers per queue for its requeue on close (ids
// acked elsewhere or expired stay until then). Leases past the bound are not lost: the reaper
// requeues them when they expire.
const MaxHeldLeases = 65536

// AddLeases records lease ids this connection got from queue. With nextPop they are also acked by
// the connection's next pop from queue (together with any not acked yet, for pipelined pops).
func (s *Session) AddLeases(queue string, ids []string, nextPop bool) {
	if len(ids) == 0 {
		return
	}
	if s.Held == nil {
		s.Held = map[string]map[string]struct{}{}
	}
	h := s.Held[queue]
	if h == nil {
		h = map[string]struct{}{}
		s.Held[queue] = h
	}
	for _, id := range ids {
		if len(h) < MaxHeldLeases {
			h[id] = struct{}{}
		}
	}
	if nextPop {
		if s.LastPop == nil {
			s.LastPop = map[string][]string{}
		}
		s.LastPop[queue] = append(s.LastPop[queue], ids...)
	}
}

// DropLeases forgets lease ids of queue (acked, nacked or requeued).
func (s *Session) DropLeases(queue string, ids []string) {
	if h := s.Held[queue]; h != nil {
		for _, id := range ids {
			delete(h, id)
		}
		if len(h) == 0 {
			delete(s.Held, queue)
		}
	}
	if last := s.LastPop[queue]; len(last) > 0 {
		dropped := func(id string) bool { return contains(ids, id) }
		if len(ids) > 16 { // a set: a large pop's receipts against a large last pop is quadratic
			set := make(map[string]struct{}, len(ids))
			for _, id := range ids {
				set[id] = struct{}{}
			}
			dropped = func(id string) bool { _, ok := set[id]; return ok }
		}
		kept := last[:0:0]
		for _, id := range last {
			if !dropped(id) {
				kept = append(kept, id)
			}
		}
		if len(kept) == 0 {
			delete(s.LastPop, queue)
		} else {
			s.LastPop[queue] = kept
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Subscriptions returns the number of channels and patterns the connection is subscribed to.
func (s *Session) Subscriptions() int { return len(s.Channels) + len(s.Patterns) }

// Subscribed reports whether the connection is in subscribed state.
func (s *Session) Subscribed() bool { return s.Subscriptions() > 0 }

// Conn is what a handler may do with the client and the backend.
type Conn interface {
	// Session returns the connection's state.
	Session() *Session
	// Reply returns the writer for the current command's reply; replies of queued backend commands come first.
	Reply() *resp.Writer
	// Queue adds cmd to the backend pipeline of the current batch; done writes its reply once it ran.
	Queue(cmd redis.Cmder, done func(w *resp.Writer))
	// RunQueued runs the batch's queued backend commands now and writes their replies (Exec does so
	// before every handler that is not Pipelined).
	RunQueued()
	// Popped records items in the reply being written: once it is written they are delivered; if it
	// cannot be, they return to the end of the list they came from, in their original order.
	Popped(p *Pop)
	// BlockPop pops one item from the first non-empty key, waiting up to timeout (0 = forever) for one;
	// nil when the wait ended without an item.
	BlockPop(keys []string, left bool, timeout time.Duration) (*Pop, error)
	// BlockWait waits up to timeout (0 = forever) until the blocker moved an item of an at-least-once
	// queue to its handoff list for this client; ok is false on timeout or when the client left.
	BlockWait(keys []string, left bool, timeout time.Duration) (key string, ok bool, err error)
	// Context is cancelled when the client goes away or the server shuts down.
	Context() context.Context
	// Server returns the server-wide view.
	Server() Server
}

// Pop is items taken from a queue for a reply that is not written yet. Token is the server's record of
// where the items are meanwhile (see Server.TransitPop).
type Pop struct {
	Key   string
	Left  bool
	Items []string
	Token any
}

// TransitPop is a pop of an at-most-once queue that moves its items into the server's transit record,
// so that no item is ever only in qgate's memory: queue Cmd, then call Result from the reply callback.
type TransitPop interface {
	Cmd() redis.Cmder
	// Result is the popped items (nil when the list was empty) or the backend error. Pass a non-nil Pop
	// to Conn.Popped with the reply that carries its items.
	Result() (*Pop, error)
}

// Server is the part of the proxy that commands see beyond their own connection.
type Server interface {
	// TransitPop prepares a pop of count items from key ("" = one item, no COUNT; the caller checked
	// 0 <= count <= MaxPopChunk).
	TransitPop(key string, left bool, count string) (TransitPop, error)
	// BackendMaxBulk is the largest value the backend accepts (its proto-max-bulk-len).
	BackendMaxBulk() int64
	// Backend is the Redis qgate forwards to.
	Backend() redis.UniversalClient
	// Policies resolves the rule of a queue or channel.
	Policies() *policy.Set
	// BackendInfo describes the backend for INFO (kind and address, never a password).
	BackendInfo() (kind, addr string)
	// Stats returns counters for INFO.
	Stats() Stats
	// Subscribe and Unsubscribe change the connection's shared backend subscriptions; Subscribe returns
	// once the backend confirmed, so a PUBLISH sent after the reply is delivered.
	Subscribe(c Conn, pattern bool, name string) error
	Unsubscribe(c Conn, pattern bool, name string)
	// LocalSubscribers returns how many local clients a message on channel reaches, and how many of
	// qgate's own backend subscriptions (channel and patterns) match it.
	LocalSubscribers(channel string) (clients, backendSubs int)
	// LocalNumSub returns the local subscriber count of a channel and whether qgate subscribes to it.
	LocalNumSub(channel string) (clients int, subscribed bool)
	// AwaitOwnMessages waits until every message the backend published before the call has reached c
	// and moves the ones for c into its reply stream now: a client publishing to a channel it is
	// subscribed to gets the message before PUBLISH's reply, as from Redis.
	AwaitOwnMessages(c Conn)
	// Users returns the configured users; nil or empty means qgate is open (no authentication).
	Users() *auth.Store
	// Login verifies a password for c's client (bounding the bcrypt comparisons, delaying the replies
	// of failures, counting and logging failures without the secret). It returns the user with
	// auth.OK, else nil and why.
	Login(c Conn, user, password []byte) (*auth.User, auth.Result)
	// NoteDenied counts a NOPERM reply (on a channel or pattern when channel is set, else a queue).
	NoteDenied(channel bool)
	// RegisterLeasedQueue makes sure queue is in rdb.LeasedQueuesKey, where every instance's reaper
	// finds it; call it before leasing from queue (it reaches the backend only now and then).
	RegisterLeasedQueue(ctx context.Context, queue string) error
	// Leases returns the server's lease counters (INFO).
	Leases() *LeaseCounters
	// KickReaper makes the reaper run now and sleep until the earliest item it finds due (call it
	// after items were delayed, so sub-second delays are kept).
	KickReaper()
	// HasWaiters reports whether clients are blocked popping key from that end (left: BLPOP).
	HasWaiters(key string, left bool) bool
}

// LeaseCounters count at-least-once transitions made through this qgate process (INFO Qgate).
type LeaseCounters struct {
	Leased   atomic.Int64 // items leased by pops
	Acked    atomic.Int64 // leases ended by QACK or next-pop
	Retried  atomic.Int64 // leases given back for another attempt (nack, expiry, disconnect)
	Dead     atomic.Int64 // items past max_attempts (dead-lettered or dropped)
	Redriven atomic.Int64 // dead items moved back by QREDRIVE
}

// Stats are server counters reported by INFO.
type Stats struct {
	Started                                time.Time
	ConnectedClients                       int
	BlockedClients                         int
	PubSubClients                          int
	TotalConnections                       int64
	TotalCommands                          int64
	RejectedConns                          int64
	ReturnedItems                          int64 // popped items put back because their reply could not be written
	LostItems                              int64 // popped items that could not be put back (must stay 0)
	RecoveredItems                         int64 // items of dead instances' transit records given back
	RedeliveryRisk                         int64 // delivered items another instance gave back meanwhile
	Instance                               string
	BackendConns                           int
	BackendWaitConns                       int
	MaxClients                             int
	Version                                string
	TCPPort                                int
	BackendPubSubConns                     int
	Users                                  int   // configured users (0 = open)
	AuthFailures                           int64 // failed AUTH and HELLO AUTH attempts
	DeniedQueue                            int64 // NOPERM replies on queues
	DeniedChannel                          int64 // NOPERM replies on channels and patterns
	BcryptChecks                           int64 // bcrypt comparisons run (the rest were answered by the cache)
	Leased, Acked, Retried, Dead, Redriven int64 // LeaseCounters
}

// table maps lower-case names to specs; filled by the *_commands.go files' init functions.
var table = map[string]*Spec{}

func register(specs ...*Spec) {
	for _, s := range specs {
		table[s.Name] = s
	}
}

// Lookup returns the spec for a command name, case-insensitively, or nil.
func Lookup(name []byte) *Spec {
	var buf [32]byte
	if len(name) > len(buf) {
		return nil
	}
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return table[string(buf[:len(name)])]
}

// All returns every spec, sorted by name.
func All() []*Spec {
	out := make([]*Spec, 0, len(table))
	for _, s := range table {
		out = append(out, s)
	}
	sortSpecs(out)
	return out
}

// Exec runs one command for c: lookup, arity and context checks, then the handler.
func Exec(c Conn, args [][]byte) {
	if len(args) == 0 {
		return
	}
	s := c.Session()
	spec := Lookup(args[0])
	if spec == nil {
		c.Reply().Error(unknownCommand(args))
		return
	}
	// Redis resolves the subcommand first, then checks arity, then the subscribed-state rule, so its
	// errors name "parent|sub".
	if len(spec.Subs) > 0 && len(args) > 1 {
		sub := spec.sub(args[1])
		if sub == nil {
			c.Reply().Error(unknownSubcommand(spec.Name, args[1]))
			return
		}
		spec = sub
	}
	if !arityOK(spec.Arity, len(args)) || spec.Run == nil {
		c.Reply().Error(WrongArgs(spec.Name))
		return
	}
	// Then authentication (NOAUTH) and rights (NOPERM), as Redis checks them before the context.
	if msg := checkAccess(c, spec, args); msg != "" {
		c.Reply().Error(msg)
		return
	}
	if s.Proto == 2 && s.Subscribed() && spec.Flags&SubscribedOK == 0 {
		c.Reply().Error("ERR Can't execute '" + spec.Name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
		return
	}
	s.LastCmd = spec.Name
	if spec.Flags&Pipelined == 0 {
		c.RunQueued()
	}
	spec.Run(c, args)
}

// sub returns the subcommand spec named by arg, or nil.
func (s *Spec) sub(arg []byte) *Spec {
	for _, sub := range s.Subs {
		if equalFold(arg, sub.Name[len(s.Name)+1:]) {
			return sub
		}
	}
	return nil
}

func arityOK(arity, n int) bool {
	if arity >= 0 {
		return n == arity
	}
	return n >= -arity
}

// unknownCommand builds Redis 7's text: ERR unknown command 'x', with args beginning with: 'a' 'b'
// Like Redis (processCommand), the name is cut to 128 bytes and the arguments are added while the list
// is under 128 bytes, each cut to what is left of those 128; arguments are C strings there, so each
// ends at its first NUL byte.
func unknownCommand(args [][]byte) string {
	var list []byte
	for _, a := range args[1:] {
		if len(list) >= 128 {
			break
		}
		list = append(list, '\'')
		list = append(list, clip(a, 128-len(list)+1)...)
		list = append(list, "' "...)
	}
	return sanitize("ERR unknown command '" + clip(args[0], 128) + "', with args beginning with: " + string(list))
}

// unknownSubcommand is Redis's reply to an unknown subcommand of cmd (upper-case in the hint).
func unknownSubcommand(cmd string, sub []byte) string {
	return sanitize("ERR unknown subcommand '" + clip(sub, 128) + "'. Try " + strings.ToUpper(cmd) + " HELP.")
}

// WrongArgs is Redis's arity error for a command (or "parent|sub").
func WrongArgs(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}

// Common Redis error texts.
const (
	ErrSyntax      = "ERR syntax error"
	ErrNotInteger  = "ERR value is not an integer or out of range"
	ErrNotPositive = "ERR value is out of range, must be positive"
	ErrTimeout     = "ERR timeout is not a float or out of range"
	ErrTimeoutNeg  = "ERR timeout is negative"
)

// clip formats an argument like C's "%.*s": up to its first NUL byte, at most n bytes.
func clip(b []byte, n int) string {
	b = cstr(b)
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// cstr cuts b at its first NUL byte, as Redis's "%s" of an argument does.
func cstr(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// sanitize replaces CR and LF, which would break an error line, with spaces (as Redis does).
func sanitize(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// equalFold compares an argument with a lower-case ASCII keyword.
func equalFold(arg []byte, lower string) bool {
	if len(arg) != len(lower) {
		return false
	}
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// backendError turns a backend failure into an error reply: Redis errors pass through verbatim,
// transport failures are reported without detail that could leak configuration.
func backendError(err error) string {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return sanitize(rerr.Error()) // the backend's own reply, without any wrapping
	}
	return sanitize("ERR backend unavailable: " + err.Error())
}

// writeError is backendError for a command that adds items: when the command may have run (its reply
// was lost), the client is told that the push may have been applied, never that it failed.
func writeError(err error) string {
	if OutcomeUnknown(err) {
		return sanitize("ERR backend unavailable, the push may have been applied (its outcome is unknown): " + err.Error())
	}
	return backendError(err)
}

// OutcomeUnknown reports whether a failed backend command may have run: anything but a Redis error
// reply, or a failure to get a connection or to dial (then the command was never sent).
func OutcomeUnknown(err error) bool {
	if err == nil || err == redis.Nil {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return false
	}
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolExhausted) {
		return false
	}
	var op *net.OpError
	return !(errors.As(err, &op) && op.Op == "dial")
}
