-- tollgate fixed window: the mirror of src/algorithm/fixed_window.rs
-- (lua/prelude.lua is prepended).
--
-- KEYS[1]  one (limiter, user key): a hash {index, count}, the window
--          (floor(now_us / period_us)) the key last admitted in and the units
--          admitted there
-- ARGV[1]  cost, units; ARGV[2] now_us or '' (see the prelude)
-- ARGV[3]  amount: units per window
-- ARGV[4]  period_us: the window's length, µs; windows are aligned to the epoch
-- Reply    {allowed (1 or 0), limit, remaining, retry_after_us,
--          reset_after_us, wait_us}: integers, durations in µs
-- Writes   only an admitted non-zero cost, then PEXPIREs the key (ms, rounded
--          up) to the end of its window, when it reads as new again.

local key = KEYS[1]
local amount = tonumber(ARGV[3])
local period_us = tonumber(ARGV[4])

local state = redis.call('HMGET', key, 'index', 'count')
local stored_index = tonumber(state[1]) or 0
local stored_count = tonumber(state[2]) or 0

-- A clock that went back stays in the newest window seen: no second allowance.
local index = math.max(floor_div(now_us, period_us), stored_index)
local count = 0
if index == stored_index then
  count = stored_count
end
-- (index + 1) * period_us may pass 2^53: measure from the window's start.
local until_next_window = period_us - math.fmod(now_us, period_us)
if index > floor_div(now_us, period_us) then
  until_next_window = index * period_us - now_us + period_us
end
local function reset_after(units)
  if units == 0 then
    return 0
  end
  return until_next_window
end

if cost > amount - count then
  return denied(amount, amount - count, until_next_window, reset_after(count))
end
if cost > 0 then
  redis.call('HSET', key, 'index', int(index), 'count', int(count + cost))
  expire_in(key, until_next_window)
end
return allowed(amount, amount - count - cost, reset_after(count + cost), 0)
