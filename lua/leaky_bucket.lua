-- tollgate leaky bucket: the step of src/algorithm/leaky_bucket.rs, on the
-- meter of lua/meter.lua with tag 'l' (debt: the queue's backlog; a request
-- is period_us units, and each µs drains `amount`).
--
-- CONFIG: capacity amount period_us
--   capacity requests may wait (capacity + 1 are admitted at once), drained
--   at amount requests per period_us µs
-- Writes   an admitted non-zero cost, with a TTL to when the queue is empty
--          again; wait_us in the reply is how long to hold the request
-- Reserves a departure: admitted if the backlog ahead drains within
--          max_wait_us, even past the capacity

local function decide(k, write)
  local capacity, amount, period_us = config_1, config_2, config_3
  -- (capacity + 1) * period_us <= 2^53 by validation; the backlog never exceeds 2^53.
  local slots = capacity + 1
  local full = slots * period_us
  local added = cost * period_us
  local key = KEYS[k]
  local before, now = read_meter(k, key, 'l', 'L', amount, period_us, full)
  -- Meter.charge: a check may queue up to full; a reservation departs within
  -- max_wait_us. before + added may pass 2^53, so it is compared without
  -- being formed.
  local most = full
  if max_wait_us then
    most = reservable(added, amount)
  end
  -- Departs once the backlog ahead of it has drained (and so may retry).
  local r = before % amount
  local drained_after = (before - r) / amount
  if r > 0 then
    drained_after = drained_after + 1
  end
  if added > 0 and before > most - added then
    local retry_after = drained_after
    if not max_wait_us then
      -- ceil((before - (full - added)) / amount): full >= added, so this is
      -- exact where before + added might not be, and at least 1.
      local over = before - (full - added)
      local over_remainder = over % amount
      retry_after = (over - over_remainder) / amount
      if over_remainder > 0 then
        retry_after = retry_after + 1
      end
    end
    -- Reservations may have queued past the capacity: no slot left, never a negative number.
    local left = 0
    if before < full then
      local spare = full - before
      left = (spare - spare % period_us) / period_us
    end
    return struct_pack(REPLY, 0, slots, left, retry_after, drained_after, 0, now)
  end
  local after = before + added
  local wait = 0
  if cost > 0 then
    wait = drained_after
  end
  return admitted(k, key, 'l', 'L', slots, full, after, wait, now, amount, period_us, write)
end

local commit = write_state

-- lua/give_back.lua's: a reservation's slots, back if it is the newest.
local function give_back(k, at_us, wait_us)
  local capacity, amount, period_us = config_1, config_2, config_3
  local added = cost * period_us
  return give_back_meter(k, 'l', 'L', amount, period_us, added, added, (capacity + 1) * period_us, at_us, wait_us)
end
