#!lua flags=allow-oom
-- redrive: move dead items back to the ready list (QREDRIVE), oldest first, with attempts reset to 0.
--
-- allow-oom (see rdb.go): only moves items (a record's item is smaller than the record).
--
-- KEYS[1]  the queue's ready list (the queue's own name)
-- KEYS[2]  {queue}:qgate:dead  LIST of JSON records {"reason","failed_at","attempts","item"}
-- ARGV[1]  the most items to move, at most rdb.Chunk (QREDRIVE of more runs it several times)
--
-- Items are appended to the ready list (RPUSH). A record that is not valid JSON is moved as it is.
-- The attempts counter is found with retry.lua's pattern (see the envelope layout there).
-- Returns the number of items moved.
local n = 0
for i = 1, tonumber(ARGV[1]) do
  local rec = redis.call('LPOP', KEYS[2])
  if not rec then break end
  local ok, dec = pcall(cjson.decode, rec)
  local item = rec
  if ok and type(dec) == 'table' and type(dec.item) == 'string' then
    item = dec.item
    local s, e, att = string.find(item, '^{"qgate":1,"id":"[^"\\]+","queue":"[^"\\]*","enqueued_at":"[^"\\]*","attempts":(%d+),')
    if s then
      item = string.sub(item, 1, e - 1 - #att) .. '0' .. string.sub(item, e)
    end
  end
  redis.call('RPUSH', KEYS[1], item)
  n = n + 1
end
return n
