-- tollgate prelude: the start of every script. The script Redis runs for one
-- decision is this prelude, the algorithm's files (src/redis/scripts.rs lists
-- them), then lua/single.lua, which calls the algorithm's decide and commit.
--
-- ARGV[1]  cost: units asked for (an integer; 0 peeks)
-- ARGV[2]  now_us: µs since the Unix epoch from the client's clock, or '' to
--          use the server's TIME (the default: app servers with skewed clocks
--          still agree)
-- ARGV[3..] the algorithm's configuration, as its file's `ARGV[3..]:` line says
--          (a reservation, lua/reserve.lua, and a give-back, lua/give_back.lua,
--          append their own arguments after it)
--
-- REPLY: allowed limit remaining retry_after_us reset_after_us wait_us decided_at_us
--          (integers: allowed is 1 or 0, durations in µs, decided_at_us the
--          time the script decided at, µs since the epoch, so that a
--          reservation's slot is decided_at_us + wait_us; src/redis/reply.rs
--          reads it, and its tests hold this line to the Rust side)
--
-- Numbers. Every quantity is an integer below 2^53, which Lua 5.1's doubles
-- hold exactly. The scripts never form a sum or product that could pass 2^53
-- (they compare `a > limit - b`, not `a + b > limit`, and take durations as
-- differences of times), and divide with math.fmod (exact) so that quotients
-- are exact too.
--
-- State. A key may hold anything: another version's state, a value written
-- by hand. Each algorithm checks what it reads and raises invalid_state (an
-- error reply `TOLLGATE key <n>: <why>`) rather than decide on it.

local fmod = math.fmod

-- floor(a / b), exactly, for a >= 0 and b > 0.
local function floor_div(a, b)
  return (a - fmod(a, b)) / b
end

-- ceil(a / b), exactly, for a >= 0 and b > 0.
local function ceil_div(a, b)
  local r = fmod(a, b)
  local q = (a - r) / b
  if r > 0 then
    q = q + 1
  end
  return q
end

-- Aborts the script: KEYS[k] holds a value this script cannot read.
local function invalid_state(k, why)
  error({err = 'TOLLGATE key ' .. k .. ': ' .. why})
end

-- `n` from KEYS[k]'s state, if it is an integer in lo..2^53.
local function stored_int(k, n, lo, what)
  if type(n) ~= 'number' or n ~= n or n < lo or n > 9007199254740992 or n ~= math.floor(n) then
    invalid_state(k, what .. ' is not an integer from ' .. lo .. ' to 2^53')
  end
  return n
end

-- The state string of KEYS[k], unpacked with `format` (struct.pack's) if its
-- length is `size` and its first byte one of `tags` (a string of tag bytes),
-- or nil for a missing key.
local function read_state(k, tags, format, size)
  local raw = redis.call('GET', KEYS[k])
  if not raw then
    return nil
  end
  if #raw ~= size or not string.find(tags, string.sub(raw, 1, 1), 1, true) then
    invalid_state(k, 'not the state of this algorithm')
  end
  return struct.unpack(format, raw)
end

local cost = tonumber(ARGV[1])
-- nil for a check; for a reservation (lua/reserve.lua sets it), how long the
-- request may wait for its slot, µs: an algorithm that reserves admits it if
-- its slot is at most that far away.
local max_wait_us = nil
local client_time = ARGV[2] ~= ''
local now_us
if client_time then
  now_us = tonumber(ARGV[2])
else
  local time = redis.call('TIME')
  now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- The time the reply says the script decided at: now_us, unless an
-- algorithm held it at the newest time in its state (a clock behind the last
-- writer's); lua/meter.lua does, so that a reservation's slot is exact.
local decided_at_us = now_us

-- A TTL of `ttl_us` µs from now_us in whole ms, rounded up: when the state
-- reads as new again. A client clock need not run at the server's pace (a
-- test's manual clock does not), so in client-time mode a key is kept one
-- second longer: an extra second of a state that reads as new changes no
-- decision.
local function ttl_ms(ttl_us)
  local ms = ceil_div(ttl_us, 1000)
  if client_time then
    ms = ms + 1000
  end
  return ms
end

-- Writes a state string with its TTL: the commit of every algorithm whose
-- state is one string.
local function write_state(k, value, ttl)
  redis.call('SET', KEYS[k], value, 'PX', ttl)
end

local function allowed(limit, remaining, reset_after_us, wait_us)
  return {1, limit, remaining, 0, reset_after_us, wait_us, decided_at_us}
end

-- A denial never says retry after zero: a client would spin.
local function denied(limit, remaining, retry_after_us, reset_after_us)
  return {0, limit, remaining, math.max(retry_after_us, 1), reset_after_us, 0, decided_at_us}
end
