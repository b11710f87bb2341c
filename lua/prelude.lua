-- tollgate prelude: the start of every script. The script Redis runs for one
-- decision is this prelude, the algorithm's files (src/redis/scripts.rs lists
-- them), then lua/single.lua, which calls the algorithm's decide, telling it
-- to write what it admits.
--
-- ARGV[1]  the request: cost, units asked for (an integer; 0 peeks), then
--          clock: in client-time mode now_us, µs since the Unix epoch from
--          the client's clock; else 2^64 - 1, and the script uses the
--          server's TIME (the default: app servers with skewed clocks still
--          agree); then the configuration: the fields named by the
--          `CONFIG:` line of the algorithm's file, then zeros, three in all
--          (a composite's request has zeros there, and each limit's
--          configuration in an argument of its own: lua/composite.lua).
--          2^64 - 1 for the server's clock: the configuration follows the
--          clock, so the request's length cannot tell.
-- These are unsigned 64-bit big-endian integers (struct.pack's '>I8'), read
-- with struct.unpack: one argument for several numbers, and no decimal to
-- parse. Redis makes a Lua string of each argument, in a table it grows one
-- element at a time, and tonumber parses a decimal with strtod: a decimal
-- argument per number cost a token bucket's decision a sixth of the floor's
-- time, and a configuration in an argument of its own 2% more than in the
-- request's (docs/redis.md, "What a decision costs Redis"). A reservation,
-- lua/reserve.lua, and a give-back, lua/give_back.lua, append their own
-- arguments after these, in decimal.
--
-- REPLY: allowed limit remaining retry_after_us reset_after_us wait_us decided_at_us
--          (one string of seven unsigned 64-bit big-endian integers,
--          struct_pack(REPLY, ...): allowed is 1 or 0, durations in µs,
--          retry_after_us at least 1 in a denial (a client would spin on
--          zero), decided_at_us the time the script decided at, µs since the
--          epoch: now_us, but the buckets' (lua/meter.lua) is held at the
--          newest time in their state, so that a reservation's slot is
--          exactly decided_at_us + wait_us;
--          src/redis/reply.rs reads it, and its tests hold this line and
--          every struct_pack(REPLY, ...) of the scripts to the Rust side). A
--          string, not a table: Redis turns a table into an array reply of a
--          length it learns only at the end, the costliest part of a call
--          after its commands (docs/redis.md, "What a decision costs Redis").
--
-- Numbers. Every quantity is an integer below 2^53, which Lua 5.1's doubles
-- hold exactly. The scripts never form a sum or product that could pass 2^53
-- (they compare `a > limit - b`, not `a + b > limit`, and take durations as
-- differences of times). They divide with `%`, which is exact here: Lua's
-- a % b is a - floor(a / b) * b, and for integers 0 <= a <= 2^53 and
-- 1 <= b <= 2^53 the rounded a / b never crosses an integer (a quotient
-- short of an integer m by r / b, r >= 1, is at least 1 / b below it, more
-- than half an ulp of a / b, since (a / b) * 2^-53 < 1 / b when a < 2^53,
-- and at a = 2^53 the tie needs b a power of two, which leaves no r); so
-- floor(a / b) is the true quotient, and (a - a % b) / b too.
--
-- State. A key may hold anything: another version's state, a value written
-- by hand. Each algorithm checks what it reads and raises invalid_state (an
-- error reply `TOLLGATE key <n>: <why>`) rather than decide on it.

-- Every call runs this whole chunk, and every function it makes (with each
-- local it captures) or calls costs Redis about as much as a few lines of
-- arithmetic: so the prelude makes two small functions, the algorithms
-- spell out their hot paths rather than call helpers, and a single script
-- has the meter's functions (lua/meter.lua) written in place of their calls
-- by src/redis/scripts.rs. The scripts of a constant size (every one but
-- the sliding log's) make no function at all: they raise invalid_state's
-- error in place (docs/redis.md, "What a decision costs Redis").

local MAX_EXACT = 9007199254740992
local REPLY = '>I8I8I8I8I8I8I8'
-- Redis looks a global up, and then the field in its table, on every use:
-- about 180 instructions for each `struct.pack` before the call, as much as
-- ten lines of arithmetic. The scripts call these three through locals.
local redis_call, struct_pack, struct_unpack = redis.call, struct.pack, struct.unpack

-- Aborts the script: KEYS[k] holds a value this script cannot read.
local function invalid_state(k, why)
  error({err = 'TOLLGATE key ' .. k .. ': ' .. why})
end

-- Writes a state string with its TTL (ms): the commit of every algorithm
-- whose state is one string, and its write in a single script, which has
-- this body in place of the call (src/redis/scripts.rs, INLINED).
local function write_state(k, state, ttl)
  redis_call('SET', KEYS[k], state, 'PX', ttl < 2147483648 and string.format('%d', ttl) or string.format('%.0f', ttl))
end

local cost
-- nil for a check; for a reservation (lua/reserve.lua sets it), how long the
-- request may wait for its slot, µs: an algorithm that reserves admits it if
-- its slot is at most that far away.
local max_wait_us = nil
-- A TTL is a time from now_us in whole ms, rounded up: when the state reads
-- as new again. It goes to Redis as string.format('%d', ttl): Redis formats
-- a number passed to redis.call with '%.17g', which costs it more than the
-- call to string.format does. '%d' formats a C long, 32 bits on a 32-bit
-- Redis, so a TTL from 2^31 ms (24.8 days) on goes as '%.0f', exact
-- anywhere (write_state; the sliding log's decimal). A client
-- clock need not run at the server's pace (a test's manual clock does not),
-- so in client-time mode a key is kept one second longer (ttl_extra_ms): an
-- extra second of a state that reads as new changes no decision.
local ttl_extra_ms = 0
local now_us
-- 2^64 - 1 as a double (2^64): no client's time (the year 584 554).
local SERVER_CLOCK = 18446744073709551615
-- The configuration's fields, in the order of the algorithm's `CONFIG:`
-- line, zeros past its last.
local clock, config_1, config_2, config_3
cost, clock, config_1, config_2, config_3 = struct_unpack('>I8I8I8I8I8', ARGV[1])
if clock == SERVER_CLOCK then
  local time = redis_call('TIME')
  now_us = time[1] * 1000000 + time[2]
else
  now_us = clock
  ttl_extra_ms = 1000
end
