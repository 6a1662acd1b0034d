-- ack: end leases (the items are done).
--
-- KEYS[1]  {queue}:qgate:inflight  ZSET lease id -> deadline
-- KEYS[2]  {queue}:qgate:leases    HASH lease id -> owner .. "\n" .. item
-- ARGV[1..] lease ids
--
-- Returns the number of ids that were leased.
local n = 0
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], ARGV[i])
end
return n
