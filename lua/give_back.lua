-- tollgate give back: the end of the script that gives a reservation back
-- (when the caller stopped waiting for it). The arguments are those of the
-- reservation's check, with the time from now on, then two more:
--
-- ARGV[#ARGV - 1] at_us: the reservation's decided_at_us, from its reply
-- ARGV[#ARGV]     wait_us: its wait_us, from its reply
--
-- Replies 1 if the reservation was the newest in the key and was taken back
-- exactly, else 0 (and then nothing changes).
return give_back(1, tonumber(ARGV[#ARGV - 1]), tonumber(ARGV[#ARGV]))
