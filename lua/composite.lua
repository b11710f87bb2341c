-- tollgate composite: the end of the script of several limits on one user
-- key, all or nothing (src/algorithm/composite.rs). The script is the
-- prelude, then each algorithm's files in a `do ... end` block that files its
-- decide and commit as modules[n] (n: the algorithm's place in the registry
-- of src/redis/scripts.rs, from 1), then this file.
--
-- KEYS[k]        limit k's state: <prefix><name>:<tag>:{<user key>}; every
--                key has the user key as its hash tag, so all are in one slot
-- ARGV[1]        the request, as the prelude says (its configuration, zeros)
-- ARGV[2k]       the module of limit k, for k = 1 .. #KEYS, in decimal
-- ARGV[2k + 1]   i: where limit k's configuration is in ARGV, in decimal
--                (ARGV[i] is what its module's `CONFIG:` line says, three
--                fields as in the request, read into config_1 .. config_3
--                before each call of the module's decide)
--
-- COMPOSITE REPLY: the prelude's REPLY for each limit, in the order of KEYS
--   (one string: limit k's seven integers are its bytes 56k - 55 .. 56k).
--
-- Every limit decides first, reading only. If every one admits the request,
-- each commits its write; otherwise nothing is written, the limits that deny
-- answer their denial, and the others answer as a peek (cost 0) does: their
-- figures as they stand, since nothing was taken. Each module's decide and
-- commit is bounded, and so are the limits (16 at most): so is the call.

local function pack(...)
  return {n = select('#', ...), ...}
end

local function configure(i)
  config_1, config_2, config_3 = struct_unpack('>I8I8I8', ARGV[i])
end

local limits = #KEYS
local decided = {}
local every_one_admits = true
for k = 1, limits do
  local module = modules[tonumber(ARGV[2 * k])]
  if not module then
    error('tollgate composite: no module ' .. tostring(ARGV[2 * k]))
  end
  local at = tonumber(ARGV[2 * k + 1])
  configure(at)
  local result = pack(module.decide(k))
  decided[k] = {module = module, at = at, result = result}
  -- allowed: the last byte of the reply's first integer.
  if string.byte(result[1], 8) ~= 1 then
    every_one_admits = false
  end
end

if every_one_admits then
  for k = 1, limits do
    local result = decided[k].result
    -- As lua/single.lua: a write only when the request is admitted with a non-zero cost.
    if result.n > 1 and result[2] then
      decided[k].module.commit(k, unpack(result, 2, result.n))
    end
  end
else
  -- `cost` is the prelude's: each decide reads it.
  cost = 0
  for k = 1, limits do
    if string.byte(decided[k].result[1], 8) == 1 then
      configure(decided[k].at)
      decided[k].result = pack(decided[k].module.decide(k))
    end
  end
end

local replies = {}
for k = 1, limits do
  replies[k] = decided[k].result[1]
end
return table.concat(replies)
