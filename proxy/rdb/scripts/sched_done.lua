#!lua flags=allow-oom
-- sched_done: a reaper finished a queue it claimed (sched_claim.lua) and sets when the queue is due
-- next: its earliest lease deadline or delayed item, else (idle) the recheck time, or it forgets an
-- idle queue no instance noted since the cutoff. If the generation moved since the claim, an
-- instance scheduled something the reaper may not have seen: the due time is then only lowered.
--
-- allow-oom (see rdb.go): only sets or deletes.
--
-- KEYS[1]  {qgate-sched-K}:qgate:sched-registry  ZSET queue -> when an instance last noted it (ms)
-- KEYS[2]  {qgate-sched-K}:qgate:sched-due       ZSET queue -> when a reaper must next look (ms)
-- KEYS[3]  {qgate-sched-K}:qgate:sched-gen       HASH queue -> generation
-- ARGV[1]  the queue
-- ARGV[2]  the generation sched_claim.lua returned
-- ARGV[3]  next due time (ms): the earliest deadline found, capped at the recheck time
-- ARGV[4]  "1" if the queue is idle (nothing in flight, delayed, handed off or in a transit record)
-- ARGV[5]  cutoff (ms): an idle queue whose registry note is older is forgotten
--
-- Returns 2 forgotten, 1 due time set, 0 generation moved (due time only lowered).
local q = ARGV[1]
if redis.call('HGET', KEYS[3], q) ~= ARGV[2] then
  redis.call('ZADD', KEYS[2], 'LT', ARGV[3], q)
  return 0
end
if ARGV[4] == '1' then
  local noted = redis.call('ZSCORE', KEYS[1], q)
  if tonumber(noted or 0) < tonumber(ARGV[5]) then
    redis.call('ZREM', KEYS[1], q)
    redis.call('ZREM', KEYS[2], q)
    redis.call('HDEL', KEYS[3], q)
    return 2
  end
end
redis.call('ZADD', KEYS[2], ARGV[3], q)
return 1
