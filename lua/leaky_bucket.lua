-- tollgate leaky bucket: the mirror of src/algorithm/leaky_bucket.rs
-- (lua/prelude.lua is prepended).
--
-- KEYS[1]  one (limiter, user key): a hash {debt, updated_us}, the meter shared
--          with the token bucket. debt is the queue's backlog, in units of
--          1/amount µs (a request is period_us units; each µs drains
--          `amount`), as of updated_us (µs since the epoch).
-- ARGV[1]  cost, requests; ARGV[2] now_us or '' (see the prelude)
-- ARGV[3]  capacity: requests that may wait; capacity + 1 are admitted at once
-- ARGV[4]  amount, ARGV[5] period_us: the drain rate, amount requests per period_us µs
-- Reply    {allowed (1 or 0), limit, remaining, retry_after_us,
--          reset_after_us, wait_us}: integers, durations in µs; wait_us is how
--          long to hold an admitted request before passing it on
-- Writes   only an admitted non-zero cost, then PEXPIREs the key (ms, rounded
--          up) to when the queue is empty and the key reads as new.

local key = KEYS[1]
local capacity = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local period_us = tonumber(ARGV[5])

-- (capacity + 1) * period_us <= 2^53 by validation; the backlog never exceeds it.
local slots = capacity + 1
local full_backlog = slots * period_us
local function slots_left(b)
  return floor_div(full_backlog - b, period_us)
end
local function until_empty(b)
  return ceil_div(b, amount)
end

local charge = charge_meter(key, amount, cost * period_us, full_backlog)
if not charge.admitted then
  return denied(slots, slots_left(charge.before), charge.retry_after_us, until_empty(charge.before))
end
-- Departs once the backlog ahead of it has drained (a peek holds nobody).
local wait = 0
if cost > 0 then
  wait = until_empty(charge.before)
end
return allowed(slots, slots_left(charge.after), until_empty(charge.after), wait)
