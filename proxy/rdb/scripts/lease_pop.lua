#!lua flags=allow-oom
-- lease_pop: optionally ack this connection's previous leases (ack: next-pop), then pop up to N items
-- from a queue's ready list and lease each one, all in one atomic step: an item is always either in
-- the ready list or leased, at every instant.
--
-- allow-oom (see rdb.go): runs when Redis is at maxmemory with noeviction. A lease keeps the item
-- and adds its receipt and owner (about 150 bytes) until it is acked, which frees it all.
--
-- KEYS[1]  the queue's ready list (the queue's own name)
-- KEYS[2]  {queue}:qgate:inflight  ZSET receipt -> deadline (ms, Redis clock)
-- KEYS[3]  {queue}:qgate:leases    HASH receipt -> owner .. "\n" .. item
-- KEYS[4]  {queue}:qgate:handoff   LIST items a blocked-pop listener moved out of the ready list for a
--          waiting client (see proxy/blocking.go); they are older than the ready list's, so served first
-- KEYS[5]  {queue}:qgate:paused  optional: while it exists the queue is paused: the acks are done and
--          the pop finds the queue empty (README "Queue controls")
-- ARGV[1]  "LPOP" or "RPOP"
-- ARGV[2]  count, at most rdb.Chunk (the caller splits larger ones); "" for a single pop without COUNT
-- ARGV[3]  visibility timeout in milliseconds
-- ARGV[4]  owner: the popping connection's token (qgate instance and client id; no "\n")
-- ARGV[5]  receipt prefix: unique and unguessable for every call (commands/lease_commands.go)
-- ARGV[6..] receipts to ack first, only where ARGV[4] owns them (ack: next-pop); at most rdb.Chunk
--
-- Receipt: ARGV[5] .. "." .. i for the i-th item of this pop; the key of its lease in KEYS[2] and
-- KEYS[3]. Only the popping client gets it (in the envelope it receives, see envelope.WithReceipt),
-- every delivery of an item gets a new one, and it is never stored in the item, so no one who only
-- peeked at the item (LRANGE, QDEAD) or got an earlier delivery of it can ack, nack or extend it.
-- Items are not parsed: envelopes, raw values and equal copies are leased alike.
--
-- Returns {acked, popped} where popped is false when the list was empty (nil reply) and otherwise a
-- flat array {receipt1, item1, receipt2, item2, ...} in pop order.
local acked = 0
for i = 6, #ARGV do
  local v = redis.call('HGET', KEYS[3], ARGV[i])
  if v and string.sub(v, 1, #ARGV[4] + 1) == ARGV[4] .. '\n' then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    acked = acked + 1
  end
end
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then
  return {acked, false}
end
local items
if ARGV[2] == '' then
  local v = redis.call('LPOP', KEYS[4])
  if not v then v = redis.call(ARGV[1], KEYS[1]) end
  if v then items = {v} end
elseif tonumber(ARGV[2]) == 0 then
  items = redis.call(ARGV[1], KEYS[1], 0)
else
  items = redis.call('LPOP', KEYS[4], ARGV[2])
  local want = tonumber(ARGV[2]) - (items and #items or 0)
  if want > 0 then
    local more = redis.call(ARGV[1], KEYS[1], want)
    if more then
      items = items or {}
      for _, v in ipairs(more) do items[#items + 1] = v end
    end
  end
end
if not items then
  return {acked, false}
end
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
local out = {}
for i, item in ipairs(items) do
  local receipt = ARGV[5] .. '.' .. i
  redis.call('HSET', KEYS[3], receipt, ARGV[4] .. '\n' .. item)
  redis.call('ZADD', KEYS[2], deadline, receipt)
  out[#out + 1] = receipt
  out[#out + 1] = item
end
return {acked, out}
