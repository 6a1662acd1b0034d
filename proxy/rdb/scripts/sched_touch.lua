#!lua flags=allow-oom
-- sched_touch: make queues due by the given times at the latest: a lease's deadline after a pop, a
-- delayed item's time after a nack, now after a QEXTEND. The due set keeps each queue's earliest
-- time, and the queue's generation is bumped, so a reaper working on it (sched_done.lua) does not
-- push the time back past one it did not see.
--
-- allow-oom (see rdb.go): one member per queue.
--
-- KEYS[1]  {qgate-sched-K}:qgate:sched-due  ZSET queue -> when a reaper must next look (ms)
-- KEYS[2]  {qgate-sched-K}:qgate:sched-gen  HASH queue -> generation
-- ARGV[1..] pairs: due time (ms), queue; at most rdb.Chunk pairs
--
-- Returns the number of queues touched.
for i = 1, #ARGV - 1, 2 do
  redis.call('ZADD', KEYS[1], 'LT', ARGV[i], ARGV[i + 1])
  redis.call('HINCRBY', KEYS[2], ARGV[i + 1], 1)
end
return math.floor(#ARGV / 2)
