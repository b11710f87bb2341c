-- tollgate compact: the counters' compact layout, shared by
-- lua/fixed_window.lua and lua/sliding_window.lua: the decimal integer
-- <start's whole seconds><9 digits>, the 9 digits the start's ms (3) and
-- the algorithm's counts (6). At most 19 digits, below 2^63 until the year
-- 2262, so Redis keeps it as a number in the key itself: the memory of a key
-- holding one integer (docs/redis.md, "Memory per key"). A single script has
-- these written in place of their calls (src/redis/scripts.rs, INLINED), so
-- each returns once, at its end.

-- The start (µs) and the counts (6 digits) that `raw` holds in the compact
-- layout, or nil if it is not that layout.
local function read_compact(raw)
  local start, counts, seconds, rest
  if #raw <= 19 then
    seconds, rest = string.match(raw, '^(%d+)(%d%d%d%d%d%d%d%d%d)$')
  end
  if seconds then
    -- Digits, read by arithmetic: tonumber would parse each twice.
    rest = rest + 0
    counts = rest % 1000000
    start = (seconds + 0) * 1000000 + (rest - counts) / 1000
  end
  return start, counts
end

-- The compact layout of a window that starts at `start` (µs, a whole ms)
-- with `counts` (below 10^6).
local function compact_text(start, counts)
  local within_second = start % 1000000
  -- Two numbers below 2^31, each a C long even on a 32-bit Redis, where
  -- '%d' formats one; the seconds reach 2^31 in 2038, and then go as two.
  local seconds, rest = (start - within_second) / 1000000, within_second * 1000 + counts
  local text
  if seconds < 2147483648 then
    text = string.format('%d%09d', seconds, rest)
  else
    local low = seconds % 100000000
    text = string.format('%d%08d%09d', (seconds - low) / 100000000, low, rest)
  end
  return text
end
