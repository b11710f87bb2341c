-- tollgate meter: the state the token and leaky buckets share, the mirror of
-- src/algorithm/meter.rs, used by lua/token_bucket.lua and lua/leaky_bucket.lua.
--
-- STATE: a string of 25 bytes, struct_pack('>c1ddd', tag, debt, updated_us,
--          period_us): tag 't' (token bucket) or 'l' (leaky bucket), so that
--          neither reads the other's, in upper case ('T', 'L') when the debt
--          is past the writer's full mark (reserved ahead: slots promised to
--          waiters); debt in units of 1/amount µs as of updated_us (µs since
--          the epoch); and the period_us it was written with, so that another
--          configuration carries its usage over.

-- The debt of KEYS[k], `key`, drained to now, at `amount` units per µs, and now:
-- now_us clamped to the last write, so that a clock that went back refunds
-- nothing. `tag` and `reserved_tag` are the algorithm's tags in lower and
-- upper case. A state written with another period carries over as whole
-- units, a unit partly drained counting as used, and never more than `full`;
-- one reserved ahead carries over whole (Meter::carried_over).
-- src/redis/scripts.rs writes its body in place of its call in a single
-- script (a function made and called on every decision costs Redis as much
-- as several lines of arithmetic), so it returns once, at its end.
local function read_meter(k, key, tag, reserved_tag, amount, period_us, full)
  local before, now = 0, now_us
  local raw = redis_call('GET', key)
  if raw then
    local found, debt, updated_us, written_period_us
    if #raw == 25 then
      found, debt, updated_us, written_period_us = struct_unpack('>c1ddd', raw)
    end
    local reserved = found == reserved_tag
    if found ~= tag and not reserved then
      error({err = 'TOLLGATE key ' .. k .. ': not the state of this algorithm'})
    end
    -- Integers from 0 (the period from 1) to 2^53: in range (NaN fails every
    -- comparison), each `% 1` is from 0 to below 1, and their sum is 0 only
    -- if each is (one test where there were three).
    if not (debt >= 0 and debt <= MAX_EXACT and updated_us >= 0 and updated_us <= MAX_EXACT
        and written_period_us >= 1 and written_period_us <= MAX_EXACT
        and debt % 1 + updated_us % 1 + written_period_us % 1 == 0) then
      error({err = 'TOLLGATE key ' .. k .. ': debt, updated_us or period_us is not an integer from 0 (1) to 2^53'})
    end
    if written_period_us ~= period_us then
      -- ceil(debt / written_period_us) units, at most full / period_us (or,
      -- reserved ahead, 2^53 / period_us): a whole number, exactly.
      local most = full
      if reserved then
        most = MAX_EXACT
      end
      local debt_remainder = debt % written_period_us
      local units = (debt - debt_remainder) / written_period_us
      if debt_remainder > 0 then
        units = units + 1
      end
      local most_units = (most - most % period_us) / period_us
      if units > most_units then
        units = most_units
      end
      debt = units * period_us
    elseif debt > full and not reserved then
      debt = full
    end
    if updated_us > now then
      now = updated_us
    end
    -- Drained by `elapsed * amount`, which is exact below 2^53 and rounds to
    -- at least 2^53 above it, where it is at least any debt: so the
    -- comparison is exact, and so is the difference it lets through.
    local drained = (now - updated_us) * amount
    if drained < debt then
      before = debt - drained
    end
  end
  return before, now
end

-- reservable in src/algorithm/meter.rs: the debt a request may take the meter
-- to, `mark` being the debt at which its slot is due: for a reservation,
-- `max_wait_us` more of draining than `mark`, but never past 2^53.
local function reservable(mark, amount)
  local room = MAX_EXACT - mark
  return mark + math.min(max_wait_us, (room - room % amount) / amount) * amount
end

-- The state string of a meter holding `debt` as of `now`, tagged
-- `reserved_tag` if the debt is past `full`, else `tag`.
local function meter_state(tag, reserved_tag, debt, full, now, period_us)
  if debt > full then
    tag = reserved_tag
  end
  return struct_pack('>c1ddd', tag, debt, now, period_us)
end

-- The end of an admission that leaves the meter at `after` as of `now`:
-- the reply (`limit`, the units left, until the meter is empty, `wait`),
-- and, for a non-zero cost, the state written (by itself if `write`, else
-- returned with its TTL for commit). A single script has its body in place
-- of its call, as read_meter's, and meter_state's in that.
local function admitted(k, key, tag, reserved_tag, limit, full, after, wait, now, amount, period_us, write)
  -- Past full (reserved ahead): no unit left, never a negative number.
  local left = 0
  if after < full then
    local spare = full - after
    left = (spare - spare % period_us) / period_us
  end
  local after_remainder = after % amount
  local reset_after = (after - after_remainder) / amount
  if after_remainder > 0 then
    reset_after = reset_after + 1
  end
  local reply = struct_pack(REPLY, 1, limit, left, 0, reset_after, wait, now)
  if cost == 0 then
    return reply
  end
  local state = meter_state(tag, reserved_tag, after, full, now, period_us)
  -- The TTL: until the meter is empty, from now_us, in whole ms rounded up,
  -- as the prelude says.
  local ttl_us = (now - now_us) + reset_after
  local sub_ms = ttl_us % 1000
  local ttl = (ttl_us - sub_ms) / 1000 + ttl_extra_ms
  if sub_ms > 0 then
    ttl = ttl + 1
  end
  if write then
    write_state(k, state, ttl)
    return reply
  end
  return reply, state, ttl
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
local function give_back_meter(k, tag, reserved_tag, amount, period_us, added, mark, full, at_us, wait_us)
  if period_us < amount then
    return 0
  end
  local found, debt, updated_us, written_period_us = read_state(k, tag .. reserved_tag, '>c1ddd', 25)
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
    redis_call('DEL', KEYS[k])
  else
    local state = meter_state(tag, reserved_tag, left, full, updated_us, period_us)
    write_state(k, state, ttl_ms(ttl_us))
  end
  return 1
end
