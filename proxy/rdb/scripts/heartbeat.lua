#!lua flags=allow-oom
-- heartbeat: note that this qgate instance is alive and list the instances that are not.
--
-- KEYS[1]  qgate:instances  ZSET instance -> last heartbeat (ms, Redis clock)
-- ARGV[1]  the instance id
-- ARGV[2]  ttl (ms): an instance whose last heartbeat is older is dead
-- ARGV[3]  forget (ms): entries older than this are removed (their records were long given back)
--
-- Returns {gap, alive...}: gap is 1 when this instance's own previous heartbeat is older than ttl/2 or
-- absent, and then nothing else (after a stall of Redis or of this instance, every instance gets a ttl
-- to beat again before anyone gives its records back); otherwise gap is 0 and alive lists the
-- instances whose last heartbeat is at most ttl old (this one included). Any other instance is dead.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local prev = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[3])))
if not prev or now - tonumber(prev) > ttl / 2 then
  return {1}
end
local out = {0}
for _, inst in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now - ttl, '+inf')) do
  out[#out + 1] = inst
end
return out
