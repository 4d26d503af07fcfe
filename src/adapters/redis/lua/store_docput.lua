-- KEYS[1] {C}:docs, KEYS[2] {C}:revs; ARGV[1] id, [2] json, [3] expected
-- rev (-1 any, 0 absent, r > 0 exactly r). Reply {1, new rev}.
local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local exp = tonumber(ARGV[3])
if (exp == 0 and cur > 0) or (exp > 0 and cur ~= exp) then return { -6, cur } end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return { 1, redis.call('HINCRBY', KEYS[2], ARGV[1], 1) }
