-- nack: give leased items back (QNACK, and the requeue of a closing connection's leases).
-- Runs after retry.lua, which names KEYS[1..5] and ARGV[1..9] and carries the flags line.
--
-- ARGV[10]  delay in ms before the items are ready again; -1 for the rule's backoff
-- ARGV[11..] receipts, at most rdb.Chunk (the caller splits more)
--
-- Returns one retry() result per receipt (0 not leased, 1 ready, 2 delayed, 3 dead, 4 dropped).
local out = {}
for i = 11, #ARGV do
  out[#out + 1] = retry(ARGV[i], tonumber(ARGV[10]))
end
return out
