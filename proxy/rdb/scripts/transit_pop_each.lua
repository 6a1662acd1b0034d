#!lua flags=allow-oom
-- transit_pop_each: several single pops (no COUNT) of one queue, pipelined by one client or by
-- several at once, in one script call: each moves one item from the ready list into this instance's
-- transit record as transit_pop does, under its own field prefix (the k pops are one pop with COUNT k
-- in Redis: the same items, in the same order). One call instead of one per pop,
-- because each script call has a fixed cost in Redis several times that of the pop itself. The same
-- call deletes the fields of this instance's earlier pops on the queue whose replies were written
-- (delivered), instead of an HDEL of its own (DESIGN.md "The transit record").
--
-- KEYS[1]  the queue's ready list
-- KEYS[2]  {queue}:qgate:transit:<instance>
-- KEYS[3]  {queue}:qgate:transit-owners
-- KEYS[4]  {queue}:qgate:paused  optional: while it exists the queue is paused and every pop finds it
--          empty (README "Queue controls")
-- ARGV[1]  "LPOP" or "RPOP"
-- ARGV[2]  the instance id
-- ARGV[3]  k, the number of pops
-- ARGV[4..3+k]  each pop's field ("L12.1" …: its prefix "L12." .. "1", as transit_pop names a
--          pop's first item)
-- ARGV[4+k..n]  fields of delivered pops to delete from KEYS[2] (none, or any number)
--
-- Returns k entries, one per pop in order: the item, or false once the list is empty; then the
-- number of fields of ARGV[4+k..n] that were deleted (fewer than given: another instance gave them
-- back meanwhile). A key holding another type returns Redis's WRONGTYPE error reply unchanged, and
-- then nothing was popped nor deleted.
local k = tonumber(ARGV[3])
-- One LPOP/RPOP with COUNT k and one HSET per 500 items: the same items as k single pops, in far
-- fewer calls (each call from a script has a cost of its own).
local got = false
if not (KEYS[4] ~= nil and redis.call('EXISTS', KEYS[4]) == 1) then
  got = redis.pcall(ARGV[1], KEYS[1], k)
  if type(got) == 'table' and got.err then
    return got
  end
end
local out = {}
local n = got and #got or 0
if n > 0 then
  redis.call('SADD', KEYS[3], ARGV[2])
  local kv = {}
  for i = 1, n do
    kv[#kv + 1] = ARGV[3 + i]
    kv[#kv + 1] = got[i]
    if #kv == 1000 or i == n then
      redis.call('HSET', KEYS[2], unpack(kv))
      kv = {}
    end
  end
end
for i = 1, k do
  out[i] = (i <= n) and got[i] or false
end
local deleted = 0
if #ARGV > 3 + k then
  deleted = redis.call('HDEL', KEYS[2], unpack(ARGV, 4 + k))
end
out[k + 1] = deleted
return out
