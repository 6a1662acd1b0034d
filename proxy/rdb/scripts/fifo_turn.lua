#!lua flags=allow-oom
-- fifo_turn: whether a blocked pop on a global_fifo queue may take now (README "Blocked pops across
-- instances", proxy/DESIGN.md "Global FIFO"). Every qgate instance's blocked pops on the queue have a
-- place in one sorted set, scored by when they started to wait (Redis's clock, µs); a waiter may take
-- while fewer places are ahead of its own than the list has items, and its place is removed when it
-- is told to take (a take that then finds nothing is put back at its own score by an "enter" call). A
-- waiter whose place is missing is added at its score (its first call, or its place was dropped or
-- used by a take that found nothing). When the places entitled to the items have not been used within
-- the grace (their instance died, is frozen, or lost the removal of an ended wait's place), every place
-- ahead of the caller is dropped, and every other place of the head's instance: a stall costs the
-- queue one grace, however many places are stale and wherever they are; a live waiter among them is
-- put back at its own score at its next call. allow-oom (see rdb.go): it writes only places, and a
-- queue at maxmemory with noeviction must stay poppable (popping frees memory).
--
-- KEYS[1]  the queue's ready list
-- KEYS[2]  {queue}:qgate:waiters  ZSET member → µs since the epoch when it started to wait
-- KEYS[3]  {queue}:qgate:turn     STRING "<ms>|<member>": since when the head has held items back
-- KEYS[4]  {queue}:qgate:paused   the pause flag
-- ARGV[1]  the waiter's member (instance id ":" sequence)
-- ARGV[2]  the grace in ms
-- ARGV[3]  the waiters set's expiry in ms (renewed by each call)
-- ARGV[4]  the waiter's score; "0" for now (its first call: the reply says which score it got)
-- ARGV[5]  "enter" to take the place only (no turn asked, nothing removed), else "turn"
--
-- Returns {code, ms, dropped, score}: code 0 = nothing to take (the list is empty or the queue
-- paused), 1 = take now (the place is removed), 2 = places ahead are entitled to the items: call again
-- in ms; dropped = places of others removed by the grace; score = the waiter's score. A list key
-- holding another type: Redis's WRONGTYPE error reply, unchanged.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[2])
local score = tonumber(ARGV[4])
if score == 0 then
  score = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
if not rank then
  redis.call('ZADD', KEYS[2], score, ARGV[1])
  rank = redis.call('ZRANK', KEYS[2], ARGV[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if ARGV[5] == 'enter' then
  return {0, 0, 0, score}
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {0, 0, 0, score}
end
-- pcall: a key holding another type returns Redis's WRONGTYPE reply unchanged (redis.call would add
-- the script's name and line to it), as the pops' scripts do; the waiter gets it.
local n = redis.pcall('LLEN', KEYS[1])
if type(n) == 'table' and n.err then
  return n
end
if n == 0 then
  return {0, 0, 0, score}
end
if rank < n then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {1, 0, 0, score}
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
local mark = redis.call('GET', KEYS[3])
if mark then
  local sep = string.find(mark, '|', 1, true)
  local since = tonumber(string.sub(mark, 1, sep - 1))
  if string.sub(mark, sep + 1) == head then
    if now - since < grace then
      return {2, grace - (now - since), 0, score}
    end
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, rank)
    redis.call('DEL', KEYS[3])
    -- The head's instance did not take for a whole grace: dead, frozen, or it lost the removal of an
    -- ended wait. Its other places are behind the caller (its clients started to wait at various
    -- times, among other instances' clients), and each would hold the items back for a grace of its
    -- own once it reached the head: they go now too. Members are "<instance>:<seq>".
    local dropped = rank
    local inst = string.match(head, '^(.*):')
    if inst then
      local gone = {}
      for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
        if string.match(m, '^(.*):') == inst then
          gone[#gone + 1] = m
        end
      end
      for i = 1, #gone, 1000 do
        redis.call('ZREM', KEYS[2], unpack(gone, i, math.min(i + 999, #gone)))
      end
      dropped = dropped + #gone
    end
    return {1, 0, dropped, score}
  end
end
redis.call('SET', KEYS[3], now .. '|' .. head, 'PX', grace * 10)
return {2, grace, 0, score}
