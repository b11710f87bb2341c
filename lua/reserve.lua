-- tollgate reserve: comes before lua/single.lua in the script that reserves
-- a slot instead of checking. The arguments are the check's, then one more:
--
-- ARGV[#ARGV] max_wait_us: the longest the request may wait for its slot
--
-- An algorithm that reserves (the token and leaky buckets) admits the request
-- if its slot is at most that far away, with wait_us the time until it; the
-- others decide as a check does.
max_wait_us = tonumber(ARGV[#ARGV])
