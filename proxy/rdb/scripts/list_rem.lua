#!lua flags=allow-oom
-- list_rem: LREM with README "List edits" matching (list_match.lua's matches(), which rdb/listedit.go
-- puts after this line). allow-oom, as it only removes (the tombstones replace items in place).
--
-- KEYS[1]  the queue's ready list
-- ARGV[1]  the element
-- ARGV[2]  the element's envelope tail (envelope.Tail)
-- ARGV[3]  count: > 0 removes the first count matches from the head, < 0 the first -count from the
--          tail, 0 every match
-- ARGV[4]  a tombstone: a value found nowhere in the list (the caller makes a random one)
--
-- Returns the number of items removed (0 when there is no key). A key of another type: the WRONGTYPE
-- error. O(N) reading (1000 items per LRANGE) plus one LSET per match and one LREM of the tombstones.
local elem, tail, count, tomb = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local llen, err = list_len(KEYS[1])
if err then return err end
local forward = count >= 0
local want = math.abs(count)
local hits = {}
local index = 0
while index < llen do
  local n = math.min(1000, llen - index)
  local items
  if forward then
    items = redis.call('LRANGE', KEYS[1], index, index + n - 1)
  else
    items = redis.call('LRANGE', KEYS[1], -(index + n), -(index + 1))
  end
  for k = 1, n do
    local item = forward and items[k] or items[n - k + 1]
    if matches(item, elem, tail) then
      hits[#hits + 1] = forward and index or -(index + 1)
      if want > 0 and #hits >= want then break end
    end
    index = index + 1
  end
  if want > 0 and #hits >= want then break end
end
if #hits == 0 then return 0 end
for _, at in ipairs(hits) do
  redis.call('LSET', KEYS[1], at, tomb)
end
return redis.call('LREM', KEYS[1], 0, tomb)
