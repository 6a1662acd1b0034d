#!lua flags=allow-oom
-- transit_return: give items of a transit record back to their ready list: popped items whose reply
-- could not be written, items of an instance that died, pops whose reply was lost. Each field present
-- is deleted and its item pushed back to the end it was popped from (field "L…": LPUSH, "R…": RPUSH),
-- in ARGV order; fields already gone (delivered, or given back by someone else) are skipped, so a
-- repeat does nothing. allow-oom: giving an item back must never need new memory to be allowed.
--
-- KEYS[1]  the queue's ready list
-- KEYS[2]  {queue}:qgate:transit:<instance>
-- KEYS[3]  {queue}:qgate:transit-owners
-- ARGV[1]  the instance id
-- ARGV[2..n] fields, most recently popped first (so the list ends up in its original order)
--
-- Returns the number of items pushed back. The instance stays in the owners set (it is alive);
-- transit_recover removes a dead one.
local n = 0
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  if v then
    if string.sub(ARGV[i], 1, 1) == 'L' then
      redis.call('LPUSH', KEYS[1], v)
    else
      redis.call('RPUSH', KEYS[1], v)
    end
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
