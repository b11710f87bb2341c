-- tollgate fixed window: the step of src/algorithm/fixed_window.rs.
--
-- STATE: the start (µs since the epoch) of the window the key last admitted
--          in, and the units admitted there, in one of two layouts, each
--          read whichever this limiter writes:
--          - 17 bytes, struct_pack('>c1dd', 'f', start_us, count);
--          - compact (lua/compact.lua): the decimal integer <start's whole
--            seconds><its ms in 3 digits><count in 6 digits> (the start in
--            ms, then the count),
--            which Redis keeps as a number in the key itself (the memory of
--            a key holding one integer, 32 bytes less). Written when
--            `compact` is 1, the start a whole ms and the count below 10^6;
--            a version before it reads it as not its state, so a limiter
--            writes it only when told to (docs/redis.md, "Memory per key").
--          A start, not a window index, so that a configuration with
--          another period reads it sensibly.
-- CONFIG: amount period_us compact
--   amount units per window of period_us µs; windows are aligned to the epoch
-- Writes   an admitted non-zero cost, with a TTL to the end of its window:
--          itself if `write`, else it returns the state and TTL for commit

local function decide(k, write)
  local amount, period_us, compact = config_1, config_2, config_3
  local stored_start, stored_count = 0, 0
  local key = KEYS[k]
  local raw = redis_call('GET', key)
  if raw then
    local tag
    if #raw == 17 then
      tag, stored_start, stored_count = struct_unpack('>c1dd', raw)
    end
    if tag ~= 'f' then
      stored_start, stored_count = read_compact(raw)
      if not stored_start then
        error({err = 'TOLLGATE key ' .. k .. ': not the state of this algorithm'})
      end
    end
    -- Integers from 0 to 2^53: in range (NaN fails every comparison), each
    -- `% 1` is from 0 to below 1, and their sum is 0 only if each is.
    if not (stored_start >= 0 and stored_start <= MAX_EXACT and stored_count >= 0
        and stored_count <= MAX_EXACT and stored_start % 1 + stored_count % 1 == 0) then
      error({err = 'TOLLGATE key ' .. k .. ': start_us or count is not an integer from 0 to 2^53'})
    end
  end
  -- A clock that went back is held at the newest window seen: no second allowance.
  local now = now_us
  if stored_start > now then
    now = stored_start
  end
  local start = now - now % period_us
  local until_next_window = period_us - (now - start)
  -- What was counted from this window's start on is this window's (a window
  -- written with a shorter period may start later, and count past a lowered
  -- amount).
  local count = 0
  if stored_start >= start then
    count = stored_count
    if count > amount then
      count = amount
    end
  end
  -- reset_after: until the window's end if it holds anything, else zero.
  local reset_after = 0
  if count > 0 then
    reset_after = until_next_window
  end

  if cost > amount - count then
    -- until_next_window >= 1: never a retry after zero.
    return struct_pack(REPLY, 0, amount, amount - count, until_next_window, reset_after, 0, now_us)
  end
  if cost == 0 then
    return struct_pack(REPLY, 1, amount, amount - count, 0, reset_after, 0, now_us)
  end
  local reply = struct_pack(REPLY, 1, amount, amount - count - cost, 0, until_next_window, 0, now_us)
  local state
  local counted = count + cost
  if compact == 1 and start % 1000 == 0 and counted < 1000000 then
    state = compact_text(start, counted)
  else
    state = struct_pack('>c1dd', 'f', start, counted)
  end
  -- The TTL: to the window's end, in whole ms rounded up.
  local ttl_us = until_next_window + (now - now_us)
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
