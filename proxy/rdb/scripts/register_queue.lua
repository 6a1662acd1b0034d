#!lua flags=allow-oom
-- register_queue: note that an instance leases from a queue, so every instance's reaper walks it
-- (proxy/leases.go RegisterLeasedQueue; forget_queue.lua drops idle ones).
--
-- allow-oom (see rdb.go): an at-least-once pop registers its queue first, and a pop is what frees
-- memory when Redis is at maxmemory with noeviction; one member per queue (a plain ZADD is refused
-- there).
--
-- KEYS[1]  qgate:leased-queues  ZSET queue -> when an instance last noted leasing from it (ms, the
--          instance's clock)
-- ARGV[1]  now (ms, the instance's clock)
-- ARGV[2]  the queue
--
-- Returns ZADD's reply (1 if the queue was new, else 0).
return redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
