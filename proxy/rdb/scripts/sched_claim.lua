#!lua flags=allow-oom
-- sched_claim: a reaper takes a due queue: its due time moves to now + hold (so no other reaper
-- takes it meanwhile, and a reaper that dies on it is replaced after the hold) and its generation is
-- bumped. Only one of several reapers claiming at once gets it.
--
-- allow-oom (see rdb.go): one member per queue.
--
-- KEYS[1]  {qgate-sched-K}:qgate:sched-due  ZSET queue -> when a reaper must next look (ms)
-- KEYS[2]  {qgate-sched-K}:qgate:sched-gen  HASH queue -> generation
-- ARGV[1]  now (ms, the reaper's clock)
-- ARGV[2]  hold (ms)
-- ARGV[3]  the queue
--
-- Returns the new generation (pass it to sched_done.lua), or -1 when the queue is not due (another
-- reaper took it, or it is gone).
local s = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not s or tonumber(s) > tonumber(ARGV[1]) then
  return -1
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[3])
return redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
