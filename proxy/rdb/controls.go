package rdb

import _ "embed"

// Keys and scripts of the queue controls (README "Queue controls", proxy/DESIGN.md "Queue controls"):
// max_length and overflow, delayed pushes, pause and resume.

// PausedKey is the STRING whose existence pauses a queue: the pop scripts (transit_pop,
// transit_pop_each, lease_pop, lease_pop_each) find a paused queue empty. Shared by every qgate instance.
func PausedKey(queue string) string { return QueueKey(queue, "paused") }

// DelayedRawPrefix starts the delayed-ZSET member of a raw (non-envelope) value pushed with a delay:
// DelayedRawPrefix, a unique id, ".", the value's index and "\x00", then the value. The ZSET is keyed
// by member, so equal raw values pushed with delays would otherwise collapse into one;
// promote_delayed.lua strips the prefix when it moves the value to the ready list.
const DelayedRawPrefix = "\x00qgate:delayed\x00"

// ControlPushKeys returns KEYS[1..2] of control_push.lua; the dedup keys follow them.
func ControlPushKeys(queue string) []string { return []string{queue, DelayedKey(queue)} }

// TransitPopKeys returns KEYS[1..4] of transit_pop.lua and transit_pop_each.lua: TransitKeys and
// the pause flag.
func TransitPopKeys(queue, instance string) []string {
	return append(TransitKeys(queue, instance), PausedKey(queue))
}

// ResumeKeys returns KEYS[1..2] of resume.lua.
func ResumeKeys(queue string) []string { return []string{queue, PausedKey(queue)} }

var (
	//go:embed scripts/control_push.lua
	controlPushSrc string
	//go:embed scripts/resume.lua
	resumeSrc string
)

// The queue control scripts.
var (
	ControlPush = newScript(controlPushSrc)
	Resume      = newScript(resumeSrc)
)
