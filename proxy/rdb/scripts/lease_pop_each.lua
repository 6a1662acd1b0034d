#!lua flags=allow-oom
-- lease_pop_each: pop up to one item per waiting client from a queue's ready list and lease item i to
-- owner i, all in one atomic step: the batched take of blocked lease pops (proxy/DESIGN.md "How the
-- engine uses the Hub"). An item is always either in the ready list or leased, at every instant.
--
-- allow-oom (see rdb.go): as lease_pop.lua.
--
-- KEYS[1]  the queue's ready list (the queue's own name)
-- KEYS[2]  {queue}:qgate:inflight  ZSET receipt -> deadline (ms, Redis clock)
-- KEYS[3]  {queue}:qgate:leases    HASH receipt -> owner .. "\n" .. item
-- KEYS[4]  {queue}:qgate:handoff   LIST items an older version moved out for a waiting client; served
--          first, as lease_pop.lua does
-- KEYS[5]  {queue}:qgate:paused  optional: while it exists the queue is paused and nothing is popped
-- ARGV[1]  "LPOP" or "RPOP"
-- ARGV[2]  visibility timeout in milliseconds
-- ARGV[3..] pairs owner, receipt prefix: one per waiting client, in the order they are served; at
--          most rdb.Chunk pairs. Owners have no "\n"; every prefix is unique and unguessable, so no
--          client of the batch can guess another one's receipt
--
-- Receipt: the pair's prefix .. ".1" (the receipt of a single pop's item, as lease_pop.lua makes).
--
-- Returns false when nothing was popped (empty or paused), else a flat array {receipt1, item1,
-- receipt2, item2, ...} for the first k pairs, k ≤ the number of pairs, in pop order.
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then
  return false
end
local n = math.floor((#ARGV - 2) / 2)
if n < 1 then
  return false
end
local items = redis.call('LPOP', KEYS[4], n) or {}
if #items < n then
  local more = redis.call(ARGV[1], KEYS[1], n - #items)
  if more then
    for _, v in ipairs(more) do items[#items + 1] = v end
  end
end
if #items == 0 then
  return false
end
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
local out = {}
for i, item in ipairs(items) do
  local owner, receipt = ARGV[2 * i + 1], ARGV[2 * i + 2] .. '.1'
  redis.call('HSET', KEYS[3], receipt, owner .. '\n' .. item)
  redis.call('ZADD', KEYS[2], deadline, receipt)
  out[#out + 1] = receipt
  out[#out + 1] = item
end
return out
