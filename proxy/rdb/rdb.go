// Package rdb is qgate's storage layout in the backend Redis: every key name is built here, and every
// multi-step state change is a Lua script in scripts/ (one atomic step each).
//
// A queue's ready list keeps the queue's own name, so programs pushing straight into Redis still feed
// it. Every other key of a queue is built by QueueKey and shares the ready list's Redis Cluster slot:
// it carries the queue name as its {hash tag}, or the queue's own tag when the name has one
// (proxy/DESIGN.md, "Key layout").
package rdb

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// QueueKey returns the key of the given kind of queue (proxy/DESIGN.md, "Key layout"). kind is one
// word and each param one more ("transit" and an instance id); neither holds ':' or a brace, and a
// kind always takes the same number of params. A queue without a hash tag (HashTag) keeps the layout
// qgate always had, "{" + queue + "}:qgate:" + kind [":" + param]; a tagged queue's keys carry its
// tag and then its whole name, "{" + tag + "}:qgate:" + kind + ":" + queue [":" + param], so queues
// sharing a tag share a slot but no key. The name must have passed CheckName.
func QueueKey(queue, kind string, params ...string) string {
	var b strings.Builder
	tag, tagged := HashTag(queue)
	if !tagged {
		tag = queue
	}
	b.Grow(len(tag) + len(kind) + len(queue) + 12 + 40*len(params))
	b.WriteString("{")
	b.WriteString(tag)
	b.WriteString("}:qgate:")
	b.WriteString(kind)
	if tagged {
		b.WriteString(":")
		b.WriteString(queue)
	}
	for _, p := range params {
		b.WriteString(":")
		b.WriteString(p)
	}
	return b.String()
}

// Why CheckName refuses a name.
var (
	ErrNameEmptyTag = errors.New("a '}' must close a non-empty {hash tag}, as in jobs{t}")
	ErrNameReserved = errors.New("names of the form {...}:qgate:... are qgate's own keys")
)

// CheckName refuses the queue (and channel) names whose keys QueueKey cannot build: a name with a
// '}' but no hash tag (Redis hashes the whole name, and no other key can have a tag holding '}'),
// and a name that has the shape of a key QueueKey builds, {…}:qgate:… (its ready list would be
// another queue's key). Length and characters are policy.ValidateName's.
func CheckName(name string) error {
	_, tagged := HashTag(name)
	if !tagged && strings.IndexByte(name, '}') >= 0 {
		return ErrNameEmptyTag
	}
	if strings.HasPrefix(name, "{") {
		if j := strings.IndexByte(name, '}'); j > 1 && strings.HasPrefix(name[j+1:], ":qgate:") {
			return ErrNameReserved
		}
	}
	return nil
}

// Keys of an at-least-once queue (README "Retry rules"). The ready list is the queue's own name.

// InflightKey is the ZSET of a queue's leases: receipt → deadline (ms since the epoch, Redis clock).
//
// A lease is keyed by its receipt, which lease_pop.lua makes for each delivery: new every time an
// item is leased, given only to the client that popped it, and never stored in the item (so LRANGE,
// QDEAD or an earlier delivery never show a valid one). QACK, QNACK and QEXTEND take receipts.
func InflightKey(queue string) string { return QueueKey(queue, "inflight") }

// LeasesKey is the HASH of a queue's leases: receipt → owner "\n" item.
func LeasesKey(queue string) string { return QueueKey(queue, "leases") }

// DelayedKey is the ZSET of items waiting for their backoff: item → ready-at (ms).
func DelayedKey(queue string) string { return QueueKey(queue, "delayed") }

// HandoffKey is the LIST where a blocked-pop listener of qgate before the wait hub (proxy/queue/wait)
// put an item of an at-least-once queue for a waiting client. Nothing writes it any more; lease_pop
// still serves it first and the reaper moves leftovers back (handoff_back), so lists an older
// version left behind (kill -9 during an upgrade) are drained.
func HandoffKey(queue string) string { return QueueKey(queue, "handoff") }

// DeadKey is the LIST of items that failed max_attempts times.
func DeadKey(queue string) string { return QueueKey(queue, "dead") }

// LeasedQueuesKey is the ZSET of queues that leased items (queue → when an instance last noted it,
// ms): the reapers of every qgate instance walk it. It is the only key outside the queues' slots. A
// pop registers its queue before leasing and again every so often while it goes on (see
// proxy/queue/reaper.go); a reaper drops a queue that has been idle since long before that (ForgetQueue).
const LeasedQueuesKey = "qgate:leased-queues"

// LeasePopKeys returns KEYS[1..5] of lease_pop.lua and lease_pop_each.lua (KEYS[5] is PausedKey,
// controls.go).
func LeasePopKeys(queue string) []string {
	return []string{queue, InflightKey(queue), LeasesKey(queue), HandoffKey(queue), PausedKey(queue)}
}

// LeaseReturnKeys returns KEYS[1..3] of lease_return.lua.
func LeaseReturnKeys(queue string) []string {
	return []string{queue, InflightKey(queue), LeasesKey(queue)}
}

