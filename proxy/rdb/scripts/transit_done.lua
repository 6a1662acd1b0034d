#!lua flags=allow-oom
-- transit_done: forget transit fields whose reply was written (the items are delivered).
--
-- KEYS[1]  {queue}:qgate:transit:<instance>
-- KEYS[2]  {queue}:qgate:transit-owners
-- ARGV[1]  the instance id
-- ARGV[2..n] fields
--
-- Returns the number of fields deleted (fewer than given when another instance already took this
-- instance's record for dead and gave the items back: those items may be delivered twice).
local n = redis.call('HDEL', KEYS[1], unpack(ARGV, 2))
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return n
