#!lua flags=allow-oom
-- purge: QPURGE of one queue: delete its ready list and every key qgate derived for it in the
-- queue's slot, counting the items they held. allow-oom: it only deletes.
--
-- KEYS[1]  the queue's ready list
-- KEYS[2]  {queue}:qgate:inflight        ZSET (its receipts are the leases below)
-- KEYS[3]  {queue}:qgate:leases          HASH receipt -> owner "\n" item: one item per lease
-- KEYS[4]  {queue}:qgate:delayed         ZSET of items
-- KEYS[5]  {queue}:qgate:dead            LIST of dead records
-- KEYS[6]  {queue}:qgate:handoff         LIST
-- KEYS[7]  {queue}:qgate:transit-owners  SET of instances with a transit record
-- ARGV[1]  the transit record key of the queue without its instance id ({queue}:qgate:transit:):
--          each owner's record is ARGV[1] .. owner, in the queue's slot (not declared in KEYS, as
--          the owners are only known here)
--
-- Returns the number of items removed: ready + leased + delayed + dead + handoff + in transit. A
-- ready list of another type is deleted too (as DEL would) and counts 0.
local n = 0
if redis.call('TYPE', KEYS[1])['ok'] == 'list' then n = n + redis.call('LLEN', KEYS[1]) end
n = n + redis.call('HLEN', KEYS[3]) + redis.call('ZCARD', KEYS[4]) + redis.call('LLEN', KEYS[5]) + redis.call('LLEN', KEYS[6])
for _, owner in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  local rec = ARGV[1] .. owner
  n = n + redis.call('HLEN', rec)
  redis.call('DEL', rec)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return n
