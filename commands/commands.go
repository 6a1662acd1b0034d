// Package commands is qgate's command table: for each supported command its name, arity, flags, ACL
// verb and handler. Handlers see a client through the Conn interface and never touch the network;
// anything not in the table is refused and never reaches the backend.
package commands

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/qgate/qgate/proxy/auth"
	"github.com/qgate/qgate/proxy/policy"
	"github.com/qgate/qgate/proxy/queue"
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
	// Pipelined handlers do nothing but queue engine operations (Conn.Queue) and write replies (errors
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
	// PushTargets returns the queues that also need the push right (LMOVE's destination), checked
	// after the Verb's right on the targets; nil: none.
	PushTargets func(args [][]byte) [][]byte

	index int // position in specList: the command's counters in a CommandStats
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

	// CLIENT REPLY (README "Commands"): ReplyOff drops every reply until CLIENT REPLY ON; ReplySkip
	// drops the running command's reply (set by the connection when the previous command was CLIENT
	// REPLY SKIP, which sets ReplySkipNext). CLIENT REPLY ON clears all three.
	ReplyOff, ReplySkip, ReplySkipNext bool

	// timeoutArg and timeout: the last fractional blocking timeout and its value (blockTimeout).
	timeoutArg []byte
	timeout    time.Duration

	// Multi is the transaction being queued (nil: none); InExec is set while EXEC runs its commands.
	Multi  *Multi
	InExec bool

	// ShardChannels are the SSUBSCRIBE channels (README "Pub/sub").
	ShardChannels map[string]struct{}

	// The connection's leases of at-least-once queues (LeaseOwner is set by the connection).
	queue.Consumer
}

// MaxHeldLeases bounds the lease ids a connection remembers per queue (queue.MaxHeldLeases).
const MaxHeldLeases = queue.MaxHeldLeases

// Subscriptions returns the number of channels and patterns the connection is subscribed to.
func (s *Session) Subscriptions() int { return len(s.Channels) + len(s.Patterns) }

// ShardSubscriptions returns the number of shard channels the connection is subscribed to (what
// SSUBSCRIBE and SUNSUBSCRIBE replies count).
func (s *Session) ShardSubscriptions() int { return len(s.ShardChannels) }

// Subscribed reports whether the connection is in subscribed state: subscribed to channels, patterns
// or shard channels.
func (s *Session) Subscribed() bool { return s.Subscriptions()+s.ShardSubscriptions() > 0 }

