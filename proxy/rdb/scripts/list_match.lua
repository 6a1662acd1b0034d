-- list_match.lua is not run on its own: proxy/rdb/listedit.go puts it right after the flags line of
-- list_pos.lua, list_rem.lua and list_insert.lua, defining matches(). It takes no KEYS[] or ARGV[] of
-- its own (the callers pass the element and its base64 from their ARGV) and Returns nothing.
--
-- matches(item, elem, elem64) is README "List edits": an item matches an element argument when its
-- stored bytes are the element, or when it is a qgate envelope whose payload is the element (what a
-- client in payload mode sees of it). The envelope is decoded here, not in Go, so the check and the
-- edit are one atomic step. The layout is AppendEnvelope's (proxy/envelope/envelope.go): the header
-- retry.lua also relies on, then ,"producer":"<JSON string>", then exactly one payload member and
-- the closing brace:
--   ,"json":<the payload verbatim>}   compared byte for byte (a JSON payload is never re-encoded)
--   ,"text":"<JSON string>"}          unescaped with cjson only when it holds a backslash
--   ,"b64":"<base64>"}                compared with elem64, the element's standard base64
-- Anything else (not an envelope, or an envelope laid out otherwise) matches only by its stored
-- bytes. Cost: a prefix compare per item; the header is read only for envelopes whose length can fit.
local ENVELOPE_HEAD = '^{"qgate":1,"id":"[^"\\]+","queue":"[^"\\]*","enqueued_at":"[^"\\]*","attempts":%d+,"producer":"'

local function matches(item, elem, elem64)
  if item == elem then return true end
  local n = #item
  if n < #elem + 60 or string.sub(item, 1, 17) ~= '{"qgate":1,"id":"' or string.byte(item, n) ~= 125 then
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
      i = j + 1
      break
    end
  end
  local member = string.sub(item, i, i + 7)
  if member == ',"json":' then
    return n - 1 - (i + 8) + 1 == #elem and string.sub(item, i + 8, n - 1) == elem
  elseif member == ',"text":' then
    local len = n - 1 - (i + 8) + 1 -- the JSON string, quotes included
    if len < #elem + 2 or string.byte(item, n - 1) ~= 34 then return false end
    local raw = string.sub(item, i + 8, n - 1)
    if not string.find(raw, '\\', 2, true) then
      return len == #elem + 2 and string.sub(raw, 2, -2) == elem
    end
    local ok, s = pcall(cjson.decode, raw)
    return ok and s == elem
  elseif member == ',"b64":"' then
    return n - 2 - (i + 8) + 1 == #elem64 and string.byte(item, n - 1) == 34 and string.sub(item, i + 8, n - 2) == elem64
  end
  return false
end

-- list_type fails like a Redis list command on a key of another type; it returns the list's length
-- (0 when there is no key).
local function list_len(key)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return 0 end
  if t ~= 'list' then
    return nil, redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
  end
  return redis.call('LLEN', key)
end
