-- tollgate sliding log: the decisions of src/algorithm/sliding_log.rs, over a
-- sorted set instead of a list.
--
-- STATE: a sorted set with one member per admitted request: score the µs it
--          was admitted at, member "<before>:<cost>", where before is the
--          running total of cost admitted before it (modulo 2^48; the key
--          starts from 0 when new). So the cost admitted since any entry is
--          one subtraction, and no request is one entry per unit. Entries
--          that have left the window are removed a few at a time as new
--          ones are written (so no call does unbounded work), and the whole
--          key expires one period after its newest entry.
-- CONFIG: amount period_us
--   amount units in any interval of period_us µs
-- Writes   an admitted non-zero cost: its entry, the removal of up to
--          REMOVED_PER_WRITE old entries, and a TTL to when every entry has
--          left the window

local TOTAL_MODULUS = 2 ^ 48
local REMOVED_PER_WRITE = 64

-- Numbers go to Redis as text this script writes: a Lua number passed to
-- redis.call is formatted by Redis with %.17g, and '%.0f' of a time in µs
-- takes glibc's multiple-precision path, each several times what '%d'
-- costs (docs/redis.md, "The sliding log, by the size of its log"). But
-- '%d' formats a C long, 32 bits on a 32-bit Redis: so an integer from 2^31
-- on goes as two halves below 10^8, each a long anywhere, and a negative one
-- (a window that starts before the epoch, on a clock near zero) as '%.0f'.
local function decimal(n)
  if n >= 0 and n < 2147483648 then
    return string.format('%d', n)
  elseif n < 0 then
    return string.format('%.0f', n)
  end
  local low = n % 100000000
  return string.format('%d%08d', (n - low) / 100000000, low)
end

-- An entry's (at, before, cost), from ZRANGE ... WITHSCORES at `offset`.
local function entry(k, reply, offset)
  local before, cost_of = string.match(reply[offset] or '', '^(%d+):(%d+)$')
  if not before then
    invalid_state(k, 'not the state of a sliding log')
  end
  before = stored_int(k, tonumber(before), 0, 'a running total')
  if before >= TOTAL_MODULUS then
    invalid_state(k, 'a running total is not below 2^48')
  end
  return stored_int(k, tonumber(reply[offset + 1]), 0, 'an entry time'), before,
    stored_int(k, tonumber(cost_of), 1, 'a cost')
end

-- The cost admitted from the entry whose running total before it is `from`
-- up to and including the one that ends at `to`.
local function admitted_since(from, to)
  local d = to - from
  if d < 0 then
    d = d + TOTAL_MODULUS
  end
  return d
end

-- The member of an entry: the running total before it, and its cost.
local function member(before, cost_of)
  if before < 2147483648 and cost_of < 2147483648 then
    return string.format('%d:%d', before, cost_of)
  end
  return decimal(before) .. ':' .. decimal(cost_of)
end

-- Writes the entry `added` at `at` (in place of `replaced`, if any), removes
-- up to REMOVED_PER_WRITE entries that have left the window (those at or
-- before `expired_until`; `expired` of them, if decide knew how many), and
-- sets the TTL.
local function commit(k, at, added, replaced, expired_until, expired, ttl)
  local key = KEYS[k]
  if replaced then
    redis_call('ZREM', key, replaced)
  end
  redis_call('ZADD', key, decimal(at), added)
  if expired_until then
    if not expired then
      expired = redis_call('ZCOUNT', key, '-inf', decimal(expired_until))
    end
    if expired > 0 then
      redis_call('ZREMRANGEBYRANK', key, '0', string.format('%d', math.min(expired, REMOVED_PER_WRITE) - 1))
    end
  end
  redis_call('PEXPIRE', key, decimal(ttl))
end

