-- requeue_expired: the reaper's step for one queue: leases whose deadline passed are retried with
-- the backoff (reason "lease expired" in ARGV[8]). Runs after retry.lua, which names KEYS[1..5] and
-- ARGV[1..9]. Safe to run from several qgate instances at once: each lease is retried by one call.
--
-- ARGV[10]  the most leases to handle in this call
--
-- Returns {expired entries handled, items retried (ready or delayed), items dead or dropped}.
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[10]))
local retried, dead = 0, 0
for _, id in ipairs(ids) do
  local r = retry(id, -1)
  if r == 1 or r == 2 then retried = retried + 1 elseif r >= 3 then dead = dead + 1 end
end
return {#ids, retried, dead}
