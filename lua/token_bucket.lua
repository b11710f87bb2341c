-- tollgate token bucket: the step of src/algorithm/token_bucket.rs, on the
-- meter of lua/meter.lua with tag 't' (debt: how far the bucket is from full;
-- a token is period_us units, and each µs refills `amount`).
--
-- CONFIG: capacity amount period_us
--   capacity tokens in a full bucket, refilled at amount tokens per period_us µs
-- Writes   an admitted non-zero cost, with a TTL to when the bucket is full again
-- Reserves on credit: the debt may pass full by max_wait_us of refill, and the
--          slot is when the bucket would have held the tokens (wait_us)

local function decide(k, write)
  local capacity, amount, period_us = config_1, config_2, config_3
  -- capacity * period_us <= 2^53 by validation; the debt never exceeds 2^53.
  local full = capacity * period_us
  local added = cost * period_us
  local key = KEYS[k]
  local before, now = read_meter(k, key, 't', 'T', amount, period_us, full)
  -- Meter.charge: the debt may reach full, or for a reservation reservable.
  -- before + added may pass 2^53, so it is compared without being formed.
  local most = full
  if max_wait_us then
    most = reservable(full, amount)
  end
  if added > 0 and before > most - added then
    -- Reserved ahead, the debt is past full: no token left, never a negative
    -- number. full >= added: before - (full - added) is exact where
    -- before + added might not be, and at least 1.
    local left = 0
    if before < full then
      local spare = full - before
      left = (spare - spare % period_us) / period_us
    end
    -- ceil((before - (full - added)) / amount) and ceil(before / amount).
    local over = before - (full - added)
    local over_remainder = over % amount
    local retry_after = (over - over_remainder) / amount
    if over_remainder > 0 then
      retry_after = retry_after + 1
    end
    local before_remainder = before % amount
    local reset_after = (before - before_remainder) / amount
    if before_remainder > 0 then
      reset_after = reset_after + 1
    end
    return struct_pack(REPLY, 0, capacity, left, retry_after, reset_after, 0, now)
  end
  local after = before + added
  -- The slot: when the bucket would have held the tokens (a peek waits for nothing).
  local wait = 0
  if cost > 0 and after > full then
    local over = after - full
    local over_remainder = over % amount
    wait = (over - over_remainder) / amount
    if over_remainder > 0 then
      wait = wait + 1
    end
    -- The slot is rounded up to a whole µs: the tokens are taken then, not a
    -- fraction of a µs before (Step::reserve). wait * amount <= 2^53 - full
    -- by reservable, so this stays within 2^53.
    after = math.max(before, wait * amount) + added
  end
  return admitted(k, key, 't', 'T', capacity, full, after, wait, now, amount, period_us, write)
end

local commit = write_state

-- lua/give_back.lua's: a reservation's tokens, back if it is the newest.
local function give_back(k, at_us, wait_us)
  local capacity, amount, period_us = config_1, config_2, config_3
  local full = capacity * period_us
  return give_back_meter(k, 't', 'T', amount, period_us, cost * period_us, full, full, at_us, wait_us)
end