// Conn is what a handler may do with the client, its batch and its subscriptions.
type Conn interface {
	// Session returns the connection's state.
	Session() *Session
	// Reply returns the writer for the current command's reply; replies of queued operations come first.
	Reply() *resp.Writer
	// Queue adds an engine operation to the current batch (one backend round trip for the whole
	// batch); done writes its reply once it ran. A Sync operation runs at once, after the batch's
	// operations queued before it.
	Queue(op queue.Queued, done func(w *resp.Writer))
	// RunQueued runs the batch's queued operations now and writes their replies (Exec does so before
	// every handler that is not Pipelined).
	RunQueued()
	// Popped records items in the reply being written: once it is written they are delivered; if it
	// cannot be, they go back where they came from (queue.Engine.Settle).
	Popped(p *queue.Pop)
	// BlockPop and BlockLeasePop write the replies so far, then pop one item from the first non-empty
	// key of at-most-once (queue.Engine.BlockPop) or at-least-once queues (BlockLeasePop), waiting up
	// to timeout (0 = forever) for one while the client's socket is watched; nil when the wait ended
	// without an item.
	BlockPop(keys []string, left bool, timeout time.Duration) (*queue.Pop, error)
	BlockLeasePop(keys []string, left bool, timeout time.Duration) (*queue.Pop, error)
	// Unblocked reports whether the wait that just ended without an item was ended by CLIENT UNBLOCK
	// ... ERROR (the handler then replies ErrUnblocked instead of its timeout reply).
	Unblocked() bool
	// Block writes the replies so far and runs wait with the connection as the queue.Parker of any
	// engine wait it makes (BLMOVE, BLMPOP: queue.Engine.BlockMove, BlockMPop, BlockLeaseMPop). wait
	// does not run when the client is already gone.
	Block(wait func(p queue.Parker))
	// Subscribe and Unsubscribe change the connection's shared backend subscriptions; Subscribe returns
	// once the backend confirmed, so a PUBLISH sent after the reply is delivered.
	Subscribe(pattern bool, name string) error
	Unsubscribe(pattern bool, name string)
	// SSubscribe and SUnsubscribe do the same for shard channels (SSUBSCRIBE, SUNSUBSCRIBE).
	SSubscribe(channel string) error
	SUnsubscribe(channel string)
	// AwaitOwnMessages waits until every message the backend published before the call has reached
	// the connection and moves them into its reply stream now: a client publishing to a channel it is
	// subscribed to gets the message before PUBLISH's reply, as from Redis.
	AwaitOwnMessages()
	// AwaitOwnShardMessages is AwaitOwnMessages for the messages of channel's shard (SPUBLISH).
	AwaitOwnShardMessages(channel string)
	// Login verifies a password for the client (bounding the bcrypt comparisons, delaying the replies
	// of failures, counting and logging failures without the secret). It returns the user with
	// auth.OK, else nil and why.
	Login(user, password []byte) (*auth.User, auth.Result)
	// Context is cancelled when the client goes away or the server shuts down.
	Context() context.Context
	// Server returns the server-wide view.
	Server() Server
}

// Server is the part of the proxy that commands see beyond their own connection.
type Server interface {
	// Queues is the queue engine: every backend operation goes through it.
	Queues() *queue.Engine
	// Policies resolves the rule of a queue or channel.
	Policies() *policy.Set
	// BackendInfo describes the backend for INFO (kind and address, never a password).
	BackendInfo() (kind, addr string)
	// Stats returns counters for INFO.
	Stats() Stats
	// Users returns the configured users; nil or empty means qgate is open (no authentication).
	Users() *auth.Store
	// NoteDenied counts a NOPERM reply (on a channel or pattern when channel is set, else a queue).
	NoteDenied(channel bool)
	// Clients returns a snapshot of every client connection (CLIENT LIST, CLIENT KILL), in no order.
	Clients() []ClientInfo
	// Kill closes the connections with these ids as if their clients had disconnected (their
	// leases and popped items are handled as for any disconnect) and returns how many it found. The
	// caller's own connection is never among ids: it closes itself after its reply (Session.CloseAfter).
	Kill(ids []int64) int
	// Unblock ends the blocked wait (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) of connection id if
	// may(its user) allows it: as on timeout, or with ErrUnblocked when asError. It reports whether
	// the connection was blocked. An item a take already got is delivered or given back, never lost.
	Unblock(id int64, asError bool, may func(user string) bool) bool
	// CommandStats returns the server's per-command and error counters (INFO commandstats, errorstats).
	CommandStats() *CommandStats
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
	BackendWaitConns                       int // the blocked pops' pub/sub connections (one per master)
	MaxClients                             int
	Version                                string
	TCPPort                                int
	BackendPubSubConns                     int
	Users                                  int             // configured users (0 = open)
	AuthFailures                           int64           // failed AUTH and HELLO AUTH attempts
	DeniedQueue                            int64           // NOPERM replies on queues
	DeniedChannel                          int64           // NOPERM replies on channels and patterns
	BcryptChecks                           int64           // bcrypt comparisons run (the rest were answered by the cache)
	Leased, Acked, Retried, Dead, Redriven int64           // LeaseCounters
	Wait                                   queue.WaitStats // the blocked pops' wait hub
	FIFODropped, FIFOUnremoved             int64           // global_fifo places dropped by a stall; not removed
	KnownQueues                            int64           // queues in the shared registry (qgate:queues) at its last write or trim
}

