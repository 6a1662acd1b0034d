// Package rdb is qgate's storage layout in the backend Redis: every key name is built here, and every
// multi-step state change is a Lua script in scripts/ (one atomic step each).
//
// A queue's ready list keeps the queue's own name, so programs pushing straight into Redis still feed
// it. Every other key of a queue carries the queue name as its {hash tag}, so all of a queue's keys
// share one Redis Cluster slot (queue names cannot contain braces: see policy.ValidateName).
package rdb

import (
	"context"
	_ "embed"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Keys of an at-least-once queue (DESIGN.md section 5). The ready list is the queue's own name.

// InflightKey is the ZSET of a queue's leases: lease id → deadline (ms since the epoch, Redis clock).
func InflightKey(queue string) string { return "{" + queue + "}:qgate:inflight" }

// LeasesKey is the HASH of a queue's leases: lease id → owner "\n" item.
func LeasesKey(queue string) string { return "{" + queue + "}:qgate:leases" }

// DelayedKey is the ZSET of items waiting for their backoff: item → ready-at (ms).
func DelayedKey(queue string) string { return "{" + queue + "}:qgate:delayed" }

// HandoffKey is the LIST where a blocked-pop listener puts an item of an at-least-once queue for a
// waiting client, which then leases it with lease_pop (that pops the handoff list first).
func HandoffKey(queue string) string { return "{" + queue + "}:qgate:handoff" }

// DeadKey is the LIST of items that failed max_attempts times.
func DeadKey(queue string) string { return "{" + queue + "}:qgate:dead" }

// LeasedQueuesKey is the ZSET of queues that leased items (queue → when an instance last noted it,
// ms): the reapers of every qgate instance walk it. It is the only key outside the queues' slots. A
// pop registers its queue before leasing and again every so often while it goes on (see
// proxy/leases.go); a reaper drops a queue that has been idle since long before that (ForgetQueue).
const LeasedQueuesKey = "qgate:leased-queues"

// LeasePopKeys returns KEYS[1..4] of lease_pop.lua.
func LeasePopKeys(queue string) []string {
	return []string{queue, InflightKey(queue), LeasesKey(queue), HandoffKey(queue)}
}

// RetryKeys returns KEYS[1..5] of nack.lua and requeue_expired.lua.
func RetryKeys(queue string) []string {
	return []string{queue, InflightKey(queue), LeasesKey(queue), DelayedKey(queue), DeadKey(queue)}
}

// Keys of at-most-once pops (see proxy/DESIGN.md, "Delivery without loss"): a pop moves its items from
// the ready list into the popping instance's transit record; the record is deleted once the reply is
// written, and given back to the ready list when it cannot be, or when the instance died.

// TransitKey is the HASH of the items instance popped from queue whose reply is not written yet:
// field (end "L"/"R", sequence number, ".", position) -> item.
func TransitKey(queue, instance string) string { return "{" + queue + "}:qgate:transit:" + instance }

// TransitOwnersKey is the SET of instances that have a transit record on queue; every reaper looks
// for records of dead instances there.
func TransitOwnersKey(queue string) string { return "{" + queue + "}:qgate:transit-owners" }

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
func DedupKey(queue, hash string) string { return "{" + queue + "}:qgate:dedup:" + hash }

// Script is a Lua script run with EVALSHA, falling back to EVAL when the backend does not know it.
type Script struct {
	src string
	sha string
}

func newScript(src string) *Script {
	s := redis.NewScript(src)
	if plain := StripFlags(src); plain != src {
		plainSHA[s.Hash()] = redis.NewScript(plain).Hash()
	}
	return &Script{src: src, sha: s.Hash()}
}

// plainSHA maps the SHA of each script with a "#!lua flags=…" first line to the SHA of the same
// script without it.
var plainSHA = map[string]string{}

// StripFlags removes a "#!lua …" first line (Redis 7 script flags such as allow-oom), for a backend
// that does not know them (the embedded one, which has no memory limit anyway); the line breaks stay
// so error positions keep their line numbers.
func StripFlags(src string) string {
	if !strings.HasPrefix(src, "#!") {
		return src
	}
	if i := strings.IndexByte(src, '\n'); i >= 0 {
		return src[i:]
	}
	return ""
}

// WithoutFlags rewrites an EVAL or EVALSHA command's arguments for a backend without script flags:
// a flagged script's source loses its first line, its SHA becomes the plain script's.
func WithoutFlags(args []interface{}) {
	if len(args) < 2 {
		return
	}
	verb, _ := args[0].(string)
	body, _ := args[1].(string)
	switch strings.ToLower(verb) {
	case "eval":
		args[1] = StripFlags(body)
	case "evalsha":
		if plain, ok := plainSHA[body]; ok {
			args[1] = plain
		}
	}
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
)

// The lease scripts. Nack and RequeueExpired are retry.lua followed by their own file.
var (
	LeasePop       = newScript(leasePopSrc)
	Ack            = newScript(ackSrc)
	Extend         = newScript(extendSrc)
	Nack           = newScript(retrySrc + "\n" + nackSrc)
	RequeueExpired = newScript(retrySrc + "\n" + requeueExpiredSrc)
	PromoteDelayed = newScript(promoteDelayedSrc)
	Redrive        = newScript(redriveSrc)
	ForgetQueue    = newScript(forgetQueueSrc)
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
	//go:embed scripts/push_back.lua
	pushBackSrc string
)

// The at-most-once delivery scripts.
var (
	TransitPop     = newScript(transitPopSrc)
	TransitPopEach = newScript(transitPopEachSrc)
	TransitReturn  = newScript(transitReturnSrc)
	TransitRecover = newScript(transitRecoverSrc)
	Heartbeat      = newScript(heartbeatSrc)
	PushBack       = newScript(pushBackSrc)
)

// Run runs the script with EVALSHA and, on NOSCRIPT (the script did not run), with EVAL.
func (s *Script) Run(ctx context.Context, c redis.UniversalClient, keys []string, args ...interface{}) *redis.Cmd {
	cmd := s.Cmd(ctx, keys, args...)
	_ = c.Process(ctx, cmd)
	if IsNoScript(cmd.Err()) {
		return s.Eval(ctx, c, keys, args...)
	}
	return cmd
}

// Cmd returns an EVALSHA command for a pipeline. If it fails with NOSCRIPT the script did not run;
// pass the same arguments to Eval.
func (s *Script) Cmd(ctx context.Context, keys []string, args ...interface{}) *redis.Cmd {
	return redis.NewCmd(ctx, s.evalArgs("evalsha", s.sha, keys, args)...)
}

// Eval runs the script with EVAL (sending its source).
func (s *Script) Eval(ctx context.Context, c redis.UniversalClient, keys []string, args ...interface{}) *redis.Cmd {
	cmd := redis.NewCmd(ctx, s.evalArgs("eval", s.src, keys, args)...)
	_ = c.Process(ctx, cmd)
	return cmd
}

func (s *Script) evalArgs(verb, script string, keys []string, args []interface{}) []interface{} {
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
