-- tollgate single: the end of the script of one algorithm on one key,
-- KEYS[1], with its configuration in ARGV[1], after the request (the
-- prelude reads it). What follows this file is the body of the algorithm's
-- `decide(k, write)`, in a block, run in
-- place with these arguments (src/redis/scripts.rs cuts it out of its file):
-- told to write, it writes the state of a request it admits with a non-zero
-- cost (a denial or a peek writes nothing), and its reply is the script's.
local k, write = 1, true
