-- dedup_push: push each value unless its dedup key was seen on the queue within the window.
-- The check and the push are one atomic step, so several qgate instances may share the backend.
--
-- KEYS[1]       the queue's ready list (the queue's own name)
-- KEYS[2..n+1]  the dedup key of each value, {queue}:qgate:dedup:<hash>, in value order
-- ARGV[1]       "RPUSH" or "LPUSH"
-- ARGV[2]       the window in milliseconds
-- ARGV[3..n+2]  the values to store (envelopes or raw values), in KEYS order
--
-- Returns {length of the list after the call, number of values pushed}.
local pushed = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[2]) then
    redis.call(ARGV[1], KEYS[1], ARGV[i + 1])
    pushed = pushed + 1
  end
end
return {redis.call('LLEN', KEYS[1]), pushed}
