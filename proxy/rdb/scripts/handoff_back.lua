#!lua flags=allow-oom
-- handoff_back: the reaper's step that moves items left in a queue's handoff list (a blocked-pop
-- listener moved them there for a waiter that left, or qgate died before the waiter leased them) back
-- to the head of the ready list, in order: the handoff list's oldest item ends up first.
--
-- allow-oom (see rdb.go): only moves items.
--
-- KEYS[1]  {queue}:qgate:handoff  LIST
-- KEYS[2]  the queue's ready list (the queue's own name)
-- ARGV[1]  the most items to move, at most rdb.Chunk
--
-- Returns the number of items moved.
local n = 0
for i = 1, tonumber(ARGV[1]) do
  if not redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') then break end
  n = n + 1
end
return n
