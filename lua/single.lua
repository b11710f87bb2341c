-- tollgate single: the end of the script of one algorithm on one key,
-- KEYS[1], with its configuration in ARGV[2]. What follows this file
-- is the body of the algorithm's `decide(k, i, write)`, in a block, run in
-- place with these arguments (src/redis/scripts.rs cuts it out of its file):
-- told to write, it writes the state of a request it admits with a non-zero
-- cost (a denial or a peek writes nothing), and its reply is the script's.
local k, i, write = 1, 2, true
