-- The commands of a sliding log's admission and nothing else, for
-- benches/benches/redis_cost.rs: what the five calls that
-- lua/sliding_log.lua makes on a log of two or more live entries cost by
-- themselves (TIME, the two oldest entries, the newest, ZADD, PEXPIRE), with
-- their numbers passed as text, as that script passes them. No checks, no
-- running totals, no reply worth reading: not a limiter.
--
-- KEYS[1]  a sliding log's key
local time = redis.call('TIME')
redis.call('ZRANGE', KEYS[1], '0', '1', 'WITHSCORES')
redis.call('ZRANGE', KEYS[1], '-1', '-1', 'WITHSCORES')
redis.call('ZADD', KEYS[1], time[1] .. string.format('%06d', time[2]), 'skeleton:' .. time[2])
redis.call('PEXPIRE', KEYS[1], '3600000')
return 1
