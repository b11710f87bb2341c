-- tollgate exact: integer division and state checks, for the algorithms
-- whose scripts use them (src/redis/scripts.rs puts this file before their
-- own, and a script keeps only the functions it uses). The quotients are
-- exact: see the prelude's "Numbers".

-- floor(a / b), exactly, for a >= 0 and b > 0.
local function floor_div(a, b)
  return (a - a % b) / b
end

-- ceil(a / b), exactly, for a >= 0 and b > 0.
local function ceil_div(a, b)
  local r = a % b
  local q = (a - r) / b
  if r > 0 then
    q = q + 1
  end
  return q
end

-- `n` from KEYS[k]'s state, if it is an integer in lo..2^53 (nil and NaN
-- fail every comparison; an infinity's `% 1` is NaN).
local function stored_int(k, n, lo, what)
  if not (n and n >= lo and n <= MAX_EXACT and n % 1 == 0) then
    invalid_state(k, what .. ' is not an integer from ' .. lo .. ' to 2^53')
  end
  return n
end

-- The state string of KEYS[k], unpacked with `format` (struct.pack's) if its
-- length is `size` and its first byte one of `tags` (a string of tag bytes),
-- or nil for a missing key.
local function read_state(k, tags, format, size)
  local raw = redis_call('GET', KEYS[k])
  if not raw then
    return nil
  end
  if #raw ~= size or not string.find(tags, string.sub(raw, 1, 1), 1, true) then
    invalid_state(k, 'not the state of this algorithm')
  end
  return struct_unpack(format, raw)
end

-- A TTL of `ttl_us` µs from now_us in whole ms, rounded up, as the prelude
-- says.
local function ttl_ms(ttl_us)
  local sub_ms = ttl_us % 1000
  local ms = (ttl_us - sub_ms) / 1000 + ttl_extra_ms
  if sub_ms > 0 then
    ms = ms + 1
  end
  return ms
end
