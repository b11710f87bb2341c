-- tollgate sliding log: the mirror of src/algorithm/sliding_log.rs
-- (lua/prelude.lua is prepended).
--
-- KEYS[1]  one (limiter, user key): a sorted set with one member per admitted
--          unit, score = the µs it was admitted at, member "<score>:<n>" with n
--          counting the units admitted at that same µs (so members are unique;
--          the units of one score are always added and removed together). It
--          never holds more than `amount` members.
-- ARGV[1]  cost, units; ARGV[2] now_us or '' (see the prelude)
-- ARGV[3]  amount: units admitted in any interval of period_us
-- ARGV[4]  period_us: the interval, µs
-- Reply    {allowed (1 or 0), limit, remaining, retry_after_us,
--          reset_after_us, wait_us}: integers, durations in µs
-- Writes   only an admitted non-zero cost: drops the entries that have left
--          the window, adds `cost` entries at now, then PEXPIREs the key (ms,
--          rounded up) to now + period_us, when every entry has left.

local key = KEYS[1]
local amount = tonumber(ARGV[3])
local period_us = tonumber(ARGV[4])

local newest_entry = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
local newest = tonumber(newest_entry[2])
-- A clock that went back is held at the newest entry.
local now = now_us
if newest then
  now = math.max(now_us, newest)
end

-- An entry admitted at `at` is live while at + period_us > now.
local first_live = '(' .. int(now - period_us)
local count = redis.call('ZCOUNT', key, first_live, '+inf')
local function until_empty()
  if not newest then
    return 0
  end
  return math.max(period_us - (now - newest), 0)
end

if cost > amount - count then
  -- The request fits once the oldest `excess` live entries have left the window.
  local excess = count + cost - amount
  local freeing = redis.call('ZRANGEBYSCORE', key, first_live, '+inf', 'WITHSCORES', 'LIMIT', int(excess - 1), 1)
  local retry_after = period_us - (now - tonumber(freeing[2]))
  return denied(amount, amount - count, retry_after, until_empty())
end
if cost == 0 then
  return allowed(amount, amount - count, until_empty(), 0)
end

redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - period_us))
local at = int(now)
local first = redis.call('ZCOUNT', key, at, at)
-- ZADD in batches: Lua's unpack takes a few thousand values at most.
local batch = {}
for n = first, first + cost - 1 do
  batch[#batch + 1] = at
  batch[#batch + 1] = at .. ':' .. int(n)
  if #batch == 2000 then
    redis.call('ZADD', key, unpack(batch))
    batch = {}
  end
end
if #batch > 0 then
  redis.call('ZADD', key, unpack(batch))
end
expire_in(key, period_us + (now - now_us))
return allowed(amount, amount - count - cost, period_us, 0)
