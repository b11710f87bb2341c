-- tollgate meter: the state the token and leaky buckets share, the mirror of
-- src/algorithm/meter.rs, used by lua/token_bucket.lua and lua/leaky_bucket.lua.
--
-- STATE: a string of 25 bytes, struct.pack('>c1ddd', tag, debt, updated_us,
--          period_us): tag 't' (token bucket) or 'l' (leaky bucket), so that
--          neither reads the other's; debt in units of 1/amount µs as of
--          updated_us (µs since the epoch); and the period_us it was written
--          with, so that another configuration carries its usage over.

-- The debt of KEYS[k] drained to now, at `amount` units per µs, and now:
-- now_us clamped to the last write, so that a clock that went back refunds
-- nothing. A state written with another period carries over as whole units,
-- a unit partly drained counting as used, and never more than `full`
-- (Meter::carried_over); `elapsed * amount` may pass 2^53, so it is formed
-- only when it is below the debt.
local function read_meter(k, tag, amount, period_us, full)
  local found, debt, updated_us, written_period_us = read_state(k, tag, '>c1ddd', 25)
  if not found then
    return 0, now_us
  end
  debt = stored_int(k, debt, 0, 'debt')
  updated_us = stored_int(k, updated_us, 0, 'updated_us')
  written_period_us = stored_int(k, written_period_us, 1, 'period_us')
  if written_period_us ~= period_us then
    -- full is a whole number of units: full / period_us is exact.
    debt = math.min(ceil_div(debt, written_period_us), full / period_us) * period_us
  elseif debt > full then
    debt = full
  end
  local now = math.max(now_us, updated_us)
  local elapsed = now - updated_us
  if elapsed >= ceil_div(debt, amount) then
    return 0, now
  end
  return debt - elapsed * amount, now
end

-- Meter.charge: drains KEYS[k]'s meter to now and adds `added` units of debt
-- if the debt stays within `full`. Returns the debt before and after, and
-- now; or, when it does not fit, the debt before, nil, and the µs of
-- draining after which it would. before + added may pass 2^53, so it is
-- compared without being formed.
local function charge_meter(k, tag, amount, period_us, added, full)
  local before, now = read_meter(k, tag, amount, period_us, full)
  if before > full - added then
    return before, nil, ceil_div(before - (full - added), amount)
  end
  return before, before + added, now
end

-- The state string of a meter holding `debt` as of `now`, and its TTL: until
-- the debt has drained, when the key reads as new.
local function meter_state(tag, debt, now, amount, period_us)
  return struct.pack('>c1ddd', tag, debt, now, period_us), ttl_ms(ceil_div(debt, amount) + (now - now_us))
end
