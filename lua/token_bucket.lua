-- tollgate token bucket: the step of src/algorithm/token_bucket.rs, on the
-- meter of lua/meter.lua with tag 't' (debt: how far the bucket is from full;
-- a token is period_us units, and each µs refills `amount`).
--
-- ARGV[3..]: capacity amount period_us
--   capacity tokens in a full bucket, refilled at amount tokens per period_us µs
-- Writes   an admitted non-zero cost, with a TTL to when the bucket is full again

local function decide(k, i)
  local capacity, amount, period_us = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  -- capacity * period_us <= 2^53 by validation; the debt never exceeds it.
  local full = capacity * period_us
  local before, after, now = charge_meter(k, 't', amount, period_us, cost * period_us, full)
  if not after then
    return denied(capacity, floor_div(full - before, period_us), now, ceil_div(before, amount))
  end
  local reply = allowed(capacity, floor_div(full - after, period_us), ceil_div(after, amount), 0)
  if cost > 0 then
    return reply, meter_state('t', after, now, amount, period_us)
  end
  return reply
end

local commit = write_state
