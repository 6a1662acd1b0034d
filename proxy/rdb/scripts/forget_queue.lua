#!lua flags=allow-oom
-- forget_queue: drop a queue from the set of leased queues the reapers walk, unless an instance noted
-- it again since the reaper found it idle (nothing in flight, delayed or handed off).
--
-- allow-oom (see rdb.go): only deletes.
--
-- KEYS[1]  qgate:leased-queues  ZSET queue -> when an instance last noted leasing from it (ms, the
--          instance's clock)
-- ARGV[1]  the queue
-- ARGV[2]  cutoff (ms): the queue is dropped only if its score is below it
--
-- Returns 1 if the queue was dropped, else 0.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) < tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
