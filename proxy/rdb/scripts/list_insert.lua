-- list_insert: LINSERT with README "List edits" matching of the pivot (list_match.lua's matches(),
-- which rdb/listedit.go puts first). No flags line: it adds an item, so it is refused under OOM like
-- LINSERT.
--
-- KEYS[1]  the queue's ready list
-- ARGV[1]  the pivot
-- ARGV[2]  the pivot's envelope tail (envelope.Tail)
-- ARGV[3]  "BEFORE" or "AFTER"
-- ARGV[4]  the value to store (envelope or raw)
-- ARGV[5]  a tombstone: a value found nowhere in the list (the caller makes a random one)
--
-- Returns the list length after the insert, -1 when no item matches the pivot, 0 when there is no
-- key. A key of another type: the WRONGTYPE error. The first match from the head is the pivot: it is
-- replaced by the tombstone for a native LINSERT next to it, then put back. O(N) reading.
local pivot, tail, where, value, tomb = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local llen, err = list_len(KEYS[1])
if err then return err end
if llen == 0 then return 0 end
local index = 0
while index < llen do
  local n = math.min(1000, llen - index)
  local items = redis.call('LRANGE', KEYS[1], index, index + n - 1)
  for k = 1, n do
    if matches(items[k], pivot, tail) then
      redis.call('LSET', KEYS[1], index, tomb)
      local len = redis.call('LINSERT', KEYS[1], where, tomb, value)
      if where == 'BEFORE' then index = index + 1 end
      redis.call('LSET', KEYS[1], index, items[k])
      return len
    end
    index = index + 1
  end
end
return -1
