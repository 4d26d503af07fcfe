-- KEYS[1] {C}:docs, KEYS[2] {C}:revs; ARGV[1] id, [2] expected rev.
local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local exp = tonumber(ARGV[2])
if cur == 0 then return { -3 } end
if exp == 0 or (exp > 0 and cur ~= exp) then return { -6, cur } end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return { 1 }
