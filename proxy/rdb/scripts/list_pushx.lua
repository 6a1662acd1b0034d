-- list_pushx: LPUSHX/RPUSHX on a queue with dedup: push each value unless its dedup key was seen
-- within the window (as dedup_push.lua), but only when the list exists; nothing is pushed and no
-- dedup key is set when it does not.
--
-- KEYS[1]       the queue's ready list (the queue's own name)
-- KEYS[2..n+1]  the dedup key of each value, {queue}:qgate:dedup:<hash>, in value order
-- ARGV[1]       "RPUSH" or "LPUSH"
-- ARGV[2]       the window in milliseconds
-- ARGV[3..n+2]  the values to store (envelopes or raw values), in KEYS order
--
-- Returns {length of the list after the call (0: no list), number of values pushed}. A key of another
-- type: the WRONGTYPE error.
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {0, 0} end
if t ~= 'list' then
  return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
local pushed = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[2]) then
    redis.call(ARGV[1], KEYS[1], ARGV[i + 1])
    pushed = pushed + 1
  end
end
return {redis.call('LLEN', KEYS[1]), pushed}
