-- requeue_expired: the reaper's step for one queue: leases whose deadline passed are retried with
-- the backoff (reason "lease expired" in ARGV[8]). Runs after retry.lua, which names KEYS[1..5] and
-- ARGV[1..9] and carries the flags line. Safe to run from several qgate instances at once: each
-- lease is retried by one call.
--
-- ARGV[10]  the most leases to handle in this call, at most rdb.Chunk
--
-- Returns {expired entries handled, items retried (ready or delayed), items dead or dropped,
-- ms until the earliest remaining lease deadline (0 when due now, -1 when no lease is left)}.
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[10]))
local retried, dead = 0, 0
for _, id in ipairs(ids) do
  local r = retry(id, -1)
  if r == 1 or r == 2 then retried = retried + 1 elseif r >= 3 then dead = dead + 1 end
end
local next_in = -1
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[2] then
  next_in = math.max(0, tonumber(first[2]) - now)
end
return {#ids, retried, dead, next_in}
