#!lua flags=allow-oom
-- transit_pop: pop from an at-most-once queue into this qgate instance's transit record, in one atomic
-- step, so an item is in the ready list or in a transit record at every instant until its reply is
-- written (then the record is deleted) or it is given back (transit_return). allow-oom: a pop moves an
-- item, it does not add one, and popping is what frees memory.
--
-- KEYS[1]  the queue's ready list (the queue's own name)
-- KEYS[2]  {queue}:qgate:transit:<instance>  HASH field -> item
-- KEYS[3]  {queue}:qgate:transit-owners      SET of instances that have a transit record on the queue
-- KEYS[4]  {queue}:qgate:paused  optional: while it exists the queue is paused and the pop finds it
--          empty (README "Queue controls")
-- ARGV[1]  "LPOP" or "RPOP"
-- ARGV[2]  count; "" for a single pop without COUNT (the caller validated it: 0 <= count <= chunk)
-- ARGV[3]  the pop's field prefix: "L" or "R" (the end to push back to), a sequence number and "."
-- ARGV[4]  the instance id
--
-- Fields are ARGV[3] .. i for the i-th item of the pop (1-based, pop order).
-- Returns what the pop returns: the item or false (no COUNT), or a list (possibly empty) or false;
-- a pop of a key holding another type returns Redis's WRONGTYPE error reply unchanged.
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then
  return false
end
local res
if ARGV[2] == '' then
  res = redis.pcall(ARGV[1], KEYS[1])
else
  res = redis.pcall(ARGV[1], KEYS[1], ARGV[2])
end
if type(res) == 'table' and res.err then
  return res
end
if not res then
  return false
end
local items = res
if ARGV[2] == '' then items = {res} end
if #items > 0 then
  redis.call('SADD', KEYS[3], ARGV[4])
  for i, v in ipairs(items) do
    redis.call('HSET', KEYS[2], ARGV[3] .. i, v)
  end
end
return res
