#!lua flags=allow-oom
-- lease_return: give back leases that a blocked pop took for a client that left before it got the
-- item (proxy/queue/blocking.go): each lease the owner still holds is ended and its item pushed back
-- to the end of the ready list it was popped from, so the list is as before the pop. Unlike nack, no
-- attempt is counted (nobody received the item) and there is no backoff. allow-oom: giving an item
-- back must never need new memory to be allowed.
--
-- KEYS[1]  the queue's ready list
-- KEYS[2]  {queue}:qgate:inflight
-- KEYS[3]  {queue}:qgate:leases
-- ARGV[1]  owner: only leases it holds are returned (one that expired and went to another client is
--          left alone); a repeat does nothing
-- ARGV[2]  "LPUSH" (popped from the head) or "RPUSH" (from the tail)
-- ARGV[3..] receipts, most recently leased first
--
-- Returns the number of items pushed back.
local n = 0
local pre = ARGV[1] .. '\n'
for i = 3, #ARGV do
  local v = redis.call('HGET', KEYS[3], ARGV[i])
  if v and string.sub(v, 1, #pre) == pre then
    redis.call(ARGV[2], KEYS[1], string.sub(v, #pre + 1))
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
