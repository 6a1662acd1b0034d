#!lua flags=allow-oom
-- retry.lua is not run on its own: it is the shared first part of nack.lua and requeue_expired.lua
-- (rdb.go joins them), defining retry(). Both scripts take the same KEYS and ARGV[1..9]. Its first
-- line is the joined script's flags line: allow-oom (see rdb.go), as retrying only moves an item
-- (to the ready list, the delayed set, or the dead list in a record about 80 bytes larger).
--
-- KEYS[1]  the queue's ready list (the queue's own name)
-- KEYS[2]  {queue}:qgate:inflight  ZSET receipt -> deadline (ms)
-- KEYS[3]  {queue}:qgate:leases    HASH receipt -> owner .. "\n" .. item
-- KEYS[4]  {queue}:qgate:delayed   ZSET item -> ready-at (ms)
-- KEYS[5]  {queue}:qgate:dead      LIST of dead items: JSON {"reason","failed_at","attempts","item"}
-- ARGV[1]  max_attempts
-- ARGV[2]  dead_letter: "1" keeps items past max_attempts in the dead list, "0" drops them
-- ARGV[3]  backoff initial (ms)
-- ARGV[4]  backoff max (ms)
-- ARGV[5]  backoff multiplier
-- ARGV[6]  backoff jitter (fraction)
-- ARGV[7]  a random number in [0, 1) for the jitter (scripts are deterministic)
-- ARGV[8]  the failure reason recorded on dead items ("nack", "lease expired", "consumer disconnected")
-- ARGV[9]  owner: only leases held by this owner are retried; "" for any
--
-- retry(id, delay) ends the lease of receipt id and gives its item another chance: attempts + 1 in
-- the envelope; past max_attempts to the dead list; else after delay ms (backoff when delay < 0) via
-- the delayed set, or straight to the tail of the ready list (RPUSH) when the delay is 0. Items that
-- are not qgate envelopes have no attempts counter: they go straight back to the ready list, never
-- dead.
--
-- The envelope layout this relies on (proxy/envelope/envelope.go documents the same contract, and
-- proxy/rdb/scripts_test.go checks it against envelope.AppendEnvelope): an envelope starts with
--   {"qgate":1,"id":"<id>","queue":"<queue>","enqueued_at":"<time>","attempts":<n>,
-- in this order, where <id>, <queue> and <time> hold no '"' or '\' and <n> is decimal digits. An item
-- that does not match is handled as a raw item. redrive.lua uses the same pattern.
--
-- Returns 0 not leased (or another owner's), 1 ready, 2 delayed, 3 dead, 4 dropped.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function retry(id, delay)
  local v = redis.call('HGET', KEYS[3], id)
  if not v then
    redis.call('ZREM', KEYS[2], id)
    return 0
  end
  local nl = string.find(v, '\n', 1, true)
  if ARGV[9] ~= '' and string.sub(v, 1, nl - 1) ~= ARGV[9] then
    return 0
  end
  local item = string.sub(v, nl + 1)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
  local s, e, att = string.find(item, '^{"qgate":1,"id":"[^"\\]+","queue":"[^"\\]*","enqueued_at":"[^"\\]*","attempts":(%d+),')
  if not s then
    redis.call('RPUSH', KEYS[1], item)
    return 1
  end
  local n = tonumber(att) + 1
  item = string.sub(item, 1, e - 1 - #att) .. n .. string.sub(item, e)
  if n >= tonumber(ARGV[1]) then
    if ARGV[2] == '1' then
      redis.call('RPUSH', KEYS[5], cjson.encode({reason = ARGV[8], failed_at = now_ms(), attempts = n, item = item}))
      return 3
    end
    return 4
  end
  if delay < 0 then
    -- initial × multiplier^(n-1), capped at max. The power overflows to inf after enough attempts,
    -- and 0 × inf is NaN, which ZADD refuses after the lease is gone: any result that is not a finite
    -- number below the cap is the cap (0 when initial is 0).
    local initial, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
    delay = initial * tonumber(ARGV[5]) ^ (n - 1)
    if initial <= 0 then
      delay = 0
    elseif delay ~= delay or delay > cap then
      delay = cap
    end
    delay = math.floor(delay * (1 + tonumber(ARGV[6]) * (2 * tonumber(ARGV[7]) - 1)))
  end
  -- The delayed set holds each item once: an equal copy already there goes to the ready list.
  if delay <= 0 or redis.call('ZSCORE', KEYS[4], item) then
    redis.call('RPUSH', KEYS[1], item)
    return 1
  end
  redis.call('ZADD', KEYS[4], now_ms() + delay, item)
  return 2
end
