package rdb

import "time"

// QueuesKey is the ZSET of every queue any qgate instance pushed to, popped from or leased from
// (queue → when an instance last noted it, ms): the registry the HTTP API and the metrics list
// queues from, whichever instance touched them (proxy/DESIGN.md, "Observability"). Like
// LeasedQueuesKey it is outside the queues' slots: on a Cluster it lives on one node. Instances note
// a queue at most once per QueueNoteInterval; entries idle for QueueIdleTTL are dropped, and the
// set is kept to QueuesMax entries (the least recently noted go first).
const QueuesKey = "qgate:queues"

// Bounds of QueuesKey.
const (
	QueueNoteInterval = time.Minute
	QueueIdleTTL      = 24 * time.Hour
	QueuesMax         = 10000
)
