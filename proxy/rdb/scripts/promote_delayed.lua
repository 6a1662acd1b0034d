#!lua flags=allow-oom
-- promote_delayed: move delayed items whose time came to the tail of the ready list (RPUSH, the
-- end producers push to with RPUSH), oldest ready-at first.
--
-- allow-oom (see rdb.go): only moves items.
--
-- KEYS[1]  {queue}:qgate:delayed  ZSET item -> ready-at (ms)
-- KEYS[2]  the queue's ready list
-- ARGV[1]  the most items to move in this call, at most rdb.Chunk
--
-- A member starting with "\0qgate:delayed\0" is a raw value stored by control_push.lua under a unique
-- prefix ("\0qgate:delayed\0" <id> "." <i> "\0"); what follows the prefix is pushed.
--
-- Returns {items moved, ms until the earliest remaining item is due (0 when due now, -1 when none is
-- left)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local marker = '\0qgate:delayed\0'
for _, item in ipairs(items) do
  local v = item
  if string.sub(item, 1, #marker) == marker then
    local j = string.find(item, '\0', #marker + 1, true)
    if j then v = string.sub(item, j + 1) end
  end
  redis.call('RPUSH', KEYS[2], v)
  redis.call('ZREM', KEYS[1], item)
end
local next_in = -1
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then
  next_in = math.max(0, tonumber(first[2]) - now)
end
return {#items, next_in}