// HandoffBackKeys returns KEYS[1..2] of handoff_back.lua.
func HandoffBackKeys(queue string) []string { return []string{HandoffKey(queue), queue} }

// RetryKeys returns KEYS[1..5] of nack.lua and requeue_expired.lua.
func RetryKeys(queue string) []string {
	return []string{queue, InflightKey(queue), LeasesKey(queue), DelayedKey(queue), DeadKey(queue)}
}

// Keys of at-most-once pops (see proxy/DESIGN.md, "Delivery without loss"): a pop moves its items from
// the ready list into the popping instance's transit record; the record is deleted once the reply is
// written, and given back to the ready list when it cannot be, or when the instance died.

// TransitKey is the HASH of the items instance popped from queue whose reply is not written yet:
// field (end "L"/"R", sequence number, ".", position) -> item.
func TransitKey(queue, instance string) string { return QueueKey(queue, "transit", instance) }

// TransitOwnersKey is the SET of instances that have a transit record on queue; every reaper looks
// for records of dead instances there.
func TransitOwnersKey(queue string) string { return QueueKey(queue, "transit-owners") }

// TransitKeys returns KEYS[1..3] of transit_pop.lua, transit_return.lua and transit_recover.lua. A
// delivered pop's fields are deleted with a plain HDEL; the instance stays in the owners set while it
// lives (transit_recover drops a dead one once its record is empty).
func TransitKeys(queue, instance string) []string {
	return []string{queue, TransitKey(queue, instance), TransitOwnersKey(queue)}
}

// InstancesKey is the ZSET of qgate instances: instance id -> last heartbeat (ms, Redis clock). An
// instance whose heartbeat is older than the instance TTL is dead: its transit records are given back.
const InstancesKey = "qgate:instances"

// DedupKey is the key that remembers a dedup hash on a queue for the dedup window.
func DedupKey(queue, hash string) string { return QueueKey(queue, "dedup", hash) }

// Chunk is the most items one script call pops, leases, acks, requeues or redrives: larger counts
// are split into several calls by the caller, so no script blocks Redis for long (Redis answers
// everyone else -BUSY while a script runs past busy-reply-threshold) and no script unpack()s more
// than Lua's C stack takes (about 8000 values).
const Chunk = 1000

// Script is a Lua script, run with EVALSHA, falling back to EVAL when the backend does not have it.
//
// Script flags. A script may start with a Redis 7 flags line ("#!lua flags=allow-oom"; see "Eval
// flags" in the Redis docs). The lease scripts use allow-oom: they only give items back, move them or
// lease them, so they must run when Redis is at maxmemory with noeviction, where popping and acking
// is what frees memory. Backends that do not know the line fail to compile it: Redis before 7 and
// the embedded miniredis. So every Script also has a plain variant, the same source with the flags
// line turned into a comment (same line numbers), and each client runs one of the two: the plain
// one if it was marked with UsePlainScripts (the proxy's Backend does that at open time for a backend
// that ScriptFlagsSupported says does not understand flags, for each of its clients), else the
// flagged one. A script without a flags line is the same in both.
type Script struct {
	flagged, plain source
}

type source struct{ src, sha string }

// flagsLine starts a script's Redis 7 flags line.
const flagsLine = "#!lua"

// newScript returns the Script for src, which may start with a "#!lua flags=…" line.
func newScript(src string) *Script {
	s := &Script{flagged: newSource(src)}
	s.plain = s.flagged
	if strings.HasPrefix(src, flagsLine) {
		s.plain = newSource("--" + src[2:])
	}
	scripts = append(scripts, s)
	return s
}

// scripts is every Script, for LoadAll.
var scripts []*Script

// All returns every Script.
func All() []*Script { return append([]*Script(nil), scripts...) }

// LoadAll loads every script into the backend's script cache (on every master of a Cluster), in the
// variant c runs. A pipelined EVALSHA that fails with NOSCRIPT is run again with EVAL after the rest
// of its batch, out of order with the batch's later commands on the same key; loading the scripts
// when the backend is first reached, and again after a NOSCRIPT (a restarted backend, SCRIPT FLUSH),
// keeps that to the batches in flight at that moment (proxy/DESIGN.md, "Scripts and script flags").
func LoadAll(ctx context.Context, c redis.UniversalClient) error {
	for _, s := range scripts {
		if err := c.ScriptLoad(ctx, s.on(c).src).Err(); err != nil {
			return fmt.Errorf("load scripts: %w", err)
		}
	}
	return nil
}

func newSource(src string) source { return source{src: src, sha: redis.NewScript(src).Hash()} }

// plainClients holds the clients marked with UsePlainScripts.
var plainClients sync.Map // redis.UniversalClient → struct{}

// UsePlainScripts makes every Script run through c in its plain variant (c's backend does not
// understand script flags), until ForgetClient(c).
func UsePlainScripts(c redis.UniversalClient) { plainClients.Store(c, struct{}{}) }

// ForgetClient undoes UsePlainScripts, when c is closed.
func ForgetClient(c redis.UniversalClient) { plainClients.Delete(c) }

