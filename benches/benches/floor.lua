-- The floor of benches/benches/redis_cost.rs: the leanest one-key decision a
-- script can make, GCRA in its simplest form (TIME, GET, arithmetic, one SET
-- with PX). It is not exact (doubles unchecked, a Lua number as the SET
-- argument) and answers two numbers, not six: it is what a script of the
-- simplest form costs Redis, for comparison.
--
-- KEYS[1]  the key; ARGV[1] emission interval (µs), ARGV[2] burst tolerance (µs)
local time = redis.call('TIME')
local now = time[1] * 1000000 + time[2]
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + interval
if new_tat - tolerance > now then
  return {0, new_tat - tolerance - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
