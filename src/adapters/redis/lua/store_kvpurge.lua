-- KEYS[1] K, KEYS[2] {K}:exp; ARGV[1] now. Reply {1, 1} when K was
-- removed or has no expiry any more, {1, 0} when it expires later.
local e = redis.call('GET', KEYS[2])
if not e then return { 1, 1 } end
if tonumber(e) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return { 1, 1 }
end
return { 1, 0 }
