-- tollgate leaky bucket: the step of src/algorithm/leaky_bucket.rs, on the
-- meter of lua/meter.lua with tag 'l' (debt: the queue's backlog; a request
-- is period_us units, and each µs drains `amount`).
--
-- ARGV[3..]: capacity amount period_us
--   capacity requests may wait (capacity + 1 are admitted at once), drained
--   at amount requests per period_us µs
-- Writes   an admitted non-zero cost, with a TTL to when the queue is empty
--          again; wait_us in the reply is how long to hold the request

local function decide(k, i)
  local capacity, amount, period_us = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  -- (capacity + 1) * period_us <= 2^53 by validation; the backlog never exceeds it.
  local slots = capacity + 1
  local full = slots * period_us
  local before, after, now = charge_meter(k, 'l', amount, period_us, cost * period_us, full)
  if not after then
    return denied(slots, floor_div(full - before, period_us), now, ceil_div(before, amount))
  end
  -- Departs once the backlog ahead of it has drained (a peek holds nobody).
  local wait = 0
  if cost > 0 then
    wait = ceil_div(before, amount)
  end
  local reply = allowed(slots, floor_div(full - after, period_us), ceil_div(after, amount), wait)
  if cost > 0 then
    return reply, meter_state('l', after, now, amount, period_us)
  end
  return reply
end

local commit = write_state
