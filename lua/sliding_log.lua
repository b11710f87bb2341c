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
--
-- A single script has these functions written in place of their calls
-- (src/redis/scripts.rs, INLINED), so that it makes no function and calls
-- none on its hot path: each costs Redis about as much as a few lines of
-- arithmetic. So each returns once, at its end, and is called on a line of
-- its own.
local function decimal(n)
  local text
  if n >= 0 and n < 2147483648 then
    text = string.format('%d', n)
  elseif n < 0 then
    text = string.format('%.0f', n)
  else
    local low = n % 100000000
    text = string.format('%d%08d', (n - low) / 100000000, low)
  end
  return text
end

-- An entry's running total before it and its cost, from its member. They
-- are read by arithmetic (`+ 0`), not tonumber, which parses a string twice
-- (whether it is a number, then the number): the pattern has checked that
-- they are digits.
local function counts(k, member_)
  local before, cost_of = string.match(member_ or '', '^(%d+):(%d+)$')
  if not before then
    error({err = 'TOLLGATE key ' .. k .. ': not the state of a sliding log'})
  end
  before, cost_of = before + 0, cost_of + 0
  if before >= TOTAL_MODULUS then
    error({err = 'TOLLGATE key ' .. k .. ': a running total is not below 2^48'})
  end
  if cost_of < 1 or cost_of > MAX_EXACT then
    error({err = 'TOLLGATE key ' .. k .. ': a cost is not an integer from 1 to 2^53'})
  end
  return before, cost_of
end

-- An entry's (at, before, cost), from ZRANGE ... WITHSCORES at `offset`.
-- A score is a number as Redis writes one (%.17g, or inf), so `+ 0` reads it.
local function entry(k, reply, offset)
  local before, cost_of = counts(k, reply[offset])
  local at = (reply[offset + 1] or -1) + 0
  if not (at >= 0 and at <= MAX_EXACT and at % 1 == 0) then
    error({err = 'TOLLGATE key ' .. k .. ': a score is not an integer from 0 to 2^53'})
  end
  return at, before, cost_of
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
  local text
  if before < 2147483648 and cost_of < 2147483648 then
    text = string.format('%d:%d', before, cost_of)
  else
    local before_text = decimal(before)
    local cost_text = decimal(cost_of)
    text = before_text .. ':' .. cost_text
  end
  return text
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
  local score = decimal(at)
  redis_call('ZADD', key, score, added)
  if expired_until then
    if not expired then
      local bound = decimal(expired_until)
      expired = redis_call('ZCOUNT', key, '-inf', bound)
    end
    if expired > 0 then
      redis_call('ZREMRANGEBYRANK', key, '0', string.format('%d', math.min(expired, REMOVED_PER_WRITE) - 1))
    end
  end
  local ttl_text = decimal(ttl)
  redis_call('PEXPIRE', key, ttl_text)
end

local function decide(k, write)
  local amount, period_us = config_1, config_2
  local key = KEYS[k]
  -- The newest entry, the one score a call reads: Redis writes each score
  -- it returns with printf and the script reads it back with strtod, the
  -- dearest part of a call after its commands (docs/redis.md, "The sliding
  -- log, by the size of its log"). Which entries are live is asked by rank
  -- and count instead.
  local newest = redis_call('ZRANGE', key, '-1', '-1', 'WITHSCORES')
  -- What the request writes (commit's arguments), if it is admitted with a non-zero cost.
  local at, added, replaced, expired_until, expired, ttl
  local reply
  if #newest == 0 then
    if cost == 0 then
      return struct_pack(REPLY, 1, amount, amount, 0, 0, 0, now_us)
    end
    reply = struct_pack(REPLY, 1, amount, amount - cost, 0, period_us, 0, now_us)
    added = member(0, cost)
    ttl = ttl_ms(period_us)
    at, replaced, expired_until, expired = now_us, false, false, false
    if write then
      commit(k, at, added, replaced, expired_until, expired, ttl)
      return reply
    end
    return reply, at, added, replaced, expired_until, expired, ttl
  end
  local newest_at, newest_before, newest_cost = entry(k, newest, 1)
  local total = (newest_before + newest_cost) % TOTAL_MODULUS
  -- A clock that went back is held at the newest entry.
  local now = math.max(now_us, newest_at)
  local until_empty = math.max(period_us - (now - newest_at), 0)
  -- An entry admitted at `at` is live while at + period_us > now.
  local live_after = now - period_us
  expired_until = live_after
  -- The first live entry, `first` (its member), and the `expired` entries before it.
  local first = false
  if newest_at > live_after then
    -- Entries at or before live_after have left the window; the first live
    -- one follows them in the set's order.
    local bound = decimal(live_after)
    expired = redis_call('ZCOUNT', key, '-inf', bound)
    local rank = expired == 0 and '0' or string.format('%d', expired)
    first = redis_call('ZRANGE', key, rank, rank)[1]
  else
    -- Every entry has left the window; commit counts them if it writes.
    expired = false
  end
  local live_cost, before_live, first_cost = 0, total, 0
  if first then
    before_live, first_cost = counts(k, first)
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
      local probe = {first, redis_call('ZSCORE', key, first)}
      freeing_at = entry(k, probe, 1)
    else
      -- Ranks of the first live entry and of the newest: the running totals
      -- grow along them, so the one that frees enough is found by bisection.
      local lo = expired
      if not lo then
        local bound = decimal(expired_until)
        lo = redis_call('ZCOUNT', key, '-inf', bound)
      end
      local hi = redis_call('ZCARD', key) - 1
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        local probe = redis_call('ZRANGE', key, mid, mid, 'WITHSCORES')
        local _, before, cost_of = entry(k, probe, 1)
        local freed = admitted_since(before_live, (before + cost_of) % TOTAL_MODULUS)
        if freed >= excess then
          hi = mid
        else
          lo = mid + 1
        end
      end
      local probe = redis_call('ZRANGE', key, lo, lo, 'WITHSCORES')
      freeing_at = entry(k, probe, 1)
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
  ttl = ttl_ms(period_us + (now - now_us))
  at, replaced = now, false
  if now == newest_at then
    -- Requests of the same microsecond share one entry, so that no two
    -- entries share a score (and the set's order is the order of admission).
    added = member(newest_before, newest_cost + cost)
    replaced = newest[1]
  else
    added = member(total, cost)
  end
  if write then
    commit(k, at, added, replaced, expired_until, expired, ttl)
    return reply
  end
  return reply, at, added, replaced, expired_until, expired, ttl
end

