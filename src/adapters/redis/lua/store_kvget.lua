-- KEYS[1] K, KEYS[2] {K}:exp; ARGV[1] now.
local v = redis.call('GET', KEYS[1])
if not v then return { -3 } end
local e = redis.call('GET', KEYS[2])
if e and tonumber(ARGV[1]) >= tonumber(e) then return { -3 } end
return { 1, v }
