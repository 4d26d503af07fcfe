-- KEYS[1] I, KEYS[2] {I}:meta; ARGV[1] member ("" with ARGV[2] = 1: drop
-- all), ARGV[3..] more members removed with it (del_many).
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  local m = { ARGV[1] }
  for i = 3, #ARGV do m[#m + 1] = ARGV[i] end
  redis.call('ZREM', KEYS[1], unpack(m))
  redis.call('HDEL', KEYS[2], unpack(m))
end
return { 1, redis.call('ZCARD', KEYS[1]) }