// table maps lower-case names to specs; filled by the *_commands.go files' init functions.
var table = map[string]*Spec{}

// specList holds every spec and subcommand spec, each at its index (fixed once init is done).
var specList []*Spec

func register(specs ...*Spec) {
	for _, s := range specs {
		table[s.Name] = s
		index(s)
	}
}

func index(s *Spec) {
	s.index = len(specList)
	specList = append(specList, s)
	for _, sub := range s.Subs {
		index(sub)
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

// Outcome is how Exec handled a command (for its counters: CommandStats.Record).
type Outcome uint8

const (
	// Ran: the handler ran.
	Ran Outcome = iota
	// Rejected: refused before its handler ran (arity, NOAUTH, NOPERM, subscribed context), as
	// Redis's rejected_calls.
	Rejected
	// Unknown: an unknown command (spec nil) or an unknown subcommand of spec.
	Unknown
)

// Exec runs one command for c: lookup, arity and context checks, then the handler. It returns the
// command's spec (the subcommand's for a container) and how it was handled.
func Exec(c Conn, args [][]byte) (spec *Spec, out Outcome) {
	if len(args) == 0 {
		return nil, Ran
	}
	s := c.Session()
	spec = Lookup(args[0])
	if spec == nil {
		reject(c, nil, unknownCommand(args))
		return nil, Unknown
	}
	// Redis resolves the subcommand first, then checks arity, then the subscribed-state rule, so its
	// errors name "parent|sub".
	if len(spec.Subs) > 0 && len(args) > 1 {
		sub := spec.sub(args[1])
		if sub == nil {
			reject(c, spec, unknownSubcommand(spec.Name, args[1]))
			return spec, Unknown
		}
		spec = sub
	}
	if !arityOK(spec.Arity, len(args)) || spec.Run == nil {
		reject(c, spec, WrongArgs(spec.Name))
		return spec, Rejected
	}
	// Then authentication (NOAUTH) and rights (NOPERM), as Redis checks them before the context.
	if msg := checkAccess(c, spec, args); msg != "" {
		reject(c, spec, msg)
		return spec, Rejected
	}
	if s.Proto == 2 && s.Subscribed() && spec.Flags&SubscribedOK == 0 {
		reject(c, spec, "ERR Can't execute '"+spec.Name+"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
		return spec, Rejected
	}
	s.LastCmd = spec.Name
	if s.Multi != nil && !runsInMulti(spec) {
		queueInMulti(c, spec, args)
		return spec, Ran
	}
	if spec.Flags&Pipelined == 0 {
		c.RunQueued()
	}
	spec.Run(c, args)
	return spec, Ran
}

// reject replies a refusal; inside MULTI it marks the transaction so that EXEC aborts, and a refused
// EXEC discards it (Redis's rejectCommand, flagTransaction and execCommandAbort).
func reject(c Conn, spec *Spec, msg string) {
	s := c.Session()
	if s.Multi != nil {
		if spec != nil && spec.Name == "exec" {
			s.Multi = nil
			// Redis's text: the refusal without its "ERR " code (other codes stay).
			c.Reply().Error("EXECABORT Transaction discarded because of: " + strings.TrimPrefix(msg, "ERR "))
			return
		}
		s.Multi.Dirty = true
	}
	c.Reply().Error(msg)
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
	if msg, ok := queue.RedisError(err); ok {
		return sanitize(msg) // the backend's own reply, without any wrapping
	}
	return sanitize("ERR backend unavailable: " + err.Error())
}

// writeError is backendError for a command that adds items: when the command may have run (its reply
// was lost), the client is told that the push may have been applied, never that it failed.
func writeError(err error) string {
	if queue.OutcomeUnknown(err) {
		return sanitize("ERR backend unavailable, the push may have been applied (its outcome is unknown): " + err.Error())
	}
	return backendError(err)
}
