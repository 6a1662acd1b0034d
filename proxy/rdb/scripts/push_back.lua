#!lua flags=allow-oom
-- push_back: put items a blocked-pop listener popped back at the end they came from, when nobody can
-- take them (the waiter left, or its reply could not be written). allow-oom: giving an item back must
-- never need new memory to be allowed.
--
-- KEYS[1]  the queue's ready list
-- ARGV[1]  "LPUSH" or "RPUSH"
-- ARGV[2..n] the items, most recently popped first; at least one (with none, the push fails with
--          Redis's arity error)
--
-- Returns the list's length.
return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))
