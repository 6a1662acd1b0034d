-- list_match.lua is not run on its own: proxy/rdb/listedit.go puts it right after the flags line of
-- list_pos.lua, list_rem.lua and list_insert.lua, defining matches() and list_len(). It takes no
-- KEYS[] or ARGV[] of its own (the callers pass the element and its envelope tail from their ARGV)
-- and Returns nothing.
--
-- matches(item, elem, tail) is README "List edits": an item matches an element argument when its
-- stored bytes are the element, or when it is a qgate envelope whose payload is the element (what a
-- client in payload mode sees of it). The envelope is decoded here, not in Go, so the check and the
-- edit are one atomic step. tail is envelope.Tail(elem): the payload member AppendEnvelope writes
-- for elem and the closing brace (,"json":<elem verbatim>} for a JSON payload, so it is compared as
-- its exact bytes, never re-encoded; ,"text":"<JSON string>"} or ,"b64":"<base64>"} otherwise).
-- The item matches when it ends with tail and its payload member starts exactly where tail does:
-- the header is read with the pattern retry.lua relies on (proxy/envelope/envelope.go), then the
-- producer's JSON string up to its closing quote. Envelopes laid out otherwise match only by their
-- stored bytes. Cost per item: one compare of #tail bytes; the header is read only when it matches.
local ENVELOPE_HEAD = '^{"qgate":1,"id":"[^"\\]+","queue":"[^"\\]*","enqueued_at":"[^"\\]*","attempts":%d+,"producer":"'

local function matches(item, elem, tail)
  if item == elem then return true end
  local n, t = #item, #tail
  -- string.find at the one position where tail can start: no new Lua string per item (string.sub
  -- would intern one, doubling the cost of a scan)
  if n < t + 70 or not string.find(item, tail, n - t + 1, true) or string.sub(item, 1, 17) ~= '{"qgate":1,"id":"' then
    return false
  end
  local _, e = string.find(item, ENVELOPE_HEAD)
  if not e then return false end
  -- the producer's JSON string: skip escaped characters up to its closing quote
  local i = e + 1
  while true do
    local j = string.find(item, '["\\]', i)
    if not j then return false end
    if string.byte(item, j) == 92 then
      i = j + 2
    else
      return j + 1 == n - t + 1
    end
  end
end

-- list_len fails like a Redis list command on a key of another type; it returns the list's length
-- (0 when there is no key).
local function list_len(key)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return 0 end
  if t ~= 'list' then
    return nil, redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
  end
  return redis.call('LLEN', key)
end
