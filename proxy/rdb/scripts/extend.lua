#!lua flags=allow-oom
-- extend: set a lease's deadline to now + ms (like SQS ChangeMessageVisibility).
--
-- allow-oom (see rdb.go): only changes the score of an existing member.
--
-- KEYS[1]  {queue}:qgate:inflight  ZSET receipt -> deadline
-- KEYS[2]  {queue}:qgate:leases    HASH receipt -> owner .. "\n" .. item
-- ARGV[1]  receipt
-- ARGV[2]  milliseconds from now
--
-- Returns 1 if the receipt is leased (and is extended), else 0.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
