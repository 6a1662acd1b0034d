-- control_push: push values to a queue whose rule sets max_length or a delay (README "Queue
-- controls"), deduplicating them when the rule does, in one atomic step: the capacity check and the
-- push cannot race with another qgate instance. Queues without those settings never run it (a plain
-- RPUSH/LPUSH, or dedup_push).
--
-- KEYS[1]       the queue's ready list (the queue's own name)
-- KEYS[2]       {queue}:qgate:delayed  ZSET item -> ready-at (ms, Redis clock)
-- KEYS[3..n+2]  with dedup: the dedup key of each value, {queue}:qgate:dedup:<hash>, in value order
-- ARGV[1]       "RPUSH" or "LPUSH"
-- ARGV[2]       max_length; 0 for none
-- ARGV[3]       overflow: "reject" or "drop-oldest"
-- ARGV[4]       the dedup window in ms; "" without dedup
-- ARGV[5]       delay in ms; 0 pushes to the ready list
-- ARGV[6]       with a delay: the member prefix of raw values ("" when values are envelopes, whose ids
--               make each member unique); member i is ARGV[6] .. i .. "\0" .. value, which
--               promote_delayed.lua unwraps (rdb.DelayedRawPrefix)
-- ARGV[7..n+6]  the values to store (envelopes or raw values)
--
-- What counts against max_length: the ready list plus the delayed ZSET (items waiting to be delivered;
-- leased items are not). reject: when the new values (those not deduplicated) do not fit, nothing is
-- stored and the reply is the error "ERR queue '<queue>' is full (max_length N)". drop-oldest: the
-- values are stored, then the oldest items of the ready list (the end opposite to the push: the head
-- for RPUSH, the tail for LPUSH) are trimmed until the queue fits.
--
-- Returns {length of the ready list after the call, values stored, items dropped}.
local dedup = ARGV[4] ~= ''
local delay = tonumber(ARGV[5])
local max = tonumber(ARGV[2])
local n = #ARGV - 6
local fresh = {}
local count = 0
local seen = {}
for i = 1, n do
  local ok = true
  if dedup then
    local k = KEYS[i + 2]
    ok = not seen[k] and redis.call('EXISTS', k) == 0
    seen[k] = true
  end
  fresh[i] = ok
  if ok then count = count + 1 end
end
local waiting = 0
if max > 0 then
  waiting = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
  if ARGV[3] == 'reject' and waiting + count > max then
    return redis.error_reply("ERR queue '" .. KEYS[1] .. "' is full (max_length " .. ARGV[2] .. ")")
  end
end
local now = 0
if delay > 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
for i = 1, n do
  if fresh[i] then
    if dedup then redis.call('SET', KEYS[i + 2], '1', 'PX', ARGV[4]) end
    local v = ARGV[i + 6]
    if delay > 0 then
      if ARGV[6] ~= '' then v = ARGV[6] .. i .. '\0' .. v end
      redis.call('ZADD', KEYS[2], now + delay, v)
    else
      redis.call(ARGV[1], KEYS[1], v)
    end
  end
end
local dropped = 0
if max > 0 and count > 0 then
  local over = waiting + count - max
  local len = redis.call('LLEN', KEYS[1])
  if over > 0 and len > 0 then
    dropped = math.min(over, len)
    if ARGV[1] == 'RPUSH' then
      redis.call('LTRIM', KEYS[1], dropped, -1)
    else
      redis.call('LTRIM', KEYS[1], 0, -dropped - 1)
    end
  end
end
return {redis.call('LLEN', KEYS[1]), count, dropped}
