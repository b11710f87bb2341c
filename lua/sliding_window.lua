-- tollgate sliding window: the step of src/algorithm/sliding_window.rs.
--
-- STATE: a string of 25 bytes, struct.pack('>c1ddd', 'w', start_us, current,
--          previous): the start (µs since the epoch) of the window the key
--          last admitted in, the units admitted there, and the units
--          admitted in the window before it. A start, not a window index, so
--          that a configuration with another period reads it sensibly.
-- ARGV[3..]: amount period_us
--   amount units in a sliding window of period_us µs, the previous aligned
--   window's count weighted by the part of it the sliding window covers
-- Writes   an admitted non-zero cost, with a TTL to when the weighted count
--          is zero: the end of the window after the one it was admitted in
--
-- Numbers. amount * period_us <= 2^53 and period_us <= 2^52 by validation;
-- counts are cut to the amount, so every product below is at most
-- amount * period_us and every duration at most 2 * period_us.

-- µs from a moment `overlap` µs before the current window ends until a
-- request of `cost` fits in the next window, where `current` is the
-- previous count: at its start if `current` leaves room, else once the
-- overlap there is down to the largest that does (at most a whole window
-- later, when nothing is left to weigh).
local function until_it_fits_in_the_next_window(amount, period_us, overlap, current)
  if current == 0 then
    return overlap
  end
  local largest_overlap = math.min(floor_div((amount - cost) * period_us, current), period_us)
  return overlap + (period_us - largest_overlap)
end

local function decide(k, i)
  local amount, period_us = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local found, stored_start, stored_current, stored_previous = read_state(k, 'w', '>c1ddd', 25)
  if found then
    stored_start = stored_int(k, stored_start, 0, 'start_us')
    stored_current = stored_int(k, stored_current, 0, 'current')
    stored_previous = stored_int(k, stored_previous, 0, 'previous')
  else
    stored_start, stored_current, stored_previous = 0, 0, 0
  end
  -- A clock that went back is held at the newest window seen.
  local now = math.max(now_us, stored_start)
  local elapsed = fmod(now, period_us)
  local start = now - elapsed
  -- A count belongs to this configuration's window in which it began to be
  -- counted (a window written with a shorter period may begin after this
  -- one), and is cut to the amount (a lower amount may have written it).
  local previous, current = 0, 0
  if stored_start >= start then
    previous, current = stored_previous, stored_current
  elseif stored_start >= start - period_us then
    previous = stored_current
  end
  previous, current = math.min(previous, amount), math.min(current, amount)
  -- The previous window's part still inside the sliding window, in µs: the
  -- weighted count, times period_us, is previous * overlap + current * period_us.
  local overlap = period_us - elapsed
  local function remaining(units)
    local room = (amount - units) * period_us - previous * overlap
    if room <= 0 then
      return 0
    end
    return floor_div(room, period_us)
  end
  local function reset_after(units)
    if units > 0 then
      return overlap + period_us
    elseif previous > 0 then
      return overlap
    end
    return 0
  end

  local fits = cost <= amount - current and previous * overlap <= (amount - current - cost) * period_us
  if cost > 0 and not fits then
    -- It would fit but for the previous window (so previous > 0), whose
    -- weight falls a µs at a time: it fits once the overlap is down to the
    -- largest that leaves room, in this window if that is at least one µs.
    local retry_after
    if cost <= amount - current then
      local largest_overlap = floor_div((amount - current - cost) * period_us, previous)
      if largest_overlap >= 1 then
        retry_after = overlap - largest_overlap
      end
    end
    if not retry_after then
      retry_after = until_it_fits_in_the_next_window(amount, period_us, overlap, current)
    end
    return denied(amount, remaining(current), retry_after, reset_after(current))
  end
  local reply = allowed(amount, remaining(current + cost), reset_after(current + cost), 0)
  if cost > 0 then
    local state = struct.pack('>c1ddd', 'w', start, current + cost, previous)
    return reply, state, ttl_ms(overlap + period_us + (now - now_us))
  end
  return reply
end

local commit = write_state
