-- tollgate token bucket: the step of src/algorithm/token_bucket.rs, on the
-- meter of lua/meter.lua with tag 't' (debt: how far the bucket is from full;
-- a token is period_us units, and each µs refills `amount`).
--
-- ARGV[3..]: capacity amount period_us
--   capacity tokens in a full bucket, refilled at amount tokens per period_us µs
-- Writes   an admitted non-zero cost, with a TTL to when the bucket is full again
-- Reserves on credit: the debt may pass full by max_wait_us of refill, and the
--          slot is when the bucket would have held the tokens (wait_us)

local function decide(k, i)
  local capacity, amount, period_us = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  -- capacity * period_us <= 2^53 by validation; the debt never exceeds 2^53.
  local full = capacity * period_us
  local added = cost * period_us
  local before, after, now = charge_meter(k, 't', amount, period_us, added, full, reservable(full, amount))
  -- Reserved ahead, the debt is past full: no token left, never a negative number.
  local function tokens_left(debt)
    return floor_div(math.max(full - debt, 0), period_us)
  end
  if not after then
    -- full >= added: before - (full - added) is exact where before + added might not be.
    return denied(capacity, tokens_left(before), ceil_div(before - (full - added), amount), ceil_div(before, amount))
  end
  -- The slot: when the bucket would have held the tokens (a peek waits for nothing).
  local wait = 0
  if cost > 0 and after > full then
    wait = ceil_div(after - full, amount)
    -- The slot is rounded up to a whole µs: the tokens are taken then, not a
    -- fraction of a µs before (Step::reserve). wait * amount <= 2^53 - full
    -- by reservable, so this stays within 2^53.
    after = math.max(before, wait * amount) + added
  end
  local reply = allowed(capacity, tokens_left(after), ceil_div(after, amount), wait)
  if cost > 0 then
    return reply, meter_state('t', after, full, now, amount, period_us)
  end
  return reply
end

local commit = write_state

-- lua/give_back.lua's: a reservation's tokens, back if it is the newest.
local function give_back(k, i, at_us, wait_us)
  local capacity, amount, period_us = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local full = capacity * period_us
  return give_back_meter(k, 't', amount, period_us, cost * period_us, full, full, at_us, wait_us)
end
