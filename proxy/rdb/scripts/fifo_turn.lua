#!lua flags=allow-oom
-- fifo_turn: whether a blocked pop on a global_fifo queue may take now (README "Delivery rules",
-- proxy/DESIGN.md "Global FIFO"). Every qgate instance's blocked pops on the queue are members of one
-- sorted set, ordered by when they started to wait (Redis's clock); a waiter may take while fewer
-- waiters are ahead of it than the list has items. A waiter that finds itself missing is added at the
-- back (its first call, or its place was dropped). When the waiters entitled to the items have not
-- taken them within the grace (their instance died, is frozen or lost its leave), every waiter ahead
-- of the caller loses its place (each rejoins at the back at its next call): a stall costs the queue
-- one grace, however many places are stale.
--
-- KEYS[1]  the queue's ready list
-- KEYS[2]  {queue}:qgate:waiters  ZSET member → µs since the epoch when it started to wait
-- KEYS[3]  {queue}:qgate:turn     STRING "<ms>|<member>": since when the head has held items back
-- KEYS[4]  {queue}:qgate:paused   the pause flag
-- ARGV[1]  the waiter's member (instance id ":" sequence)
-- ARGV[2]  the grace in ms
-- ARGV[3]  the waiters set's expiry in ms (renewed by each call)
--
-- Returns {code, ms, dropped}: code 0 = nothing to take (the list is empty or the queue paused),
-- 1 = take now, 2 = waiters ahead are entitled to the items: call again in ms; dropped = places
-- removed by this call. allow-oom (see rdb.go): it writes only the waiters' places, and a queue at
-- maxmemory with noeviction must stay poppable (popping is what frees memory).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[2])
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
if not rank then
  redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[1])
  rank = redis.call('ZRANK', KEYS[2], ARGV[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {0, 0, 0}
end
local n = redis.call('LLEN', KEYS[1])
if n == 0 then
  return {0, 0, 0}
end
if rank < n then
  return {1, 0, 0}
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
local mark = redis.call('GET', KEYS[3])
if mark then
  local sep = string.find(mark, '|', 1, true)
  local since = tonumber(string.sub(mark, 1, sep - 1))
  if string.sub(mark, sep + 1) == head then
    if now - since < grace then
      return {2, grace - (now - since), 0}
    end
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, rank - 1)
    redis.call('DEL', KEYS[3])
    return {1, 0, rank}
  end
end
redis.call('SET', KEYS[3], now .. '|' .. head, 'PX', grace * 10)
return {2, grace, 0}
