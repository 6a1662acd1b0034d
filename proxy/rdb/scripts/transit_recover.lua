#!lua flags=allow-oom
-- transit_recover: give back up to ARGV[2] items of a dead instance's transit record (see
-- transit_return), most recently popped first, and drop the instance from the owners set when its
-- record is empty. Several reapers may run it at once: each item is pushed back once.
--
-- KEYS[1]  the queue's ready list
-- KEYS[2]  {queue}:qgate:transit:<dead instance>
-- KEYS[3]  {queue}:qgate:transit-owners
-- ARGV[1]  the dead instance id
-- ARGV[2]  the most items to give back in this call
--
-- Returns the number of items pushed back.
local fields
if redis.call('HLEN', KEYS[2]) <= tonumber(ARGV[2]) then
  fields = redis.call('HKEYS', KEYS[2])
else
  fields = redis.call('HRANDFIELD', KEYS[2], ARGV[2])
end
-- "L12.3": end, sequence number, position in the pop. Most recent first.
local function seq(f)
  local s, i = string.match(f, '^.(%d+)%.(%d+)$')
  return tonumber(s) or 0, tonumber(i) or 0
end
table.sort(fields, function(a, b)
  local sa, ia = seq(a)
  local sb, ib = seq(b)
  if sa ~= sb then return sa > sb end
  return ia > ib
end)
local n = 0
for _, f in ipairs(fields) do
  local v = redis.call('HGET', KEYS[2], f)
  if v then
    if string.sub(f, 1, 1) == 'L' then
      redis.call('LPUSH', KEYS[1], v)
    else
      redis.call('RPUSH', KEYS[1], v)
    end
    redis.call('HDEL', KEYS[2], f)
    n = n + 1
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
return n
