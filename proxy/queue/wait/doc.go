// Package wait serves blocked pops (BLPOP/BRPOP through qgate) without popping while waiting.
//
// A Hub keeps, per key, a FIFO of waiters. It only learns "key K may have items now" — from Redis
// keyspace notifications, from Wake calls made by the same process after its pushes, from SUBSCRIBE
// confirmations (an item may have come before a subscription was live) and from polls — and then
// serves K's waiters in FIFO order by calling each one's TakeFunc (the caller's recoverable pop:
// transit_pop or lease_pop through the ordinary pooled client), one after another, until a take finds
// nothing. No blocking command is ever sent, so an item is never in memory only: it is in its list, in
// the caller's transit/lease record, or delivered.
//
// Backend connections: one pub/sub connection per master node that owns watched keys, plus the
// caller's pool (takes, the polls' pipelined EXISTS, CONFIG). Goroutines: Config.Workers dispatcher
// workers, one poller, two per node (subscription manager and receiver); none per waiter or per key.
//
// Notifications: at start the Hub reads notify-keyspace-events on every master and adds the flags it
// lacks among "Kgl" (CONFIG SET of the union: flags others set are kept). Where CONFIG is refused and
// the flags are not pre-set, the node's keys are polled every PollInterval (100 ms). In keyspace mode a
// safety poll of every watched key runs every SafetyInterval (5 s) for missed notifications. On Redis
// Cluster notifications are node-local, so keys are subscribed on the master that owns their slot.
//
// A waiter registered with Add is served, stopped (timeout: Stop), abandoned (client gone: Abandon),
// or ended by Close. A take in flight always decides: its result goes to the waiter even if the timeout
// passed meanwhile, or to GiveBack if the client left. Design: proxy/DESIGN.md, "Blocked pops".
package wait
