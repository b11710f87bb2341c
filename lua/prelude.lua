-- tollgate prelude: prepended to each algorithm's script (fixed_window.lua,
-- sliding_log.lua, token_bucket.lua, leaky_bucket.lua) to make the one script
-- that Redis runs atomically per decision. It reads ARGV[1] and ARGV[2], which
-- every script shares:
--
-- ARGV[1]  cost: units asked for (integer, 0 peeks)
-- ARGV[2]  now_us: µs since the Unix epoch from the client's clock, or '' to
--          use the server's TIME (the default: app servers with skewed clocks
--          still agree)
--
-- Every quantity is an integer below 2^53, which Lua 5.1's doubles hold
-- exactly. The scripts never form a sum or product that could pass 2^53
-- (they compare `a > limit - b`, not `a + b > limit`, and take durations as
-- differences of times), and divide with math.fmod (exact) so that
-- quotients are exact too.

-- floor(a / b), exactly, for a >= 0 and b > 0.
local function floor_div(a, b)
  return (a - math.fmod(a, b)) / b
end

-- ceil(a / b), exactly, for a >= 0 and b > 0.
local function ceil_div(a, b)
  local r = math.fmod(a, b)
  local q = (a - r) / b
  if r > 0 then
    q = q + 1
  end
  return q
end

-- An integer as a Redis argument: tostring keeps only 14 significant digits.
local function int(n)
  return string.format('%.0f', n)
end

local cost = tonumber(ARGV[1])
local client_time = ARGV[2] ~= ''
local now_us
if client_time then
  now_us = tonumber(ARGV[2])
else
  local time = redis.call('TIME')
  now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- Makes `key` expire `ttl_us` µs after now_us, rounded up to whole
-- milliseconds: when its state reads as new again. A client clock need not
-- run at the server's pace (a test's manual clock does not), so in
-- client-time mode the key is kept one second longer: an extra second of a
-- state that reads as new anyway changes no decision.
local function expire_in(key, ttl_us)
  local ttl_ms = ceil_div(ttl_us, 1000)
  if client_time then
    ttl_ms = ttl_ms + 1000
  end
  redis.call('PEXPIRE', key, int(ttl_ms))
end

-- The reply: {allowed, limit, remaining, retry_after_us, reset_after_us,
-- wait_us}, integers (Redis truncates Lua numbers to integers).
local function allowed(limit, remaining, reset_after_us, wait_us)
  return {1, limit, remaining, 0, reset_after_us, wait_us}
end

-- A denial never says retry after zero: a client would spin.
local function denied(limit, remaining, retry_after_us, reset_after_us)
  return {0, limit, remaining, math.max(retry_after_us, 1), reset_after_us, 0}
end

-- The token and leaky buckets' meter, a hash {debt, updated_us}, read at
-- now_us: the debt left after draining `amount` units per µs since
-- updated_us, and now_us clamped to updated_us so that a clock that went
-- back refunds nothing. `elapsed * amount` may pass 2^53, so it is formed
-- only when it is below the debt.
local function read_meter(key, amount)
  local state = redis.call('HMGET', key, 'debt', 'updated_us')
  local debt = tonumber(state[1]) or 0
  local updated_us = tonumber(state[2]) or 0
  local now = math.max(now_us, updated_us)
  local elapsed = now - updated_us
  if elapsed >= ceil_div(debt, amount) then
    return 0, now
  end
  return debt - elapsed * amount, now
end

-- Stores the meter's `debt` as of `now`, and expires the key once it has
-- drained to zero, when it reads as new again.
local function write_meter(key, debt, now, amount)
  redis.call('HSET', key, 'debt', int(debt), 'updated_us', int(now))
  expire_in(key, ceil_div(debt, amount) + (now - now_us))
end

-- Meter.charge: drains the meter to now and adds `added` units of debt if the
-- debt stays within `full`, writing only a non-zero `added` that is admitted.
-- Returns {admitted, before, after} when admitted, or {admitted = false,
-- before, retry_after_us}: the µs of draining after which it would fit.
-- before + added may pass 2^53, so it is compared and subtracted without
-- being formed.
local function charge_meter(key, amount, added, full)
  local before, now = read_meter(key, amount)
  if before > full - added then
    return {admitted = false, before = before, retry_after_us = ceil_div(before - (full - added), amount)}
  end
  local after = before + added
  if added > 0 then
    write_meter(key, after, now, amount)
  end
  return {admitted = true, before = before, after = after}
end