local function decide(k, write)
  local amount, period_us = config_1, config_2
  local key = KEYS[k]
  -- The two oldest entries: with fewer than two, the oldest is the newest,
  -- and this one read is all a small log needs.
  local oldest = redis_call('ZRANGE', key, '0', '1', 'WITHSCORES')
  -- What the request writes (commit's arguments), if it is admitted with a non-zero cost.
  local at, added, replaced, expired_until, expired, ttl
  local reply
  if #oldest == 0 then
    if cost == 0 then
      return struct_pack(REPLY, 1, amount, amount, 0, 0, 0, now_us)
    end
    reply = struct_pack(REPLY, 1, amount, amount - cost, 0, period_us, 0, now_us)
    at, added, replaced, expired_until, expired, ttl = now_us, member(0, cost), false, false, false, ttl_ms(period_us)
    if write then
      commit(k, at, added, replaced, expired_until, expired, ttl)
      return reply
    end
    return reply, at, added, replaced, expired_until, expired, ttl
  end
  local newest = oldest
  if #oldest > 2 then
    newest = redis_call('ZRANGE', key, '-1', '-1', 'WITHSCORES')
  end
  local newest_at, newest_before, newest_cost = entry(k, newest, 1)
  local total = (newest_before + newest_cost) % TOTAL_MODULUS
  -- A clock that went back is held at the newest entry.
  local now = math.max(now_us, newest_at)
  local until_empty = math.max(period_us - (now - newest_at), 0)
  -- An entry admitted at `at` is live while at + period_us > now.
  local live_after = now - period_us
  -- A number, written as text only by the calls that need it (few do).
  expired_until = live_after
  -- The first live entry (`first`, at `first_offset` in it), found among the two
  -- oldest if it is one of them; then `expired` entries precede it.
  local first, first_offset = false, 0
  if tonumber(oldest[2]) > live_after then
    first, first_offset, expired = oldest, 1, 0
  elseif #oldest > 2 and tonumber(oldest[4]) > live_after then
    first, first_offset, expired = oldest, 3, 1
  elseif newest_at <= live_after then
    -- Every entry has left the window (one, if the oldest is the newest).
    expired = #oldest == 2 and 1
  else
    expired = false
    first = redis_call('ZRANGEBYSCORE', key, '(' .. decimal(expired_until), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #first == 0 then
      first = false
    else
      first_offset = 1
    end
  end
  local live_cost, before_live, first_cost = 0, total, 0
  if first then
    local _
    _, before_live, first_cost = entry(k, first, first_offset)
    live_cost = admitted_since(before_live, total)
  end
  -- More than the amount only if a configuration with a larger amount wrote the log.
  local count = math.min(live_cost, amount)

  if cost > amount - count then
    -- The request fits once enough of the oldest live requests have left the
    -- window to free `excess`: at the first whose running total gets there.
    local excess = live_cost + cost - amount
    local freeing_at
    if first_cost >= excess then
      freeing_at = tonumber(first[first_offset + 1])
    else
      -- Ranks of the first live entry and of the newest: the running totals
      -- grow along them, so the one that frees enough is found by bisection.
      local lo = expired or redis_call('ZCOUNT', key, '-inf', decimal(expired_until))
      local hi = redis_call('ZCARD', key) - 1
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        local _, before, cost_of = entry(k, redis_call('ZRANGE', key, mid, mid, 'WITHSCORES'), 1)
        if admitted_since(before_live, (before + cost_of) % TOTAL_MODULUS) >= excess then
          hi = mid
        else
          lo = mid + 1
        end
      end
      freeing_at = entry(k, redis_call('ZRANGE', key, lo, lo, 'WITHSCORES'), 1)
    end
    local retry_after = period_us - (now - freeing_at)
    if retry_after < 1 then
      retry_after = 1
    end
    return struct_pack(REPLY, 0, amount, amount - count, retry_after, until_empty, 0, now_us)
  end
  if cost == 0 then
    return struct_pack(REPLY, 1, amount, amount - count, 0, until_empty, 0, now_us)
  end
  reply = struct_pack(REPLY, 1, amount, amount - count - cost, 0, period_us, 0, now_us)
  at, replaced, ttl = now, false, ttl_ms(period_us + (now - now_us))
  if now == newest_at then
    -- Requests of the same microsecond share one entry, so that no two
    -- entries share a score (and the set's order is the order of admission).
    added, replaced = member(newest_before, newest_cost + cost), newest[1]
  else
    added = member(total, cost)
  end
  if write then
    commit(k, at, added, replaced, expired_until, expired, ttl)
    return reply
  end
  return reply, at, added, replaced, expired_until, expired, ttl
end

