-- The commands of a sliding log's admission and nothing else, for
-- benches/benches/redis_cost.rs: what the six calls that
-- lua/sliding_log.lua makes on a log whose newest entry is live cost by
-- themselves (TIME, the newest entry with its score, the count of entries
-- that have left the window, the first live entry by rank, ZADD, PEXPIRE),
-- with their numbers passed as text, as that script passes them. No checks,
-- no running totals, no reply worth reading: not a limiter.
--
-- KEYS[1]  a sliding log's key, of an hour's window
local time = redis.call('TIME')
redis.call('ZRANGE', KEYS[1], '-1', '-1', 'WITHSCORES')
local live_after = (time[1] - 3600) .. string.format('%06d', time[2])
redis.call('ZCOUNT', KEYS[1], '-inf', live_after)
redis.call('ZRANGE', KEYS[1], '0', '0')
redis.call('ZADD', KEYS[1], time[1] .. string.format('%06d', time[2]), 'skeleton:' .. time[2])
redis.call('PEXPIRE', KEYS[1], '3600000')
return 1
