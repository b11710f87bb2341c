-- tollgate token bucket: the mirror of src/algorithm/token_bucket.rs
-- (lua/prelude.lua is prepended).
--
-- KEYS[1]  one (limiter, user key): a hash {debt, updated_us}, the meter shared
--          with the leaky bucket. debt is how far the bucket is from full, in
--          units of 1/amount µs (a token is period_us units; each µs drains
--          `amount`), as of updated_us (µs since the epoch).
-- ARGV[1]  cost, tokens; ARGV[2] now_us or '' (see the prelude)
-- ARGV[3]  capacity: tokens in a full bucket
-- ARGV[4]  amount, ARGV[5] period_us: the refill rate, amount tokens per period_us µs
-- Reply    {allowed (1 or 0), limit, remaining, retry_after_us,
--          reset_after_us, wait_us}: integers, durations in µs
-- Writes   only an admitted non-zero cost, then PEXPIREs the key (ms, rounded
--          up) to when the bucket is full again and the key reads as new.

local key = KEYS[1]
local capacity = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local period_us = tonumber(ARGV[5])

-- capacity * period_us <= 2^53 by validation; the debt never exceeds it.
local full = capacity * period_us
local function tokens_left(d)
  return floor_div(full - d, period_us)
end
local function until_full(d)
  return ceil_div(d, amount)
end

local charge = charge_meter(key, amount, cost * period_us, full)
if not charge.admitted then
  return denied(capacity, tokens_left(charge.before), charge.retry_after_us, until_full(charge.before))
end
return allowed(capacity, tokens_left(charge.after), until_full(charge.after), 0)
