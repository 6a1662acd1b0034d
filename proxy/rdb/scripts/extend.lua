-- extend: set a lease's deadline to now + ms (like SQS ChangeMessageVisibility).
--
-- KEYS[1]  {queue}:qgate:inflight  ZSET lease id -> deadline
-- KEYS[2]  {queue}:qgate:leases    HASH lease id -> owner .. "\n" .. item
-- ARGV[1]  lease id
-- ARGV[2]  milliseconds from now
--
-- Returns 1 if the id was leased (and is extended), else 0.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
