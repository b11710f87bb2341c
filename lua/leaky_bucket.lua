-- tollgate leaky bucket: the step of src/algorithm/leaky_bucket.rs, on the
-- meter of lua/meter.lua with tag 'l' (debt: the queue's backlog; a request
-- is period_us units, and each µs drains `amount`).
--
-- ARGV[3..]: capacity amount period_us
--   capacity requests may wait (capacity + 1 are admitted at once), drained
--   at amount requests per period_us µs
-- Writes   an admitted non-zero cost, with a TTL to when the queue is empty
--          again; wait_us in the reply is how long to hold the request
-- Reserves a departure: admitted if the backlog ahead drains within
--          max_wait_us, even past the capacity

local function decide(k, i)
  local capacity, amount, period_us = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  -- (capacity + 1) * period_us <= 2^53 by validation; the backlog never exceeds 2^53.
  local slots = capacity + 1
  local full = slots * period_us
  local added = cost * period_us
  -- A check may queue up to full; a reservation departs within max_wait_us.
  local most = full
  if max_wait_us then
    most = reservable(added, amount)
  end
  local before, after, now = charge_meter(k, 'l', amount, period_us, added, full, most)
  -- Reservations may have queued past the capacity: no slot left, never a negative number.
  local function slots_left(backlog)
    return floor_div(math.max(full - backlog, 0), period_us)
  end
  if not after then
    local retry_after = ceil_div(before, amount)
    if not max_wait_us then
      -- full >= added: before - (full - added) is exact where before + added might not be.
      retry_after = ceil_div(before - (full - added), amount)
    end
    return denied(slots, slots_left(before), retry_after, ceil_div(before, amount))
  end
  -- Departs once the backlog ahead of it has drained (a peek holds nobody).
  local wait = 0
  if cost > 0 then
    wait = ceil_div(before, amount)
  end
  local reply = allowed(slots, slots_left(after), ceil_div(after, amount), wait)
  if cost > 0 then
    return reply, meter_state('l', after, full, now, amount, period_us)
  end
  return reply
end

local commit = write_state

-- lua/give_back.lua's: a reservation's slots, back if it is the newest.
local function give_back(k, i, at_us, wait_us)
  local capacity, amount, period_us = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local added = cost * period_us
  return give_back_meter(k, 'l', amount, period_us, added, added, (capacity + 1) * period_us, at_us, wait_us)
end
