-- KEYS[1] I, KEYS[2] {I}:meta; ARGV[1] member. Reply {1, score, meta|nil}.
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return { -3 } end
return { 1, s, redis.call('HGET', KEYS[2], ARGV[1]) }
