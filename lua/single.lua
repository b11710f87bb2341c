-- tollgate single: the end of the script of one algorithm on one key,
-- KEYS[1], with its configuration from ARGV[3] on. decide returns the reply
-- and, when the request is admitted with a non-zero cost, what commit writes;
-- a denial or a peek writes nothing.
local function finish(reply, ...)
  if ... then
    commit(1, ...)
  end
  return reply
end
return finish(decide(1, 3))
