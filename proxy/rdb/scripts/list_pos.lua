#!lua flags=no-writes,allow-oom
-- list_pos: LPOS with README "List edits" matching (list_match.lua's matches(), which rdb/listedit.go
-- puts after this line). Reads only: allowed under OOM, as LPOS.
--
-- KEYS[1]  the queue's ready list
-- ARGV[1]  the element
-- ARGV[2]  the element's envelope tail (envelope.Tail)
-- ARGV[3]  RANK: not 0; negative scans from the tail
-- ARGV[4]  COUNT: the most positions to return, 0 for all (the caller passes 1 without COUNT)
-- ARGV[5]  MAXLEN: the most items to compare, 0 for all
--
-- Returns the positions (from the head, 0-based) of the matches, in scan order: skipping the first
-- |RANK|-1 matches, at most COUNT of them; {} when there is no key or no match. A key of another type:
-- the WRONGTYPE error. O(N): at most the list (or MAXLEN items) is read, 1000 items per LRANGE.
local elem, tail = ARGV[1], ARGV[2]
local rank, count, maxlen = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local llen, err = list_len(KEYS[1])
if err then return err end
local forward = rank > 0
if not forward then rank = -rank end
local limit = llen
if maxlen > 0 and maxlen < limit then limit = maxlen end
local out, seen, index = {}, 0, 0
while index < limit do
  local n = math.min(1000, limit - index)
  local items
  if forward then
    items = redis.call('LRANGE', KEYS[1], index, index + n - 1)
  else
    items = redis.call('LRANGE', KEYS[1], -(index + n), -(index + 1))
  end
  for k = 1, n do
    local item = forward and items[k] or items[n - k + 1]
    if matches(item, elem, tail) then
      seen = seen + 1
      if seen >= rank then
        out[#out + 1] = forward and index or llen - index - 1
        if count > 0 and #out >= count then return out end
      end
    end
    index = index + 1
  end
end
return out
