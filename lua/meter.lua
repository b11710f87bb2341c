-- tollgate meter: the state the token and leaky buckets share, the mirror of
-- src/algorithm/meter.rs, used by lua/token_bucket.lua and lua/leaky_bucket.lua.
--
-- STATE: a string of 25 bytes, struct.pack('>c1ddd', tag, debt, updated_us,
--          period_us): tag 't' (token bucket) or 'l' (leaky bucket), so that
--          neither reads the other's, in upper case ('T', 'L') when the debt
--          is past the writer's full mark (reserved ahead: slots promised to
--          waiters); debt in units of 1/amount µs as of updated_us (µs since
--          the epoch); and the period_us it was written with, so that another
--          configuration carries its usage over.

local MAX_EXACT = 9007199254740992

-- The debt of KEYS[k] drained to now, at `amount` units per µs, and now:
-- now_us clamped to the last write, so that a clock that went back refunds
-- nothing. A state written with another period carries over as whole units,
-- a unit partly drained counting as used, and never more than `full`; one
-- reserved ahead carries over whole (Meter::carried_over). `elapsed * amount`
-- may pass 2^53, so it is formed only when it is below the debt.
local function read_meter(k, tag, amount, period_us, full)
  local found, debt, updated_us, written_period_us = read_state(k, tag .. string.upper(tag), '>c1ddd', 25)
  if not found then
    return 0, now_us
  end
  debt = stored_int(k, debt, 0, 'debt')
  updated_us = stored_int(k, updated_us, 0, 'updated_us')
  written_period_us = stored_int(k, written_period_us, 1, 'period_us')
  local reserved = found ~= tag
  if written_period_us ~= period_us then
    local most = full
    if reserved then
      most = MAX_EXACT
    end
    -- most / period_us is a whole number of units, exactly.
    debt = math.min(ceil_div(debt, written_period_us), floor_div(most, period_us)) * period_us
  elseif debt > full and not reserved then
    debt = full
  end
  local now = math.max(now_us, updated_us)
  decided_at_us = now
  local elapsed = now - updated_us
  if elapsed >= ceil_div(debt, amount) then
    return 0, now
  end
  return debt - elapsed * amount, now
end

-- Meter.charge: drains KEYS[k]'s meter to now and adds `added` units of debt
-- if the debt stays within `most` (a peek, added == 0, always does). Returns
-- the debt before and after, and now; when it does not fit, after is nil.
-- before + added may pass 2^53, so it is compared without being formed.
local function charge_meter(k, tag, amount, period_us, added, full, most)
  local before, now = read_meter(k, tag, amount, period_us, full)
  if added > 0 and before > most - added then
    return before, nil, now
  end
  return before, before + added, now
end

-- reservable in src/algorithm/meter.rs: the debt a request may take the meter
-- to, `mark` being the debt at which its slot is due: `mark` for a check;
-- for a reservation, `max_wait_us` more of draining, but never past 2^53.
local function reservable(mark, amount)
  if not max_wait_us then
    return mark
  end
  return mark + math.min(max_wait_us, floor_div(MAX_EXACT - mark, amount)) * amount
end

-- The state string of a meter holding `debt` as of `now`, its tag in upper
-- case if the debt is past `full`, and its TTL: until the debt has drained,
-- when the key reads as new.
local function meter_state(tag, debt, full, now, amount, period_us)
  if debt > full then
    tag = string.upper(tag)
  end
  return struct.pack('>c1ddd', tag, debt, now, period_us), ttl_ms(ceil_div(debt, amount) + (now - now_us))
end

-- Meter.give_back, for a reservation that wrote its meter at `at_us` with its
-- slot `wait_us` away, `mark` being the debt at which that slot was due:
-- takes its `added` units back if it is still the newest in KEYS[k]'s meter.
-- The script does not have the state the reservation wrote, as the in-memory
-- store does, so it recognizes it: written at at_us (the time its reply said
-- it decided at), by this configuration,
-- and the newest slot in the meter is wait_us after at_us. Anything written
-- since in that same µs added at least one unit of period_us, which moves
-- the newest slot on by at least a µs if period_us >= amount; for faster
-- rates that would not be certain, and nothing is given back. Returns 1 if
-- it gave back, else 0.
local function give_back_meter(k, tag, amount, period_us, added, mark, full, at_us, wait_us)
  if period_us < amount then
    return 0
  end
  local found, debt, updated_us, written_period_us = read_state(k, tag .. string.upper(tag), '>c1ddd', 25)
  if not found then
    return 0
  end
  debt = stored_int(k, debt, 0, 'debt')
  updated_us = stored_int(k, updated_us, 0, 'updated_us')
  written_period_us = stored_int(k, written_period_us, 1, 'period_us')
  if written_period_us ~= period_us or updated_us ~= at_us or debt <= mark or debt < added then
    return 0
  end
  if ceil_div(debt - mark, amount) ~= wait_us then
    return 0
  end
  local left = debt - added
  -- The state as it was before the reservation, with its TTL from now.
  local ttl_us = updated_us + ceil_div(left, amount) - now_us
  if ttl_us <= 0 then
    redis.call('DEL', KEYS[k])
  else
    local state = meter_state(tag, left, full, updated_us, amount, period_us)
    write_state(k, state, ttl_ms(ttl_us))
  end
  return 1
end
