-- tollgate fixed window: the step of src/algorithm/fixed_window.rs.
--
-- STATE: a string of 17 bytes, struct.pack('>c1dd', 'f', start_us, count):
--          the start (µs since the epoch) of the window the key last admitted
--          in, and the units admitted there. A start, not a window index, so
--          that a configuration with another period reads it sensibly.
-- ARGV[3..]: amount period_us
--   amount units per window of period_us µs; windows are aligned to the epoch
-- Writes   an admitted non-zero cost, with a TTL to the end of its window

local function decide(k, i)
  local amount, period_us = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local found, stored_start, stored_count = read_state(k, 'f', '>c1dd', 17)
  if found then
    stored_start = stored_int(k, stored_start, 0, 'start_us')
    stored_count = stored_int(k, stored_count, 0, 'count')
  else
    stored_start, stored_count = 0, 0
  end
  -- A clock that went back is held at the newest window seen: no second allowance.
  local now = math.max(now_us, stored_start)
  local start = now - fmod(now, period_us)
  -- What was counted from this window's start on is this window's (a window
  -- written with a shorter period may start later, and count past a lowered
  -- amount).
  local count = 0
  if stored_start >= start then
    count = math.min(stored_count, amount)
  end
  local until_next_window = period_us - (now - start)
  local function reset_after(units)
    if units == 0 then
      return 0
    end
    return until_next_window
  end

  if cost > amount - count then
    return denied(amount, amount - count, until_next_window, reset_after(count))
  end
  local reply = allowed(amount, amount - count - cost, reset_after(count + cost), 0)
  if cost > 0 then
    return reply, struct.pack('>c1dd', 'f', start, count + cost), ttl_ms(until_next_window + (now - now_us))
  end
  return reply
end

local commit = write_state
