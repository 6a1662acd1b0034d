#!lua flags=allow-oom
-- sched_register: note a queue in its schedule shard before an instance leases or pops from it (and
-- again every so often while it goes on), and make it due for a reaper by ARGV[3] at the latest, so
-- every reaper finds its leases, delayed items and transit records (proxy/DESIGN.md "Instances and
-- recovery"; sched_done.lua forgets idle queues).
--
-- allow-oom (see rdb.go): runs before an at-least-once pop, which is what frees memory when Redis is
-- at maxmemory with noeviction; one member per queue in each key.
--
-- KEYS[1]  {qgate-sched-K}:qgate:sched-registry  ZSET queue -> when an instance last noted it (ms)
-- KEYS[2]  {qgate-sched-K}:qgate:sched-due       ZSET queue -> when a reaper must next look (ms)
-- KEYS[3]  {qgate-sched-K}:qgate:sched-gen       HASH queue -> generation
-- ARGV[1]  now (ms, the instance's clock); the registry keeps the latest note
-- ARGV[2]  the queue
-- ARGV[3]  due at the latest (ms); the due set keeps the earliest
--
-- Returns 1 if the registry's note was added or moved later, else 0.
local n = redis.call('ZADD', KEYS[1], 'GT', 'CH', ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'LT', ARGV[3], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
return n
