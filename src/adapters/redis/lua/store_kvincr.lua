-- KEYS[1] K, KEYS[2] {K}:exp; ARGV[1] by.
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'string' then
  return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
local v = redis.call('GET', KEYS[1])
if v and not string.match(v, '^%-?%d+$') then return { -2 } end
return { 1, redis.call('INCRBY', KEYS[1], ARGV[1]) }
