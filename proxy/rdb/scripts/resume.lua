#!lua flags=allow-oom
-- resume: end a queue's pause (README "Queue controls") and make every qgate instance's blocked pops
-- on it look again: when the ready list has items, its last item is moved onto itself (LMOVE key key
-- RIGHT RIGHT: the list is unchanged), which raises the list's keyspace events that the wait hubs of
-- all instances subscribe to. allow-oom (see rdb.go): it deletes a key and moves an item in place, so
-- a queue can be resumed while Redis is at maxmemory with noeviction (popping is what frees memory).
--
-- KEYS[1]  the queue's ready list
-- KEYS[2]  {queue}:qgate:paused  the pause flag (a string)
-- ARGV[]   none
--
-- Returns 1 if the queue was paused, else 0.
local was = redis.call('DEL', KEYS[2])
if was == 1 and redis.call('TYPE', KEYS[1]).ok == 'list' and redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('LMOVE', KEYS[1], KEYS[1], 'RIGHT', 'RIGHT')
end
return was
