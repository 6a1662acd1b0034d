-- ack: end leases (the items are done).
--
-- KEYS[1]  {queue}:qgate:inflight  ZSET lease id -> deadline
-- KEYS[2]  {queue}:qgate:leases    HASH lease id -> owner .. "\n" .. item
-- ARGV[1..] lease ids
--
-- Returns the number of ids that were leased.
local n = 0
for i = 1, #ARGV, 1000 do -- in chunks: unpack() is limited by Lua's C stack
  local j = math.min(i + 999, #ARGV)
  n = n + redis.call('HDEL', KEYS[2], unpack(ARGV, i, j))
  redis.call('ZREM', KEYS[1], unpack(ARGV, i, j))
end
return n