// ScriptFlagsSupported asks the backend whether it understands script flags: it loads a flagged
// script (SCRIPT LOAD compiles it without running it). Only a compile error says no; any other
// answer (a user without the right to load scripts cannot run qgate's scripts either) says yes.
func ScriptFlagsSupported(ctx context.Context, c redis.UniversalClient) bool {
	err := c.ScriptLoad(ctx, flagsLine+" flags=allow-oom\nreturn 1").Err()
	return err == nil || !strings.Contains(err.Error(), "Error compiling script")
}

// on returns the variant that c runs.
func (s *Script) on(c redis.UniversalClient) *source {
	if s.plain.sha != s.flagged.sha {
		if _, ok := plainClients.Load(c); ok {
			return &s.plain
		}
	}
	return &s.flagged
}

//go:embed scripts/dedup_push.lua
var dedupPushSrc string

// DedupPush is scripts/dedup_push.lua.
var DedupPush = newScript(dedupPushSrc)

var (
	//go:embed scripts/lease_pop.lua
	leasePopSrc string
	//go:embed scripts/ack.lua
	ackSrc string
	//go:embed scripts/extend.lua
	extendSrc string
	//go:embed scripts/retry.lua
	retrySrc string
	//go:embed scripts/nack.lua
	nackSrc string
	//go:embed scripts/requeue_expired.lua
	requeueExpiredSrc string
	//go:embed scripts/promote_delayed.lua
	promoteDelayedSrc string
	//go:embed scripts/redrive.lua
	redriveSrc string
	//go:embed scripts/forget_queue.lua
	forgetQueueSrc string
	//go:embed scripts/register_queue.lua
	registerQueueSrc string
	//go:embed scripts/handoff_back.lua
	handoffBackSrc string
	//go:embed scripts/lease_return.lua
	leaseReturnSrc string
	//go:embed scripts/lease_pop_each.lua
	leasePopEachSrc string
)

// The lease scripts. Nack and RequeueExpired are retry.lua followed by their own file (retry.lua
// carries the flags line, which must be the first line).
var (
	LeasePop       = newScript(leasePopSrc)
	LeasePopEach   = newScript(leasePopEachSrc)
	Ack            = newScript(ackSrc)
	Extend         = newScript(extendSrc)
	Nack           = newScript(retrySrc + "\n" + nackSrc)
	RequeueExpired = newScript(retrySrc + "\n" + requeueExpiredSrc)
	PromoteDelayed = newScript(promoteDelayedSrc)
	Redrive        = newScript(redriveSrc)
	ForgetQueue    = newScript(forgetQueueSrc)
	RegisterQueue  = newScript(registerQueueSrc)
	HandoffBack    = newScript(handoffBackSrc)
	LeaseReturn    = newScript(leaseReturnSrc)
)

var (
	//go:embed scripts/transit_pop.lua
	transitPopSrc string
	//go:embed scripts/transit_pop_each.lua
	transitPopEachSrc string
	//go:embed scripts/transit_return.lua
	transitReturnSrc string
	//go:embed scripts/transit_recover.lua
	transitRecoverSrc string
	//go:embed scripts/heartbeat.lua
	heartbeatSrc string
)

// The at-most-once delivery scripts.
var (
	TransitPop     = newScript(transitPopSrc)
	TransitPopEach = newScript(transitPopEachSrc)
	TransitReturn  = newScript(transitReturnSrc)
	TransitRecover = newScript(transitRecoverSrc)
	Heartbeat      = newScript(heartbeatSrc)
)

// Run runs the script on c with EVALSHA and, on NOSCRIPT (the script did not run), with EVAL.
func (s *Script) Run(ctx context.Context, c redis.UniversalClient, keys []string, args ...interface{}) *redis.Cmd {
	cmd := s.Cmd(ctx, c, keys, args...)
	_ = c.Process(ctx, cmd)
	if IsNoScript(cmd.Err()) {
		return s.Eval(ctx, c, keys, args...)
	}
	return cmd
}

// Cmd returns an EVALSHA command to run on c, for a pipeline (on c, or on a client of the same
// backend marked alike). If it fails with NOSCRIPT the script did not run; pass the same arguments to
// Eval.
func (s *Script) Cmd(ctx context.Context, c redis.UniversalClient, keys []string, args ...interface{}) *redis.Cmd {
	return redis.NewCmd(ctx, evalArgs("evalsha", s.on(c).sha, keys, args)...)
}

// Eval runs the script on c with EVAL (sending its source).
func (s *Script) Eval(ctx context.Context, c redis.UniversalClient, keys []string, args ...interface{}) *redis.Cmd {
	cmd := redis.NewCmd(ctx, evalArgs("eval", s.on(c).src, keys, args)...)
	_ = c.Process(ctx, cmd)
	return cmd
}

func evalArgs(verb, script string, keys []string, args []interface{}) []interface{} {
	out := make([]interface{}, 0, 3+len(keys)+len(args))
	out = append(out, verb, script, len(keys))
	for _, k := range keys {
		out = append(out, k)
	}
	return append(out, args...)
}

// IsNoScript reports whether err means the backend does not have the script cached.
func IsNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
