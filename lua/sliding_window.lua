-- tollgate sliding window: the step of src/algorithm/sliding_window.rs.
--
-- STATE: the start (µs since the epoch) of the window the key last admitted
--          in, the units admitted there (current), and the units admitted in
--          the window before it (previous), in one of two layouts, each read
--          whichever this limiter writes:
--          - 25 bytes, struct_pack('>c1ddd', 'w', start_us, current,
--            previous);
--          - compact (lua/compact.lua): the decimal integer <start's whole
--            seconds><its ms in 3 digits><current in 3 digits><previous in
--            3 digits>, which Redis keeps as a number in the key itself (the
--            memory of a key holding one integer, 32 bytes less). Written
--            when `compact` is 1, the start a whole ms and both counts below
--            1 000; a version before it reads it as not its state, so a
--            limiter writes it only when told to (docs/redis.md, "Memory per
--            key").
--          A start, not a window index, so that a configuration with another
--          period reads it sensibly.
-- CONFIG: amount period_us compact
--   amount units in a sliding window of period_us µs, the previous aligned
--   window's count weighted by the part of it the sliding window covers
-- Writes   an admitted non-zero cost, with a TTL to when the weighted count
--          is zero: the end of the window after the one it was admitted in;
--          itself if `write`, else it returns the state and TTL for commit
--
-- Numbers. amount * period_us <= 2^53 and period_us <= 2^52 by validation;
-- counts are cut to the amount, so every product below is at most
-- amount * period_us and every duration at most 2 * period_us.

local function decide(k, write)
  local amount, period_us, compact = config_1, config_2, config_3
  local stored_start, stored_current, stored_previous = 0, 0, 0
  local key = KEYS[k]
  local raw = redis_call('GET', key)
  if raw then
    local tag
    if #raw == 25 then
      tag, stored_start, stored_current, stored_previous = struct_unpack('>c1ddd', raw)
    end
    if tag ~= 'w' then
      local counts
      stored_start, counts = read_compact(raw)
      if not stored_start then
        error({err = 'TOLLGATE key ' .. k .. ': not the state of this algorithm'})
      end
      -- Its six digits: current, then previous.
      stored_previous = counts % 1000
      stored_current = (counts - stored_previous) / 1000
    end
    -- Integers from 0 to 2^53: in range (NaN fails every comparison), each
    -- `% 1` is from 0 to below 1, and their sum is 0 only if each is.
    if not (stored_start >= 0 and stored_start <= MAX_EXACT and stored_current >= 0
        and stored_current <= MAX_EXACT and stored_previous >= 0 and stored_previous <= MAX_EXACT
        and stored_start % 1 + stored_current % 1 + stored_previous % 1 == 0) then
      error({err = 'TOLLGATE key ' .. k .. ': start_us, current or previous is not an integer from 0 to 2^53'})
    end
  end
  -- A clock that went back is held at the newest window seen.
  local now = now_us
  if stored_start > now then
    now = stored_start
  end
  local elapsed = now % period_us
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
  if previous > amount then
    previous = amount
  end
  if current > amount then
    current = amount
  end
  -- The previous window's part still inside the sliding window, in µs: the
  -- weighted count, times period_us, is previous * overlap + current * period_us.
  local overlap = period_us - elapsed
  -- The units left after `units` of this window, and until the weighted
  -- count is zero, for the denial's `units` (current) or the admission's
  -- (current + cost), as `remaining` and `reset_after` in the Rust step.
  local units = current
  local fits = cost <= amount - current and previous * overlap <= (amount - current - cost) * period_us
  if fits then
    units = current + cost
  end
  local left = 0
  local room = (amount - units) * period_us - previous * overlap
  if room > 0 then
    left = (room - room % period_us) / period_us
  end
  local reset_after = 0
  if units > 0 then
    reset_after = overlap + period_us
  elseif previous > 0 then
    reset_after = overlap
  end

  if cost > 0 and not fits then
    -- It would fit but for the previous window (so previous > 0), whose
    -- weight falls a µs at a time: it fits once the overlap is down to the
    -- largest that leaves room, in this window if that is at least one µs.
    local retry_after
    if cost <= amount - current then
      local spare = (amount - current - cost) * period_us
      local largest_overlap = (spare - spare % previous) / previous
      if largest_overlap >= 1 then
        retry_after = overlap - largest_overlap
      end
    end
    if not retry_after then
      -- Else in the next window, where `current` is the previous count: at
      -- its start if `current` leaves room, else once the overlap there is
      -- down to the largest that does (at most a whole window later, when
      -- nothing is left to weigh).
      retry_after = overlap
      if current > 0 then
        local spare = (amount - cost) * period_us
        local largest_overlap = (spare - spare % current) / current
        if largest_overlap > period_us then
          largest_overlap = period_us
        end
        retry_after = overlap + (period_us - largest_overlap)
      end
    end
    if retry_after < 1 then
      retry_after = 1
    end
    return struct_pack(REPLY, 0, amount, left, retry_after, reset_after, 0, now_us)
  end
  local reply = struct_pack(REPLY, 1, amount, left, 0, reset_after, 0, now_us)
  if cost == 0 then
    return reply
  end
  local state
  local counted = current + cost
  if compact == 1 and start % 1000 == 0 and counted < 1000 and previous < 1000 then
    state = compact_text(start, counted * 1000 + previous)
  else
    state = struct_pack('>c1ddd', 'w', start, counted, previous)
  end
  -- The TTL, in whole ms rounded up, as the prelude says.
  local ttl_us = overlap + period_us + (now - now_us)
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

local commit = write_state
