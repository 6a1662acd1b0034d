package rdb

import (
	_ "embed"
	"strconv"
)

// The reaper's schedule (proxy/DESIGN.md, "Instances and recovery"): the queues with leases, delayed
// items or transit records are registered in ScheduleShards shards; each shard has three keys in one
// slot: a registry (queue → when an instance last noted it, ms), a due set (queue → when a reaper
// must next look at it, ms) and a generation hash (queue → counter, bumped by every write that may
// make the queue due sooner). A reaper pass reads only the due entries of each shard, so an idle
// queue costs nothing until its recheck.
//
// A queue's shard is picked by its Cluster slot (ScheduleShard), and each shard's keys carry a hash
// tag chosen to fall inside the shard's slot range: on a Cluster whose masters own contiguous slot
// ranges, a queue's schedule entry lives on the queue's own master, except for the queues of the one
// shard that straddles each boundary between two masters.

// ScheduleShards is the number of schedule shards; every reaper pass reads each one once.
const ScheduleShards = 16

// scheduleTags holds, for each shard, a hash tag whose slot lies in the shard's slot range.
var scheduleTags = func() (tags [ScheduleShards]string) {
	found := 0
	for i := 0; found < ScheduleShards; i++ {
		tag := "qgate-sched-" + strconv.Itoa(i)
		k := int(Slot(tag)) * ScheduleShards / NumSlots
		if tags[k] == "" {
			tags[k] = tag
			found++
		}
	}
	return tags
}()

// ScheduleShard returns the schedule shard of queue: the one whose slot range holds the queue's slot.
func ScheduleShard(queue string) int { return int(Slot(queue)) * ScheduleShards / NumSlots }

// ScheduleRegistryKey is shard's ZSET of registered queues: queue → when an instance last noted it
// (ms, the instance's clock). It replaces LeasedQueuesKey.
func ScheduleRegistryKey(shard int) string {
	return "{" + scheduleTags[shard] + "}:qgate:sched-registry"
}

// ScheduleDueKey is shard's ZSET queue → when a reaper must next look at the queue (ms, the
// instances' clocks): the earliest lease deadline or delayed item it knows of, a recheck time for an
// idle queue, or the hold of a reaper working on the queue.
func ScheduleDueKey(shard int) string { return "{" + scheduleTags[shard] + "}:qgate:sched-due" }

// ScheduleGenKey is shard's HASH queue → generation, bumped by registrations, touches and claims, so
// a reaper that finished a queue knows whether anything was scheduled on it meanwhile.
func ScheduleGenKey(shard int) string { return "{" + scheduleTags[shard] + "}:qgate:sched-gen" }

// ScheduleKeys returns KEYS[1..3] of sched_register.lua and sched_done.lua for shard.
func ScheduleKeys(shard int) []string {
	return []string{ScheduleRegistryKey(shard), ScheduleDueKey(shard), ScheduleGenKey(shard)}
}

// ScheduleTouchKeys returns KEYS[1..2] of sched_touch.lua and sched_claim.lua for shard.
func ScheduleTouchKeys(shard int) []string {
	return []string{ScheduleDueKey(shard), ScheduleGenKey(shard)}
}

var (
	//go:embed scripts/sched_register.lua
	schedRegisterSrc string
	//go:embed scripts/sched_touch.lua
	schedTouchSrc string
	//go:embed scripts/sched_claim.lua
	schedClaimSrc string
	//go:embed scripts/sched_done.lua
	schedDoneSrc string
)

// The schedule scripts.
var (
	SchedRegister = newScript(schedRegisterSrc)
	SchedTouch    = newScript(schedTouchSrc)
	SchedClaim    = newScript(schedClaimSrc)
	SchedDone     = newScript(schedDoneSrc)
)
