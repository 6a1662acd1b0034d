#!lua flags=allow-oom
-- ack: end leases (the items are done).
--
-- allow-oom (see rdb.go): only deletes, so it must run when Redis is at maxmemory.
--
-- KEYS[1]  {queue}:qgate:inflight  ZSET receipt -> deadline
-- KEYS[2]  {queue}:qgate:leases    HASH receipt -> owner .. "\n" .. item
-- ARGV[1]  owner: only leases this owner holds are acked (ack: next-pop, the connection's own
--          receipts); "" acks whoever holds them (QACK: the receipt is proof enough)
-- ARGV[2..] receipts, at most rdb.Chunk (the caller splits more)
--
-- Returns the number of receipts that were leased (by the owner, if given).
local n = 0
if ARGV[1] == '' then
  for i = 2, #ARGV, 1000 do -- in chunks: unpack() is limited by Lua's C stack
    local j = math.min(i + 999, #ARGV)
    n = n + redis.call('HDEL', KEYS[2], unpack(ARGV, i, j))
    redis.call('ZREM', KEYS[1], unpack(ARGV, i, j))
  end
  return n
end
local prefix = ARGV[1] .. '\n'
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  if v and string.sub(v, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
